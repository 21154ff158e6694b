"""``tl diagnose`` for the medical tasks (``tl_extract_features``): the features of the scans a run trains and
validates on, from one pass of the backbone without gradients, and of the weights' reference sample.

Classification (2D images or 3D volumes): the backbone's pooled output under the evaluation preprocessing (the
task's own MONAI transforms and normalisation, no augmentation), labels = the classes. Each split goes through the
core's feature cache under the key a run gives it (:func:`tl_core.task.feature_key`), so a later
``feature-extraction`` run on the same data reuses what ``tl diagnose`` computed.

Segmentation: the same pooled backbone output (the U-Net encoder's deepest features, averaged over space) of each
image, labelled with the image's majority foreground class by pixel (voxel) count in its preprocessed mask, or
``background`` when the mask is empty. It is a proxy - does the encoder tell which structure an image holds - not
a measure of how well it segments; a data set whose every image holds the one foreground class gives one label,
which the core reports as not scorable (the domain shift is still measured).

Reference sample: an entry with ``reference`` (ImageNet weights: the core's 50 natural photographs) gets the same
backbone's features of it, converted to the model's input as the plugin converts its own files: read in
grayscale (ITU-R 601 luma, as every PNG/JPEG the plugin reads), min-max scaled to [0, 1] (a CT window means nothing
for a photograph), resized to ``data.options.size``, repeated to the data's channels, for 3D repeated over depth (a
volume whose every slice is the photograph: what an I3D-inflated network sees as the 2D network's input), then
normalised with the weights' statistics.

The features go through the core's cache (``feature_key``, ``cached_features`` from ``tl_core.api``), and
``tests/test_diagnose.py`` checks that a ``tl run`` after ``tl diagnose`` hits it. Nothing here imports torch or
MONAI at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.api import FeatureSet, WeightsError, cached_features, feature_key, reference_folder, resolve_device
from tl_medical.tasks import MedicalClassifier, Normalised, normalisation, task_spec

if TYPE_CHECKING:
    from tl_core.api import Recipe

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


# ---------------------------------------------------------------- the reference sample as the model's input


class Photographs:
    """Photographs as the model's input: grayscale, min-max scaled, resized to ``options.size``, repeated to
    ``options.channels`` and, for 3D, over depth; ``(image, 0)`` items (normalisation on top: :class:`Normalised`)."""

    def __init__(self, paths: list[Path], options: Any) -> None:
        from tl_medical.data import MedicalDataset, MedicalSamples

        self.dims, self.size = options.spatial_dims, options.size
        flat = options.model_copy(update={"spatial_dims": 2, "window": None, "spacing": None, "voi_lut": False})
        self.images = MedicalDataset(MedicalSamples(list(paths), [0] * len(paths), ["reference"], spatial_dims=2),
                                     flat, augment=False)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x, _ = self.images[i]  # (channels, size, size)
        if self.dims == 3:
            x = x.unsqueeze(1).expand(-1, self.size, -1, -1).contiguous()
        return x, 0


def reference_features(recipe: Recipe, model: MedicalClassifier, pre: dict[str, Any], progress: Any
                       ) -> tuple[Any, str]:
    """The backbone's features of the weights entry's reference sample (cached like the data's), and what it is;
    ``(None, "")`` when the entry carries none."""
    from tl_medical.data import MedicalSamples

    entry = model.backbone.entry
    if entry is None or entry.reference is None:
        return None, ""
    options = model.options
    photos = sorted(p for p in reference_folder(entry).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise WeightsError(f"weights {entry.name}: the reference folder {entry.reference} holds no PNG or JPEG files")
    mean, std = normalisation(model)
    dataset = Normalised(Photographs(photos, options), mean, std, options.spatial_dims)
    samples = MedicalSamples(photos, [0] * len(photos), ["reference"], spatial_dims=2)
    key_pre = {**pre, "reference": {"gray": True, "scale": "min-max", "depth": "repeated" if options.spatial_dims == 3
                                    else None}}
    features = cached_features(model.backbone.module, dataset, feature_key(recipe, model, key_pre, samples),
                               recipe.train.batch_size, resolve_device(recipe.train.device), progress)[0]
    source = entry.training_data or "the weights' training data"
    as_input = "grayscale" + (", each repeated over depth as a volume" if options.spatial_dims == 3 else "")
    return features, f"{len(photos)} natural photographs standing in for {source} ({as_input})"


# ---------------------------------------------------------------- the hook's answer


def extract_features(recipe: Recipe, model: MedicalClassifier, data: Any, progress: Any) -> FeatureSet:
    """``tl_extract_features`` for a medical model: see the module's docstring."""
    spec = task_spec(model)
    pre = spec.preprocessing
    splits = [s for s in (data.train, data.val) if s]
    unit = "volumes" if model.options.spatial_dims == 3 else "images"
    if getattr(data, "is_segmentation", False):
        return segmentation_features(recipe, model, data, splits, spec, pre, progress, unit)
    import torch

    device = resolve_device(recipe.train.device)
    feats = torch.cat([cached_features(model.model.backbone, spec.make_dataset(s, False),
                                       feature_key(recipe, model, pre, s), recipe.train.batch_size, device,
                                       progress)[0] for s in splits])
    labels = torch.tensor([label for s in splits for label in s.labels])
    reference, name = reference_features(recipe, model, pre, progress)
    return FeatureSet(feats, labels=labels, classes=list(data.classes), unit=unit,
                      how="pooled backbone output, evaluation preprocessing (MONAI transforms, no augmentation)",
                      reference=reference, reference_name=name)


def segmentation_features(recipe: Recipe, model: MedicalClassifier, data: Any, splits: list[Any], spec: Any,
                          pre: dict[str, Any], progress: Any, unit: str) -> FeatureSet:
    """Per image: the encoder's pooled deepest features, and the majority foreground class of its mask."""
    import torch
    from torch.utils.data import DataLoader

    device = resolve_device(recipe.train.device)
    backbone = model.backbone.module  # the encoder's layers, globally pooled (the U-Net shares them)
    backbone.eval().to(device)
    n_classes = len(data.classes)
    rows, labels = [], []
    with torch.inference_mode():
        for samples in splits:
            for x, masks in DataLoader(spec.make_dataset(samples, False), batch_size=recipe.train.batch_size,
                                       shuffle=False):
                rows.append(backbone(x.to(device)).float().cpu())
                for mask in masks:
                    counts = torch.bincount(mask.flatten().clamp(0, n_classes - 1), minlength=n_classes)
                    counts[0] = 0
                    labels.append(int(counts.argmax()) if int(counts.sum()) else 0)
                progress(len(x))
    reference, name = reference_features(recipe, model, pre, progress)
    pixels = "voxel" if model.options.spatial_dims == 3 else "pixel"
    return FeatureSet(torch.cat(rows), labels=torch.tensor(labels), classes=list(data.classes), unit=unit,
                      how=f"pooled encoder output (the U-Net encoder's deepest features), evaluation preprocessing; "
                          f"label: each image's majority foreground class by {pixels} count in its mask "
                          f"('{data.classes[0]}' when the mask is empty) - a proxy, not a segmentation score",
                      reference=reference, reference_name=name)
