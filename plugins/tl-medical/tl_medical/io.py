"""Reading medical images into NumPy: DICOM files and series, NIfTI volumes, PNG/JPEG; CT windows.

:func:`read_image` returns ``(array, spacing)``: a float32 array of shape ``(H, W)`` for a 2D image or
``(D, H, W)`` for a volume, and the voxel spacing along the same axes (millimetres where the file says, else 1.0).
A file that cannot be read raises :class:`UnreadableImage` with a short reason (truncated file, unsupported
transfer syntax or missing codec, not a medical image, ...); the data readers skip and count such files.

Orientation rule (the same for DICOM and NIfTI, so a CT volume reads alike from either format):

* a DICOM series is stacked with slices sorted by their position along the slice normal (for axial slices this is
  ``ImagePositionPatient[2]``, inferior to superior), falling back to ``InstanceNumber``, then the file name; rows
  and columns stay as stored (for an axial CT: anterior at the top, the patient's right on the left);
* a NIfTI volume is reoriented to the closest canonical RAS+ orientation, transposed from nibabel's ``(X, Y, Z)``
  to ``(Z, Y, X)`` so that depth comes first (inferior to superior), and rows and columns are flipped so that an
  axial slice looks like the DICOM one (anterior at the top, the patient's right on the left).

Singleton axes are dropped: a 3D NIfTI with one slice is a 2D image. CT pixel values become Hounsfield units
(``RescaleSlope``/``RescaleIntercept`` applied); RGB images become grayscale (ITU-R 601 luma, as PIL's ``"L"``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "soft-tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
"""CT windows as ``(level, width)`` in Hounsfield units."""

PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class UnreadableImage(Exception):
    """An image file that cannot be read; ``str(exc)`` is a short human reason."""


def window_range(name: str) -> tuple[float, float]:
    """``(low, high)`` HU bounds of the CT window ``name``; an unknown name raises ``ValueError``."""
    if name not in WINDOWS:
        raise ValueError(f"unknown CT window {name!r}; known: {', '.join(WINDOWS)}")
    level, width = WINDOWS[name]
    return level - width / 2, level + width / 2


def apply_window(array: np.ndarray, name: str) -> np.ndarray:
    """Map Hounsfield units to [0, 1] with the CT window ``name``: ``level - width/2`` -> 0, ``level + width/2``
    -> 1, clipped outside."""
    low, high = window_range(name)
    out = (np.asarray(array, dtype=np.float32) - low) / (high - low)
    return np.clip(out, 0.0, 1.0)


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def image_stem(path: Path) -> str:
    """The file name without its image extension (``case1.nii.gz`` -> ``case1``); a folder's own name."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read one image: a DICOM file, a folder holding a DICOM series, a NIfTI file or a PNG/JPEG.

    Returns a float32 array, ``(H, W)`` or ``(D, H, W)``, and the spacing along its axes. Raises
    :class:`UnreadableImage` with the reason when the file cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        array, spacing = _read_dicom_series(path)
    elif not path.exists():
        raise UnreadableImage("file does not exist")
    elif is_nifti(path):
        array, spacing = _read_nifti(path)
    elif path.suffix.lower() in PIL_SUFFIXES:
        array, spacing = _read_pil(path)
    elif path.suffix.lower() == ".dcm":
        array, spacing = _read_dicom(path, force=True)
    else:
        array, spacing = _read_other(path)
    return _squeeze(array, spacing, path)


