"""Training a seq2seq model on the core's one path (the model computes its own loss), generating translations for
the metrics and the report's samples, watching them for degenerate output (:mod:`tl_translation.watches`), and
scoring a finished run on new sentence pairs (``tl evaluate``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.api import TaskSpec, TaskSteps
from tl_translation.saving import MODEL_DIR
from tl_translation.watches import add_watch, degenerate_output

if TYPE_CHECKING:
    from tl_core.api import Recipe, RunContext, TrainResult
    from tl_translation.models import Translator

METRICS = {"bleu", "chrf"}
DAMAGED_FIX = "the run's model was changed or damaged after the run: restore RUN/model, or train again with tl run"


def train_step(model: Any, inputs: dict[str, Any], references: list[str]) -> Any:
    return model(**inputs).loss


def translate(hf_model: Any, tokenizer: Any, inputs: dict[str, Any], generation: Any) -> list[str]:
    """Generate and decode translations of a tokenised batch (``labels``, if present, are ignored)."""
    import torch

    from tl_translation.generation import generate_kwargs

    inputs = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():  # the same settings as the saved model's generation_config (set_generation_config)
        out = hf_model.generate(**inputs, **generate_kwargs(generation))
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True,
                                                      clean_up_tokenization_spaces=True)]


def translate_texts(hf_model: Any, tokenizer: Any, generation: Any, sources: list[str],
                    batch_size: int = 16) -> list[str]:
    """Translate plain sentences with a built (or reloaded) model."""
    device = next(hf_model.parameters()).device
    out: list[str] = []
    hf_model.eval()
    for i in range(0, len(sources), batch_size):
        enc = tokenizer(sources[i:i + batch_size], padding=True, truncation=True, return_tensors="pt")
        out.extend(translate(hf_model, tokenizer, {k: v.to(device) for k, v in enc.items()}, generation))
    return out


def metrics(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF++ from sacrebleu (their default settings; see :func:`signatures`)."""
    from sacrebleu.metrics import BLEU, CHRF

    return {"bleu": BLEU().corpus_score(hypotheses, [references]).score,
            "chrf": CHRF(word_order=2).corpus_score(hypotheses, [references]).score}


def signatures(lowercase: bool) -> dict[str, str]:
    """sacrebleu's signature strings of the two metrics, as they were computed (``case:lc`` when the model's
    tokenizer is uncased and both sides were compared lowercased)."""
    from sacrebleu.metrics import BLEU, CHRF

    out = {}
    for name, metric in (("bleu", BLEU(lowercase=lowercase)), ("chrf", CHRF(word_order=2, lowercase=lowercase))):
        metric.corpus_score(["x"], [["x"]])  # the signature names the number of references: one
        out[name] = str(metric.get_signature())
    return out


def train(recipe: Recipe, bundle: Translator, data: Any, ctx: RunContext) -> TrainResult:
    from collections import deque

    from tl_core.api import train_task
    from tl_translation.data import PairDataset, collate_for

    tokenizer, generation = bundle.tokenizer, bundle.generation
    watched = data.test or data.val or []  # the split scored last: its translations feed the degenerate-output watch
    scored: deque[str] = deque(maxlen=max(len(watched), 1))  # the latest translations, in the order scored

    def predict_step(model: Any, inputs: dict[str, Any]) -> list[str]:
        net = getattr(model, "module", model)  # under DDP, generate() is the wrapped model's
        out = translate(net.backbone, tokenizer, inputs, generation)
        scored.extend(out)
        return out

    def make(pairs: list[Any], augment: bool) -> PairDataset:
        return PairDataset(pairs, tokenizer, data.options, bundle.lowercase)

    restore = getattr(bundle.extension, "restore", None)  # freeze_old_rows: put the old rows back after each step
    steps = TaskSteps(train=train_step, predict=predict_step, collate=collate_for(tokenizer),
                      after_step=(lambda model: restore()) if restore else None)
    result = train_task(recipe, bundle, data, ctx, TaskSpec(
        make_dataset=make, steps=steps, metric_names=set(METRICS), classes=[], saved=bundle,
        no_cache="translation trains on token sequences",
    ))
    add_watch(result.info, degenerate_output_watch(bundle, data, watched, list(scored)))
    shown = (data.test or data.val)[:generation.samples]
    translations = translate_texts(bundle.hf_model, tokenizer, generation, [p.source for p in shown])
    result.info.update(
        metric_signatures=signatures(bundle.lowercase),
        lowercased=bundle.lowercase,
        samples=[{"origin": p.origin, "source": p.source, "reference": p.target, "translation": t}
                 for p, t in zip(shown, translations)],
        generation=generation.model_dump(),
        **({"hub": {**bundle.hub, "pinned": bundle.hub["revision"] is not None}} if bundle.hub else {}),
        languages={"source": bundle.source_lang, "target": bundle.target_lang},
        vocabulary={"size": len(tokenizer), "tokenizer": type(tokenizer).__name__,
                    **({"extension": bundle.extension.as_dict()} if bundle.extension else {})},
    )
    return result


