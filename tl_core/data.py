"""Data every task shares: :class:`Samples` (items with labels), the train/val/test splits of a classification set,
the seeded splits, CSV manifests, and the words for an image that does not decode.

Readers of a particular kind of data live with their task: image folders and image CSVs in the built-in image
classification plugin (:mod:`tl_core.builtin.classification.images`), DICOM and NIfTI in tl-medical, and so on.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import random
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.compat import moved
from tl_core.errors import DataError
from tl_core.files import read_text

if TYPE_CHECKING:
    from tl_core.components import DataFormat
    from tl_core.sections import DataConfig

# 1.1 plugins found the image-classification readers here
__getattr__ = moved(__name__, {name: "tl_core.builtin.classification.images" for name in (
    "read_image_folder", "read_image_csv", "ImageDataset", "transforms")})


@dataclass
class Samples:
    """Items with integer labels, the class names, and what was skipped (``"item: reason"``).

    An item is a file (a :class:`~pathlib.Path`: an image, a volume, a folder holding a DICOM series) or data
    already in memory (a NumPy array or a torch tensor: a spectrogram, a generated image); the task's dataset
    knows how to load each. ``paths`` is another name for ``items``, for readers of files."""

    items: list[Any]
    labels: list[int]
    classes: list[str]
    skipped: list[str] = field(default_factory=list)

    @property
    def paths(self) -> list[Any]:
        """The items (files, for the readers of files)."""
        return self.items

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: list[int]) -> Samples:
        return Samples([self.items[i] for i in indices], [self.labels[i] for i in indices], self.classes)

    def fingerprint(self) -> str:
        """A hash of the items' contents (file bytes, or array bytes with their shape and type) and labels: the data
        part of the feature-cache key."""
        digest = hashlib.sha256()
        for item, label in zip(self.items, self.labels):
            digest.update(f"{label}\0".encode())
            digest.update(content_hash(item))
        return digest.hexdigest()


def content_hash(item: Any) -> bytes:
    """The sha256 of one item: a file's bytes, or an in-memory array's (with its shape and dtype)."""
    if isinstance(item, (str, Path)):
        return hashlib.sha256(Path(item).read_bytes()).digest()
    import numpy as np

    array = np.ascontiguousarray(item.detach().cpu().numpy() if hasattr(item, "detach") else np.asarray(item))
    digest = hashlib.sha256(f"{array.shape}{array.dtype}\0".encode())
    digest.update(array.tobytes())
    return digest.digest()


def is_file_item(item: Any) -> bool:
    """True for an item that names a file (a path), False for data in memory."""
    return isinstance(item, (str, Path))


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


def csv_records(path: str | Path, columns: tuple[str, ...], listing: str) -> list[dict[str, str]]:
    """The rows of a CSV whose header names ``columns``, each cell of those columns non-empty.

    A missing file, a header without the columns, an empty cell (named by line) and a CSV without rows are
    :class:`DataError`; ``listing`` says what the rows list ("images", "image,mask pairs").
    """
    file = Path(path)
    names = ",".join(columns)
    if not file.is_file():
        raise DataError(f"data path {path} does not exist; set data.path to a CSV file with {names} columns")
    text = read_text(file, str(path))  # not UTF-8: one line naming the file and the line
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        if not reader.fieldnames or not set(columns) <= set(reader.fieldnames):
            wanted = " and ".join(repr(c) for c in columns)
            raise DataError(f"{path}: the header must name the columns {wanted} (found {reader.fieldnames})")
        rows = []
        for row in reader:
            if not all(row[c] for c in columns):
                raise DataError(f"{path}, line {reader.line_num}: empty {' or '.join(columns)}")
            rows.append({c: row[c] for c in columns})
    except csv.Error as exc:  # a NUL byte, a field over csv's size limit, a quote that never closes
        # csv counts the lines it has finished; the error is in the next
        raise DataError(f"{path}, line {reader.line_num + 1}: not a readable CSV row ({exc}); fix or remove it") \
            from None
    if not rows:
        raise DataError(f"{path}: no rows; the CSV lists no {listing}")
    return rows


def beside(csv_file: str | Path, value: str) -> Path:
    """A path from a CSV cell: absolute as written, else relative to the CSV's folder."""
    path = Path(value)
    return path if path.is_absolute() else Path(csv_file).parent / path


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