def _squeeze(array: np.ndarray, spacing: tuple[float, ...], path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    keep = [i for i, n in enumerate(array.shape) if n > 1]
    if len(keep) < 2:
        raise UnreadableImage(f"not an image: shape {tuple(array.shape)} has fewer than two axes longer than 1")
    if len(keep) > 3:
        raise UnreadableImage(f"{len(keep)}D data not supported (shape {tuple(array.shape)})")
    array = array.reshape([array.shape[i] for i in keep])
    spacing = tuple(float(spacing[i]) for i in keep)
    if not np.isfinite(array).all():
        array = np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(array, dtype=np.float32), spacing


# ---------------------------------------------------------------- PNG / JPEG


def _read_pil(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    from PIL import Image

    from tl_core.api import image_failure

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "I", "F") or im.mode.startswith("I;16"):
                array = np.asarray(im, dtype=np.float32)
            else:
                array = np.asarray(im.convert("L"), dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - see tl_core.api.image_failure
        reason = image_failure(exc)
        if reason.startswith("cannot be decoded"):
            reason = f"truncated or corrupt image ({_short(exc)})"
        raise UnreadableImage(reason) from None
    return array, (1.0,) * array.ndim


def _read_other(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """No known extension: DICOM when it has the DICM preamble, else anything PIL reads."""
    from pydicom.misc import is_dicom

    try:
        dicom = is_dicom(path)
    except OSError as exc:
        raise UnreadableImage(f"cannot be opened ({_short(exc)})") from None
    if dicom:
        return _read_dicom(path, force=False)
    try:
        return _read_pil(path)
    except UnreadableImage:
        raise UnreadableImage("not a medical image: expected DICOM, NIfTI (.nii, .nii.gz), PNG or JPEG") from None


# ---------------------------------------------------------------- NIfTI


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many kinds for a bad header
        raise UnreadableImage(f"not a readable NIfTI file ({_short(exc)})") from None
    shape = image.shape
    if len(shape) > 3 and any(n > 1 for n in shape[3:]):
        raise UnreadableImage(f"4D NIfTI not supported (shape {tuple(shape)}); give one 3D volume per file")
    try:
        if len(shape) > 3:
            image = image.slicer[(slice(None),) * 3 + (0,) * (len(shape) - 3)]
        data = image.get_fdata(dtype=np.float32)
        if data.ndim == 2:
            data = data[..., None]
        canonical = nib.as_closest_canonical(nib.Nifti1Image(data, image.affine))
        data = np.asarray(canonical.dataobj, dtype=np.float32)
        zooms = tuple(round(float(z), 6) for z in canonical.header.get_zooms()[:3])  # float32 -> 0.7, not 0.69999
    except Exception as exc:  # truncated data raises OSError/EOFError/ValueError/zlib.error
        raise UnreadableImage(f"truncated or corrupt NIfTI data ({_short(exc)})") from None
    # (X, Y, Z) in RAS+ -> (Z, Y, X), then rows/columns flipped: anterior at the top, patient's right on the left
    data = data.transpose(2, 1, 0)[:, ::-1, ::-1]
    return data, (zooms[2], zooms[1], zooms[0])


# ---------------------------------------------------------------- DICOM


def _dcmread(path: Path, force: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), force=force)
    except InvalidDicomError:
        raise UnreadableImage("not a DICOM file (no DICM header)") from None
    except (EOFError, OSError) as exc:
        raise UnreadableImage(f"truncated DICOM file ({_short(exc)})") from None
    except Exception as exc:  # pydicom raises assorted errors for a damaged header
        raise UnreadableImage(f"corrupt DICOM header ({_short(exc)})") from None


def _transfer_syntax(ds) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "unknown"
    return getattr(uid, "name", None) or str(uid)


def _pixels(ds) -> np.ndarray:
    """Decoded pixels of a DICOM dataset, rescaled to modality units (HU for CT), grayscale, float32."""
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise UnreadableImage("DICOM file has no pixel data (not an image object)")
    try:
        raw = ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError):
        raise UnreadableImage(
            f"unsupported transfer syntax {_transfer_syntax(ds)!r}: no installed codec decodes it "
            "(install pylibjpeg[all] or python-gdcm, or convert the file)"
        ) from None
    except ValueError as exc:
        if "less than expected" in str(exc) or "truncat" in str(exc).lower():
            raise UnreadableImage("truncated: the pixel data is shorter than its header says") from None
        raise UnreadableImage(f"pixel data cannot be decoded ({_short(exc)})") from None
    except Exception as exc:  # a damaged element, an odd photometric interpretation, ...
        raise UnreadableImage(f"pixel data cannot be decoded ({_short(exc)})") from None
    array = np.asarray(raw, dtype=np.float32)
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
        array = array[..., :3] @ _LUMA  # (..., H, W, 3) -> (..., H, W)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    array = array * np.float32(slope) + np.float32(intercept)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        array = array.max() + array.min() - array  # low values are white: invert, so bright means dense
    return array


def _pixel_spacing(ds) -> tuple[float, float]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) >= 2:
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if row > 0 and col > 0:
                return row, col
    return 1.0, 1.0


def _slice_spacing(ds) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = float(ds.get(keyword) or 0)
        except (TypeError, ValueError):
            continue
        if value > 0:
            return value
    return 1.0


def _read_dicom(path: Path, force: bool) -> tuple[np.ndarray, tuple[float, ...]]:
    ds = _dcmread(path, force)
    array = _pixels(ds)
    row, col = _pixel_spacing(ds)
    if array.ndim == 3:  # multi-frame: (frames, H, W)
        return array, (_slice_spacing(ds), row, col)
    return array, (row, col)


def _slice_position(ds) -> float | None:
    position = ds.get("ImagePositionPatient")
    if position is None or len(position) != 3:
        return None
    try:
        position = np.array([float(v) for v in position])
        orientation = ds.get("ImageOrientationPatient")
        if orientation is not None and len(orientation) == 6:
            o = np.array([float(v) for v in orientation])
            normal = np.cross(o[:3], o[3:])
            if np.linalg.norm(normal) > 0.5:
                return float(position @ normal)
        return float(position[2])
    except (TypeError, ValueError):
        return None


def _read_dicom_series(folder: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != "DICOMDIR")
    if not files:
        raise UnreadableImage("empty folder: a DICOM series folder holds one file per slice")
    slices = []
    for file in files:
        try:
            ds = _dcmread(file, force=file.suffix.lower() == ".dcm")
            pixels = _pixels(ds)
        except UnreadableImage as exc:
            raise UnreadableImage(f"slice {file.name}: {exc}") from None
        if pixels.ndim != 2:
            raise UnreadableImage(f"slice {file.name} is not a single 2D frame (shape {pixels.shape})")
        slices.append((file, ds, pixels))
    shapes = {s[2].shape for s in slices}
    if len(shapes) > 1:
        raise UnreadableImage(f"slices of different sizes {sorted(shapes)}; a series folder holds one series")
    series = {str(s[1].get("SeriesInstanceUID", "")) for s in slices}
    if len(series) > 1:
        raise UnreadableImage(f"{len(series)} different SeriesInstanceUIDs; put each series in its own folder")
    positions = [_slice_position(ds) for _, ds, _ in slices]
    numbers = [ds.get("InstanceNumber") for _, ds, _ in slices]
    if all(p is not None for p in positions):
        order = sorted(range(len(slices)), key=lambda i: (positions[i], slices[i][0].name))
    elif all(n is not None for n in numbers):
        order = sorted(range(len(slices)), key=lambda i: (int(numbers[i]), slices[i][0].name))
    else:
        order = list(range(len(slices)))
    volume = np.stack([slices[i][2] for i in order])
    row, col = _pixel_spacing(slices[0][1])
    depth = 0.0
    if len(order) > 1 and all(p is not None for p in positions):
        gaps = np.diff([positions[i] for i in order])
        depth = float(np.median(np.abs(gaps)))
    return volume, (depth if depth > 0 else _slice_spacing(slices[0][1]), row, col)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 100 else text[:97] + "..."
