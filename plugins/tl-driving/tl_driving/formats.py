"""Object-detection data for driving scenes: one representation (:class:`DetectionSet`) and readers for YOLO, COCO,
Pascal VOC, KITTI and BDD100K labels, plus :func:`write_yolo`, which writes any of them as an ultralytics data set.

Every reader returns a :class:`DetectionSet`: images with their size and boxes as absolute pixel corners
``(x1, y1, x2, y2)`` in continuous coordinates (the top-left corner of the image is ``(0, 0)``, the bottom-right
``(width, height)``), each with a label that indexes ``classes``. The formats' own conventions are turned into that:

==========  ===========================================================================================================
YOLO        ``cls cx cy w h`` normalised to [0, 1] (a polygon line ``cls x1 y1 x2 y2 ...`` is read as its bounding box)
COCO        ``bbox: [x, y, width, height]`` in pixels
Pascal VOC  ``xmin ymin xmax ymax`` are 1-based pixel indices, both ends included: read as ``(xmin - 1, ymin - 1,
            xmax, ymax)``, as detectron2 does
KITTI       ``left top right bottom`` in 0-based pixels, as they are
BDD100K     ``box2d`` corners with ``x2``/``y2`` included in the box: read as ``(x1, y1, x2 + 1, y2 + 1)``, as the
            BDD100K toolkit (scalabel's ``box2d_to_bbox``) does when it converts to COCO
==========  ===========================================================================================================

Checks, shared by all readers (as the core's image readers do: every image is decoded once):

* An image that does not decode (PIL) is skipped and named (``"path: reason"``).
* A label that does not **parse** leaves its **whole image** out, named with the label's place - ``file:line`` for
  text and XML files, ``file (annotation id 7)`` or ``file (frame 'a.jpg', label 3)`` for JSON - and the image:
  ``"labels/a.txt:4: not a number: 'wide'; the image images/a.jpg is left out"``. Not parsing is:

  - a YOLO/KITTI line with the wrong number of values;
  - a value that is not a finite number (text, ``inf``, ``nan``, ``1e999``, an integer too large for a float) in a
    YOLO/KITTI line, a VOC ``<bndbox>``, a COCO ``bbox`` or a BDD100K ``box2d``;
  - a label entry of the wrong type or without its parts: a VOC ``<object>`` without ``<name>`` or ``<bndbox>``, a
    COCO ``category_id`` that is not a number or a string, a ``bbox`` that is not 4 numbers, BDD100K ``labels``
    that are not a list, a label that is not a mapping or has no ``category``;
  - a class the labels do not define: a YOLO class id that is not a whole number or not below the number of
    ``names``, a COCO ``category_id`` outside ``categories``; and YOLO coordinates above 1 (pixels, not fractions).

  This is ultralytics' rule: its ``verify_image_label`` leaves out ("ignoring corrupt image/label") an image whose
  label file has a malformed line, coordinates above 1 or a class id >= ``nc``. Keeping the image with its other
  boxes would teach the detector that the object of the bad label is background. An image's first bad label is
  named; its other labels are not read. A COCO annotation that names no image (not a mapping, an ``image_id`` of
  the wrong type or not in ``images``) is skipped and named by itself: there is no image to leave out.
* A well-formed box that is geometrically wrong is dropped alone, named with its place, and its image kept with the
  other boxes: a box of zero or negative size, a box mostly outside the image (less than half of it left after
  clipping). A box sticking out of the image is clipped (silently up to 1 pixel, which is rounding; more is counted
  as ``clipped``).
* With ``strict`` each of those is a :class:`~tl_core.api.DataError` instead: one line, naming the place and the
  fix.
* Intentional drops are only counted, per reason, in ``DetectionSet.dropped`` (for the images read, not for those
  left out): ``"filtered class"`` (not in ``options.classes``), ``"class_map: None"``, ``"crowd"`` (COCO
  ``iscrowd``), ``"DontCare"`` (KITTI), ``"difficult"`` (VOC, with ``options.voc_skip_difficult``).
* Images without a label file (YOLO, VOC, KITTI: the folder formats) are background images by default, counted as
  ``unlabelled``; with ``options.missing_labels: error`` such an image is a DataError. COCO and BDD100K list their
  images: one listed without boxes is a background image.
* No images at all, or an empty split, is a DataError.

Classes: ``options.class_map`` renames source class names (``{"Pedestrian": "person"}``; ``None`` drops the class)
before anything else; ``options.classes`` (or the ``classes`` argument: a finished run's classes) keeps only those
classes, in that order (their order is the label order), and counts the rest as ``"filtered class"``. Without a
fixed list the classes are the sorted (mapped) names of the boxes read - for YOLO, its ``names`` in their order.

Nothing here imports torch; PIL is imported inside the functions that read images.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat

import yaml

from tl_core.api import DataError, decode_text, read_json, read_text, read_yaml
from tl_driving.options import DrivingOptions, as_options

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
CLIP_TOLERANCE = 1.0  # pixels a box may stick out of the image before the overhang is counted as clipped
MIN_INSIDE = 0.5  # the share of a box's area that must be inside the image
YOLO_SPLITS = ("train", "val", "test")
_BOX_FIX = "fix or remove the label, or set data.strict: false to skip such labels"
_LABEL_FIX = "fix or remove the label, or set data.strict: false to leave out the images with such labels"
_FILE_FIX = "fix or remove it, or set data.strict: false to skip such files"
_WRITTEN_BY = "# written by tl-driving (tl_driving.formats.write_yolo)\n"


# ---------------------------------------------------------------- the common representation


@dataclass
class Box:
    """One object: absolute pixel corners (continuous coordinates) and the index of its class."""

    label: int
    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


@dataclass
class DetectionSample:
    """A readable image, its size in pixels and its boxes (none: a background image)."""

    image: Path
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)


@dataclass
class DetectionSet:
    """Readable images with boxes, the class names (``Box.label`` indexes them), and what reading left out:
    ``skipped`` (``"file[:line]: reason"`` of every image and label that was reported and skipped; a label that
    does not parse ends in ``"; the image PATH is left out"``), ``dropped``
    (boxes left out, per reason), ``clipped`` (boxes cut back to the image by more than a pixel) and
    ``unlabelled`` (images without a label file, read as background)."""

    samples: list[DetectionSample]
    classes: list[str]
    skipped: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    clipped: int = 0
    unlabelled: int = 0

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def background(self) -> int:
        """Images without boxes."""
        return sum(1 for s in self.samples if not s.boxes)

    @property
    def num_boxes(self) -> int:
        return sum(len(s.boxes) for s in self.samples)

    def boxes_per_class(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for sample in self.samples:
            for box in sample.boxes:
                counts[self.classes[box.label]] += 1
        return counts

    def subset(self, indices: list[int]) -> DetectionSet:
        """The samples at ``indices``, same classes; what was skipped or dropped stays with the whole set."""
        return DetectionSet([self.samples[i] for i in indices], self.classes)

    def fingerprint(self) -> str:
        """A hash of the image contents, boxes and class names: the data part of a cache key."""
        digest = hashlib.sha256()
        digest.update(json.dumps(self.classes).encode() + b"\0")
        for sample in self.samples:
            digest.update(hashlib.sha256(sample.image.read_bytes()).digest())
            boxes = ";".join(f"{b.label},{b.x1:.3f},{b.y1:.3f},{b.x2:.3f},{b.y2:.3f}" for b in sample.boxes)
            digest.update(f"{sample.width}x{sample.height}:{boxes}\0".encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, Any]:
        """JSON-able counts: images, boxes per class, background images, what was skipped, dropped and clipped."""
        return {
            "images": len(self),
            "boxes": self.num_boxes,
            "boxes_per_class": self.boxes_per_class(),
            "background": self.background,
            "unlabelled": self.unlabelled,
            "skipped": len(self.skipped),
            "skipped_first": self.skipped[:5],
            "dropped": dict(self.dropped),
            "clipped": self.clipped,
        }


# ---------------------------------------------------------------- what readers collect before the shared checks


@dataclass
class _Obj:
    """A box as a reader found it: the source class name, corners (normalised to [0, 1] when ``normalised``) and
    where it came from (``"file:line"``)."""

    name: str
    x1: float
    y1: float
    x2: float
    y2: float
    where: str
    normalised: bool = False


@dataclass
class _Entry:
    image: Path
    objects: list[_Obj]
    where: str  # the label file (or JSON entry) describing the image
    size: tuple[int, int] | None = None  # (width, height) as the labels declare it
    dropped: dict[str, int] = field(default_factory=dict)  # intentional drops (DontCare, crowd, difficult)


def _count(counts: dict[str, int], reason: str) -> None:
    counts[reason] = counts.get(reason, 0) + 1


class _Report:
    """Collects reported problems (``skipped``) and counts (``dropped``); with ``strict`` a problem raises."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.skipped: list[str] = []
        self.dropped: dict[str, int] = {}
        self.clipped = 0
        self.unlabelled = 0

    def problem(self, where: str, reason: str, count_as: str | None = None, fix: str = _BOX_FIX) -> None:
        if self.strict:
            raise DataError(f"{where}: {reason}; {fix}")
        self.skipped.append(f"{where}: {reason}")
        if count_as:
            self.drop(count_as)

    def corrupt(self, where: str, reason: str, image: Path) -> None:
        """A label of ``image`` that does not parse: the whole image is left out and named, as ultralytics'
        ``verify_image_label`` leaves out ("ignoring corrupt image/label") an image whose label file has a malformed
        line - keeping it with its other boxes would teach the detector that the object is background."""
        if self.strict:
            raise DataError(f"{where}: {reason}; {_LABEL_FIX}")
        self.skipped.append(f"{where}: {reason}; the image {image} is left out")

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n


