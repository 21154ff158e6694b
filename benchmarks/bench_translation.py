"""tl-translation on the real Chichewa-English corpus:

1. (default) training throughput: tokens per second through `tl run` / Hugging Face `Seq2SeqTrainer`, the same
   model (a small Marian saved once with save_pretrained; both load that folder), tokenizer, data, batch size,
   optimizer and schedule; no evaluation during training on either side. An epoch's training time from the second
   epoch on, runs alternating, as a ratio (goal: tl/HF >= 1.0 in tokens/s);
2. (`--transfer`) test chrF++ and BLEU after the same budget: the MiniLM BERT2BERT warm start against the same
   architecture from scratch (`compare.scratch`); with `--vocab`, the warm start with the vocabulary extended.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from common import WORK


def base_model(pairs: list, vocab_size: int):
    """A small Marian from config with a sentencepiece vocabulary trained on the training text, saved once."""
    from transformers import MarianConfig, MarianMTModel

    from tl_translation.models import FAMILIES
    from tl_translation.vocab import train_tokenizer

    folder = WORK / "marian-base"
    tokenizer = train_tokenizer([p.source for p in pairs] + [p.target for p in pairs], vocab_size, "ny", "en")
    config = MarianConfig(**{**FAMILIES["marian-small"].config_kwargs, "vocab_size": len(tokenizer),
                             "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
                             "decoder_start_token_id": tokenizer.pad_token_id})
    import torch

    torch.manual_seed(0)
    MarianMTModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder, tokenizer


def throughput(n: int, epochs: int, batch: int, repeats: int) -> None:
    import torch
    from transformers import (
        AutoModelForSeq2SeqLM,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        TrainerCallback,
    )

    from tl_core.recipe import load_recipe
    from tl_core.run import execute
    from tl_translation.corpus import chichewa_english, split_by_book, spread
    from tl_translation.formats import write_tsv

    pairs = spread(split_by_book(chichewa_english())["train"], n)
    data = write_tsv(pairs, WORK / "train.tsv")
    folder, tokenizer = base_model(pairs, 8000)
    features = [tokenizer(p.source, text_target=p.target, truncation=True, max_length=128) for p in pairs]
    tokens = sum(len(f["input_ids"]) + len(f["labels"]) for f in features)
    lr, wd = 5e-4, 0.01
    hf_epochs: list[float] = []
    tl_epochs: list[float] = []

    class EpochTimer(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            self.start = time.perf_counter()

        def on_epoch_end(self, args, state, control, **kw):
            if state.epoch > 1.5:  # from the second epoch on
                hf_epochs.append(time.perf_counter() - self.start)

    def hf() -> None:
        model = AutoModelForSeq2SeqLM.from_pretrained(str(folder))
        args = Seq2SeqTrainingArguments(
            output_dir=str(WORK / "hf"), per_device_train_batch_size=batch, num_train_epochs=epochs,
            learning_rate=lr, weight_decay=wd, lr_scheduler_type="cosine", warmup_steps=0, report_to=[],
            save_strategy="no", logging_strategy="no", eval_strategy="no", use_cpu=not torch.cuda.is_available(),
            seed=0, dataloader_num_workers=0, disable_tqdm=True)
        Seq2SeqTrainer(model=model, args=args, train_dataset=features, callbacks=[EpochTimer()],
                       data_collator=DataCollatorForSeq2Seq(tokenizer, model=model)).train()

    def through_tl() -> None:
        out = WORK / "tl-run"
        shutil.rmtree(out, ignore_errors=True)
        recipe = load_recipe("translation/minilm-ny-en", [
            "backbone.name=marian-small", f"backbone.weights={folder}", "data.format=tsv", f"data.path={data}",
            "data.val_fraction=0", "compare.scratch=false", f"train.epochs={epochs}", f"train.batch_size={batch}",
            f"train.lr={lr}", f"train.weight_decay={wd}", "train.schedule=cosine", "data.options.max_words=null",
            "head.samples=0"])
        report = execute(recipe, out, quiet=True)
        tl_epochs.extend(row["seconds"] for row in report["epochs"][1:])

    for _ in range(repeats):
        hf()
        through_tl()
    h, t = statistics.median(hf_epochs), statistics.median(tl_epochs)
    print(f"data: {len(pairs)} Chichewa-English verse pairs ({tokens} tokens a epoch, source + target), marian-small "
          f"({sum(p.numel() for p in AutoModelForSeq2SeqLM.from_pretrained(str(folder)).parameters()) / 1e6:.1f}M "
          f"parameters), batch {batch}, AdamW, cosine; {epochs} epochs x {repeats} alternating runs, median epoch "
          f"from the second on, {torch.get_num_threads()} threads")
    print(f"  HF Seq2SeqTrainer   {tokens / h:9.0f} tokens/s   ({h:6.2f} s/epoch)")
    print(f"  tl run              {tokens / t:9.0f} tokens/s   ({t:6.2f} s/epoch)   tl/HF {h / t:5.3f}x (goal >= 1.0)")


def transfer(limit: int | None, epochs: int, batch: int, test_limit: int, vocab: bool = False,
             max_words: int | None = None, lr: float | None = None, scratch: bool = True) -> None:
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    name = "translation/minilm-ny-en-vocab" if vocab else "translation/minilm-ny-en"
    out = WORK / ("minilm-vocab" if vocab else "minilm-transfer")
    shutil.rmtree(out, ignore_errors=True)
    recipe = load_recipe(name, [
        f"data.options.limit={limit or 'null'}", f"data.options.test_limit={test_limit}", f"train.epochs={epochs}",
        f"train.batch_size={batch}", "head.num_beams=1", "head.max_new_tokens=48",
        *([f"data.options.max_words={max_words}", "data.options.long=drop"] if max_words else []),
        *([f"train.lr={lr}"] if lr else []), *(["compare.scratch=false"] if vocab or not scratch else [])])
    report = execute(recipe, out, quiet=True)
    pairs = report["data"]["pairs"]
    short = f" of at most {max_words} words a side" if max_words else ""
    print(f"data: bible:ny-en, {pairs['train']} training pairs{short} spread over the books, {pairs['test']} test "
          f"verses (held-out books); {name}, {epochs} epochs, batch {batch}, lr {recipe.train.lr}, "
          f"{-(-pairs['train'] // batch) * epochs} steps; greedy decoding")
    rows = [("MiniLM warm start" + (" + vocabulary" if vocab else ""), report["metrics"]["test"])]
    if "scratch" in report:
        rows.append(("from scratch", report["scratch"]["metrics"]["test"]))
    for label, metrics in rows:
        print(f"  {label:30s} chrF++ {metrics['chrf']:6.2f}   BLEU {metrics['bleu']:6.2f}")
    extension = report["vocabulary"].get("extension")
    if extension:
        print(f"  vocabulary: {extension['added']} tokens added ({extension['old_size']} -> {extension['new_size']})")
    print(f"  ({report['timings']['total_seconds'] / 60:.1f} min; signature {report['metric_signatures']['chrf']})")
    for sample in report["samples"][:2]:
        print(f"  {sample['origin']}: {sample['translation']!r}  <- reference {sample['reference']!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transfer", action="store_true")
    parser.add_argument("--vocab", action="store_true", help="--transfer with the vocabulary extended, no scratch")
    parser.add_argument("--n", type=int, default=1000, help="training pairs (--transfer: 0 = all)")
    parser.add_argument("--max-words", type=int, default=None, help="--transfer: only pairs this short (both sides)")
    parser.add_argument("--lr", type=float, default=None, help="--transfer: the recipe's learning rate otherwise")
    parser.add_argument("--no-scratch", action="store_true", help="--transfer: the warm start alone")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--test-n", type=int, default=100)
    args = parser.parse_args()
    if args.transfer:
        transfer(args.n or None, args.epochs, args.batch, args.test_n, args.vocab, args.max_words, args.lr,
                 not args.no_scratch)
    else:
        throughput(args.n, args.epochs, args.batch, args.repeats)


if __name__ == "__main__":
    main()
