"""The image-classification plugin (``tl.classification``): its backbones, heads, data formats and recipes, its
model and training, its metrics, scoring a finished run, and tiny data for the conformance suite.

Every answering hook here is ``trylast``: a domain plugin that answers for the same task wins. Importing this
module imports no torch; the hooks import what they need when they run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core import hookimpl
from tl_core.builtin.classification.backbones import BACKBONES
from tl_core.components import DataFormat, HeadSpec, recipes_in

if TYPE_CHECKING:
    from tl_core.context import RunContext
    from tl_core.sections import Recipe

TASK = "image-classification"
RECIPES = Path(__file__).parent / "recipes"
IMAGES = "tl_core.builtin.classification.images"  # the readers, imported when data is read
HEAD_FACTORIES = "tl_core.builtin.classification.heads"  # the heads and their options (pydantic), imported when used
HEADS = (
    HeadSpec("linear", f"{HEAD_FACTORIES}:linear", options=f"{HEAD_FACTORIES}:LinearOptions",
             description="dropout + one linear layer"),
    HeadSpec("mlp", f"{HEAD_FACTORIES}:mlp", options=f"{HEAD_FACTORIES}:MLPOptions",
             description="linear -> ReLU -> dropout -> linear"),
)
FORMATS = (
    DataFormat("image-folder", TASK, read=f"{IMAGES}:read_folder_data", read_split=f"{IMAGES}:read_image_folder",
               description="one sub-folder of images per class"),
    DataFormat("image-csv", TASK, read=f"{IMAGES}:read_csv_data", read_split=f"{IMAGES}:read_image_csv",
               description="a CSV with path,label columns (paths relative to the CSV)"),
)


@hookimpl
def tl_register_backbones(register: Any) -> None:
    for spec in BACKBONES:
        register(spec)


@hookimpl
def tl_register_heads(register: Any) -> None:
    for head in HEADS:
        register(head)


@hookimpl
def tl_register_datasets(register: Any) -> None:
    for fmt in FORMATS:
        register(fmt)


@hookimpl
def tl_register_recipes(register: Any) -> None:
    for source in recipes_in(RECIPES):
        register(source)


@hookimpl(trylast=True)
def tl_build_model(recipe: Recipe, data: Any) -> Any:
    if recipe.task != TASK:
        return None
    from tl_core.builtin.classification.model import build_classifier

    return build_classifier(recipe, len(data.classes))


@hookimpl(trylast=True)
def tl_train(recipe: Recipe, model: Any, data: Any, ctx: RunContext) -> Any:
    from tl_core.builtin.classification.model import Classifier

    if not isinstance(model, Classifier):
        return None
    from tl_core.builtin.classification.training import train

    return train(recipe, model, data, ctx)


@hookimpl(trylast=True)
def tl_extract_features(recipe: Recipe, model: Any, data: Any, progress: Any) -> Any:
    from tl_core.builtin.classification.model import Classifier

    if not isinstance(model, Classifier):
        return None
    from tl_core.builtin.classification.training import extract_features

    return extract_features(recipe, model, data, progress)


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


@hookimpl(trylast=True)
def tl_evaluate_run(run_dir: Path, report: Any, data: str) -> dict[str, Any] | None:
    if report["recipe"].get("task") != TASK:
        return None
    from tl_core.builtin.classification.evaluate import evaluate_run

    return evaluate_run(run_dir, report, data)


@hookimpl(trylast=True)
def tl_conformance_smoke(recipe_name: str, folder: Path) -> list[str] | None:
    """Two classes of tiny images for an image-classification recipe of the core's formats, in the recipe's own:
    an image folder, or an image folder and a CSV naming its images. A recipe of another format needs its own
    plugin's tiny data."""
    from tl_core.recipe import load_recipe
    from tl_core.sample_data import write_image_folder

    recipe = load_recipe(recipe_name)
    if recipe.task != TASK or recipe.data.format not in ("image-folder", "image-csv"):
        return None
    images = write_image_folder(Path(folder) / "images", per_class=4)
    path = images
    if recipe.data.format == "image-csv":
        path = Path(folder) / "images.csv"
        rows = [f"{p.relative_to(folder)},{p.parent.name}" for p in sorted(images.glob("*/*.png"))]
        path.write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return [f"data.path={path}", "data.test_path=null", "data.image_size=32", "data.augment=false"]