def random_split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(train, val)``: a seeded random ``fraction`` of ``n`` in val (at least one, never all)."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_val = 0 if n < 2 or fraction == 0 else min(max(1, round(n * fraction)), n - 1)
    return sorted(idx[n_val:]), sorted(idx[:n_val])


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

    def with_shots(self, shots: int, seed: int) -> tuple[ClassificationData, dict[str, Any]]:
        """The same data with at most ``shots`` training items per class - a seeded choice, the same for transfer
        and scratch - and val and test as they are (``tl curve``). A class with fewer items keeps them all and is
        named under ``capped``."""
        rng = random.Random(seed)
        if not self.train.labels:  # items without one class each (segmentation masks): that many items in all
            idx = list(range(len(self.train)))
            rng.shuffle(idx)
            capped = [f"all items ({len(idx)})"] if len(idx) < shots else []
            return (replace(self, train=self.train.subset(sorted(idx[:shots]))),
                    {"unit": "items", "items": min(shots, len(idx)), "capped": capped})
        by_class: dict[int, list[int]] = {}
        for i, label in enumerate(self.train.labels):
            by_class.setdefault(label, []).append(i)
        keep: list[int] = []
        capped = []
        for label in sorted(by_class):
            idx = by_class[label][:]
            rng.shuffle(idx)
            if len(idx) < shots:
                capped.append(f"{self.classes[label]} ({len(idx)})")
            keep.extend(idx[:shots])
        # replace(): a subclass (a domain's data with its options) stays what it is
        subset = replace(self, train=self.train.subset(sorted(keep)))
        return subset, {"unit": "per class", "items": len(keep), "capped": capped}

    def summary(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "train": len(self.train),
            "val": len(self.val) if self.val else 0,
            "test": len(self.test) if self.test else 0,
            "skipped": self.skipped,
        }


def read_set(reader: Any, path: str, strict: bool, classes: list[str] | None, options: Any) -> Any:
    """Call a reader of one set (a data format's ``read_split``): ``path``, ``strict`` and ``classes`` positionally,
    as every reader takes them, and ``options`` - the run's validated ``data.options`` - by keyword when the reader
    takes it. Training (:func:`load_classification`) and ``tl evaluate`` (:func:`read_new`) read through this, so a
    format sees the same options in both."""
    if takes_options(reader):
        return reader(path, strict, classes, options=options)
    return reader(path, strict, classes)


def takes_options(reader: Any) -> bool:
    """True when ``reader`` has an ``options`` parameter (or takes any keyword)."""
    return any(p.name == "options" or p.kind is p.VAR_KEYWORD for p in inspect.signature(reader).parameters.values())


def load_classification(config: DataConfig, seed: int, reader: Any) -> ClassificationData:
    """Read ``config.path`` (and ``config.test_path``) with ``reader`` (and ``config.options``, when the reader takes
    them); split off a stratified val set."""
    full = read_set(reader, config.path, config.strict, None, config.options)
    train_idx, val_idx = stratified_split(full.labels, config.val_fraction, seed)
    test = read_set(reader, config.test_path, config.strict, full.classes, config.options) if config.test_path \
        else None
    skipped = full.skipped + (test.skipped if test else [])
    return ClassificationData(
        train=full.subset(train_idx),
        val=full.subset(val_idx) if val_idx else None,
        test=test,
        classes=full.classes,
        skipped=skipped,
    )


def read_new(fmt: DataFormat, path: str, config: DataConfig, classes: list[str] | None = None) -> Any:
    """``fmt.read_split`` with a finished run's settings: its ``data.strict`` and its validated ``data.options``
    (what ``tl evaluate`` reads new data with, so it sees the data as the run did)."""
    if fmt.read_split is None:
        raise DataError(f"data format {fmt.name!r} reads only whole data sets; give --data in a format that "
                        "reads one more set (for example the run's own format's file)")
    if fmt.options is not None and not takes_options(fmt.read_split):
        warnings.warn(f"data format {fmt.name!r}: read_split takes no options, so tl evaluate reads new data with "
                      "the format's defaults, not the run's data.options; give it an options parameter (hook "
                      "API 2.0)", DeprecationWarning, stacklevel=2)
    return read_set(fmt.read_split, path, config.strict, classes, config.options)
