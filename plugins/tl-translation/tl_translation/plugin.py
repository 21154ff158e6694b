"""The tl-translation plugin: seq2seq translation models and their warm starts, parallel-text formats, the real
Chichewa-English corpus, BLEU and chrF++. Importing this module imports neither torch nor transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_core import hookimpl
from tl_core.api import recipes_in
from tl_translation.registrations import DATA_FORMATS, HEADS, TASK, LoraPolicy

TL_HOOK_API = ">=2.1,<3"  # the tl hook API versions this plugin works with

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def tl_register_backbones(register: Any) -> None:
    from tl_translation.families import BACKBONES

    for spec in BACKBONES:
        register(spec)


@hookimpl
def tl_register_heads(register: Any) -> None:
    for head in HEADS:
        register(head)


@hookimpl
def tl_register_policies(register: Any) -> None:
    register(LoraPolicy)


@hookimpl
def tl_register_datasets(register: Any) -> None:
    for fmt in DATA_FORMATS:
        register(fmt)


@hookimpl
def tl_register_recipes(register: Any) -> None:
    for source in recipes_in(RECIPES):
        register(source)


@hookimpl
def tl_build_model(recipe: Any, data: Any) -> Any:
    if recipe.task != TASK:
        return None
    from tl_translation.models import build

    return build(recipe, data)


@hookimpl
def tl_train(recipe: Any, model: Any, data: Any, ctx: Any) -> Any:
    if recipe.task != TASK:
        return None
    from tl_translation.models import Translator
    from tl_translation.train import train

    return train(recipe, model, data, ctx) if isinstance(model, Translator) else None


@hookimpl
def tl_extract_features(recipe: Any, model: Any, data: Any, progress: Any) -> Any:
    """``tl diagnose``: mean encoder states of the training and validation source sentences, with hashed bags of
    their target words as targets (:mod:`tl_translation.features`)."""
    if recipe.task != TASK:
        return None
    from tl_translation.models import Translator

    if not isinstance(model, Translator):
        return None
    from tl_translation.features import extract_features

    return extract_features(recipe, model, data, progress)


@hookimpl
def tl_evaluate(task: str, outputs: Any, targets: Any, class_names: list[str]) -> dict[str, float] | None:
    if task != TASK:
        return None
    from tl_translation.train import metrics

    return metrics(list(outputs), list(targets))


@hookimpl
def tl_evaluate_run(run_dir: Any, report: Any, data: str) -> dict[str, Any] | None:
    if report["recipe"]["task"] != TASK:
        return None
    from tl_translation.train import evaluate_run

    return evaluate_run(run_dir, report, data)


@hookimpl
def tl_conformance_smoke(recipe_name: str, folder: Path) -> list[str] | None:
    """For tl's conformance suite: ``--set`` overrides that make a shipped recipe train one tiny epoch offline
    (the Bible corpus ships in a package; the hub recipe needs the network and is skipped)."""
    recipe = recipe_name
    if not recipe.startswith("translation/") or "opus-mt" in recipe:
        return None
    sets = ["data.options.limit=16", "data.options.test_limit=4", "head.num_beams=1", "head.max_new_tokens=8",
            "data.options.max_source_tokens=32", "data.options.max_target_tokens=32", "data.options.vocab_size=200"]
    return [*sets, "head.extend_vocab=200"] if "vocab" in recipe else sets
