"""Training a seq2seq model with the core trainer (the model computes its own loss), generating translations for
the metrics, and saving the model in its own ecosystem's format (``save_pretrained``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tl_core.recipe import Recipe
    from tl_core.run import RunContext
    from tl_translation.models import Translator

MODEL_DIR = "model"
METRICS = {"bleu", "chrf"}


def train_step(model: Any, inputs: dict[str, Any], references: list[str]) -> Any:
    return model(**inputs).loss


def translate(hf_model: Any, tokenizer: Any, inputs: dict[str, Any], generation: Any) -> list[str]:
    """Generate and decode translations of a tokenised batch (``labels``, if present, are ignored)."""
    import torch

    inputs = {k: v for k, v in inputs.items() if k != "labels"}
    with torch.no_grad():
        out = hf_model.generate(**inputs, num_beams=generation.num_beams, max_new_tokens=generation.max_new_tokens,
                                length_penalty=generation.length_penalty,
                                no_repeat_ngram_size=generation.no_repeat_ngram_size,
                                **({"early_stopping": True} if generation.num_beams > 1 else {}))
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True,
                                                      clean_up_tokenization_spaces=True)]


def translate_texts(bundle: Translator, sources: list[str], batch_size: int = 16) -> list[str]:
    """Translate plain sentences with a built (or reloaded) model."""
    device = next(bundle.hf_model.parameters()).device
    out: list[str] = []
    bundle.hf_model.eval()
    for i in range(0, len(sources), batch_size):
        enc = bundle.tokenizer(sources[i:i + batch_size], padding=True, truncation=True, return_tensors="pt")
        out.extend(translate(bundle.hf_model, bundle.tokenizer, {k: v.to(device) for k, v in enc.items()},
                             bundle.generation))
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


def train(recipe: Recipe, bundle: Translator, data: Any, ctx: RunContext) -> Any:
    from tl_core.classifier import make_policy
    from tl_core.policies import apply_plan
    from tl_core.train import TaskSteps, run_trainer
    from tl_translation.data import PairDataset, collate_for

    policy = make_policy(recipe)
    tokenizer, generation = bundle.tokenizer, bundle.generation

    def predict_step(model: Any, inputs: dict[str, Any]) -> list[str]:
        net = getattr(model, "module", model)  # under DDP, generate() is the wrapped model's
        return translate(net.backbone, tokenizer, inputs, generation)

    collate = collate_for(tokenizer, data.options, lowercase_references=bundle.lowercase)
    steps = TaskSteps(train=train_step, predict=predict_step, collate=collate)
    result = run_trainer(
        bundle.model, bundle.groups, policy, recipe.train, ctx, recipe.task, [],
        PairDataset(data.train), PairDataset(data.val) if data.val else None,
        PairDataset(data.test) if data.test else None,
        num_workers=recipe.data.num_workers, metric_names=set(METRICS), task_steps=steps,
    )
    epochs = recipe.train.epochs
    groups = bundle.groups
    apply_plan(bundle.model, groups, policy.plan(len(groups), epochs - 1, epochs))
    shown = (data.test or data.val)[:generation.samples]
    translations = translate_texts(bundle, [p.source for p in shown])
    result.model = bundle
    result.info.update(
        feature_cache={"used": False, "reason": "translation trains on token sequences"},
        metric_signatures=signatures(bundle.lowercase),
        lowercased=bundle.lowercase,
        samples=[{"origin": p.origin, "source": p.source, "reference": p.target, "translation": t}
                 for p, t in zip(shown, translations)],
        generation=generation.model_dump(),
        languages={"source": bundle.source_lang, "target": bundle.target_lang},
        vocabulary={"size": len(tokenizer), "tokenizer": type(tokenizer).__name__},
    )
    return result


def save_model(bundle: Translator, out: Path) -> Path:
    """``OUT/model/``: the model and its tokenizer as ``save_pretrained`` writes them (written aside, then moved
    into place, so a half-written folder never looks like a model)."""
    target = out / MODEL_DIR
    tmp = out / f".{MODEL_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    from transformers.utils import logging

    logging.disable_progress_bar()  # no "Writing model shards" bar in tl's output
    bundle.hf_model.save_pretrained(str(tmp))
    bundle.tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return target
