"""Driving-scene detection data for recipes: ``read(config, seed)`` (:func:`load_detection`, returning
:class:`DetectionData`) of each data format (registered in :mod:`tl_driving.registrations`, options in
:mod:`tl_driving.options`), and the torch dataset.

``data.format`` is one of ``yolo``, ``coco``, ``voc``, ``kitti``, ``bdd100k`` (readers in :mod:`tl_driving.formats`).
``data.path`` is read as the training data; a val split comes from the YOLO data YAML's ``val`` when it has one (a
Pascal VOC year folder's ``ImageSets/Main/val.txt``), else ``data.val_fraction`` of the images at random (seeded);
the test split from ``data.test_path``, else the YOLO YAML's ``test`` (VOC: ``test.txt``). Val and test are read
with the training classes. ``data.image_size``, when set, overrides ``data.options.image_size``.

Torch and torchvision are imported only inside :class:`DetectionDataset` and :func:`collate`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.api import DataError, random_split
from tl_driving.formats import (
    DetectionSet,
    read_bdd100k,
    read_coco,
    read_kitti,
    read_voc,
    read_voc_new,
    read_yolo,
    voc_image_sets,
    yolo_splits,
)
from tl_driving.options import DrivingOptions, as_options

if TYPE_CHECKING:
    from tl_core.api import DataConfig



# ---------------------------------------------------------------- read(config, seed)


@dataclass
class DetectionData:
    """Train/val/test splits of one detection data set, ready for a trainer, plus what reading left out (of every
    split together): ``skipped`` lines, ``dropped`` boxes per reason, ``clipped`` boxes, ``unlabelled`` images."""

    train: DetectionSet
    val: DetectionSet | None
    test: DetectionSet | None
    classes: list[str]
    skipped: list[str]
    options: DrivingOptions = field(default_factory=DrivingOptions)
    dropped: dict[str, int] = field(default_factory=dict)
    clipped: int = 0
    unlabelled: int = 0

    def splits(self) -> dict[str, DetectionSet]:
        return {k: v for k, v in (("train", self.train), ("val", self.val), ("test", self.test)) if v is not None}

    def with_shots(self, shots: int, seed: int) -> tuple[DetectionData, dict[str, Any]]:
        """The same data with ``shots`` training images in all (``tl curve``) - a seeded choice, the same for
        transfer and scratch, each smaller cut inside the larger ones of the same seed, kept in the order read - and
        val and test as they are. Fewer training images than asked: all of them, named under ``capped``.

        Images, not images per class: an image holds the boxes of several classes (a street of cars, a bus and
        people), so it cannot be given to one class, and k images per class would not be k of anything. A user
        labels images, so the curve counts what they would label. The cut's boxes per class are in the run's
        report (``data.boxes.train``). A background image (no box) counts as one image; a cut whose images hold
        no box at all would train nothing to detect, so then its last image gives way to the first image with
        boxes in the same seeded order. What reading left out (``skipped``, ``dropped``, ``clipped``,
        ``unlabelled``) is said of the files read, as before."""
        samples = self.train.samples
        order = list(range(len(samples)))
        random.Random(seed).shuffle(order)
        keep = order[:shots]
        if keep and not any(samples[i].boxes for i in keep):
            first = next((i for i in order[shots:] if samples[i].boxes), None)
            if first is not None:
                keep[-1] = first
        capped = [f"the training images ({len(order)})"] if len(order) < shots else []
        # replace(): a new object, so the data read is never changed under another point
        subset = replace(self, train=self.train.subset(sorted(keep)), skipped=list(self.skipped),
                         dropped=dict(self.dropped))
        return subset, {"unit": "images", "items": len(keep), "capped": capped}

    def summary(self) -> dict[str, Any]:
        splits = self.splits()
        return {
            "classes": self.classes,
            "train": len(self.train),
            "val": len(self.val) if self.val else 0,
            "test": len(self.test) if self.test else 0,
            "boxes": {name: s.boxes_per_class() for name, s in splits.items()},
            "background": {name: s.background for name, s in splits.items()},
            "skipped": list(self.skipped),  # every skipped item named (issue 12), not the first 100
            "skipped_total": len(self.skipped),
            "dropped": dict(self.dropped),
            "clipped": self.clipped,
            "unlabelled": self.unlabelled,
            "options": self.options.model_dump(mode="json"),
        }


def _merge_counts(*sets: DetectionSet | None) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sets:
        for reason, n in (s.dropped if s else {}).items():
            out[reason] = out.get(reason, 0) + n
    return out


def _voc_sets(path: str) -> tuple[str | None, str | None, str | None]:
    """``(train, val, test)`` image sets of a Pascal VOC year folder, by its ``ImageSets/Main`` lists: ``train.txt``
    trains and ``val.txt`` validates (both listed); ``trainval.txt`` alone trains (val then split off at random);
    ``test.txt`` tests. ``None`` where no list says: every image (train), a random split (val), none (test)."""
    sets = voc_image_sets(path) if Path(path).is_dir() else []
    train = "train" if "train" in sets else "trainval" if "trainval" in sets else None
    val = "val" if train == "train" and "val" in sets else None
    return train, val, "test" if "test" in sets else None


def load_detection(config: DataConfig, seed: int, reader: Any) -> DetectionData:
    """Read ``config.path`` with ``reader`` and ``config.options``: for a YOLO data YAML its train split, and its
    val split when it has one; for a Pascal VOC year folder with ``ImageSets/Main`` lists, the images of
    ``train.txt`` (val: ``val.txt``) or ``trainval.txt`` (:func:`_voc_sets`); else split off ``config.val_fraction``
    at random (seeded). Read ``config.test_path`` (a YOLO test YAML: its ``test`` split, else its ``train``; a VOC
    folder: its ``test.txt``, else ``val.txt``, else every image; without ``test_path``, the YOLO YAML's own
    ``test``, or the VOC folder's ``test.txt``) with the training classes."""
    opts = as_options(config.options)
    if config.image_size is not None and config.image_size != opts.image_size:
        opts = opts.model_copy(update={"image_size": config.image_size})
    strict = config.strict

    def read(path: str, split: str | None, classes: list[str] | None = None) -> DetectionSet:
        if reader is read_yolo:
            return read_yolo(path, strict=strict, classes=classes, options=opts, split=split or "train")
        if reader is read_voc:
            return read_voc(path, strict=strict, classes=classes, options=opts, image_set=split)
        return reader(path, strict=strict, classes=classes, options=opts)

    if reader is read_yolo:
        named = yolo_splits(config.path)
        train_set, val_set, test_set = "train", "val" if "val" in named else None, "test" if "test" in named else None
    elif reader is read_voc:
        train_set, val_set, test_set = _voc_sets(config.path)
    else:
        train_set = val_set = test_set = None
    full = read(config.path, train_set)
    classes = full.classes
    read_val = None
    if val_set:
        train = full
        val = read_val = read(config.path, val_set, classes)
    else:
        train_idx, val_idx = random_split(len(full), config.val_fraction, seed)
        train, val = full.subset(train_idx), (full.subset(val_idx) if val_idx else None)
    if config.test_path and reader is read_yolo:
        split = "test" if "test" in yolo_splits(config.test_path) else "train"
        test = read(config.test_path, split, classes)
    elif config.test_path and reader is read_voc:
        test = read_voc_new(config.test_path, strict, classes, options=opts)
    elif config.test_path:
        test = read(config.test_path, None, classes)
    elif test_set:
        test = read(config.path, test_set, classes)
    else:
        test = None
    if train.num_boxes == 0:
        dropped = ", ".join(f"{n} {reason}" for reason, n in full.dropped.items())
        raise DataError(
            f"{config.path}: no boxes in the training images (every image is background"
            + (f"; dropped: {dropped}" if dropped else "")
            + "); check the labels, data.options.classes and data.options.class_map"
        )
    sources = [s for s in (full, read_val, test) if s is not None]
    return DetectionData(
        train=train,
        val=val,
        test=test,
        classes=classes,
        skipped=[line for s in sources for line in s.skipped],
        options=opts,
        dropped=_merge_counts(*sources),
        clipped=sum(s.clipped for s in sources),
        unlabelled=sum(s.unlabelled for s in sources),
    )


def read_yolo_data(config: DataConfig, seed: int) -> DetectionData:
    return load_detection(config, seed, read_yolo)


def read_coco_data(config: DataConfig, seed: int) -> DetectionData:
    return load_detection(config, seed, read_coco)


def read_voc_data(config: DataConfig, seed: int) -> DetectionData:
    return load_detection(config, seed, read_voc)


def read_kitti_data(config: DataConfig, seed: int) -> DetectionData:
    return load_detection(config, seed, read_kitti)


def read_bdd100k_data(config: DataConfig, seed: int) -> DetectionData:
    return load_detection(config, seed, read_bdd100k)


# ---------------------------------------------------------------- torch side


class DetectionDataset:
    """A map-style dataset of ``(image, target)``: the image a float32 tensor ``[3, H, W]`` in [0, 1], resized so
    that its longer side is ``size`` (aspect kept); the target ``{"boxes": float32 [N, 4] (x1, y1, x2, y2 in the
    resized image's pixels), "labels": int64 [N] (0-based class ids)}``.

    With ``augment``, a horizontal flip (probability 0.5, boxes flipped too) and a mild colour jitter, drawn from
    torch's global RNG, so a run seeded by its trainer augments the same way every time; without, it is
    deterministic and draws nothing.
    """

    def __init__(self, dataset: DetectionSet, size: int, augment: bool = False) -> None:
        self.dataset = dataset
        self.size = size
        self.augment = augment
        self._jitter = None
        if augment:
            from torchvision.transforms import v2

            self._jitter = v2.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.02)

    def __len__(self) -> int:
        return len(self.dataset)

    def scaled_size(self, i: int) -> tuple[int, int]:
        """``(width, height)`` of item ``i`` after resizing."""
        sample = self.dataset.samples[i]
        scale = self.size / max(sample.width, sample.height)
        return max(1, round(sample.width * scale)), max(1, round(sample.height * scale))

    def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
        import torch
        from PIL import Image
        from torchvision.transforms.v2 import functional as F

        sample = self.dataset.samples[i]
        with Image.open(sample.image) as im:
            image = im.convert("RGB")
        if image.size != (sample.width, sample.height):
            raise DataError(
                f"{sample.image}: the image is {image.size[0]}x{image.size[1]} but was {sample.width}x{sample.height} "
                "when the data set was read; was it changed?"
            )
        width, height = self.scaled_size(i)
        x = F.to_dtype(F.pil_to_tensor(image), torch.float32, scale=True)
        x = F.resize(x, [height, width], antialias=True).clamp_(0.0, 1.0)
        boxes = torch.tensor([[b.x1, b.y1, b.x2, b.y2] for b in sample.boxes], dtype=torch.float32).reshape(-1, 4)
        boxes *= torch.tensor([width / sample.width, height / sample.height] * 2)
        labels = torch.tensor([b.label for b in sample.boxes], dtype=torch.int64)
        if self.augment:
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
                boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
            x = self._jitter(x)
        return x.contiguous(), {"boxes": boxes, "labels": labels}


def collate(batch: list[tuple[Any, dict[str, Any]]]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Detection batches keep images (of different sizes) and targets as lists."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
