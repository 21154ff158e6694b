"""Training a torchvision detector on the core's one path: the detector computes its own losses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core.api import TaskSpec, TaskSteps

if TYPE_CHECKING:
    from tl_core.api import Recipe, RunContext, TrainResult
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


def train(recipe: Recipe, detector: Detector, data: Any, ctx: RunContext) -> TrainResult:
    from tl_core.api import train_task
    from tl_driving.data import DetectionDataset, collate

    size = detector.size

    def make(split: Any, augment: bool) -> DetectionDataset:
        return DetectionDataset(split, size, augment)

    return train_task(recipe, detector, data, ctx, TaskSpec(
        make_dataset=make, steps=TaskSteps(train=train_step, predict=predict_step, collate=collate),
        metric_names=_metric_names(detector.classes), classes=detector.classes,
        preprocessing={"size": size, "mean": list(detector.backbone.input.mean),
                       "std": list(detector.backbone.input.std)},
        no_cache="detection trains on whole images",
    ))


def _metric_names(classes: list[str]) -> set[str]:
    return {"map_50", "map", "mar_100"} | {f"ap_{c.replace(' ', '_')}" for c in classes}
