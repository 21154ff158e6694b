"""Training the image classifier on the core's one path: images read with PIL, the preprocessing the weights
expect (or the data format's own transforms), the feature cache when the backbone stays frozen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core.builtin.classification.images import ImageDataset, transforms
from tl_core.components import DataFormat, InputSpec, TaskSpec, TrainResult
from tl_core.plugins import plugins, registry
from tl_core.task import train_task

if TYPE_CHECKING:
    from tl_core.builtin.classification.model import Classifier
    from tl_core.context import RunContext
    from tl_core.data import ClassificationData
    from tl_core.model import BuiltBackbone
    from tl_core.sections import Recipe


def preprocessing(recipe: Recipe, built: BuiltBackbone, fmt: DataFormat) -> dict[str, Any]:
    """What the model's inputs went through, as recorded in the report (and keyed into the feature cache)."""
    spec = built.input
    pre: dict[str, Any] = {"size": recipe.data.image_size or spec.size, "mean": list(spec.mean),
                           "std": list(spec.std), "crop_pct": spec.crop_pct, "interpolation": spec.interpolation}
    if fmt.transforms is not None:  # the feature cache is keyed on it: which function, of which plugin version
        function = fmt.transforms
        owner = registry("data format").owner(fmt.name) if fmt.name in registry("data format") else None
        version = next((p.version for p in plugins() if p.name == owner), None)
        pre["transforms"] = {"format": fmt.name, "function": f"{function.__module__}:{function.__qualname__}",
                             "plugin": owner, "version": version}
    return pre


def transform_for(fmt: DataFormat, spec: InputSpec, size: int, augment: bool) -> Any:
    """The data format's own transforms when it has them, else the core's image preprocessing."""
    if fmt.transforms is not None:
        return fmt.transforms(spec, size, augment)
    return transforms(spec, size, augment)


def train(recipe: Recipe, clf: Classifier, data: ClassificationData, ctx: RunContext) -> TrainResult:
    fmt = clf.data_format or registry("data format").get(recipe.data.format)
    pre = preprocessing(recipe, clf.backbone, fmt)

    def make(samples: Any, augment: bool) -> ImageDataset:
        return ImageDataset(samples, transform_for(fmt, clf.backbone.input, pre["size"], augment))

    return train_task(recipe, clf, data, ctx, TaskSpec(make_dataset=make, preprocessing=pre))
