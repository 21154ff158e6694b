"""The tl-medical plugin: MONAI backbones, stem adaptation and inflation, DICOM/NIfTI data, clinical metrics,
medical recipes. Importing this module imports neither torch nor MONAI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_core import hookimpl
from tl_core.components import recipes_in

TL_HOOK_API = ">=1.0,<2"  # the tl hook API versions this plugin works with

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def tl_register_backbones(register: Any) -> None:
    from tl_medical.backbones import BACKBONES

    for spec in BACKBONES:
        register(spec)


@hookimpl
def tl_register_datasets(register: Any) -> None:
    from tl_medical.data import DATA_FORMATS

    for fmt in DATA_FORMATS:
        register(fmt)


@hookimpl
def tl_register_recipes(register: Any) -> None:
    for source in recipes_in(RECIPES):
        register(source)


@hookimpl
def tl_adapt_backbone(backbone: Any, spec: Any, target: Any) -> Any:
    from tl_medical.adapt import adapt

    return adapt(backbone, spec.input.channels, spec.input.spatial_dims, target.channels, target.spatial_dims)


@hookimpl
def tl_build_model(recipe: Any, data: Any) -> Any:
    from tl_medical import segmentation
    from tl_medical.tasks import CLASSIFICATION, build_classifier

    if recipe.task == CLASSIFICATION:
        return build_classifier(recipe, data)
    if recipe.task == segmentation.SEGMENTATION:
        return segmentation.build(recipe, data)
    return None


@hookimpl
def tl_train(recipe: Any, model: Any, data: Any, ctx: Any) -> Any:
    from tl_medical import segmentation
    from tl_medical.tasks import CLASSIFICATION, MedicalClassifier, train

    if not isinstance(model, MedicalClassifier):
        return None
    if recipe.task == CLASSIFICATION:
        return train(recipe, model, data, ctx)
    if recipe.task == segmentation.SEGMENTATION:
        return segmentation.train(recipe, model, data, ctx)
    return None


@hookimpl
def tl_evaluate(task: str, outputs: Any, targets: Any, class_names: list[str]) -> dict[str, float] | None:
    from tl_medical import metrics

    if task == "medical-classification":
        return metrics.classification(outputs, targets, class_names)
    if task == "medical-segmentation":
        return metrics.segmentation(outputs, targets, class_names)
    return None
