"""Reading medical images into NumPy: DICOM files and series, NIfTI volumes, PNG/JPEG; CT windows.

:func:`read_image` returns ``(array, spacing)``: a float32 array of shape ``(H, W)`` for a 2D image or
``(D, H, W)`` for a volume, and the voxel spacing along the same axes (millimetres where the file says, else 1.0).
A file that cannot be read raises :class:`UnreadableImage` with a short reason (truncated file, unsupported
transfer syntax or missing codec, not a medical image, ...); the data readers skip and count such files.

Orientation rule (the same for DICOM and NIfTI, so a CT volume reads alike from either format):

* a DICOM series is stacked with slices sorted by their position along the slice normal (for axial slices this is
  ``ImagePositionPatient[2]``, inferior to superior), falling back to ``InstanceNumber``; never by file name. A
  series whose slices cannot be stacked faithfully - a missing slice (a step over 1.5 times the median spacing,
  or a gap in the instance numbers), two slices at one position, slices of other sizes or orientations - is
  unreadable, naming the slices; rows and columns stay as stored (for an axial CT: anterior at the top, the
  patient's right on the left);
* a NIfTI volume is reoriented to the closest canonical RAS+ orientation, transposed from nibabel's ``(X, Y, Z)``
  to ``(Z, Y, X)`` so that depth comes first (inferior to superior), and rows and columns are flipped so that an
  axial slice looks like the DICOM one (anterior at the top, the patient's right on the left).

Singleton axes are dropped: a 3D NIfTI with one slice is a 2D image. DICOM pixel values go through pydicom's
modality LUT (CT: Hounsfield units); MONOCHROME1 is inverted over the declared value range, one range per series
(see the DICOM section); RGB images become grayscale (ITU-R 601 luma, as PIL's ``"L"``). Repairs, made silently:
NaN and infinite voxels become 0, a spacing that is missing, zero or not finite is 1.0.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def read_image(path: Path, voi_lut: bool = False) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read one image: a DICOM file, a folder holding a DICOM series, a NIfTI file or a PNG/JPEG.

    Returns a float32 array, ``(H, W)`` or ``(D, H, W)``, and the spacing along its axes. Raises
    :class:`UnreadableImage` with the reason when the file cannot be read - whatever the file holds: a user's file
    is never a traceback. ``voi_lut``: apply a single-frame DICOM file's own VOI LUT or window after the modality
    LUT (see the DICOM section below); other files are unaffected.
    """
    path = Path(path)
    try:
        if path.is_dir():
            array, spacing = _read_dicom_series(path)
        elif not path.exists():
            raise UnreadableImage("file does not exist")
        elif is_nifti(path):
            array, spacing = _read_nifti(path)
        elif path.suffix.lower() in PIL_SUFFIXES:
            array, spacing = _read_pil(path)
        elif path.suffix.lower() == ".dcm":
            array, spacing = _read_dicom(path, force=True, voi_lut=voi_lut)
        else:
            array, spacing = _read_other(path, voi_lut)
        return _squeeze(array, spacing, path)
    except UnreadableImage:
        raise
    except PermissionError:
        raise UnreadableImage("cannot be opened (permission denied)") from None
    except MemoryError:
        raise UnreadableImage("too large to hold in memory (its header declares a huge image)") from None
    except Exception as exc:  # noqa: BLE001 - the libraries raise many kinds for one damaged file
        raise UnreadableImage(f"cannot be read ({type(exc).__name__}: {_short(exc)})") from None


