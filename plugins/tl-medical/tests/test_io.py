"""Reading DICOM, DICOM series, NIfTI and PNG/JPEG into arrays; CT windows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tl_medical.io import WINDOWS, UnreadableImage, apply_window, read_image

# ---------------------------------------------------------------- DICOM files shipped by pydicom


def test_ct_small_reads_in_hounsfield_units(med_pydicom_file):
    import pydicom

    path = med_pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    array, spacing = read_image(path)
    assert array.shape == (128, 128) and array.dtype == np.float32
    np.testing.assert_array_equal(array, ds.pixel_array.astype(np.float32) - 1024)  # the intercept was applied
    assert -1024 <= array.min() < -500  # air/lung in the field of view
    assert 0 < np.median(array) < 200 and array.max() < 3072  # soft tissue, nothing beyond the CT range
    assert spacing == pytest.approx((0.661468, 0.661468))


def test_mr_without_rescale_keeps_its_values(med_pydicom_file):
    import pydicom

    path = med_pydicom_file("MR_small.dcm")
    array, spacing = read_image(path)
    np.testing.assert_array_equal(array, pydicom.dcmread(path).pixel_array)
    assert spacing == pytest.approx((0.3125, 0.3125))


def test_truncated_dicom_is_unreadable(med_pydicom_file):
    with pytest.raises(UnreadableImage, match="truncated"):
        read_image(med_pydicom_file("MR_truncated.dcm"))


def test_missing_codec_is_unreadable_and_names_the_transfer_syntax(med_pydicom_file):
    # JPEG-LS needs pylibjpeg-libjpeg, pyjpegls or gdcm, none of which is installed
    with pytest.raises(UnreadableImage, match="unsupported transfer syntax 'JPEG-LS Lossless.*no installed codec"):
        read_image(med_pydicom_file("MR_small_jpeg_ls_lossless.dcm"))


def jpeg2000_decodes(path: Path) -> bool:
    import pydicom

    try:
        _ = pydicom.dcmread(path).pixel_array
    except (NotImplementedError, RuntimeError):
        return False
    return True


def test_jpeg2000_reads_when_a_codec_is_installed_else_names_the_missing_codec(med_pydicom_file):
    path = med_pydicom_file("JPEG2000.dcm")
    if jpeg2000_decodes(path):  # Pillow built with OpenJPEG decodes it
        array, _ = read_image(path)
        assert array.shape == (1024, 256)
    else:
        with pytest.raises(UnreadableImage, match="JPEG 2000.*no installed codec"):
            read_image(path)


def test_rgb_dicom_becomes_grayscale(med_pydicom_file):
    import pydicom

    path = med_pydicom_file("SC_rgb_small_odd.dcm")
    rgb = pydicom.dcmread(path).pixel_array.astype(np.float32)
    array, _ = read_image(path)
    assert array.shape == rgb.shape[:2]
    np.testing.assert_allclose(array, rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-5)


def test_dicom_without_pixel_data_is_unreadable(med_pydicom_file):
    with pytest.raises(UnreadableImage, match="no pixel data"):
        read_image(med_pydicom_file("rtplan.dcm"))


def test_a_text_file_is_not_a_medical_image(tmp_path: Path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    with pytest.raises(UnreadableImage, match="not a medical image"):
        read_image(path)
    with pytest.raises(UnreadableImage, match="does not exist"):
        read_image(tmp_path / "missing.dcm")


# ---------------------------------------------------------------- DICOM series


def write_series(folder: Path, values: list[float], names: list[str], positions: bool = True) -> None:
    """Slices of constant HU ``values[k]`` at z = 3k mm, written to the file ``names[k]``."""
    import pydicom

    from tl_medical.synthetic import write_dicom

    folder.mkdir(parents=True)
    for k, (value, name) in enumerate(zip(values, names)):
        path = folder / name
        write_dicom(path, np.full((8, 6), value), (0.5, 0.6), position=3.0 * k, instance=k + 1, thickness=3.0,
                    series_uid="1.2.3.4", study_uid="1.2.3")
        if not positions:
            ds = pydicom.dcmread(path)
            del ds.ImagePositionPatient
            ds.save_as(path)


def test_series_slices_are_sorted_by_position_not_file_name(tmp_path: Path):
    values = [-1000.0, -500.0, 0.0, 500.0, 1000.0]
    names = ["e.dcm", "a.dcm", "d.dcm", "b.dcm", "c.dcm"]  # file names in an order unrelated to position
    write_series(tmp_path / "series", values, names)
    volume, spacing = read_image(tmp_path / "series")
    assert volume.shape == (5, 8, 6)
    assert volume[:, 0, 0].tolist() == values
    assert spacing == pytest.approx((3.0, 0.5, 0.6))


def test_series_without_positions_falls_back_to_instance_number(tmp_path: Path):
    values = [10.0, 20.0, 30.0]
    write_series(tmp_path / "series", values, ["z.dcm", "y.dcm", "x.dcm"], positions=False)
    volume, _ = read_image(tmp_path / "series")
    assert volume[:, 0, 0].tolist() == values


def test_series_with_an_unreadable_slice_names_the_slice(tmp_path: Path, med_pydicom_file):
    import shutil

    write_series(tmp_path / "series", [0.0, 1.0], ["1.dcm", "2.dcm"])
    shutil.copy(med_pydicom_file("MR_truncated.dcm"), tmp_path / "series" / "3.dcm")
    with pytest.raises(UnreadableImage, match="slice 3.dcm: truncated"):
        read_image(tmp_path / "series")


def test_series_with_slices_of_different_sizes_is_unreadable(tmp_path: Path, med_pydicom_file):
    import shutil

    write_series(tmp_path / "series", [0.0, 1.0], ["1.dcm", "2.dcm"])
    shutil.copy(med_pydicom_file("CT_small.dcm"), tmp_path / "series" / "3.dcm")
    with pytest.raises(UnreadableImage, match="slice 3.dcm is 128x128 where the other slices are 8x6"):
        read_image(tmp_path / "series")


# ---------------------------------------------------------------- NIfTI


def test_nifti_volume_depth_first_in_the_documented_orientation(med_nibabel_file):
    import nibabel as nib

    path = med_nibabel_file("anatomical.nii")  # (33, 41, 25), LAS
    volume, spacing = read_image(path)
    canonical = nib.as_closest_canonical(nib.load(str(path))).get_fdata(dtype=np.float32)  # RAS, (X, Y, Z)
    assert volume.shape == (25, 41, 33)
    np.testing.assert_array_equal(volume, canonical.transpose(2, 1, 0)[:, ::-1, ::-1])
    assert spacing == (2.0, 2.0, 2.0)


def test_4d_nifti_is_unreadable(med_nibabel_file):
    with pytest.raises(UnreadableImage, match="4D NIfTI not supported"):
        read_image(med_nibabel_file("functional.nii"))


@pytest.mark.parametrize("shape", [(6, 7), (5, 6, 7)])
def test_nifti_round_trip_and_a_singleton_axis_makes_2d(tmp_path: Path, shape):
    from tl_medical.synthetic import write_nifti

    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    spacing = (0.5, 0.7) if len(shape) == 2 else (2.5, 0.5, 0.7)
    write_nifti(tmp_path / "x.nii.gz", array, spacing, dtype="float32")
    back, back_spacing = read_image(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(back, array)  # 2D is written as (X, Y, 1) and comes back 2D
    assert back_spacing == pytest.approx(spacing)


def test_truncated_nifti_is_unreadable(tmp_path: Path):
    from tl_medical.synthetic import write_nifti

    write_nifti(tmp_path / "x.nii", np.ones((8, 8, 8), dtype=np.float32), (1.0, 1.0, 1.0))
    data = (tmp_path / "x.nii").read_bytes()
    (tmp_path / "x.nii").write_bytes(data[: len(data) - 300])
    with pytest.raises(UnreadableImage, match="truncated NIfTI file: 1076 bytes where its header declares 1376"):
        read_image(tmp_path / "x.nii")


# ---------------------------------------------------------------- PNG / JPEG


def test_rgb_png_and_jpeg_become_grayscale(tmp_path: Path):
    from PIL import Image

    pixels = np.zeros((10, 12, 3), dtype=np.uint8)
    pixels[..., 0] = 200
    Image.fromarray(pixels).save(tmp_path / "x.png")
    Image.fromarray(pixels).save(tmp_path / "x.jpg")
    for name in ("x.png", "x.jpg"):
        array, spacing = read_image(tmp_path / name)
        assert array.shape == (10, 12) and spacing == (1.0, 1.0)
        assert abs(float(array.mean()) - 0.299 * 200) < 3


def test_16_bit_png_keeps_its_values(tmp_path: Path):
    from PIL import Image

    pixels = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    array, _ = read_image(tmp_path / "x.png")
    np.testing.assert_array_equal(array, pixels)


def test_truncated_png_is_unreadable(tmp_path: Path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(tmp_path / "x.png")
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "x.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="truncated or corrupt image"):
        read_image(tmp_path / "x.png")


# ---------------------------------------------------------------- CT windows


def test_windows_map_hounsfield_units_to_unit_range():
    assert set(WINDOWS) == {"lung", "soft-tissue", "bone", "brain"}
    hu = np.array([-2000.0, -1350.0, -600.0, 150.0, 1000.0])
    np.testing.assert_allclose(apply_window(hu, "lung"), [0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(apply_window(np.array([-160.0, 40.0, 240.0]), "soft-tissue"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(apply_window(np.array([-500.0, 400.0, 1300.0]), "bone"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(apply_window(np.array([0.0, 40.0, 80.0]), "brain"), [0.0, 0.5, 1.0])
    assert apply_window(hu, "lung").dtype == np.float32


def test_unknown_window_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown CT window 'liver'; known: lung, soft-tissue, bone, brain"):
        apply_window(np.zeros(3), "liver")


def test_modules_import_without_torch_or_monai():
    code = (
        "import sys; import tl_medical.io, tl_medical.data, tl_medical.synthetic; "
        "heavy = [m for m in ('torch', 'monai', 'pydicom', 'nibabel') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