def _options(options: DrivingOptions | dict[str, Any] | None) -> DrivingOptions:
    return as_options(options)


def _num(value: float) -> str:
    return f"{value:g}"


def _image_size(path: Path) -> tuple[int, int] | str:
    """``(width, height)`` when the image decodes fully, else the reason it does not."""
    from PIL import Image

    from tl_core.api import image_failure

    if not path.is_file():
        return "file does not exist"
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except Exception as exc:  # noqa: BLE001 - see tl_core.api.image_failure
        return image_failure(exc)


def _check_box(obj: _Obj, width: int, height: int, report: _Report) -> tuple[float, float, float, float] | None:
    """The box clipped to the image, or ``None`` (reported) when it has no size or is mostly outside."""
    x1, y1, x2, y2 = obj.x1, obj.y1, obj.x2, obj.y2
    if obj.normalised:
        x1, x2, y1, y2 = x1 * width, x2 * width, y1 * height, y2 * height
    corners = f"({_num(x1)}, {_num(y1)}, {_num(x2)}, {_num(y2)})"
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):  # a guard: the readers leave out non-finite labels
        report.problem(obj.where, f"box corners are not finite numbers {corners}", "not finite")
        return None
    if x2 <= x1 or y2 <= y1:
        report.problem(obj.where, f"box of zero or negative size {corners}", "zero size")
        return None
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    inside = max(0.0, cx2 - cx1) * max(0.0, cy2 - cy1)
    if inside < MIN_INSIDE * (x2 - x1) * (y2 - y1):
        report.problem(obj.where, f"box outside the image {corners} in {width}x{height}", "outside image")
        return None
    if x1 < -CLIP_TOLERANCE or y1 < -CLIP_TOLERANCE or x2 > width + CLIP_TOLERANCE or y2 > height + CLIP_TOLERANCE:
        report.clipped += 1
    return cx1, cy1, cx2, cy2


