"""tl-medical's hostile-input corpus: DICOM tags that are not numbers, pixel data that does not fit its header,
corrupt NIfTI files, DICOM series with a missing, duplicate or odd slice, MONOCHROME1 and LUTs, class folders
other than the recipes' examples, a positive class that names no class, manifests that are not UTF-8.

A skipped item is named in the reader's ``skipped`` (``report.json`` ``data.skipped`` in a run); with
``data.strict: true`` it is refused. A refused case ends in exit code 2, one ``error:`` line naming the problem and
the fix, no traceback, and ``--out`` untouched (``tl_core.testing.assert_refused``). Inputs are tiny files written
here; only one case trains (one short epoch).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tl_core.api import DataError
from tl_core.testing import assert_refused
from tl_medical.data import read_medical_folder, read_segmentation
from tl_medical.io import UnreadableImage, read_image

# ---------------------------------------------------------------- helpers


def dicom_with(source: Path, target: Path, change) -> Path:
    """A copy of the DICOM file ``source`` at ``target``, with ``change(ds)`` applied before it is written."""
    import pydicom

    ds = pydicom.dcmread(source)
    change(ds)
    ds.save_as(target)
    return target


def set_raw(keyword: str, value: str):
    """Write ``value`` into the element as it is, unchecked (what a damaged or hand-edited file holds)."""

    def change(ds) -> None:
        ds[keyword]._value = value

    return change


def skipped_reasons(samples) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in samples.skipped)


def ct_mr_folder(root: Path, med_dicom_folder: Path) -> Path:
    """The synthetic 2D DICOM set with its class folders named CT/ and MR/ (not the recipes' normal/lesion)."""
    import shutil

    shutil.copytree(med_dicom_folder / "normal", root / "CT")
    shutil.copytree(med_dicom_folder / "lesion", root / "MR")
    return root


# ---------------------------------------------------------------- one bad DICOM file is skipped and named


BAD_DICOM = [
    # (what is wrong, how the file is changed, the reason that names it)
    ("slope not a number", set_raw("RescaleSlope", "abc"), r"RescaleSlope 'abc' is not a number"),
    ("intercept infinite", set_raw("RescaleIntercept", "inf"), r"RescaleIntercept inf is not a finite number"),
    ("two slopes", set_raw("RescaleSlope", "1\\2"), r"RescaleSlope \[1, 2\] is not a number"),
    ("pixel data longer than the header says", lambda ds: setattr(ds, "PixelData", ds.PixelData + b"\0" * 64),
     r"the pixel data holds 2112 bytes where Rows x Columns x BitsAllocated say 2048: the header does not describe"),
    ("pixel data empty", lambda ds: setattr(ds, "PixelData", b""), r"the pixel data is empty"),
    ("no pixel data", lambda ds: delattr(ds, "PixelData"), r"no pixel data"),
]


@pytest.mark.parametrize(("change", "reason"), [c[1:] for c in BAD_DICOM], ids=[c[0] for c in BAD_DICOM])
def test_a_bad_dicom_file_is_skipped_and_named(med_dicom_folder, med_copy, change, reason):
    import re

    data = med_copy(med_dicom_folder)
    bad = dicom_with(data / "lesion" / "lesion_000.dcm", data / "lesion" / "bad.dcm", change)
    samples = read_medical_folder(str(data))
    assert len(samples) == 8  # the other images are all there
    assert list(skipped_reasons(samples)) == [str(bad)]
    assert re.search(reason, skipped_reasons(samples)[str(bad)]), samples.skipped


def test_dicom_sequences_nested_too_deep_are_skipped(med_dicom_folder, med_copy):
    data = med_copy(med_dicom_folder)
    bad = data / "normal" / "deep.dcm"
    sequence = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\0\0" + struct.pack("<I", 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    bad.write_bytes((data / "normal" / "normal_000.dcm").read_bytes() + (sequence + item) * 3000 + close * 3000)
    samples = read_medical_folder(str(data))
    assert skipped_reasons(samples) == {str(bad): "corrupt DICOM header (sequences nested too deeply to read)"}


def test_a_bad_tag_is_an_error_under_strict(med_dicom_folder, med_copy):
    data = med_copy(med_dicom_folder)
    dicom_with(data / "lesion" / "lesion_000.dcm", data / "lesion" / "bad.dcm", set_raw("RescaleSlope", "abc"))
    with pytest.raises(DataError, match=r"bad\.dcm: RescaleSlope 'abc' is not a number; remove it, or set "
                                        r"data\.strict: false"):
        read_medical_folder(str(data), strict=True)


# ---------------------------------------------------------------- corrupt NIfTI files are skipped and named


def nifti_bytes(shape=(8, 8, 8)) -> bytes:
    import nibabel as nib

    image = nib.Nifti1Image(np.ones(shape, dtype=np.int16), np.eye(4))
    return image.to_bytes()


BAD_NIFTI = [
    ("garbage", lambda raw: b"\0" * 400, r"not a readable NIfTI file"),
    ("a zero-length axis", lambda raw: raw[:42] + struct.pack("<h", 0) + raw[44:], r"empty NIfTI volume"),
    ("a huge declared volume, cut short",
     lambda raw: raw[:40] + struct.pack("<4h", 3, 30000, 30000, 30000) + raw[48:],
     r"truncated NIfTI file: 1376 bytes where its header declares 54000000000352"),
]


@pytest.mark.parametrize(("damage", "reason"), [c[1:] for c in BAD_NIFTI], ids=[c[0] for c in BAD_NIFTI])
def test_a_corrupt_nifti_volume_is_skipped_and_named(med_nifti3d_folder, med_copy, damage, reason):
    import re

    data = med_copy(med_nifti3d_folder)
    bad = data / "normal" / "bad.nii"
    bad.write_bytes(damage(nifti_bytes()))
    samples = read_medical_folder(str(data), options={"spatial_dims": 3})
    assert len(samples) == 6 and list(skipped_reasons(samples)) == [str(bad)]
    assert re.search(reason, skipped_reasons(samples)[str(bad)]), samples.skipped


# ---------------------------------------------------------------- a DICOM series that cannot be stacked faithfully


def damaged_series(med_series_folder: Path, med_copy, damage) -> tuple[Path, Path]:
    """A copy of the 3D set with ``damage(series_folder)`` applied to one series (16 slices, 2.5 mm apart)."""
    data = med_copy(med_series_folder)
    series = data / "lesion" / "lesion_000"
    damage(series)
    return data, series


def drop_slice(series: Path) -> None:
    (series / "slice_005.dcm").unlink()


def duplicate_slice(series: Path) -> None:
    import shutil

    shutil.copy(series / "slice_005.dcm", series / "slice_005_copy.dcm")


def odd_size_slice(series: Path) -> None:
    import pydicom

    from tl_medical.synthetic import write_dicom

    ds = pydicom.dcmread(series / "slice_007.dcm")
    write_dicom(series / "slice_007.dcm", np.zeros((8, 16)), position=float(ds.ImagePositionPatient[2]),
                instance=8, series_uid=ds.SeriesInstanceUID, study_uid=ds.StudyInstanceUID)


def tilted_slice(series: Path) -> None:
    dicom_with(series / "slice_003.dcm", series / "slice_003.dcm",
               lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]))


