"""The tl-driving plugin: torchvision detectors on registry backbones and torchvision's COCO detectors whole,
ultralytics YOLO, driving data formats, COCO mAP.
Importing this module imports neither torch, torchvision nor ultralytics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_core import hookimpl
from tl_core.api import recipes_in
from tl_driving.registrations import DATA_FORMATS, HEADS

TL_HOOK_API = ">=2.1,<3"  # the tl hook API versions this plugin works with

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def tl_register_backbones(register: Any) -> None:
    from tl_driving import coco_backbones, yolo_backbones

    for spec in (*yolo_backbones.BACKBONES, *coco_backbones.BACKBONES):
        register(spec)


@hookimpl
def tl_register_heads(register: Any) -> None:
    for head in HEADS:
        register(head)


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
    from tl_driving import yolo, yolo_backbones
    from tl_driving.build import build
    from tl_driving.coco_backbones import coco_model
    from tl_driving.registrations import TASK

    if recipe.task != TASK:
        return None
    name = recipe.backbone.name
    if yolo_backbones.is_yolo(name) or (recipe.head.name == "yolo" and coco_model(name) is None):
        return yolo.build(recipe, data)
    return build(recipe, data)  # a registry backbone under a torchvision head, or a whole COCO detector


@hookimpl
def tl_train(recipe: Any, model: Any, data: Any, ctx: Any) -> Any:
    from tl_driving import yolo
    from tl_driving.models import TASK, Detector
    from tl_driving.train import train

    if recipe.task != TASK:
        return None
    if isinstance(model, yolo.YoloDetector):
        return yolo.train(recipe, model, data, ctx)
    return train(recipe, model, data, ctx) if isinstance(model, Detector) else None


@hookimpl
def tl_extract_features(recipe: Any, model: Any, data: Any, progress: Any) -> Any:
    """``tl diagnose``'s features of a detector: one vector per ground-truth box of the training and validation
    images, RoIAligned from the backbone's stride-8/16/32 maps (:mod:`tl_driving.features`)."""
    from tl_driving.models import Detector

    if not isinstance(model, Detector):
        return None
    from tl_driving.features import extract

    return extract(recipe, model, data, progress)


@hookimpl
def tl_evaluate(task: str, outputs: Any, targets: Any, class_names: list[str]) -> dict[str, float] | None:
    if task != "object-detection":
        return None
    from tl_driving.metrics import detection

    return detection(outputs, targets, class_names)


@hookimpl
def tl_evaluate_run(run_dir: Path, report: Any, data: str) -> dict[str, Any] | None:
    from tl_driving.registrations import TASK

    if report["recipe"].get("task") != TASK:
        return None
    from tl_driving.evaluate import evaluate_run

    return evaluate_run(run_dir, report, data)


@hookimpl
def tl_add_commands(cli: Any) -> None:
    from tl_driving.export import add_commands

    add_commands(cli)


@hookimpl
def tl_conformance_smoke(recipe_name: str, folder: Path) -> list[str] | None:
    """For tl's conformance suite: a few generated street scenes, written in the recipe's own data format, that
    make a shipped recipe train one tiny epoch offline (the suite swaps weights that need the network, such as
    YOLO's COCO checkpoints, for random init, and says so)."""
    if not recipe_name.startswith("driving/"):
        return None
    from tl_core.api import load_recipe
    from tl_driving.synthetic import write_scenes

    fmt = load_recipe(recipe_name).data.format
    data = write_scenes(folder / "scenes", 8, fmt)
    return [f"data.path={data}", "data.options.image_size=64", "data.val_fraction=0.25"]