def _assemble(
    entries: list[_Entry], report: _Report, opts: DrivingOptions, fixed: list[str] | None, origin: str,
    order: list[str] | None = None, hint: str = "",
) -> DetectionSet:
    """Decode every image, map and filter classes, check every box; build the set."""
    cmap = opts.class_map
    fixed_index = {c: i for i, c in enumerate(fixed)} if fixed is not None else None
    kept: list[tuple[Path, int, int, list[tuple[str, tuple[float, float, float, float]]]]] = []
    for entry in entries:
        size = _image_size(entry.image)
        if isinstance(size, str):
            report.problem(str(entry.image), size, fix=_FILE_FIX)
            continue
        width, height = size
        if entry.size is not None and entry.size != (width, height):
            report.problem(
                entry.where, f"gives the image size as {entry.size[0]}x{entry.size[1]} but {entry.image} is "
                f"{width}x{height} (its boxes would be misplaced)", fix=_FILE_FIX,
            )
            continue
        for reason, n in entry.dropped.items():  # counted for the images read, not for those left out
            report.drop(reason, n)
        boxes: list[tuple[str, tuple[float, float, float, float]]] = []
        for obj in entry.objects:
            name = cmap.get(obj.name, obj.name)
            if name is None:
                report.drop("class_map: None")
                continue
            if fixed_index is not None and name not in fixed_index:
                report.drop("filtered class")
                continue
            box = _check_box(obj, width, height, report)
            if box is not None:
                boxes.append((name, box))
        kept.append((entry.image, width, height, boxes))
    if not kept:
        first = f", e.g. {report.skipped[0]}" if report.skipped else ""
        skipped = f" ({len(report.skipped)} skipped{first})" if report.skipped else ""
        raise DataError(f"{origin}: no images{skipped}" + (f"; {hint}" if hint else ""))
    if fixed is not None:
        classes = list(fixed)
    elif order is not None:
        classes = list(dict.fromkeys(n for n in (cmap.get(o, o) for o in order) if n is not None))
    else:
        classes = sorted({name for *_, boxes in kept for name, _ in boxes})
    index = {c: i for i, c in enumerate(classes)}
    samples = [
        DetectionSample(image, width, height, [Box(index[name], *box) for name, box in boxes])
        for image, width, height, boxes in kept
    ]
    return DetectionSet(samples, classes, report.skipped, report.dropped, report.clipped, report.unlabelled)


def _fixed(classes: list[str] | None, opts: DrivingOptions) -> list[str] | None:
    return list(classes) if classes is not None else opts.classes


def _images_in(folder: Path, recursive: bool = False) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p for p in files
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _unlabelled(image: Path, label: Path, opts: DrivingOptions, report: _Report) -> _Entry:
    """An image without a label file: a background image, or an error with ``missing_labels: error``."""
    if opts.missing_labels == "error":
        raise DataError(
            f"{image}: no label file ({label}); add one (an empty file for an image without objects), or set "
            "data.options.missing_labels: background to read such images as background"
        )
    report.unlabelled += 1
    return _Entry(image, [], str(image))


def _read_text(path: Path, report: _Report) -> list[str] | None:
    """The lines of one label file (UTF-8, a byte-order mark dropped), or ``None`` when it cannot be read: the
    file is reported (skipped, its image with it), or a DataError when strict."""
    try:
        return decode_text(path.read_bytes(), str(path)).splitlines()
    except DataError as exc:  # not UTF-8: the core's line names the byte and the line
        reason = str(exc).partition("; ")[0].removeprefix(f"{path} ").removeprefix("is ")
        report.problem(str(path), reason, fix=f"save it as UTF-8, or {_FILE_FIX}")
    except OSError as exc:
        report.problem(str(path), f"cannot be read ({exc.strerror or exc})", fix=_FILE_FIX)
    return None


def _user_file(read: Any, path: Path, fix: str) -> Any:
    """``read(path)`` (the core's :func:`read_json` or :func:`read_yaml`: UTF-8, valid, not nested too deep), its
    one-line DataError completed with ``fix`` where the core's line gives none."""
    try:
        return read(path, str(path))
    except DataError as exc:
        message = str(exc)
        if "UTF-8" in message:  # the core's line already says what to do
            raise
        raise DataError(f"{message}; {fix}") from None


def _load_json(file: Path, what: str) -> Any:
    if not file.is_file():
        hint = "" if not file.is_dir() else " (it is a folder: give the JSON file in it)"
        raise DataError(f"data path {file} is not a file{hint}; set data.path to {what}")
    return _user_file(read_json, file, f"fix the file, or set data.path to {what}")


def _image_folders(file: Path, opts: DrivingOptions, default: tuple[str, ...]) -> list[Path]:
    """Where a JSON's images are looked up: ``options.images`` (relative to the JSON's folder), else the
    JSON's folder or its ``images/`` sub-folder (in the order ``default`` gives)."""
    if opts.images:
        folder = Path(opts.images)
        folder = folder if folder.is_absolute() else file.parent / folder
        if not folder.is_dir():
            raise DataError(
                f"data.options.images: {folder} is not a folder; set it to the folder holding the images of {file}"
            )
        return [folder]
    return [file.parent / d if d else file.parent for d in default]


