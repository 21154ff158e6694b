"""Training the image classifier on the core's one path: images read with PIL, the preprocessing the weights
expect (or the data format's own transforms), the feature cache when the backbone stays frozen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core import features
from tl_core.builtin.classification.images import ImageDataset, transforms
from tl_core.components import DataFormat, FeatureSet, InputSpec, TaskSpec, TrainResult
from tl_core.data import Samples
from tl_core.plugins import plugins, registry
from tl_core.task import feature_key, train_task
from tl_core.train import resolve_device
from tl_core.weights import reference_folder

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


def extract_features(recipe: Recipe, clf: Classifier, data: ClassificationData, progress: Any) -> FeatureSet:
    """``tl diagnose``'s features: the pooled backbone output of the training and validation images under the
    evaluation preprocessing, each split through the feature cache (keyed as a run keys it, so a later
    feature-extraction run on the same data finds them), and of the weights' reference photographs."""
    import torch

    fmt = clf.data_format or registry("data format").get(recipe.data.format)
    pre = preprocessing(recipe, clf.backbone, fmt)
    device = resolve_device(recipe.train.device)

    def run(samples: Samples) -> Any:
        dataset = ImageDataset(samples, transform_for(fmt, clf.backbone.input, pre["size"], False))
        return features.cached(clf.model.backbone, dataset, feature_key(recipe, clf, pre, samples),
                               recipe.train.batch_size, device, progress)[0]

    splits = [s for s in (data.train, data.val) if s]
    feats = torch.cat([run(s) for s in splits])
    labels = torch.tensor([label for s in splits for label in s.labels])
    entry = clf.backbone.entry
    reference, name = None, ""
    if entry is not None and entry.reference is not None:
        photos = sorted(p for p in reference_folder(entry).iterdir() if p.suffix.lower() in (".jpg", ".png"))
        reference = run(Samples(photos, [0] * len(photos), ["reference"]))
        name = f"{len(photos)} natural photographs standing in for {entry.training_data or 'the training data'}"
    return FeatureSet(feats, labels=labels, classes=list(data.classes), unit="images",
                      how="pooled backbone output, evaluation preprocessing", reference=reference,
                      reference_name=name)