def without_positions(drop: str | None):
    def damage(series: Path) -> None:
        for file in sorted(series.iterdir()):
            dicom_with(file, file, lambda ds: delattr(ds, "ImagePositionPatient"))
        if drop:
            (series / drop).unlink()

    return damage


def unordered(series: Path) -> None:
    without_positions(None)(series)
    dicom_with(series / "slice_009.dcm", series / "slice_009.dcm", lambda ds: delattr(ds, "InstanceNumber"))


BAD_SERIES = [
    ("a missing slice", drop_slice,
     r"a slice is missing between slice_004\.dcm and slice_006\.dcm \(5 mm apart where the series' spacing is "
     r"2\.5 mm\); add the missing slice, or remove the series"),
    ("a duplicate slice", duplicate_slice,
     r"slices slice_005\.dcm and slice_005_copy\.dcm are at the same position \(12\.5 mm along the slice normal\)"),
    ("a slice of another size", odd_size_slice, r"slice slice_007\.dcm is 8x16 where the other slices are 16x16"),
    ("a slice of another orientation", tilted_slice,
     r"slice slice_003\.dcm has another ImageOrientationPatient than slice_000\.dcm"),
    ("no positions, a gap in the instance numbers", without_positions("slice_010.dcm"),
     r"InstanceNumber 11 is missing between slice_009\.dcm and slice_011\.dcm"),
    ("no order at all", unordered,
     r"the order of its slices is unknown: slice slice_009\.dcm has neither an ImagePositionPatient nor an "
     r"InstanceNumber"),
]


