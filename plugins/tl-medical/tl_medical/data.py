"""Medical data sets: class-per-folder and CSV manifests of DICOM, NIfTI and PNG/JPEG files, DICOM series as
volumes, and segmentation pairs (image + mask); MONAI preprocessing and augmentation.

Reading mirrors the core's image readers: every file is read once to check that it decodes and that it has the
dimensionality the recipe expects (``data.options.spatial_dims``); a file that cannot be read (unsupported transfer
syntax, missing codec, truncated) and a CSV row naming a missing file are skipped, counted and named
(``"path: reason"``) - or, with ``data.strict: true``, an error. So is a file whose header does not hold together
(a DICOM tag that is not a number, pixel data of the wrong length, a DICOM series with a missing or duplicate
slice: see :mod:`tl_medical.io`). Everything else that is wrong (a volume where a 2D image is expected or the
reverse, an image and mask of different shapes, a label outside the class list, a ``positive_class`` that names
no class, an empty data set, a class without readable images) is a :class:`~tl_core.api.DataError` naming the
file and the fix.

Classes: ``data.options.classes`` when given (its order is the label order), else the sorted class folder names
(or CSV labels), as the core's ``image-folder`` format does. ``data.options.positive_class`` names the class that
the binary metrics score (default: the last class).

``read(config, seed)`` of the data formats returns a :class:`MedicalData`: the core's
:class:`~tl_core.api.ClassificationData` (train/val/test :class:`MedicalSamples`, classes, skipped) plus the
validated :class:`MedicalOptions` as ``.options``. :class:`MedicalDataset` turns samples into tensors.

NumPy, torch and MONAI are imported only inside functions, so registering the formats stays light.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tl_core.api import (
    ClassificationData,
    DataError,
    Samples,
    beside,
    csv_records,
    did_you_mean,
    format_options,
    random_split,
    require_every_class,
    stratified_split,
)

if TYPE_CHECKING:
    import numpy as np

    from tl_core.api import DataConfig

_NOT_DICOM = (".nii", ".nii.gz", ".png", ".jpg", ".jpeg")


class MedicalOptions(BaseModel):
    """``data.options`` of the medical data formats."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    spatial_dims: Literal[2, 3] = Field(2, description="2: images (H, W); 3: volumes (D, H, W)")
    size: int = Field(64, ge=4, description="size along every spatial axis after resizing (data.image_size wins)")
    window: Literal["lung", "soft-tissue", "bone", "brain"] | None = Field(
        None, description="CT window mapping Hounsfield units to [0, 1]; none: min-max scale each image"
    )
    spacing: tuple[float, ...] | None = Field(
        None, description="resample to this voxel spacing (mm, array axis order: (H, W) or (D, H, W)) first"
    )
    classes: list[str] | None = Field(
        None, description="fixed class list (its order is the label order); none: the sorted class folder names "
        "(or CSV labels); segmentation: names of mask values"
    )
    positive_class: str | None = Field(
        None, description="the class that sensitivity, specificity and ROC AUC score as positive (with more than "
        "two classes: that class against the rest); none: the last class"
    )
    voi_lut: bool = Field(
        False, description="2D DICOM only: apply the file's own VOI LUT or window after the modality LUT (for "
        "radiographs whose stored values have no unit); off: modality values (CT: Hounsfield units)"
    )
    channels: int = Field(1, ge=1, description="image channels after loading (grayscale repeated)")
    threshold: float = Field(
        0.5, gt=0.0, lt=1.0, description="decision threshold on the positive class's probability (sensitivity, "
        "specificity); not used by the data layer, read by the metrics"
    )

    @field_validator("spacing")
    @classmethod
    def _spacing(cls, value: tuple[float, ...] | None, info: Any) -> tuple[float, ...] | None:
        if value is None:
            return None
        dims = info.data.get("spatial_dims", 2)
        if len(value) != dims:
            raise ValueError(f"give one spacing per spatial axis ({dims} values for spatial_dims {dims})")
        if any(v <= 0 for v in value):
            raise ValueError("spacings must be positive (millimetres)")
        return tuple(float(v) for v in value)

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) < 2:
            raise ValueError("list at least two classes")
        if len(set(value)) != len(value) or not all(value):
            raise ValueError("class names must be unique and non-empty")
        return value

    @field_validator("positive_class")
    @classmethod
    def _positive(cls, value: str | None, info: Any) -> str | None:
        problem = positive_problem(value, info.data.get("classes") or [value])
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("voi_lut")
    @classmethod
    def _voi_lut(cls, value: bool, info: Any) -> bool:
        if value and info.data.get("spatial_dims", 2) != 2:
            raise ValueError("applies to 2D images only: the slices of a volume stay in modality units (CT: "
                             "Hounsfield units) so that they are all scaled alike; set voi_lut: false")
        return value