def _squeeze(array: np.ndarray, spacing: tuple[float, ...], path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    if array.size == 0:
        raise UnreadableImage(f"empty image: shape {tuple(array.shape)}")
    keep = [i for i, n in enumerate(array.shape) if n > 1]
    if len(keep) < 2:
        raise UnreadableImage(f"not an image: shape {tuple(array.shape)} has fewer than two axes longer than 1")
    if len(keep) > 3:
        raise UnreadableImage(f"{len(keep)}D data not supported (shape {tuple(array.shape)})")
    array = array.reshape([array.shape[i] for i in keep])
    spacing = tuple(float(spacing[i]) if _length(float(spacing[i])) else 1.0 for i in keep)  # 0, nan: unknown
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


def _read_other(path: Path, voi_lut: bool = False) -> tuple[np.ndarray, tuple[float, ...]]:
    """No known extension: DICOM when it has the DICM preamble, else anything PIL reads."""
    from pydicom.misc import is_dicom

    try:
        dicom = is_dicom(path)
    except OSError as exc:
        raise UnreadableImage(f"cannot be opened ({_short(exc)})") from None
    if dicom:
        return _read_dicom(path, force=False, voi_lut=voi_lut)
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
    if any(n <= 0 for n in shape):
        raise UnreadableImage(f"empty NIfTI volume (shape {tuple(shape)})")
    if not path.name.lower().endswith(".gz"):  # an uncompressed file must hold what its header declares
        offset = int(getattr(image.dataobj, "offset", 0) or image.header.get_data_offset())
        needed = offset + int(np.prod(shape)) * image.header.get_data_dtype().itemsize
        if path.stat().st_size < needed:
            raise UnreadableImage(
                f"truncated NIfTI file: {path.stat().st_size} bytes where its header declares {needed}"
            )
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
        raise UnreadableImage(f"truncated or corrupt NIfTI data or header ({_short(exc)})") from None
    # (X, Y, Z) in RAS+ -> (Z, Y, X), then rows/columns flipped: anterior at the top, patient's right on the left
    data = data.transpose(2, 1, 0)[:, ::-1, ::-1]
    return data, (zooms[2], zooms[1], zooms[0])


# ---------------------------------------------------------------- DICOM
#
# Intensities. The modality LUT (``RescaleSlope``/``RescaleIntercept``, or a Modality LUT Sequence) is applied with
# pydicom's ``apply_modality_lut``: CT comes out in Hounsfield units, which is what the CT windows and MONAI's
# intensity transforms expect, and every slice of a series is scaled by its own header alike. The VOI LUT (the
# file's window centre/width or VOI LUT Sequence, ``apply_voi_lut``) is a display choice that differs between
# files, so it is not applied by default; ``data.options.voi_lut: true`` applies it to 2D images (radiographs
# whose stored values have no physical unit), never to the slices of a volume. MONOCHROME1 (low values shown
# white) is inverted so that bright means dense, over the range of values the header declares (every stored value
# ``BitsStored``/``PixelRepresentation`` allow, through the same LUTs), one range for a whole series: the same
# stored value gives the same output in every slice. Hounsfield units are not inverted: they already say density.


def _dcmread(path: Path, force: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), force=force)
    except InvalidDicomError:
        raise UnreadableImage("not a DICOM file (no DICM header)") from None
    except PermissionError:
        raise UnreadableImage("cannot be opened (permission denied)") from None
    except (EOFError, OSError) as exc:
        raise UnreadableImage(f"truncated DICOM file ({_short(exc)})") from None
    except RecursionError:
        raise UnreadableImage("corrupt DICOM header (sequences nested too deeply to read)") from None
    except Exception as exc:  # pydicom raises assorted errors for a damaged header
        raise UnreadableImage(f"corrupt DICOM header ({_short(exc)})") from None


def _transfer_syntax(ds) -> str:
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None:
        return "unknown"
    return getattr(uid, "name", None) or str(uid)


def _number(ds, keyword: str, default: float | None = None) -> float | None:
    """The numeric element ``keyword`` as a finite float: ``default`` when absent or empty; a value that is not one
    finite number (``'abc'``, ``inf``, two values) raises :class:`UnreadableImage` naming the element."""
    if keyword not in ds:
        return default
    try:
        value = ds[keyword].value
    except Exception as exc:  # noqa: BLE001 - a damaged element: pydicom converts it on access
        raise UnreadableImage(f"{keyword} cannot be read ({_short(exc)})") from None
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnreadableImage(f"{keyword} {_shown(value)} is not a number") from None
    if not math.isfinite(number):
        raise UnreadableImage(f"{keyword} {_shown(value)} is not a finite number")
    return number