@pytest.mark.parametrize(("damage", "reason"), [c[1:] for c in BAD_SERIES], ids=[c[0] for c in BAD_SERIES])
def test_a_series_that_cannot_be_stacked_is_skipped_and_named(med_series_folder, med_copy, damage, reason):
    import re

    data, series = damaged_series(med_series_folder, med_copy, damage)
    samples = read_medical_folder(str(data), options={"spatial_dims": 3})
    assert len(samples) == 3 and list(skipped_reasons(samples)) == [str(series)]
    assert re.search(reason, skipped_reasons(samples)[str(series)]), samples.skipped
    with pytest.raises(DataError, match="data.strict: false"):
        read_medical_folder(str(data), strict=True, options={"spatial_dims": 3})


def test_a_whole_series_without_positions_is_stacked_by_instance_number(med_series_folder, med_copy):
    data, series = damaged_series(med_series_folder, med_copy, without_positions(None))
    volume, _ = read_image(series)
    expected, _ = read_image(med_series_folder / "lesion" / "lesion_000")
    np.testing.assert_array_equal(volume, expected)


# ---------------------------------------------------------------- intensities: pydicom's LUTs, MONOCHROME1 per series


def test_a_modality_lut_sequence_is_applied_by_pydicom(tmp_path):
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

    from tl_medical.synthetic import write_dicom

    path = tmp_path / "lut.dcm"
    write_dicom(path, np.array([[-1024.0, -1017.0], [-1000.0, -769.0]]))  # stored values 0, 7, 24, 255

    def lut(ds) -> None:
        del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType
        item = Dataset()
        item.LUTDescriptor = [256, 0, 16]
        item.add(DataElement(0x00283006, "US", [3 * v + 100 for v in range(256)]))
        ds.ModalityLUTSequence = [item]

    dicom_with(path, path, lut)
    array, _ = read_image(path)
    np.testing.assert_array_equal(array, [[100, 121], [172, 865]])  # 3 * stored + 100, not the stored values


def write_monochrome1_series(folder: Path, planes: list[np.ndarray], modality: str = "MR") -> Path:
    """A MONOCHROME1 series (stored values = ``planes``, no rescale)."""
    from tl_medical.synthetic import write_dicom

    folder.mkdir(parents=True)
    for k, plane in enumerate(planes):
        path = folder / f"{k}.dcm"
        write_dicom(path, plane - 1024.0, (1.0, 1.0), position=3.0 * k, instance=k + 1, thickness=3.0,
                    series_uid="1.2.3.4", study_uid="1.2.3")

        def change(ds) -> None:
            ds.PhotometricInterpretation = "MONOCHROME1"
            ds.Modality = modality
            del ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType

        dicom_with(path, path, change)
    return folder


def test_monochrome1_is_inverted_alike_in_every_slice_of_a_series(tmp_path):
    # each slice holds the stored value 150; the slices' own minima and maxima differ
    planes = [np.array([[100.0, 150.0], [200.0, 120.0]]), np.array([[150.0, 900.0], [10.0, 3000.0]]),
              np.array([[150.0, 150.0], [150.0, 151.0]])]
    volume, _ = read_image(write_monochrome1_series(tmp_path / "series", planes))
    at_150 = [volume[k][planes[k] == 150.0] for k in range(3)]
    assert len({float(v) for values in at_150 for v in values}) == 1  # one stored value, one output value
    assert float(at_150[0][0]) == 65535 - 150  # inverted over the declared 16-bit range, not a slice's own
    assert volume[1][0, 1] < volume[0][0, 0]  # brighter stored (MONOCHROME1: darker) is less dense


def test_monochrome1_ct_stays_in_hounsfield_units(tmp_path):
    planes = [np.array([[0.0, 1024.0], [1064.0, 2024.0]]), np.array([[0.0, 1024.0], [1064.0, 2024.0]])]
    folder = write_monochrome1_series(tmp_path / "ct", planes, modality="CT")
    def hounsfield(ds) -> None:
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1

    for path in folder.iterdir():  # rescaled to HU: inverting would make air dense
        dicom_with(path, path, hounsfield)
    volume, _ = read_image(folder)
    np.testing.assert_array_equal(volume[0], [[-1024, 0], [40, 1000]])


