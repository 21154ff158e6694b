"""Image classification, the core's own task: model assembly, training and metrics.

Every hook here is ``trylast``: a domain plugin that answers for the same task wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core import hookimpl

if TYPE_CHECKING:
    from tl_core.context import RunContext
    from tl_core.sections import Recipe

TASK = "image-classification"


@hookimpl(trylast=True)
def tl_build_model(recipe: Recipe, data: Any) -> Any:
    if recipe.task != TASK:
        return None
    from tl_core.classifier import build_classifier

    return build_classifier(recipe, len(data.classes))


@hookimpl(trylast=True)
def tl_train(recipe: Recipe, model: Any, data: Any, ctx: RunContext) -> Any:
    from tl_core.classifier import Classifier, train_classifier

    if not isinstance(model, Classifier):
        return None
    return train_classifier(recipe, model, data, ctx)


@hookimpl
def tl_evaluate(task: str, outputs: Any, targets: Any, class_names: list[str]) -> dict[str, float] | None:
    if task != TASK:
        return None
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    n = len(class_names)
    preds = outputs.argmax(1)
    return {
        "accuracy": multiclass_accuracy(preds, targets, num_classes=n, average="micro").item(),
        "balanced_accuracy": multiclass_accuracy(preds, targets, num_classes=n, average="macro").item(),
        "macro_f1": multiclass_f1_score(preds, targets, num_classes=n, average="macro").item(),
    }