def _shown(value: object) -> str:
    text = str(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_rescale(ds) -> None:
    """``RescaleSlope``/``RescaleIntercept`` must be numbers; one given alone gets the other's default (slope 1,
    intercept 0), since pydicom's ``apply_modality_lut`` applies the pair only."""
    slope = _number(ds, "RescaleSlope")
    intercept = _number(ds, "RescaleIntercept")
    if slope == 0:
        raise UnreadableImage("RescaleSlope is 0: every pixel would have the same value")
    if slope is not None and intercept is not None:
        return
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            del ds[keyword]  # present but empty
    if slope is not None or intercept is not None:
        ds.RescaleSlope = slope if slope is not None else 1
        ds.RescaleIntercept = intercept if intercept is not None else 0


def _check_pixel_length(ds) -> None:
    """Uncompressed pixel data must be as long as ``Rows`` x ``Columns`` x samples x frames x ``BitsAllocated``
    say (plus one byte of padding to an even length): more means the header does not describe the pixels (pydicom
    would drop the excess and read the first rows of something else). Shorter is pydicom's 'truncated'."""
    if "PixelData" not in ds:
        return
    value = ds.PixelData
    if not value:
        raise UnreadableImage("the pixel data is empty")
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if uid is None or getattr(uid, "is_compressed", True) or str(ds.get("PhotometricInterpretation", "")).startswith(
            "YBR_FULL_422"):
        return
    try:
        rows, cols = _number(ds, "Rows"), _number(ds, "Columns")
        bits = _number(ds, "BitsAllocated")
        samples = _number(ds, "SamplesPerPixel", 1.0)
        frames = _number(ds, "NumberOfFrames", 1.0) or 1.0
    except UnreadableImage:
        return  # pydicom's decoder names the bad element
    if not rows or not cols or not bits or not samples:
        return
    expected = (int(rows) * int(cols) * int(samples) * int(frames) * int(bits) + 7) // 8
    if len(value) > expected + expected % 2:
        raise UnreadableImage(
            f"the pixel data holds {len(value)} bytes where Rows x Columns x BitsAllocated say {expected}: the "
            "header does not describe the pixels"
        )


def _stored_range(ds) -> tuple[int, int] | None:
    """The stored values the header allows (``BitsStored``, ``PixelRepresentation``), or ``None``."""
    bits = _number(ds, "BitsStored")
    if bits is None or not 1 <= bits <= 32:
        return None
    bits = int(bits)
    if _number(ds, "PixelRepresentation", 0.0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _is_hounsfield(ds) -> bool:
    return str(ds.get("Modality", "")).upper() == "CT" or str(ds.get("RescaleType", "")).upper() == "HU"


def _pixels(ds, voi_lut: bool = False) -> tuple[np.ndarray, tuple[float, float] | None, bool]:
    """Decoded pixels of a DICOM dataset in modality units (HU for CT; with ``voi_lut``, through the file's VOI
    LUT too), grayscale, float32; the range of values its header declares (``None`` when unknown); and whether it
    is MONOCHROME1 to invert (the caller inverts, over one range per file or per series)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise UnreadableImage("DICOM file has no pixel data (not an image object)")
    _check_pixel_length(ds)
    color = (_number(ds, "SamplesPerPixel", 1.0) or 1.0) > 1
    if not color:
        _check_rescale(ds)  # before decoding: a tag that is not a number names itself
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
    if color:
        return np.asarray(raw, dtype=np.float32)[..., :3] @ _LUMA, None, False  # (..., H, W, 3) -> (..., H, W)
    voi = voi_lut and raw.ndim == 2  # a display window per file: single 2D images only

    def lut(values: np.ndarray) -> np.ndarray:
        values = apply_modality_lut(values, ds)
        return apply_voi_lut(values, ds) if voi else values

    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    invert = photometric == "MONOCHROME1" and (voi or not _is_hounsfield(ds))
    stored = _stored_range(ds) if invert and np.issubdtype(raw.dtype, np.integer) else None
    try:
        array = np.asarray(lut(raw), dtype=np.float32)
        declared = None
        if stored is not None:  # every stored value the header allows, through the same LUTs
            low, high = stored
            values = np.arange(low, high + 1) if high - low <= 2**16 else np.array([low, high])
            mapped = lut(values.astype(np.int64))
            declared = (float(np.min(mapped)), float(np.max(mapped)))
    except Exception as exc:  # noqa: BLE001 - a damaged LUT sequence or window
        which = "modality or VOI LUT" if voi else "modality LUT"
        raise UnreadableImage(f"the {which} cannot be applied ({_short(exc)})") from None
    return array, declared, invert


def _inverted(array: np.ndarray, declared: tuple[float, float] | None) -> np.ndarray:
    """MONOCHROME1 made bright-is-dense: ``low + high - value`` over the declared range (else the array's own)."""
    low, high = declared if declared is not None else (float(array.min()), float(array.max()))
    return np.float32(low + high) - array


def _pixel_spacing(ds) -> tuple[float, float]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and not isinstance(value, (str, bytes)) and len(value) >= 2:
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if _length(row) and _length(col):
                return row, col
    return 1.0, 1.0


def _length(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _slice_spacing(ds) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = _number(ds, keyword, 0.0) or 0.0
        except UnreadableImage:
            continue
        if value > 0:
            return value
    return 1.0


def _read_dicom(path: Path, force: bool, voi_lut: bool = False) -> tuple[np.ndarray, tuple[float, ...]]:
    ds = _dcmread(path, force)
    array, declared, invert = _pixels(ds, voi_lut)
    if invert:
        array = _inverted(array, declared)
    row, col = _pixel_spacing(ds)
    if array.ndim == 3:  # multi-frame: (frames, H, W)
        return array, (_slice_spacing(ds), row, col)
    return array, (row, col)


def _vector(ds, keyword: str, n: int) -> np.ndarray | None:
    """``keyword`` as ``n`` finite floats, or ``None`` when absent or not numbers."""
    value = ds.get(keyword)
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        if len(value) != n:
            return None
        vector = np.array([float(v) for v in value])
    except (TypeError, ValueError):
        return None
    return vector if np.isfinite(vector).all() else None


def _normal(orientation: np.ndarray | None) -> np.ndarray | None:
    if orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal) if np.linalg.norm(normal) > 0.5 else None


@dataclass
class _Slice:
    file: Path
    ds: Any
    pixels: np.ndarray
    declared: tuple[float, float] | None
    invert: bool


def _read_dicom_series(folder: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != "DICOMDIR")
    if not files:
        raise UnreadableImage("empty folder: a DICOM series folder holds one file per slice")
    slices: list[_Slice] = []
    for file in files:
        try:
            ds = _dcmread(file, force=file.suffix.lower() == ".dcm")
            pixels, declared, invert = _pixels(ds)
        except UnreadableImage as exc:
            raise UnreadableImage(f"slice {file.name}: {exc}") from None
        if pixels.ndim != 2:
            raise UnreadableImage(f"slice {file.name} is not a single 2D frame (shape {pixels.shape})")
        slices.append(_Slice(file, ds, pixels, declared, invert))
    shapes = Counter(s.pixels.shape for s in slices)
    if len(shapes) > 1:
        common = shapes.most_common(1)[0][0]
        odd = next(s for s in slices if s.pixels.shape != common)
        raise UnreadableImage(
            f"slice {odd.file.name} is {_size(odd.pixels.shape)} where the other slices are {_size(common)}; a "
            "series folder holds the slices of one series"
        )
    series = {str(s.ds.get("SeriesInstanceUID", "")) for s in slices}
    if len(series) > 1:
        raise UnreadableImage(f"{len(series)} different SeriesInstanceUIDs; put each series in its own folder")
    kinds = {str(s.ds.get("PhotometricInterpretation", "")).upper() for s in slices}
    if len(kinds) > 1:
        raise UnreadableImage(f"slices mix photometric interpretations ({', '.join(sorted(kinds))})")
    order, depth = _slice_order(slices)
    volume = np.stack([slices[i].pixels for i in order])
    if slices[0].invert:  # MONOCHROME1: one range for the whole series, never per slice
        declared = [s.declared for s in slices]
        if all(d is not None for d in declared):
            volume = _inverted(volume, (min(d[0] for d in declared), max(d[1] for d in declared)))
        else:
            volume = _inverted(volume, None)
    row, col = _pixel_spacing(slices[0].ds)
    return volume, (depth or _slice_spacing(slices[0].ds), row, col)


def _size(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def _slice_order(slices: list[_Slice]) -> tuple[list[int], float | None]:
    """The stacking order of a series' slices and the spacing between them (``None``: take the header's).

    Sorted by ``ImagePositionPatient`` projected on the slice normal (from the first slice's
    ``ImageOrientationPatient``; the z axis without one), else by ``InstanceNumber``; the file names never decide.
    A series with slices at the same position, a step more than 1.5 times the median spacing (missing slices),
    slices of different orientations, or gaps in the instance numbers is unreadable: stacking it would silently
    put the anatomy in the wrong place."""
    n = len(slices)
    if n == 1:
        return [0], None
    positions = [_vector(s.ds, "ImagePositionPatient", 3) for s in slices]
    if all(p is not None for p in positions):
        orientations = [_vector(s.ds, "ImageOrientationPatient", 6) for s in slices]
        first = orientations[0]
        for s, o in zip(slices, orientations):
            if (o is None) != (first is None) or (o is not None and not np.allclose(o, first, atol=1e-2)):
                raise UnreadableImage(
                    f"slice {s.file.name} has another ImageOrientationPatient than {slices[0].file.name}; a series "
                    "folder holds one stack of parallel slices"
                )
        normal = _normal(first)
        z = [float(p @ normal) if normal is not None else float(p[2]) for p in positions]
        order = sorted(range(n), key=lambda i: (z[i], slices[i].file.name))
        steps = np.diff([z[i] for i in order])
        spacing = float(np.median(steps))
        for k, step in enumerate(steps):
            a, b = slices[order[k]].file.name, slices[order[k + 1]].file.name
            if step < 0.5 * spacing or spacing <= 0:
                raise UnreadableImage(
                    f"slices {a} and {b} are at the same position ({z[order[k]]:g} mm along the slice normal"
                    + (f", {step:g} mm apart where the series' spacing is {spacing:g} mm" if step > 0 else "")
                    + "): a duplicate slice, or two series in one folder"
                )
            if step > 1.5 * spacing:
                missing = max(1, round(step / spacing) - 1)
                raise UnreadableImage(
                    f"{'a slice is' if missing == 1 else f'{missing} slices are'} missing between {a} and {b} "
                    f"({step:g} mm apart where the series' spacing is {spacing:g} mm); add the missing "
                    f"slice{'' if missing == 1 else 's'}, or remove the series"
                )
        return order, spacing
    numbers: list[float | None] = []
    for s in slices:
        try:
            numbers.append(_number(s.ds, "InstanceNumber"))
        except UnreadableImage:
            numbers.append(None)
    if not all(v is not None for v in numbers):
        lacking = next(s for s, p, v in zip(slices, positions, numbers) if p is None and v is None)
        raise UnreadableImage(
            f"the order of its slices is unknown: slice {lacking.file.name} has neither an ImagePositionPatient nor "
            "an InstanceNumber"
        )
    order = sorted(range(n), key=lambda i: (numbers[i], slices[i].file.name))
    for k in range(n - 1):
        here, after = numbers[order[k]], numbers[order[k + 1]]
        a, b = slices[order[k]].file.name, slices[order[k + 1]].file.name
        if after == here:
            raise UnreadableImage(f"slices {a} and {b} have the same InstanceNumber {here:g} (and no positions): "
                                  "a duplicate slice, or two series in one folder")
        if after - here > 1:
            raise UnreadableImage(f"InstanceNumber {here + 1:g} is missing between {a} and {b} (the slices have no "
                                  "positions); add the missing slice, or remove the series")
    return order, None


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 100 else text[:97] + "..."