def test_voi_lut_is_pydicoms_and_for_2d_images_only(med_dicom_folder, med_series_folder):
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = med_dicom_folder / "lesion" / "lesion_000.dcm"
    ds = pydicom.dcmread(path)
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)  # the file's lung window
    array, _ = read_image(path, voi_lut=True)
    np.testing.assert_allclose(array, expected, rtol=1e-6)
    np.testing.assert_array_equal(read_image(path)[0], apply_modality_lut(ds.pixel_array, ds))  # default: HU
    with pytest.raises(DataError, match=r"data\.options\.voi_lut: .*applies to 2D images only.*set voi_lut: false"):
        read_medical_folder(str(med_series_folder), options={"spatial_dims": 3, "voi_lut": True})


# ---------------------------------------------------------------- classes from the folders, the positive class


@pytest.mark.parametrize("recipe", ["medical/xray-2d", "medical/ct-3d", "medical/ct-3d-inflated"])
def test_no_classification_recipe_fixes_the_classes(recipe):
    from tl_core.api import load_recipe

    assert load_recipe(recipe).data.options.get("classes") is None


def test_class_folders_other_than_normal_and_lesion_are_the_classes(med_dicom_folder, tmp_path):
    from tl_core.api import load_recipe
    from tl_medical.data import read_folder_data

    data = ct_mr_folder(tmp_path / "data", med_dicom_folder)
    recipe = load_recipe("medical/xray-2d", [f"data.path={data}", "data.options.size=16"])
    read = read_folder_data(recipe.data, 0)
    assert read.classes == ["CT", "MR"] and len(read.train) + len(read.val) == 8  # sorted, as image-folder


def test_a_positive_class_that_names_no_class_is_refused(tl_cli, med_dicom_folder, tmp_path):
    data = ct_mr_folder(tmp_path / "data", med_dicom_folder)
    out = tmp_path / "out"
    assert_refused(
        tl_cli("run", "medical/xray-2d", "--out", out, "--set", f"data.path={data}",
               "--set", "data.options.positive_class=lesion"),
        r"data\.options\.positive_class 'lesion' is not one of the classes \(CT, MR\); set it to one of them, or "
        r"leave it out to make the last class \('MR'\) the positive one", out)


def test_a_positive_class_outside_the_given_classes_is_refused_before_reading(tl_cli, tmp_path):
    out = tmp_path / "out"
    assert_refused(
        tl_cli("run", "medical/xray-2d", "--out", out, "--set", f"data.path={tmp_path / 'nowhere'}",
               "--set", "data.options.classes=[normal,lesion]", "--set", "data.options.positive_class=lesoin"),
        r"data\.options\.positive_class: .*'lesoin' is not one of the classes \(normal, lesion\) \(did you mean "
        r"'lesion'\?\)", out)


def test_segmentation_refuses_a_positive_class(med_seg_folder):
    with pytest.raises(DataError, match=r"positive_class \('lesion'\) is for classification.*remove it"):
        read_segmentation(str(med_seg_folder), options={"positive_class": "lesion"})


def test_the_positive_class_decides_sensitivity_and_specificity():
    import torch

    from tl_core.api import evaluate_outputs

    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    p = torch.tensor([0.1, 0.6, 0.7, 0.8, 0.9, 0.95])  # probability of class 1 ("lesion")
    outputs = torch.stack([torch.log(1 - p), torch.log(p)], dim=1)
    names = ["lesion", "normal"]  # sorted folder names: the last, "normal", is positive by default
    default = evaluate_outputs("medical-classification", outputs, targets, names)
    assert default["sensitivity"] == 1.0 and default["specificity"] == pytest.approx(1 / 3)
    lesion = evaluate_outputs("medical-classification", outputs, targets, names, {"positive_class": "lesion"})
    assert lesion["sensitivity"] == pytest.approx(1 / 3) and lesion["specificity"] == 1.0
    assert lesion["auc"] == pytest.approx(default["auc"])
    three = evaluate_outputs("medical-classification", torch.eye(3)[[0, 1, 2, 0]] * 5, torch.tensor([0, 1, 2, 2]),
                             ["a", "b", "c"], {"positive_class": "c"})
    assert three["sensitivity"] == 0.5 and three["specificity"] == 1.0  # c against the rest


