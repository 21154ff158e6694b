"""Small synthetic CT-like data sets made with MONAI's generators, written as real files, so that recipes and tests
run offline.

``python -m tl_medical.synthetic classification OUT --per-class 20 --dims 2 --format dicom`` writes
``OUT/normal/`` and ``OUT/lesion/``; ``python -m tl_medical.synthetic segmentation OUT --n 20 --dims 3`` writes
``OUT/images/`` and ``OUT/masks/`` (NIfTI).

Every image is a CT-like scene in Hounsfield units: lung-like background (about -850 HU) with denser, smooth
structures and noise. A "lesion" image adds one to three small, bright round objects (soft-tissue density: about
+890 HU above their surroundings) drawn by :func:`monai.data.create_test_image_2d` / ``_3d``; a "normal" image adds
as many dimmer objects (half that contrast, ground-glass-like) with twice the area (2D) or volume (3D), so both
classes have the same mean intensity in expectation: a model must find compact bright objects, not bright images.
PNG files hold the scene in the lung window (8 bit), NIfTI files hold HU as int16, DICOM files hold stored values
with ``RescaleIntercept -1024`` (a 2D image is one file, a volume a series folder, one file per slice).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np

CLASSES = ("normal", "lesion")
BACKGROUND_HU = -850.0
LESION_CONTRAST = 890.0  # background + contrast = +40 HU: soft tissue
PIXEL_SPACING = 0.7  # mm, in-plane
SLICE_THICKNESS = 2.5  # mm
_SUFFIX = {"png": ".png", "nifti": ".nii.gz", "dicom": ".dcm"}


def _check(spatial_dims: int, size: int, fmt: str = "nifti") -> None:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, not {spatial_dims}")
    if fmt not in _SUFFIX:
        raise ValueError(f"format must be one of {', '.join(_SUFFIX)}, not {fmt!r}")
    if fmt == "png" and spatial_dims == 3:
        raise ValueError("PNG holds 2D images only; write volumes as nifti or dicom")
    if size < 16:
        raise ValueError(f"size must be at least 16, not {size}")


def _objects(rs: np.random.RandomState, size: int, dims: int, count: int, rad_min: int, rad_max: int) -> np.ndarray:
    """A boolean mask of ``count`` round objects from MONAI's generator (radius in [rad_min, rad_max))."""
    import numpy as np
    from monai.data import create_test_image_2d, create_test_image_3d

    if count == 0:
        return np.zeros((size,) * dims, dtype=bool)
    rad_min = max(1, rad_min)
    rad_max = min(max(rad_min + 1, rad_max), (size - 1) // 2)
    kwargs = dict(num_objs=count, rad_max=rad_max, rad_min=rad_min, num_seg_classes=1, random_state=rs)
    if dims == 2:
        _, seg = create_test_image_2d(size, size, **kwargs)
    else:
        _, seg = create_test_image_3d(size, size, size, **kwargs)
    return seg > 0


def scene(rs: np.random.RandomState, size: int, dims: int, lesions: int, blobs: int) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like image in HU, shape ``(size,) * dims``, with ``lesions`` bright and ``blobs`` dim objects; and the
    lesion mask."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    shape = (size,) * dims
    hu = np.full(shape, BACKGROUND_HU)
    hu[_objects(rs, size, dims, rs.randint(2, 5), size // 6, size // 3)] += 200.0  # denser structures
    hu = gaussian_filter(hu, sigma=1.0)
    low, high = max(2, size // 16), max(4, size // 8)
    scale = 2.0 ** (1.0 / dims)  # twice the area/volume at half the contrast: the same integrated intensity
    hu[_objects(rs, size, dims, blobs, round(low * scale), round(high * scale))] += LESION_CONTRAST / 2
    mask = _objects(rs, size, dims, lesions, low, high)
    hu[mask] += LESION_CONTRAST
    hu = gaussian_filter(hu, sigma=0.6) + rs.normal(0.0, 25.0, shape)
    return np.clip(hu, -1024.0, 3071.0), mask


# ---------------------------------------------------------------- writers of single files


def write_png(path: Path, hu: np.ndarray) -> None:
    """A 2D HU image as an 8-bit PNG in the lung window."""
    import numpy as np
    from PIL import Image

    from tl_medical.io import apply_window

    Image.fromarray(np.round(apply_window(hu, "lung") * 255).astype(np.uint8), mode="L").save(path)


def write_nifti(path: Path, array: np.ndarray, spacing: tuple[float, ...], dtype: str = "int16") -> None:
    """An ``(H, W)`` or ``(D, H, W)`` array as NIfTI in RAS+, laid out so that :func:`tl_medical.io.read_image`
    returns ``array`` again (see its orientation rule)."""
    import nibabel as nib
    import numpy as np

    volume = array[None] if array.ndim == 2 else array
    spacing = (1.0, *spacing) if array.ndim == 2 else tuple(spacing)
    data = np.ascontiguousarray(volume[:, ::-1, ::-1].transpose(2, 1, 0)).astype(dtype)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["tl-medical-synthetic", *map(str, parts)])


def write_dicom(
    path: Path, hu: np.ndarray, spacing: tuple[float, float] = (PIXEL_SPACING, PIXEL_SPACING),
    position: float | None = None, instance: int = 1, thickness: float = SLICE_THICKNESS,
    series_uid: str | None = None, study_uid: str | None = None, patient: str = "SYNTHETIC",
) -> None:
    """One CT slice (HU, 2D) as a DICOM file: Explicit VR Little Endian, stored values with RescaleIntercept -1024,
    PixelSpacing, SliceThickness and ImagePositionPatient (``position`` is its z in mm)."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    study_uid = study_uid or _uid("study", patient)
    series_uid = series_uid or _uid("series", patient, path.name)
    sop_uid = _uid("sop", series_uid, instance, path.name)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = _uid("frame", study_uid)
    ds.Modality = "CT"
    ds.PatientName = patient
    ds.PatientID = patient
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, float(position if position is not None else (instance - 1) * thickness)]
    ds.PixelSpacing = [round(float(spacing[0]), 4), round(float(spacing[1]), 4)]
    ds.SliceThickness = round(float(thickness), 4)
    ds.Rows, ds.Columns = hu.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = -600
    ds.WindowWidth = 1500
    stored = np.clip(np.round(hu) + 1024, 0, 65535).astype("<u2")
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_dicom_series(folder: Path, hu: np.ndarray, spacing: tuple[float, float, float] | None = None,
                       patient: str = "SYNTHETIC") -> Path:
    """A ``(D, H, W)`` HU volume as a series folder, one file per slice (``slice_000.dcm`` is the lowest z)."""
    spacing = spacing or (SLICE_THICKNESS, PIXEL_SPACING, PIXEL_SPACING)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = _uid("series", patient, folder.name)
    study_uid = _uid("study", patient)
    for k, plane in enumerate(hu):
        write_dicom(
            folder / f"slice_{k:03d}.dcm", plane, spacing[1:], position=k * spacing[0], instance=k + 1,
            thickness=spacing[0], series_uid=series_uid, study_uid=study_uid, patient=patient,
        )
    return folder


def _write(path_without_suffix: Path, hu: np.ndarray, fmt: str, patient: str) -> Path:
    dims = hu.ndim
    if fmt == "png":
        path = path_without_suffix.with_name(path_without_suffix.name + ".png")
        write_png(path, hu)
    elif fmt == "nifti":
        path = path_without_suffix.with_name(path_without_suffix.name + ".nii.gz")
        spacing = (PIXEL_SPACING,) * 2 if dims == 2 else (SLICE_THICKNESS, PIXEL_SPACING, PIXEL_SPACING)
        write_nifti(path, hu, spacing)
    elif dims == 2:
        path = path_without_suffix.with_name(path_without_suffix.name + ".dcm")
        write_dicom(path, hu, patient=patient)
    else:
        path = write_dicom_series(path_without_suffix, hu, patient=patient)
    return path


def _random_state(seed: int, *parts: int) -> np.random.RandomState:
    import numpy as np

    return np.random.RandomState(np.random.SeedSequence([seed, *parts]).generate_state(1)[0])


# ---------------------------------------------------------------- data sets


def write_classification(
    out: Path, per_class: int, spatial_dims: Literal[2, 3] = 2, fmt: Literal["png", "nifti", "dicom"] = "png",
    size: int = 64, seed: int = 0,
) -> Path:
    """Write ``per_class`` images of each class, ``out/normal/`` and ``out/lesion/``, as PNG, NIfTI or DICOM
    (3D DICOM: one series folder per volume); return ``out``."""
    _check(spatial_dims, size, fmt)
    out = Path(out)
    for c, name in enumerate(CLASSES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rs = _random_state(seed, c, i)
            count = rs.randint(1, 4)
            hu, _ = scene(rs, size, spatial_dims, lesions=count if name == "lesion" else 0,
                          blobs=count if name == "normal" else 0)
            _write(folder / f"{name}_{i:03d}", hu, fmt, patient=f"{name}-{i:03d}")
    return out


def write_segmentation(out: Path, n: int, spatial_dims: Literal[2, 3] = 2, size: int = 64, seed: int = 0) -> Path:
    """Write ``n`` image/mask pairs, ``out/images/case_000.nii.gz`` (HU) and ``out/masks/case_000.nii.gz``
    (0 background, 1 lesion); each image has one to four lesions and up to two dim distractors; return ``out``."""
    import numpy as np

    _check(spatial_dims, size)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    spacing = (PIXEL_SPACING,) * 2 if spatial_dims == 2 else (SLICE_THICKNESS, PIXEL_SPACING, PIXEL_SPACING)
    for i in range(n):
        rs = _random_state(seed, 7, i)
        hu, mask = scene(rs, size, spatial_dims, lesions=rs.randint(1, 5), blobs=rs.randint(0, 3))
        write_nifti(out / "images" / f"case_{i:03d}.nii.gz", hu, spacing)
        write_nifti(out / "masks" / f"case_{i:03d}.nii.gz", mask.astype(np.uint8), spacing, dtype="uint8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["classification", "segmentation"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=20, help="classification: images per class")
    parser.add_argument("--n", type=int, default=20, help="segmentation: image/mask pairs")
    parser.add_argument("--dims", type=int, choices=[2, 3], default=2)
    parser.add_argument("--format", choices=list(_SUFFIX), default="png", help="classification only")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty; choose a new folder (its files would mix with these)")
    try:
        if args.kind == "classification":
            write_classification(args.out, args.per_class, args.dims, args.format, args.size, args.seed)
            print(f"wrote {2 * args.per_class} {args.dims}D {args.format} images ({', '.join(CLASSES)}) to {args.out}")
        else:
            write_segmentation(args.out, args.n, args.dims, args.size, args.seed)
            print(f"wrote {args.n} {args.dims}D image/mask pairs (NIfTI) to {args.out}")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
