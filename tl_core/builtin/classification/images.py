"""Image-classification data: an image folder (one sub-folder per class) or a CSV of ``path,label`` rows, the
preprocessing the weights expect, and the dataset that applies it.

Reading checks that every image decodes; a file that does not is skipped, counted and named in the report, or
- with ``data.strict: true`` - an error. Torch is imported only by the dataset and transform helpers.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.data import (
    ClassificationData,
    Samples,
    beside,
    csv_records,
    image_failure,
    is_file_item,
    load_classification,
    require_every_class,
)
from tl_core.errors import DataError

if TYPE_CHECKING:
    from tl_core.components import InputSpec
    from tl_core.sections import DataConfig


def _decodes(path: Path) -> str | None:
    """``None`` when the image decodes fully, else the reason it does not."""
    from PIL import Image

    if not path.is_file():
        return "file does not exist"
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - see image_failure
        return image_failure(exc)
    return None


def _check(rows: list[tuple[Path, str]], strict: bool, classes: list[str] | None, origin: str) -> Samples:
    classes = classes if classes is not None else sorted({label for _, label in rows})
    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    skipped: list[str] = []
    for path, label in rows:
        reason = _decodes(path)
        if reason is not None:
            if strict:
                raise DataError(f"{path}: {reason}; remove it, or set data.strict: false to skip such files")
            skipped.append(f"{path}: {reason}")
            continue
        paths.append(path)
        labels.append(index[label])
    if not paths:
        raise DataError(f"{origin}: no readable images" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return Samples(paths, labels, classes, skipped)


def read_image_folder(path: str, strict: bool = False, classes: list[str] | None = None) -> Samples:
    """Read ``path/<class>/<image>``; ``classes`` (for a test set) fixes the class list and its order."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data path {path} does not exist or is not a folder; set data.path to an image folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in folders:  # a class name goes into report.json and the model card: it must be text
        try:
            folder.name.encode("utf-8")
        except UnicodeEncodeError:
            shown = folder.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise DataError(f"{path}: the class folder {shown!r} has a name that is not UTF-8; rename it") from None
    if not folders:
        raise DataError(f"{path}: no class sub-folders; an image folder holds one sub-folder of images per class")
    if classes is not None:
        unknown = [f.name for f in folders if f.name not in classes]
        if unknown:
            raise DataError(f"{path}: classes {unknown} were not in the training data ({', '.join(classes)})")
    rows: list[tuple[Path, str]] = []
    for folder in folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files and classes is None:
            raise DataError(f"class {folder.name!r} has no images (folder {folder} is empty); add images or remove it")
        rows.extend((f, folder.name) for f in files)
    samples = _check(rows, strict, classes, path)
    if classes is None:
        require_every_class(samples, path)
    return samples


def read_image_csv(path: str, strict: bool = False, classes: list[str] | None = None) -> Samples:
    """Read a CSV with ``path`` and ``label`` columns; relative image paths are relative to the CSV's folder."""
    rows = [(beside(path, r["path"]), r["label"]) for r in csv_records(path, ("path", "label"), "images")]
    if classes is not None:
        unknown = sorted({label for _, label in rows} - set(classes))
        if unknown:
            raise DataError(f"{path}: labels {unknown} were not in the training data ({', '.join(classes)})")
    samples = _check(rows, strict, classes, path)
    if classes is None:
        require_every_class(samples, path)
    return samples


def read_folder_data(config: DataConfig, seed: int) -> ClassificationData:
    """``read`` of the ``image-folder`` format: ``data.path`` (and ``data.test_path``), a stratified val split."""
    return load_classification(config, seed, read_image_folder)


def read_csv_data(config: DataConfig, seed: int) -> ClassificationData:
    """``read`` of the ``image-csv`` format."""
    return load_classification(config, seed, read_image_csv)


# ------------------------------------------------------------------ torch side


def transforms(spec: InputSpec, size: int, augment: bool) -> Any:
    """Preprocessing the weights expect: the shorter side resized to ``size / spec.crop_pct`` with
    ``spec.interpolation`` and a centre crop (torchvision's ``weights.transforms()``, timm's eval transform), or,
    with ``augment``, a random resized crop and a horizontal flip; then normalise with the weights' mean/std."""
    import torch
    from torchvision.transforms import InterpolationMode, v2

    mode = InterpolationMode(spec.interpolation)
    if augment:
        geometry = [v2.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=mode, antialias=True),
                    v2.RandomHorizontalFlip()]
    else:
        # torchvision: Resize(resize_size) then CenterCrop(crop_size); timm: floor(size / crop_pct), here with a
        # hair added, since 224 / (224 / 236) is 235.99999999999997 in floating point
        geometry = [v2.Resize(math.floor(size / spec.crop_pct + 1e-6), interpolation=mode, antialias=True),
                    v2.CenterCrop(size)]
    return v2.Compose(
        [
            v2.ToImage(),
            *geometry,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(spec.mean), list(spec.std)),
        ]
    )


class ImageDataset:
    """A map-style dataset of ``(tensor, label)`` pairs: image files read as RGB (PIL), items already in memory
    (arrays, tensors) handed to the transform as they are."""

    def __init__(self, samples: Samples, transform: Any) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        item = self.samples.items[i]
        if is_file_item(item):
            from PIL import Image

            with Image.open(item) as im:
                item = im.convert("RGB")
        return self.transform(item), self.samples.labels[i]