def positive_problem(positive: str | None, classes: list[str]) -> str | None:
    """What is wrong with ``data.options.positive_class`` for ``classes`` (and the fix), or ``None``."""
    if positive is None or positive in classes:
        return None
    return (
        f"{positive!r} is not one of the classes ({', '.join(classes)}){did_you_mean(positive, classes)}; set it to "
        f"one of them, or leave it out to make the last class ({classes[-1]!r}) the positive one"
    )


def as_options(options: MedicalOptions | dict[str, Any] | None) -> MedicalOptions:
    """``MedicalOptions`` from a validated model, a ``data.options`` mapping, or ``None`` (the defaults)."""
    return format_options(MedicalOptions, options)


# ---------------------------------------------------------------- samples


@dataclass
class MedicalSamples(Samples):
    """Readable medical images (a file, or a folder holding a DICOM series) with integer labels, or - for
    segmentation - with ``masks`` (``labels`` empty, ``classes`` the names of the mask values)."""

    masks: list[Path] = field(default_factory=list)
    spatial_dims: int = 2

    @property
    def is_segmentation(self) -> bool:
        return bool(self.masks)

    def subset(self, indices: list[int]) -> MedicalSamples:
        return MedicalSamples(
            [self.paths[i] for i in indices],
            [self.labels[i] for i in indices] if self.labels else [],
            self.classes,
            masks=[self.masks[i] for i in indices] if self.masks else [],
            spatial_dims=self.spatial_dims,
        )

    def fingerprint(self) -> str:
        """A hash of the file contents (series folders and masks included) and labels."""
        digest = hashlib.sha256()
        digest.update(f"{self.spatial_dims}\0".encode())
        for i, path in enumerate(self.paths):
            digest.update(f"{self.labels[i] if self.labels else ''}\0".encode())
            digest.update(_content_hash(path))
            if self.masks:
                digest.update(_content_hash(self.masks[i]))
        return digest.hexdigest()


def _content_hash(path: Path) -> bytes:
    if path.is_dir():
        digest = hashlib.sha256()
        for file in sorted(p for p in path.iterdir() if p.is_file()):
            digest.update(file.name.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
        return digest.digest()
    return hashlib.sha256(path.read_bytes()).digest()


@dataclass
class MedicalData(ClassificationData):
    """The core's train/val/test splits (of :class:`MedicalSamples`) plus the validated ``data.options``."""

    options: MedicalOptions = field(default_factory=MedicalOptions)

    @property
    def is_segmentation(self) -> bool:
        return isinstance(self.train, MedicalSamples) and self.train.is_segmentation

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "options": self.options.model_dump(mode="json")}


# ---------------------------------------------------------------- checks shared by the readers


def _skip(path: Path, reason: str, strict: bool, skipped: list[str]) -> None:
    if strict:
        raise DataError(f"{path}: {reason}; remove it, or set data.strict: false to skip such files")
    skipped.append(f"{path}: {reason}")


def _read_checked(path: Path, dims: int, voi_lut: bool = False) -> np.ndarray:
    """Read ``path``; a wrong dimensionality is a DataError, an unreadable file raises ``UnreadableImage``."""
    from tl_medical.io import read_image

    array, _ = read_image(path, voi_lut=voi_lut)
    if array.ndim != dims:
        raise DataError(_dims_message(path, array.shape, dims))
    return array