# ---------------------------------------------------------------- refused runs: strict, encodings, options


def test_strict_refuses_a_run_with_a_bad_dicom_tag(tl_cli, med_dicom_folder, tmp_path):
    data = ct_mr_folder(tmp_path / "data", med_dicom_folder)
    dicom_with(data / "MR" / "lesion_000.dcm", data / "MR" / "bad.dcm", set_raw("RescaleSlope", "abc"))
    out = tmp_path / "out"
    assert_refused(tl_cli("run", "medical/xray-2d", "--out", out, "--set", f"data.path={data}",
                          "--set", "data.strict=true"),
                   r"MR/bad\.dcm: RescaleSlope 'abc' is not a number; remove it, or set data\.strict: false", out)


def test_a_manifest_that_is_not_utf8_is_refused(tl_cli, med_dicom_folder, tmp_path):
    rows = "".join(f"{p},{p.parent.name}\n" for p in sorted(med_dicom_folder.rglob("*.dcm")))
    manifest = tmp_path / "images.csv"
    manifest.write_bytes(("path,label\n" + rows + "# r\xe9sum\xe9\n").encode("latin-1"))
    out = tmp_path / "out"
    assert_refused(tl_cli("run", "medical/xray-2d", "--out", out, "--set", "data.format=medical-csv",
                          "--set", f"data.path={manifest}"),
                   r"images\.csv is not UTF-8 text \(byte 0xe9 on line 10\); save it as UTF-8", out)


def test_voi_lut_on_volumes_is_refused(tl_cli, med_series_folder, tmp_path):
    out = tmp_path / "out"
    assert_refused(tl_cli("run", "medical/ct-3d-inflated", "--out", out, "--set", f"data.path={med_series_folder}",
                          "--set", "data.options.voi_lut=true"),
                   r"data\.options\.voi_lut: .*applies to 2D images only.*set voi_lut: false", out)


# ---------------------------------------------------------------- one run: CT/ and MR/ folders, a skipped file


def test_a_ct_and_mr_folder_trains_and_the_skipped_file_is_in_the_report(tl_cli, med_dicom_folder, tmp_path):
    data = ct_mr_folder(tmp_path / "data", med_dicom_folder)
    bad = dicom_with(data / "MR" / "lesion_000.dcm", data / "MR" / "bad.dcm", set_raw("RescaleSlope", "abc"))
    out = tmp_path / "out"
    code, _, stderr = tl_cli(
        "run", "medical/xray-2d", "--out", out, "--quiet", "--set", f"data.path={data}",
        "--set", "data.options.size=32", "--set", "data.options.positive_class=CT", "--set", "train.epochs=2",
        "--set", "policy.probe_epochs=1", "--set", "train.batch_size=4", "--set", "compare.scratch=false",
        "--set", "data.val_fraction=0.25")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["classes"] == ["CT", "MR"]
    assert report["data"]["skipped"] == [f"{bad}: RescaleSlope 'abc' is not a number"]
    assert report["data"]["options"]["positive_class"] == "CT"
    assert {"auc", "sensitivity", "specificity"} <= set(report["metrics"]["val"])


def test_a_changed_file_during_training_is_one_line(med_dicom_folder, med_copy):
    from tl_medical.data import MedicalDataset

    data = med_copy(med_dicom_folder)
    samples = read_medical_folder(str(data))
    dicom_with(samples.paths[0], samples.paths[0], set_raw("RescaleSlope", "abc"))
    with pytest.raises(DataError, match=r"RescaleSlope 'abc' is not a number \(it was readable when the data set "
                                        r"was read; was it changed\?\)"):
        MedicalDataset(samples, {"size": 16}, augment=False)[0]


def test_unreadable_never_escapes_as_another_exception(tmp_path):
    path = tmp_path / "x.nii"
    path.write_bytes(nifti_bytes()[:42] + struct.pack("<h", 0) + nifti_bytes()[44:])
    with pytest.raises(UnreadableImage, match="empty NIfTI volume"):
        read_image(path)
