"""The tl-medical plugin: MONAI backbones, stem adaptation and inflation, DICOM/NIfTI data, clinical metrics,
medical recipes. Importing this module imports neither torch nor MONAI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_core import hookimpl
from tl_core.api import recipes_in
from tl_medical.registrations import CLASSIFICATION_TASK, DATA_FORMATS, SEGMENTATION_TASK

TL_HOOK_API = ">=2.1,<3"  # the tl hook API versions this plugin works with

RECIPES = Path(__file__).parent / "recipes"


@hookimpl
def tl_register_backbones(register: Any) -> None:
    from tl_medical.backbones import BACKBONES

    for spec in BACKBONES:
        register(spec)


@hookimpl
def tl_register_datasets(register: Any) -> None:
    for fmt in DATA_FORMATS:
        register(fmt)


@hookimpl
def tl_register_recipes(register: Any) -> None:
    for source in recipes_in(RECIPES):
        register(source)


@hookimpl
def tl_adapt_backbone(backbone: Any, spec: Any, target: Any) -> Any:
    from tl_medical.adapt import adapt

    return adapt(backbone, spec.input.channels, spec.input.spatial_dims, target.channels, target.spatial_dims,
                 name=spec.name, size=target.size, native=spec.input.size)


@hookimpl
def tl_build_model(recipe: Any, data: Any) -> Any:
    from tl_medical import segmentation
    from tl_medical.tasks import build_classifier

    if recipe.task == CLASSIFICATION_TASK:
        return build_classifier(recipe, data)
    if recipe.task == SEGMENTATION_TASK:
        return segmentation.build(recipe, data)
    return None


@hookimpl
def tl_train(recipe: Any, model: Any, data: Any, ctx: Any) -> Any:
    from tl_medical import segmentation
    from tl_medical.tasks import MedicalClassifier, train

    if not isinstance(model, MedicalClassifier):
        return None
    if recipe.task == CLASSIFICATION_TASK:
        return train(recipe, model, data, ctx)
    if recipe.task == SEGMENTATION_TASK:
        return segmentation.train(recipe, model, data, ctx)
    return None


@hookimpl
def tl_extract_features(recipe: Any, model: Any, data: Any, progress: Any) -> Any:
    """``tl diagnose``'s features of a medical model (classification and segmentation): tl_medical.diagnose."""
    from tl_medical.tasks import MedicalClassifier

    if not isinstance(model, MedicalClassifier) or recipe.task not in (CLASSIFICATION_TASK, SEGMENTATION_TASK):
        return None
    from tl_medical.diagnose import extract_features

    return extract_features(recipe, model, data, progress)


@hookimpl
def tl_evaluate(task: str, outputs: Any, targets: Any, class_names: list[str], options: Any
                ) -> dict[str, float] | None:
    from tl_medical import metrics

    if task == "medical-classification":
        return metrics.classification(outputs, targets, class_names, options.get("threshold", metrics.THRESHOLD),
                                      options.get("positive_class"))
    if task == "medical-segmentation":
        return metrics.segmentation(outputs, targets, class_names)
    return None


@hookimpl
def tl_conformance_smoke(recipe_name: str, folder: Path) -> list[str] | None:
    """For tl's conformance suite: small synthetic medical files (PNG, NIfTI volumes, image/mask pairs) that make a
    shipped recipe train one tiny epoch offline."""
    recipe = recipe_name
    if not recipe.startswith("medical/"):
        return None
    from tl_medical.synthetic import write_classification, write_segmentation

    if recipe.startswith("medical/seg-"):
        dims, size = (3, 32) if recipe.endswith("3d") else (2, 32)  # the U-Net needs multiples of 32
        data = write_segmentation(folder / "seg", 4, dims, size=size)
    elif recipe == "medical/xray-2d":
        dims, size = 2, 32
        data = write_classification(folder / "xray", 4, 2, "png", size=size)
    else:  # the CT recipes
        dims, size = 3, 16
        data = write_classification(folder / "ct", 3, 3, "nifti", size=size)
    return [f"data.path={data}", f"data.options.size={size}", "data.val_fraction=0.5", "train.batch_size=2"]
