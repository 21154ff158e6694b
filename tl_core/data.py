"""Image-classification data: an image folder (one sub-folder per class) or a CSV of ``path,label`` rows.

Reading checks that every image decodes; a file that does not is skipped, counted and named in the report, or
- with ``data.strict: true`` - an error. Torch is imported only by the dataset and transform helpers.
"""

from __future__ import annotations

import csv
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.errors import DataError

if TYPE_CHECKING:
    from tl_core.components import InputSpec
    from tl_core.sections import DataConfig


@dataclass
class Samples:
    """Decodable images with integer labels, the class names, and what was skipped (``"path: reason"``)."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: list[int]) -> Samples:
        return Samples([self.paths[i] for i in indices], [self.labels[i] for i in indices], self.classes)

    def fingerprint(self) -> str:
        """A hash of the file contents and labels: the data part of the feature-cache key."""
        digest = hashlib.sha256()
        for path, label in zip(self.paths, self.labels):
            digest.update(f"{label}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def image_failure(exc: BaseException) -> str:
    """Why PIL could not open or decode a file, in words: the skip reason every image reader reports.

    Any exception counts (a user's file is no reason for a traceback). Once ultralytics is imported it wraps
    PIL's opener and, on an unknown format, tries an optional HEIF plugin: the failure then reads "No module
    named 'pi_heif'", which means the same as PIL's own "cannot identify image file".
    """
    from PIL import UnidentifiedImageError

    if isinstance(exc, (UnidentifiedImageError, ModuleNotFoundError)) or "cannot identify image file" in str(exc):
        return "not an image PIL can read"
    return f"cannot be decoded ({str(exc)[:80]})"


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


def csv_records(path: str | Path, columns: tuple[str, ...], listing: str) -> list[dict[str, str]]:
    """The rows of a CSV whose header names ``columns``, each cell of those columns non-empty.

    A missing file, a header without the columns, an empty cell (named by line) and a CSV without rows are
    :class:`DataError`; ``listing`` says what the rows list ("images", "image,mask pairs").
    """
    file = Path(path)
    names = ",".join(columns)
    if not file.is_file():
        raise DataError(f"data path {path} does not exist; set data.path to a CSV file with {names} columns")
    with open(file, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not set(columns) <= set(reader.fieldnames):
            wanted = " and ".join(repr(c) for c in columns)
            raise DataError(f"{path}: the header must name the columns {wanted} (found {reader.fieldnames})")
        rows = []
        for lineno, row in enumerate(reader, start=2):
            if not all(row[c] for c in columns):
                raise DataError(f"{path}, line {lineno}: empty {' or '.join(columns)}")
            rows.append({c: row[c] for c in columns})
    if not rows:
        raise DataError(f"{path}: no rows; the CSV lists no {listing}")
    return rows


def beside(csv_file: str | Path, value: str) -> Path:
    """A path from a CSV cell: absolute as written, else relative to the CSV's folder."""
    path = Path(value)
    return path if path.is_absolute() else Path(csv_file).parent / path


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


def require_every_class(samples: Samples, origin: str) -> None:
    """A classification set needs at least two classes, each with a readable example."""
    counts = [0] * len(samples.classes)
    for label in samples.labels:
        counts[label] += 1
    empty = [c for c, n in zip(samples.classes, counts) if n == 0]
    if empty:
        raise DataError(f"{origin}: class {empty[0]!r} has no readable images; add images or remove the class")
    if len(samples.classes) < 2:
        raise DataError(f"{origin}: only one class ({samples.classes[0]!r}); classification needs at least two")


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)`` with about ``fraction`` of every class in val (none from a class of one)."""
    by_class: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    rng = random.Random(seed)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(by_class):
        idx = by_class[label][:]
        rng.shuffle(idx)
        n_val = 0 if len(idx) < 2 or fraction == 0 else max(1, round(len(idx) * fraction))
        n_val = min(n_val, len(idx) - 1)
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return sorted(train), sorted(val)


@dataclass
class ClassificationData:
    """Train/val/test splits of one data set, ready for a trainer."""

    train: Samples
    val: Samples | None
    test: Samples | None
    classes: list[str]
    skipped: list[str]

    def summary(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "train": len(self.train),
            "val": len(self.val) if self.val else 0,
            "test": len(self.test) if self.test else 0,
            "skipped": self.skipped,
        }


def load_classification(config: DataConfig, seed: int, reader: Any) -> ClassificationData:
    """Read ``config.path`` (and ``config.test_path``) with ``reader``; split off a stratified val set."""
    full = reader(config.path, strict=config.strict)
    train_idx, val_idx = stratified_split(full.labels, config.val_fraction, seed)
    test = reader(config.test_path, strict=config.strict, classes=full.classes) if config.test_path else None
    skipped = full.skipped + (test.skipped if test else [])
    return ClassificationData(
        train=full.subset(train_idx),
        val=full.subset(val_idx) if val_idx else None,
        test=test,
        classes=full.classes,
        skipped=skipped,
    )


# ------------------------------------------------------------------ torch side


def transforms(spec: InputSpec, size: int, augment: bool) -> Any:
    """Preprocessing the weights expect: resize (shorter side to size/0.875) and centre crop, or, with
    ``augment``, a random resized crop and a horizontal flip; then normalise with the weights' mean/std."""
    import torch
    from torchvision.transforms import v2

    if augment:
        geometry = [v2.RandomResizedCrop(size, scale=(0.5, 1.0), antialias=True), v2.RandomHorizontalFlip()]
    else:
        geometry = [v2.Resize(int(round(size / 0.875)), antialias=True), v2.CenterCrop(size)]
    return v2.Compose(
        [
            v2.ToImage(),
            *geometry,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(spec.mean), list(spec.std)),
        ]
    )


class ImageDataset:
    """A map-style dataset of ``(tensor, label)`` pairs, images read as RGB."""

    def __init__(self, samples: Samples, transform: Any) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        with Image.open(self.samples.paths[i]) as im:
            image = im.convert("RGB")
        return self.transform(image), self.samples.labels[i]
