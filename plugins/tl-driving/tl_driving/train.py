"""Training a torchvision detector with the core trainer: the detector computes its own losses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tl_core.recipe import Recipe
    from tl_core.run import RunContext
    from tl_driving.models import Detector


def _shift(targets: list[dict[str, Any]], by: int) -> list[dict[str, Any]]:
    """torchvision detectors keep label 0 for the background: the data's classes are 1..C inside the model."""
    return [{**t, "labels": t["labels"] + by} for t in targets]


def train_step(model: Any, images: Any, targets: Any) -> Any:
    losses = model(list(images), _shift(targets, 1))
    return sum(losses.values())


def predict_step(model: Any, images: Any) -> list[dict[str, Any]]:
    out = []
    for p in model(list(images)):
        keep = p["labels"] > 0  # one-stage heads (RetinaNet, FCOS) can score the background slot too
        out.append({k: v[keep] for k, v in p.items()})
    return _shift(out, -1)


def train(recipe: Recipe, detector: Detector, data: Any, ctx: RunContext) -> Any:
    from tl_core.classifier import make_policy
    from tl_core.policies import apply_plan
    from tl_core.train import TaskSteps, run_trainer
    from tl_driving.data import DetectionDataset, collate

    size = detector.size
    policy = make_policy(recipe)
    steps = TaskSteps(train=train_step, predict=predict_step, collate=collate)
    result = run_trainer(
        detector.model, detector.groups, policy, recipe.train, ctx, recipe.task, detector.classes,
        DetectionDataset(data.train, size, recipe.data.augment),
        DetectionDataset(data.val, size, False) if data.val else None,
        DetectionDataset(data.test, size, False) if data.test else None,
        num_workers=recipe.data.num_workers, metric_names=_metric_names(detector.classes), task_steps=steps,
    )
    result.model = detector.model
    epochs = recipe.train.epochs
    apply_plan(detector.model, detector.groups, policy.plan(len(detector.groups), epochs - 1, epochs))
    result.info.update(feature_cache={"used": False, "reason": "detection trains on whole images"},
                       preprocessing={"size": size, "mean": list(detector.backbone.input.mean),
                                      "std": list(detector.backbone.input.std)})
    return result


def _metric_names(classes: list[str]) -> set[str]:
    return {"map_50", "map", "mar_100"} | {f"ap_{c.replace(' ', '_')}" for c in classes}