def degenerate_output_watch(bundle: Translator, data: Any, pairs: list[Any], scored: list[str]) -> dict[str, Any]:
    """The degenerate-output watch (:mod:`tl_translation.watches`) on the translations the run scored last, the
    test split's (else val's): the trainer's own translations where they are all there (one process: the last
    ``len(pairs)`` it generated are that split's, in order), else translated again with the trained model."""
    from accelerate import PartialState

    split = "test" if data.test else "val"
    if not pairs:
        return degenerate_output([], [], [], split)
    sources = [p.source for p in pairs]
    if len(scored) == len(pairs) and PartialState().num_processes == 1:
        outputs = scored
    else:  # several processes each generated a shard: translate the split whole
        outputs = translate_texts(bundle.hf_model, bundle.tokenizer, bundle.generation, sources)
    return degenerate_output(sources, outputs, [p.target for p in pairs], split)


def evaluate_run(run_dir: Path, report: dict[str, Any], data: str) -> dict[str, Any]:
    """``tl evaluate RUN --data FILE``: the run's saved model (``RUN/model``) translates every source sentence of
    ``FILE`` (TSV, Moses or JSONL; the run's format, or for a ``bible`` run the file's suffix) and is scored with
    the run's metrics and generation settings."""
    from tl_core.api import RunError, TLError, format_options, registry
    from tl_core.api import validate_recipe as validate
    from tl_translation.data import TranslationOptions
    from tl_translation.models import GenerationOptions, load_pretrained

    recipe = validate(report["recipe"], f"{run_dir}/report.json")
    folder = run_dir / MODEL_DIR
    if not folder.is_dir():
        raise RunError(f"{run_dir} has no {MODEL_DIR}/ folder; the run did not finish writing its model: run it "
                       "again with tl run, or continue it with --resume")
    fmt_name = recipe.data.format
    if registry("data format").get(fmt_name).read_split is None:  # bible: a file of the user's
        suffix = Path(data).suffix.lstrip(".")
        fmt_name = {"tsv": "tsv", "jsonl": "jsonl", "json": "jsonl"}.get(suffix, "")
        if not fmt_name:
            raise TLError(f"--data {data}: give a .tsv or .jsonl file of sentence pairs to score a "
                          f"{recipe.data.format} run")
    options = format_options(TranslationOptions, recipe.data.options)
    languages = report.get("languages") or {}
    options = options.model_copy(update={"source_lang": options.source_lang or languages.get("source"),
                                         "target_lang": options.target_lang or languages.get("target")})
    found = registry("data format").get(fmt_name).read_split(data, strict=recipe.data.strict, options=options)
    pairs = list(found)
    got = load_pretrained(str(folder), "tl evaluate", error=RunError, fix=DAMAGED_FIX)
    if got.missing:
        raise RunError(f"tl evaluate: {folder} lacks {len(got.missing)} of the model's tensors "
                       f"({', '.join(got.missing[:3])}); {DAMAGED_FIX}")
    hf, tokenizer = got.model, got.tokenizer
    lowercase = bool(report.get("lowercased"))
    generation = GenerationOptions(**(report.get("generation") or {}))
    translations = translate_texts(hf, tokenizer, generation, [p.source for p in pairs], recipe.train.batch_size)
    references = [p.target.lower() if lowercase else p.target for p in pairs]
    shown = generation.samples
    return {
        "items": len(pairs), "unit": "sentence pairs", "skipped": list(found.skipped),
        "metrics": metrics(translations, references), "metric_signatures": signatures(lowercase),
        "samples": [{"source": p.source, "reference": p.target, "translation": t}
                    for p, t in zip(pairs[:shown], translations[:shown])],
    }