def _dims_message(path: Path, shape: tuple[int, ...], dims: int) -> str:
    if dims == 2:
        return (
            f"{path}: a 3D volume (shape {tuple(shape)}) where 2D images are expected; set "
            "data.options.spatial_dims: 3 to train on volumes, or give 2D images"
        )
    return (
        f"{path}: a 2D image (shape {tuple(shape)}) where 3D volumes are expected; set "
        "data.options.spatial_dims: 2 to train on images, or give volumes (NIfTI files or one folder per DICOM series)"
    )


def _check_classification(
    rows: list[tuple[Path, str]], strict: bool, classes: list[str], opts: MedicalOptions, origin: str
) -> MedicalSamples:
    from tl_medical.io import UnreadableImage

    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    skipped: list[str] = []
    for path, label in rows:
        try:
            _read_checked(path, opts.spatial_dims, opts.voi_lut)
        except UnreadableImage as exc:
            _skip(path, str(exc), strict, skipped)
            continue
        paths.append(path)
        labels.append(index[label])
    if not paths:
        raise DataError(f"{origin}: no readable images" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return MedicalSamples(paths, labels, classes, skipped, spatial_dims=opts.spatial_dims)


def _unknown_labels(origin: str, unknown: list[str], classes: list[str], fixed_by_run: bool, what: str) -> DataError:
    if fixed_by_run:
        return DataError(f"{origin}: {what} {unknown} were not in the training data ({', '.join(classes)})")
    return DataError(
        f"{origin}: {what} {unknown} are not in data.options.classes ({', '.join(classes)}); "
        "add them to data.options.classes or remove them from the data"
    )


def _fixed_classes(classes: list[str] | None, opts: MedicalOptions) -> list[str] | None:
    return classes if classes is not None else opts.classes


def _require_positive(opts: MedicalOptions, classes: list[str], origin: str) -> None:
    """``data.options.positive_class`` names one of the classes the data has (checked before any image is read)."""
    problem = positive_problem(opts.positive_class, classes)
    if problem:
        raise DataError(f"{origin}: data.options.positive_class {problem}")


# ---------------------------------------------------------------- classification readers


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _entries(folder: Path, dims: int) -> list[Path]:
    """The images of one class folder: every file (2D); for 3D also every sub-folder holding DICOM files (a series,
    one volume), whose files are its slices."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and _visible(p, folder))
    if dims == 2:
        return files
    series = sorted(
        {
            f.parent
            for f in files
            if f.parent != folder and not f.name.lower().endswith(_NOT_DICOM) and f.name != "DICOMDIR"
        }
    )
    entries = [f for f in files if f.parent not in series] + series
    return sorted(entries)


def read_medical_folder(
    path: str, strict: bool = False, classes: list[str] | None = None,
    options: MedicalOptions | dict[str, Any] | None = None,
) -> MedicalSamples:
    """Read ``path/<class>/<image>``. For 2D every file below a class folder is one image (slices of a series too);
    for 3D an image is a NIfTI or multi-frame DICOM file, or a sub-folder holding the files of one DICOM series.
    ``classes`` (for a test set) fixes the class list; else ``options.classes``, else the sorted folder names."""
    opts = as_options(options)
    root = Path(path)
    if not root.is_dir():
        raise DataError(
            f"data path {path} does not exist or is not a folder; set data.path to a folder of class folders"
        )
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{path}: no class sub-folders; a medical folder holds one sub-folder of images per class")
    fixed = _fixed_classes(classes, opts)
    if fixed is not None:
        unknown = [f.name for f in folders if f.name not in fixed]
        if unknown:
            raise _unknown_labels(str(path), unknown, fixed, classes is not None, "class folders")
    rows: list[tuple[Path, str]] = []
    for folder in folders:
        entries = _entries(folder, opts.spatial_dims)
        if not entries and classes is None:
            raise DataError(f"class {folder.name!r} has no images (folder {folder} is empty); add images or remove it")
        rows.extend((e, folder.name) for e in entries)
    names = fixed or [f.name for f in folders]  # sorted, as the core's image-folder format
    _require_positive(opts, names, str(path))
    samples = _check_classification(rows, strict, names, opts, str(path))
    if classes is None:
        require_every_class(samples, str(path))
    return samples


def read_medical_csv(
    path: str, strict: bool = False, classes: list[str] | None = None,
    options: MedicalOptions | dict[str, Any] | None = None,
) -> MedicalSamples:
    """Read a CSV with ``path`` and ``label`` columns (a path names a file or a DICOM series folder; relative paths
    are relative to the CSV's folder). A row naming a missing file is skipped and counted (an error when strict)."""
    opts = as_options(options)
    rows = [(beside(path, r["path"]), r["label"]) for r in csv_records(path, ("path", "label"), "images")]
    fixed = _fixed_classes(classes, opts)
    if fixed is not None:
        unknown = sorted({label for _, label in rows} - set(fixed))
        if unknown:
            raise _unknown_labels(str(path), unknown, fixed, classes is not None, "labels")
    names = fixed or sorted({label for _, label in rows})
    _require_positive(opts, names, str(path))
    samples = _check_classification(rows, strict, names, opts, str(path))
    if classes is None:
        require_every_class(samples, str(path))
    return samples


# ---------------------------------------------------------------- segmentation reader


def _pairs_from_folder(root: Path, strict: bool, skipped: list[str]) -> list[tuple[Path, Path]]:
    from tl_medical.io import image_stem

    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise DataError(
            f"{root}: a segmentation folder holds 'images/' and 'masks/' (masks named like their images); "
            "or set data.path to a CSV with image,mask columns"
        )

    def listing(folder: Path) -> dict[str, Path]:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        by_stem: dict[str, Path] = {}
        for entry in entries:
            stem = image_stem(entry)
            if stem in by_stem:
                raise DataError(f"{entry} and {by_stem[stem]} have the same name; masks are matched by name")
            by_stem[stem] = entry
        return by_stem

    images, masks = listing(images_dir), listing(masks_dir)
    pairs: list[tuple[Path, Path]] = []
    for stem, image in images.items():
        if stem in masks:
            pairs.append((image, masks[stem]))
        else:
            _skip(image, f"no mask named like it in {masks_dir}", strict, skipped)
    for stem, mask in masks.items():
        if stem not in images:
            _skip(mask, f"a mask without an image named like it in {images_dir}", strict, skipped)
    return pairs


def _pairs_from_csv(file: Path, strict: bool, skipped: list[str]) -> list[tuple[Path, Path]]:
    return [(beside(file, r["image"]), beside(file, r["mask"]))
            for r in csv_records(file, ("image", "mask"), "image,mask pairs")]


def _mask_names(n_values: int) -> list[str]:
    if n_values <= 2:
        return ["background", "foreground"]
    return ["background"] + [f"class_{i}" for i in range(1, n_values)]


def read_segmentation(
    path: str, strict: bool = False, classes: list[str] | None = None,
    options: MedicalOptions | dict[str, Any] | None = None,
) -> MedicalSamples:
    """Read image/mask pairs: a folder with ``images/`` and ``masks/`` (matched by name without extension, so
    ``images/case1.dcm`` or a series folder ``images/case1/`` pairs with ``masks/case1.nii.gz``) or a CSV with
    ``image`` and ``mask`` columns. Masks hold class indices (0 = background). ``classes`` names the mask values:
    the argument (a test set), else ``options.classes``, else ``background, foreground`` (or ``class_<i>``)."""
    import numpy as np

    from tl_medical.io import UnreadableImage, read_image

    opts = as_options(options)
    if opts.positive_class is not None:
        raise DataError(
            f"data.options.positive_class ({opts.positive_class!r}) is for classification; segmentation scores every "
            "foreground class (Dice, Hausdorff distance): remove it"
        )
    source = Path(path)
    skipped: list[str] = []
    if source.is_dir():
        pairs = _pairs_from_folder(source, strict, skipped)
    elif source.is_file():
        pairs = _pairs_from_csv(source, strict, skipped)
    else:
        raise DataError(
            f"data path {path} does not exist; set data.path to a folder with images/ and masks/ or a CSV of "
            "image,mask rows"
        )
    fixed = _fixed_classes(classes, opts)
    images: list[Path] = []
    masks: list[Path] = []
    highest, highest_mask = 0, Path(path)
    for image_path, mask_path in pairs:
        try:
            image = _read_checked(image_path, opts.spatial_dims, opts.voi_lut)
        except UnreadableImage as exc:
            _skip(image_path, str(exc), strict, skipped)
            continue
        try:
            mask, _ = read_image(mask_path)
        except UnreadableImage as exc:
            _skip(mask_path, f"mask of {image_path.name}: {exc}", strict, skipped)
            continue
        if mask.shape != image.shape:
            raise DataError(
                f"image {image_path} has shape {tuple(image.shape)} but its mask {mask_path} has shape "
                f"{tuple(mask.shape)}; a mask must have its image's shape"
            )
        values = np.unique(mask)
        if (values != np.round(values)).any() or values.min() < 0:
            raise DataError(
                f"{mask_path}: mask values must be whole class indices (0 = background), found "
                f"{values[:5].tolist()}; save masks as integers, not interpolated"
            )
        top = int(values.max())
        if fixed is not None and top >= len(fixed):
            hint = " (a 0/255 mask must be saved as 0/1)" if top == 255 else ""
            raise DataError(
                f"{mask_path}: mask value {top} is outside the class list ({', '.join(fixed)}: values 0.."
                f"{len(fixed) - 1}){hint}; fix the mask or set data.options.classes"
            )
        if top > highest:
            highest, highest_mask = top, mask_path
        images.append(image_path)
        masks.append(mask_path)
    if not images:
        raise DataError(f"{path}: no readable image/mask pairs" + (f" ({len(skipped)} skipped)" if skipped else ""))
    if classes is None and highest == 0:
        raise DataError(f"{path}: every mask is empty (all background); segmentation needs masks with objects")
    if fixed is None and highest == 255:
        raise DataError(
            f"{highest_mask}: mask value 255; masks hold class indices (0 = background, 1 = first class), so save a "
            "0/255 mask as 0/1, or list the classes in data.options.classes"
        )
    names = fixed if fixed is not None else _mask_names(highest + 1)
    return MedicalSamples(images, [], names, skipped, masks=masks, spatial_dims=opts.spatial_dims)


# ---------------------------------------------------------------- read(config, seed)


def load_medical(config: DataConfig, seed: int, reader: Any, segmentation: bool = False) -> MedicalData:
    """Read ``config.path`` (and ``config.test_path``) with ``reader`` and ``config.options``; split off a val set
    (stratified for classification, random for segmentation). ``data.image_size``, when set, overrides
    ``data.options.size``."""
    opts = as_options(config.options)
    if config.image_size is not None and config.image_size != opts.size:
        opts = opts.model_copy(update={"size": config.image_size})
    full = reader(config.path, strict=config.strict, options=opts)
    if segmentation:
        train_idx, val_idx = random_split(len(full), config.val_fraction, seed)
    else:
        train_idx, val_idx = stratified_split(full.labels, config.val_fraction, seed)
    test = None
    if config.test_path:
        test = reader(config.test_path, strict=config.strict, classes=full.classes, options=opts)
    return MedicalData(
        train=full.subset(train_idx),
        val=full.subset(val_idx) if val_idx else None,
        test=test,
        classes=full.classes,
        skipped=full.skipped + (test.skipped if test else []),
        options=opts,
    )


def read_folder_data(config: DataConfig, seed: int) -> MedicalData:
    return load_medical(config, seed, read_medical_folder)


def read_csv_data(config: DataConfig, seed: int) -> MedicalData:
    return load_medical(config, seed, read_medical_csv)


def read_segmentation_data(config: DataConfig, seed: int) -> MedicalData:
    return load_medical(config, seed, read_segmentation, segmentation=True)


# ---------------------------------------------------------------- torch side


def build_transforms(options: MedicalOptions, augment: bool, segmentation: bool) -> Any:
    """The MONAI dictionary pipeline (keys ``image`` and, for segmentation, ``label``): resample to
    ``options.spacing``, map intensities to [0, 1] (a CT window, or min-max), resize to ``options.size`` per
    axis; with ``augment``, a random left-right flip, 90-degree rotation, small affine (all applied alike to image
    and mask; masks by nearest neighbour) and Gaussian noise (image only)."""
    import numpy as np
    from monai import transforms as mt

    from tl_medical.io import window_range

    dims = options.spatial_dims
    keys = ["image", "label"] if segmentation else ["image"]
    smooth = "bilinear" if dims == 2 else "trilinear"

    def per_key(image: Any, label: Any) -> list[Any]:
        return [image, label][: len(keys)]

    steps: list[Any] = []
    if options.spacing is not None:
        steps.append(mt.Spacingd(keys, pixdim=options.spacing, mode=per_key("bilinear", "nearest"), dtype=np.float32))
    if options.window is not None:
        low, high = window_range(options.window)
        steps.append(mt.ScaleIntensityRanged("image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True))
    else:
        steps.append(mt.ScaleIntensityd("image", minv=0.0, maxv=1.0))
    steps.append(
        mt.Resized(keys, spatial_size=(options.size,) * dims, mode=per_key(smooth, "nearest"),
                   anti_aliasing=per_key(True, False))
    )
    if augment:
        steps += [
            mt.RandFlipd(keys, prob=0.5, spatial_axis=dims - 1),
            mt.RandRotate90d(keys, prob=0.25, max_k=3, spatial_axes=(dims - 2, dims - 1)),
            mt.RandAffined(
                keys, prob=0.5, rotate_range=(0.15,) * (1 if dims == 2 else 3), scale_range=(0.1,) * dims,
                translate_range=(0.05 * options.size,) * dims, mode=per_key("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            mt.RandGaussianNoised("image", prob=0.3, mean=0.0, std=0.03),
        ]
    return mt.Compose(steps)


class MedicalDataset:
    """A map-style dataset of ``(image, target)``: the image a float32 tensor ``(channels, size, size[, size])``
    scaled to [0, 1]; the target the class index, or for segmentation a long mask ``(size, size[, size])``.

    With ``augment`` the random transforms are re-seeded from torch's global RNG for every item, so a run seeded
    by the trainer (``torch.manual_seed`` per epoch) augments the same way every time; without, it is
    deterministic and draws nothing from any RNG.
    """

    def __init__(self, samples: MedicalSamples, options: MedicalOptions | dict[str, Any] | None, augment: bool) -> None:
        self.samples = samples
        self.options = as_options(options)
        self.augment = augment
        self.segmentation = bool(getattr(samples, "masks", None))
        self.transform = build_transforms(self.options, augment, self.segmentation)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: Path, mask: bool = False) -> tuple[Any, tuple[float, ...]]:
        from tl_medical.io import UnreadableImage, read_image

        try:
            array, spacing = read_image(path, voi_lut=self.options.voi_lut and not mask)
        except UnreadableImage as exc:
            raise DataError(f"{path}: {exc} (it was readable when the data set was read; was it changed?)") from None
        if array.ndim != self.options.spatial_dims:
            raise DataError(_dims_message(path, array.shape, self.options.spatial_dims))
        return array, spacing

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        import numpy as np
        import torch
        from monai.data import MetaTensor

        image, spacing = self._load(self.samples.paths[i])
        affine = torch.from_numpy(np.diag([*spacing, 1.0] + [1.0] * (3 - len(spacing))))
        item = {"image": MetaTensor(torch.from_numpy(image[None].copy()), affine=affine)}
        if self.segmentation:
            mask, _ = self._load(self.samples.masks[i], mask=True)
            item["label"] = MetaTensor(torch.from_numpy(mask[None].copy()), affine=affine.clone())
        if self.augment:
            self.transform.set_random_state(seed=int(torch.randint(0, 2**31 - 1, ()).item()))
        out = self.transform(item)
        x = torch.as_tensor(out["image"].as_tensor(), dtype=torch.float32).contiguous()
        if self.options.channels > 1:
            x = x.repeat(self.options.channels, *([1] * self.options.spatial_dims))
        if self.segmentation:
            return x, out["label"].as_tensor()[0].round().long()
        return x, self.samples.labels[i]