def _find_image(name: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _float(value: Any) -> float:
    """A JSON or XML value as a finite float; anything else (a list, null, a bool, text that is not a number, an
    integer too large for a float, ``inf``, ``nan``, ``1e999``) is a ValueError saying what it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"not a number: {_show(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(f"not a number a float can hold: {str(value)[:20]}...") from None
    except ValueError:
        raise ValueError(f"not a number: {_show(value)}") from None
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {_show(value)}")
    return number


def _number(text: Any) -> float | None:
    """A number given as XML text or a YAML value (``<width>96</width>``, ``nc: '6'``), or ``None`` when it is
    missing or not a number."""
    try:
        return _float(text)
    except ValueError:
        return None


def _show(value: Any) -> str:
    """A value as a short repr for a message (cut at 80 characters)."""
    try:
        shown = repr(value)
    except RecursionError:  # nested deeper than repr goes: reprlib cuts the levels
        import reprlib

        shown = reprlib.repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _pixels(value: Any) -> int | None:
    """A declared image width or height: a positive whole number (``96`` or ``96.0``), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or value <= 0 or value != int(value):
        return None
    return int(value)


def _is_id(value: Any) -> bool:
    """A COCO id: a number or a string (a list or a mapping cannot be looked up)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


# ---------------------------------------------------------------- YOLO


@dataclass
class _YoloSource:
    origin: Path  # the data YAML, or the folder
    root: Path
    names: list[str]
    splits: dict[str, Any]  # split name -> YAML value (a folder, a .txt list, or a list of those)
    yaml_file: Path | None


def _yolo_names(raw: Any, where: str) -> list[str]:
    if isinstance(raw, list) and raw and all(isinstance(n, (str, int)) for n in raw):
        return [str(n) for n in raw]
    if isinstance(raw, dict) and raw:
        try:
            ids = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            ids = []
        if ids == list(range(len(raw))):
            by_id = {int(k): str(v) for k, v in raw.items()}
            return [by_id[i] for i in ids]
    raise DataError(
        f"{where}: 'names' must list the class names, as a list or as {{0: name, 1: name, ...}} with ids from 0 "
        f"(got {raw!r:.80})"
    )


def _read_yaml_file(path: Path) -> dict[str, Any]:
    data = _user_file(read_yaml, path, "fix the file, or set data.path to an ultralytics data YAML")
    if not isinstance(data, dict):
        raise DataError(f"{path}: a YOLO data YAML is a mapping with keys path, train, val, test, names")
    return data


def _yolo_source(path: str | Path) -> _YoloSource:
    source = Path(path)
    if source.is_dir():
        names: list[str] | None = None
        for candidate in ("data.yaml", "data.yml", "dataset.yaml"):
            if (source / candidate).is_file():
                data = _read_yaml_file(source / candidate)
                if "train" in data:
                    return _yolo_yaml(source / candidate, data)
                if "names" in data:
                    names = _yolo_names(data["names"], str(source / candidate))
                break
        if names is None and (source / "classes.txt").is_file():
            text = read_text(source / "classes.txt")
            names = [n.strip() for n in text.splitlines() if n.strip()]
        if not (source / "images").is_dir() or not (source / "labels").is_dir():
            raise DataError(
                f"{source}: a YOLO folder holds images/ and labels/ (label files named like their images) and "
                "classes.txt; or set data.path to an ultralytics data YAML"
            )
        if not names:
            raise DataError(
                f"{source}: no class names; add classes.txt (one name per line, line 1 = class 0) or a data.yaml "
                "with names"
            )
        return _YoloSource(source, source, names, {"train": "images"}, None)
    if source.is_file():
        return _yolo_yaml(source, _read_yaml_file(source))
    raise DataError(
        f"data path {path} does not exist; set data.path to an ultralytics data YAML or a folder with images/ and "
        "labels/"
    )


def _yolo_yaml(file: Path, data: dict[str, Any]) -> _YoloSource:
    if "names" not in data:
        raise DataError(f"{file}: no 'names' key; list the class names (names: [car, person, ...])")
    names = _yolo_names(data["names"], str(file))
    if "nc" in data and _number(data["nc"]) != len(names):  # '6' and 6.0 count, as in ultralytics
        raise DataError(f"{file}: 'nc' is {_show(data['nc'])} but 'names' lists {len(names)} classes; make them "
                        "agree")
    root = file.parent
    if data.get("path"):
        root = Path(str(data["path"]))
        root = root if root.is_absolute() else file.parent / root
        if not root.is_dir():
            raise DataError(
                f"{file}: 'path' points at {root}, which is not a folder; fix 'path' (a relative path is relative "
                "to the YAML's folder)"
            )
    if not data.get("train"):
        raise DataError(f"{file}: no 'train' key; name the training images folder (train: images/train)")
    if not data.get("val") and data.get("validation"):
        data = {**data, "val": data["validation"]}  # ultralytics renames a 'validation' key to 'val' too
    splits = {k: data[k] for k in YOLO_SPLITS if data.get(k)}
    return _YoloSource(file, root, names, splits, file)


def yolo_splits(path: str | Path) -> list[str]:
    """The splits an ultralytics data YAML (or a folder holding one) names besides ``train``: ``val``, ``test``."""
    return [s for s in _yolo_source(path).splits if s != "train"]


def _split_images(src: _YoloSource, split: str) -> list[Path]:
    if split not in src.splits:
        if src.yaml_file is None:
            raise DataError(
                f"{src.origin}: a YOLO folder has no '{split}' split; give a data YAML with a '{split}' key"
            )
        raise DataError(f"{src.origin}: no '{split}' key; add it (e.g. {split}: images/{split})")
    values = src.splits[split]
    images: list[Path] = []
    for value in values if isinstance(values, list) else [values]:
        target = Path(str(value))
        target = target if target.is_absolute() else src.root / target
        if isinstance(values, str) and values.startswith("../") and not target.exists() \
                and (src.root / values[3:]).exists():
            # ultralytics' fallback (check_det_dataset) for Roboflow's data.yaml, which sits beside train/ and
            # valid/ but names them '../train/images': a missing '../x' is read as 'x'
            target = src.root / values[3:]
        if target.is_dir():
            images.extend(_images_in(target, recursive=True))
        elif target.is_file() and target.suffix == ".txt":
            for line in read_text(target).splitlines():
                if line.strip():
                    image = Path(line.strip())
                    images.append(image if image.is_absolute() else target.parent / image)
        else:
            raise DataError(
                f"{src.origin}: '{split}' points at {target}, which does not exist; fix '{split}' (relative paths "
                f"are relative to 'path': {src.root})"
            )
    if not images:
        raise DataError(f"{src.origin}: split '{split}' ({values}) has no images; add images or remove the key")
    return images


def yolo_label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``, the suffix ``.txt``."""
    parts = image.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            return Path(*parts[:i], "labels", *parts[i + 1 : -1], image.stem + ".txt")
    return image.with_suffix(".txt")


def _yolo_line(line: str, names: list[str]) -> _Obj | str:
    """One YOLO label line as a box (its ``where`` filled in by the caller), or why it does not parse. As
    ultralytics' ``verify_image_label`` has it, each of these makes the label file corrupt (and the image is left
    out): a wrong number of values, a value that is not a finite number, a class id that is not a whole number or
    not below the number of ``names``, coordinates above 1 (pixels, not fractions of the image size)."""
    parts = line.split()
    if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
        return f"expected 'class cx cy w h' (or a polygon 'class x1 y1 x2 y2 ...'), found {len(parts)} values"
    bad = _bad_number(parts)
    if bad is not None:
        return bad
    values = [float(v) for v in parts]
    if values[0] != int(values[0]):
        return f"class id {parts[0]!r} is not a whole number"
    cls = int(values[0])
    if not 0 <= cls < len(names):
        # ultralytics: "Label class N exceeds dataset class count" - a corrupt label, the image left out
        return f"class id {cls} out of range ({len(names)} names: ids 0..{len(names) - 1})"
    coords = values[1:]
    if any(v > 1.0 + 1e-3 for v in coords):
        return (f"coordinates not normalised ({' '.join(parts[1:5])}{' ...' if len(parts) > 5 else ''}); YOLO labels "
                "hold fractions of the image size in [0, 1]")
    if len(coords) == 4:
        cx, cy, w, h = coords
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    else:
        xs, ys = coords[0::2], coords[1::2]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    return _Obj(names[cls], x1, y1, x2, y2, "", normalised=True)


def _bad_number(parts: list[str]) -> str | None:
    """Why the first of ``parts`` (the fields of a text label line) that is not a finite number is not one
    (``"not a number: 'wide'"``, ``"not a finite number: 'nan'"``), or ``None`` when all are."""
    for value in parts:
        try:
            _float(value)
        except ValueError as exc:
            return str(exc)
    return None


def read_yolo(
    path: str | Path, strict: bool = False, classes: list[str] | None = None,
    options: DrivingOptions | dict[str, Any] | None = None, split: str = "train",
) -> DetectionSet:
    """Read one split of a YOLO data set: ``path`` is an ultralytics data YAML (keys ``path``, ``train``, ``val``,
    ``test``, ``names`` as a list or ``{id: name}``; a split is a folder of images, a ``.txt`` list of images or a
    list of those; a relative ``path`` is relative to the YAML's folder, the splits relative to ``path``) - or a
    folder with ``images/``, ``labels/`` and ``classes.txt`` (or a ``data.yaml`` with ``names``), one split.
    Label files are found by ultralytics' rule (``.../images/x.jpg`` -> ``.../labels/x.txt``). An image without a
    label file is a background image (``options.missing_labels: error``: a DataError)."""
    opts = _options(options)
    report = _Report(strict)
    src = _yolo_source(path)
    entries: list[_Entry] = []
    for image in _split_images(src, split):
        label = yolo_label_path(image)
        if not label.is_file():
            entries.append(_unlabelled(image, label, opts, report))
            continue
        lines = _read_text(label, report)
        if lines is None:
            continue
        objects: list[_Obj] = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            obj = _yolo_line(line, src.names)
            if isinstance(obj, str):
                report.corrupt(f"{label}:{n}", obj, image)
                break
            obj.where = f"{label}:{n}"
            objects.append(obj)
        else:
            entries.append(_Entry(image, objects, str(label)))
    origin = f"{src.origin} ({split})" if src.yaml_file else str(src.origin)
    return _assemble(entries, report, opts, _fixed(classes, opts), origin, order=src.names)


# ---------------------------------------------------------------- COCO


def read_coco(
    path: str | Path, strict: bool = False, classes: list[str] | None = None,
    options: DrivingOptions | dict[str, Any] | None = None,
) -> DetectionSet:
    """Read a COCO JSON file (``images``, ``annotations`` with ``bbox: [x, y, w, h]``, ``categories``). An image's
    ``file_name`` is looked up in ``options.images`` when set (relative to the JSON's folder), else in the JSON's
    folder, else in an ``images/`` folder beside the JSON. Crowd annotations (``iscrowd: 1``) are dropped and
    counted; an image listed without annotations is a background image."""
    opts = _options(options)
    report = _Report(strict)
    file = Path(path)
    data = _load_json(file, "a COCO JSON file (e.g. annotations/instances_train.json)")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise DataError(f"{file}: a COCO JSON file holds the lists 'images', 'annotations' and 'categories'")
    if not isinstance(data.get("annotations"), list):
        raise DataError(f"{file}: no 'annotations' list; an image-info file without boxes cannot train a detector")
    categories: dict[Any, str] = {}
    for k, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise DataError(f"{file}: category #{k} needs an 'id' (a number or a string) and a 'name' (got "
                            f"{_show(cat)}); fix the categories list")
        categories[cat["id"]] = cat["name"]
    folders = _image_folders(file, opts, ("", "images"))
    images: dict[Any, _Entry] = {}
    listed: set[Any] = set()
    for k, info in enumerate(data["images"]):
        if not isinstance(info, dict) or not _is_id(info.get("id")) or not isinstance(info.get("file_name"), str):
            report.problem(f"{file} (image #{k})", "an image needs an 'id' (a number or a string) and a 'file_name' "
                           f"(got {_show(info)})", fix=_FILE_FIX)
            continue
        where = f"{file} (image id {info['id']})"
        if info["id"] in listed:
            report.problem(where, "a second image with this id", fix=_FILE_FIX)
            continue
        listed.add(info["id"])
        size = None
        if info.get("width") or info.get("height"):  # 0 or missing: not declared
            size = _pixels(info.get("width")), _pixels(info.get("height"))
            if None in size:
                report.problem(where, "width and height must be whole numbers of pixels (got "
                               f"{_show(info.get('width'))} x {_show(info.get('height'))})", fix=_FILE_FIX)
                continue
        image = _find_image(info["file_name"], folders)
        if image is None:
            report.problem(
                where, f"image {info['file_name']} not found in {' or '.join(str(f) for f in folders)}",
                fix="add the image, or set data.options.images to the image folder, or set data.strict: false",
            )
            continue
        images[info["id"]] = _Entry(image, [], where, size)
    found = bool(images)
    for k, ann in enumerate(data["annotations"]):
        # An annotation that names no image (not a mapping, an image_id of the wrong type or not in 'images') is
        # skipped and named by itself: there is no image to leave out. One that does name an image but does not
        # parse leaves that image out, every annotation of it (as ultralytics leaves out an image whose label file
        # has a corrupt line).
        if not isinstance(ann, dict):
            report.problem(f"{file} (annotation #{k})", f"an annotation must be a mapping (got {_show(ann)})",
                           "unparsable")
            continue
        ann_id = ann.get("id", f"#{k}")
        where = f"{file} (annotation id {ann_id if _is_id(ann_id) else _show(ann_id)})"
        if not _is_id(ann.get("image_id")):
            report.problem(where, f"image_id must be a number or a string (got {_show(ann.get('image_id'))})",
                           "unparsable")
            continue
        if ann["image_id"] not in listed:
            report.problem(where, f"image_id {ann['image_id']!r} is not in 'images'", "unparsable")
            continue
        entry = images.get(ann["image_id"])
        if entry is None:
            continue  # its image was reported (and left out)
        if not _is_id(ann.get("category_id")):
            reason = f"category_id must be a number or a string (got {_show(ann.get('category_id'))})"
        elif ann.get("iscrowd"):
            _count(entry.dropped, "crowd")
            continue
        elif ann["category_id"] not in categories:
            # a category the file does not define is a corrupt label, as ultralytics has a class id >= nc
            known = ", ".join(str(c) for c in list(categories)[:12])
            reason = f"unknown class: category_id {ann['category_id']!r} is not in 'categories' (ids {known})"
        else:
            bbox = ann.get("bbox")
            try:
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise ValueError
                x, y, w, h = (_float(v) for v in bbox)
                if not math.isfinite(x + w) or not math.isfinite(y + h):
                    raise ValueError
            except ValueError:
                reason = f"bbox must be [x, y, width, height] in pixels (got {_show(bbox)})"
            else:
                entry.objects.append(_Obj(categories[ann["category_id"]], x, y, x + w, y + h, where))
                continue
        report.corrupt(where, reason, entry.image)
        del images[ann["image_id"]]
    return _assemble(
        list(images.values()), report, opts, _fixed(classes, opts), str(file),
        hint="set data.options.images to the folder holding the images" if not found else "",
    )


# ---------------------------------------------------------------- Pascal VOC


@dataclass
class _Node:
    """An XML element with the line it starts on (ElementTree's C parser does not keep lines)."""

    tag: str
    line: int
    children: list[_Node] = field(default_factory=list)
    text: str = ""

    def find(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]

    def findtext(self, tag: str) -> str | None:
        node = self.find(tag)
        return node.text.strip() if node is not None else None


def _parse_xml(path: Path) -> _Node:
    parser = expat.ParserCreate()
    stack: list[_Node] = []
    roots: list[_Node] = []

    def start(tag: str, _attrs: dict[str, str]) -> None:
        node = _Node(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    with open(path, "rb") as fh:
        parser.ParseFile(fh)
    return roots[0]


VOC_SETS = ("train", "val", "trainval", "test")


def _voc_root(path: str | Path) -> tuple[Path, Path, Path]:
    """``(root, Annotations/, image folder)`` of a Pascal VOC folder, or a DataError."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data path {path} is not a folder; set data.path to a Pascal VOC folder (Annotations/, "
                        "JPEGImages/)")
    annotations = root / "Annotations"
    image_dir = next((root / d for d in ("JPEGImages", "images") if (root / d).is_dir()), None)
    if not annotations.is_dir() or image_dir is None:
        raise DataError(
            f"{root}: a Pascal VOC folder holds Annotations/ (one XML file per image) and JPEGImages/ (or images/)"
        )
    return root, annotations, image_dir


def voc_image_sets(path: str | Path) -> list[str]:
    """The detection split lists a Pascal VOC year folder has: those of ``train``, ``val``, ``trainval``, ``test``
    whose ``ImageSets/Main/<name>.txt`` exists."""
    main = Path(path) / "ImageSets" / "Main"
    return [name for name in VOC_SETS if (main / f"{name}.txt").is_file()]


def _voc_ids(root: Path, image_set: str) -> list[str]:
    """The image ids ``ImageSets/Main/<image_set>.txt`` lists (one a line; the first column, as torchvision's
    ``VOCDetection`` reads them)."""
    listing = root / "ImageSets" / "Main" / f"{image_set}.txt"
    if not listing.is_file():
        have = ", ".join(voc_image_sets(root)) or "none"
        raise DataError(f"{root}: no ImageSets/Main/{image_set}.txt (split lists there: {have}); add it, or read "
                        "the folder without a split list")
    ids = list(dict.fromkeys(line.split()[0] for line in read_text(listing).splitlines() if line.strip()))
    if not ids:
        raise DataError(f"{listing}: lists no images; add image ids (one a line) or remove the file")
    return ids


def _voc_bndbox(bndbox: _Node | None) -> tuple[float, float, float, float] | str:
    """An ``<object>``'s ``<bndbox>`` as ``(xmin, ymin, xmax, ymax)``, or why it is not four finite numbers."""
    if bndbox is None:
        return "no <bndbox>"
    values = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = bndbox.findtext(key)
        if text is None:
            return f"no <{key}>"
        try:
            values.append(_float(text))
        except ValueError as exc:
            return f"<{key}> is {exc}"
    return values[0], values[1], values[2], values[3]


def read_voc(
    path: str | Path, strict: bool = False, classes: list[str] | None = None,
    options: DrivingOptions | dict[str, Any] | None = None, image_set: str | None = None,
) -> DetectionSet:
    """Read a Pascal VOC folder: ``Annotations/*.xml`` and ``JPEGImages/`` (or ``images/``). An XML names its image
    in ``<filename>`` (else the image named like the XML is used). ``difficult`` objects are kept unless
    ``options.voc_skip_difficult``. An image without an XML is a background image (``missing_labels: error``: a
    DataError).

    ``image_set`` (``train``, ``val``, ``trainval``, ``test``) reads only the images a VOC year folder's
    ``ImageSets/Main/<image_set>.txt`` lists, as torchvision's ``VOCDetection(image_set=...)`` does; without it,
    every XML and image of the folder. Which list a run reads is :mod:`tl_driving.data`'s rule."""
    opts = _options(options)
    report = _Report(strict)
    root, annotations, image_dir = _voc_root(path)
    by_stem: dict[str, Path] = {}
    for image in _images_in(image_dir):
        by_stem.setdefault(image.stem, image)
    if image_set is None:
        xmls = sorted(p for p in annotations.glob("*.xml") if not p.name.startswith("."))
        candidates = set(by_stem.values())
    else:
        ids = _voc_ids(root, image_set)
        xmls = [annotations / f"{i}.xml" for i in ids if (annotations / f"{i}.xml").is_file()]
        candidates = {by_stem[i] for i in ids if i in by_stem}
        listing = root / "ImageSets" / "Main" / f"{image_set}.txt"
        for i in ids:
            if i not in by_stem and not (annotations / f"{i}.xml").is_file():
                report.problem(f"{listing}", f"lists {i}, which has neither an XML in {annotations} nor an image in "
                               f"{image_dir}", fix=_FILE_FIX)
    entries: list[_Entry] = []
    used: set[Path] = set()
    for xml in xmls:
        try:
            doc = _parse_xml(xml)
        except expat.ExpatError as exc:
            report.problem(f"{xml}:{exc.lineno}", f"not valid XML ({expat.ErrorString(exc.code)})", fix=_FILE_FIX)
            used.add(by_stem.get(xml.stem, xml))  # its image is skipped too, not read as background
            continue
        except OSError as exc:
            report.problem(str(xml), f"cannot be read ({exc.strerror or exc})", fix=_FILE_FIX)
            used.add(by_stem.get(xml.stem, xml))
            continue
        if doc.tag != "annotation":
            report.problem(str(xml), f"the root element is <{doc.tag}>, not <annotation>", fix=_FILE_FIX)
            used.add(by_stem.get(xml.stem, xml))
            continue
        filename = doc.findtext("filename")
        image = image_dir / filename if filename and (image_dir / filename).is_file() else None
        image = image or by_stem.get(Path(filename).stem if filename else xml.stem) or by_stem.get(xml.stem)
        if image is None:
            report.problem(str(xml), f"no image {filename or xml.stem + '.*'} in {image_dir}", fix=_FILE_FIX)
            continue
        used.add(image)
        size = None
        node = doc.find("size")
        if node is not None:
            width, height = (_pixels(_number(node.findtext(k))) for k in ("width", "height"))
            size = (width, height) if width and height else None
        objects: list[_Obj] = []
        dropped: dict[str, int] = {}
        for obj in doc.findall("object"):  # an <object> that does not parse leaves the image out (see corrupt)
            where = f"{xml}:{obj.line}"
            name = obj.findtext("name")
            if not name:
                report.corrupt(where, "an <object> without a <name>", image)
                break
            bad = _voc_bndbox(obj.find("bndbox"))
            if isinstance(bad, str):
                report.corrupt(where, f"object {name!r}: <bndbox> needs numbers xmin, ymin, xmax, ymax ({bad})",
                               image)
                break
            if obj.findtext("difficult") in ("1", "true") and opts.voc_skip_difficult:
                _count(dropped, "difficult")
                continue
            xmin, ymin, xmax, ymax = bad
            objects.append(_Obj(name, xmin - 1, ymin - 1, xmax, ymax, where))
        else:
            entries.append(_Entry(image, objects, str(xml), size, dropped))
    for image in sorted(candidates - used):
        entries.append(_unlabelled(image, annotations / f"{image.stem}.xml", opts, report))
    entries.sort(key=lambda e: e.image)
    origin = f"{root} ({image_set})" if image_set else str(root)
    return _assemble(entries, report, opts, _fixed(classes, opts), origin)


def read_voc_new(
    path: str | Path, strict: bool = False, classes: list[str] | None = None,
    options: DrivingOptions | dict[str, Any] | None = None,
) -> DetectionSet:
    """A Pascal VOC folder as data to score a finished run on (``tl evaluate``, ``data.test_path``): its
    ``ImageSets/Main/test.txt`` images when it lists them, else its ``val.txt`` images, else every image."""
    sets = voc_image_sets(path)
    image_set = "test" if "test" in sets else "val" if "val" in sets else None
    return read_voc(path, strict, classes, options=options, image_set=image_set)


# ---------------------------------------------------------------- KITTI


def read_kitti(
    path: str | Path, strict: bool = False, classes: list[str] | None = None,
    options: DrivingOptions | dict[str, Any] | None = None,
) -> DetectionSet:
    """Read a KITTI object folder: ``image_2/`` and ``label_2/`` (``path`` itself or its ``training/``), one label
    file per image with lines ``type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]``. ``DontCare``
    regions are dropped and counted; the other types (``Car``, ``Van``, ``Truck``, ``Pedestrian``,
    ``Person_sitting``, ``Cyclist``, ``Tram``, ``Misc``) are class names (rename them with ``options.class_map``).
    An image without a label file is a background image (``missing_labels: error``: a DataError)."""
    opts = _options(options)
    report = _Report(strict)
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"data path {path} is not a folder; set data.path to a KITTI folder (image_2/, label_2/)")
    if not (root / "image_2").is_dir() and (root / "training" / "image_2").is_dir():
        root = root / "training"
    image_dir, label_dir = root / "image_2", root / "label_2"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise DataError(f"{root}: a KITTI folder holds image_2/ (images) and label_2/ (one .txt file per image)")
    entries: list[_Entry] = []
    for image in _images_in(image_dir):
        label = label_dir / f"{image.stem}.txt"
        if not label.is_file():
            entries.append(_unlabelled(image, label, opts, report))
            continue
        lines = _read_text(label, report)
        if lines is None:
            continue
        objects: list[_Obj] = []
        dropped: dict[str, int] = {}
        for n, line in enumerate(lines, start=1):  # a line that does not parse leaves the image out (see corrupt)
            parts = line.split()
            if not parts:
                continue
            where = f"{label}:{n}"
            if len(parts) not in (15, 16):
                report.corrupt(
                    where, f"expected 15 values (type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry) and an "
                    f"optional score, found {len(parts)}", image,
                )
                break
            bad = _bad_number(parts[1:])
            if bad is not None:
                report.corrupt(where, bad, image)
                break
            if parts[0] == "DontCare":
                _count(dropped, "DontCare")
                continue
            x1, y1, x2, y2 = (float(v) for v in parts[4:8])
            objects.append(_Obj(parts[0], x1, y1, x2, y2, where))
        else:
            entries.append(_Entry(image, objects, str(label), dropped=dropped))
    return _assemble(entries, report, opts, _fixed(classes, opts), str(root))


# ---------------------------------------------------------------- BDD100K


def read_bdd100k(
    path: str | Path, strict: bool = False, classes: list[str] | None = None,
    options: DrivingOptions | dict[str, Any] | None = None,
) -> DetectionSet:
    """Read a BDD100K detection label JSON: a list of frames (or ``{"frames": [...]}``), each with ``name`` and
    ``labels: [{category, box2d: {x1, y1, x2, y2}}]``; labels without ``box2d`` (``poly2d`` lanes and drivable
    areas) are ignored. Images are looked up in ``options.images`` when set (relative to the JSON's folder), else in
    an ``images/`` folder beside the JSON, else in the JSON's folder. A frame without boxes is a background image."""
    opts = _options(options)
    report = _Report(strict)
    file = Path(path)
    data = _load_json(file, "a BDD100K label JSON (e.g. det_train.json)")
    frames = data.get("frames") if isinstance(data, dict) else data
    if not isinstance(frames, list):
        raise DataError(f"{file}: a BDD100K label file is a list of frames (name, labels), or {{\"frames\": [...]}}")
    folders = _image_folders(file, opts, ("images", ""))
    entries: list[_Entry] = []
    found = False
    for k, frame in enumerate(frames):
        name = frame.get("name") if isinstance(frame, dict) else None
        if not isinstance(name, str) or not name:
            report.problem(f"{file} (frame #{k})", "a frame needs a 'name'", fix=_FILE_FIX)
            continue
        where = f"{file} (frame {name!r})"
        image = _find_image(name, folders)
        if image is None:
            report.problem(
                where, f"image {name} not found in {' or '.join(str(f) for f in folders)}",
                fix="add the image, or set data.options.images to the image folder, or set data.strict: false",
            )
            continue
        found = True
        labels = frame.get("labels") or []
        if not isinstance(labels, list):
            report.corrupt(where, f"'labels' must be a list of labels (got {_show(labels)})", image)
            continue
        objects = []
        for j, label in enumerate(labels):  # a label that does not parse leaves the frame out (see corrupt)
            if not isinstance(label, dict):
                report.corrupt(f"{where[:-1]}, label #{j})", f"a label must be a mapping (got {_show(label)})", image)
                break
            if label.get("box2d") is None:
                continue
            label_id = label.get("id", j)
            lwhere = f"{file} (frame {name!r}, label {label_id if _is_id(label_id) else _show(label_id)})"
            box = label["box2d"]
            category = label.get("category")
            if not isinstance(category, str) or not category:
                report.corrupt(lwhere, f"a label needs a 'category' (got {_show(category)})", image)
                break
            try:
                if not isinstance(box, dict):
                    raise ValueError
                x1, y1, x2, y2 = (_float(box.get(k)) for k in ("x1", "y1", "x2", "y2"))
            except ValueError:
                report.corrupt(lwhere, f"box2d needs numbers x1, y1, x2, y2 (got {_show(box)})", image)
                break
            objects.append(_Obj(category, x1, y1, x2 + 1, y2 + 1, lwhere))
        else:
            entries.append(_Entry(image, objects, where))
    return _assemble(
        entries, report, opts, _fixed(classes, opts), str(file),
        hint="set data.options.images to the folder holding the images" if not found else "",
    )


READERS = {"yolo": read_yolo, "coco": read_coco, "voc": read_voc, "kitti": read_kitti, "bdd100k": read_bdd100k}


# ---------------------------------------------------------------- writing an ultralytics data set


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def write_yolo(dataset: DetectionSet, out: Path, split_names: dict[str, DetectionSet] | None = None) -> Path:
    """Write ``dataset`` (the train split) and the sets in ``split_names`` (``{"val": ..., "test": ...}``) as an
    ultralytics data set in ``out``: ``images/<split>/`` (hard links, or copies across file systems),
    ``labels/<split>/*.txt`` (one line ``class cx cy w h`` per box, an empty file for a background image) and
    ``data.yaml`` (absolute ``path``, ``train``, ``val``, ``test`` when given, ``names``); return the YAML's path.
    Without a val set ``val`` names the train images (ultralytics requires one). ``out`` must be empty, new, or
    written by this function before (its ``images/`` and ``labels/`` are then replaced)."""
    out = Path(out)
    splits = {"train": dataset, **(split_names or {})}
    for name, split in splits.items():
        if split.classes != dataset.classes:
            raise DataError(f"write_yolo: split {name!r} has classes {split.classes}, train has {dataset.classes}")
    yaml_path = out / "data.yaml"
    if out.exists() and any(out.iterdir()):
        if not yaml_path.is_file() or not yaml_path.read_bytes().startswith(_WRITTEN_BY.encode()):
            raise DataError(f"{out} is not empty and was not written by write_yolo; choose a new folder")
        for sub in ("images", "labels"):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
    for name, split in splits.items():
        image_dir, label_dir = out / "images" / name, out / "labels" / name
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        stems: set[str] = set()
        for sample in split.samples:
            stem, n = sample.image.stem, 1
            while stem.lower() in stems:
                stem, n = f"{sample.image.stem}_{n}", n + 1
            stems.add(stem.lower())
            _link(sample.image, image_dir / f"{stem}{sample.image.suffix}")
            w, h = sample.width, sample.height
            lines = [
                f"{b.label} {(b.x1 + b.x2) / 2 / w:.8g} {(b.y1 + b.y2) / 2 / h:.8g} "
                f"{b.width / w:.8g} {b.height / h:.8g}"
                for b in sample.boxes
            ]
            (label_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    config: dict[str, Any] = {
        "path": str(out.resolve()),
        "train": "images/train",
        "val": "images/val" if "val" in splits else "images/train",
    }
    if "test" in splits:
        config["test"] = "images/test"
    config["names"] = dict(enumerate(dataset.classes))
    yaml_path.write_text(_WRITTEN_BY + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return yaml_path
