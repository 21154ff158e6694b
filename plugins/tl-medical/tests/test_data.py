"""Medical data sets: readers, bad input, read(config, seed), the MONAI dataset and the synthetic writers."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tl_core.data import ClassificationData
from tl_core.errors import DataError
from tl_core.sections import DataConfig
from tl_medical.data import (
    MedicalData,
    MedicalDataset,
    MedicalOptions,
    MedicalSamples,
    read_medical_csv,
    read_medical_folder,
    read_segmentation,
)
from tl_medical.registrations import DATA_FORMATS

# ---------------------------------------------------------------- class-per-folder


def test_png_folder_reads_both_classes(med_png_folder: Path):
    samples = read_medical_folder(str(med_png_folder))
    assert isinstance(samples, MedicalSamples)
    assert samples.classes == ["lesion", "normal"]
    assert sorted(samples.labels) == [0] * 4 + [1] * 4
    assert samples.skipped == [] and samples.masks == []


def test_unreadable_dicoms_are_skipped_named_and_errors_when_strict(med_dicom_folder: Path, med_copy,
                                                                     med_pydicom_file):
    data = med_copy(med_dicom_folder)
    shutil.copy(med_pydicom_file("MR_truncated.dcm"), data / "lesion" / "truncated.dcm")
    shutil.copy(med_pydicom_file("MR_small_jpeg_ls_lossless.dcm"), data / "normal" / "jpegls.dcm")
    samples = read_medical_folder(str(data))
    assert len(samples) == 8
    assert len(samples.skipped) == 2
    reasons = dict(line.split(": ", 1) for line in samples.skipped)
    assert "truncated" in reasons[str(data / "lesion" / "truncated.dcm")]
    assert "JPEG-LS" in reasons[str(data / "normal" / "jpegls.dcm")]
    assert "codec" in reasons[str(data / "normal" / "jpegls.dcm")]
    with pytest.raises(DataError, match=r"truncated\.dcm: truncated.*data\.strict: false"):
        read_medical_folder(str(data), strict=True)


def test_a_volume_where_2d_is_expected_names_the_file_and_spatial_dims(med_nifti3d_folder: Path):
    with pytest.raises(DataError, match=r"lesion_000\.nii\.gz: a 3D volume .* set data\.options\.spatial_dims: 3"):
        read_medical_folder(str(med_nifti3d_folder))


def test_an_image_where_3d_is_expected_names_the_file_and_spatial_dims(med_png_folder: Path):
    with pytest.raises(DataError, match=r"lesion_000\.png: a 2D image .* set data\.options\.spatial_dims: 2"):
        read_medical_folder(str(med_png_folder), options={"spatial_dims": 3})


def test_3d_nifti_and_dicom_series_folders(med_nifti3d_folder: Path, med_series_folder: Path):
    volumes = read_medical_folder(str(med_nifti3d_folder), options=MedicalOptions(spatial_dims=3))
    assert len(volumes) == 6 and volumes.spatial_dims == 3
    series = read_medical_folder(str(med_series_folder), options={"spatial_dims": 3})
    assert len(series) == 4 and all(p.is_dir() for p in series.paths)  # one entry per series, not per slice
    again = read_medical_folder(str(med_series_folder), options={"spatial_dims": 3})
    assert series.fingerprint() == again.fingerprint()


def test_a_series_with_a_truncated_slice_is_skipped(med_series_folder: Path, med_copy, med_pydicom_file):
    data = med_copy(med_series_folder)
    case = data / "normal" / "normal_000"
    first = case / "slice_000.dcm"
    first.write_bytes(first.read_bytes()[:-100])
    samples = read_medical_folder(str(data), options={"spatial_dims": 3})
    assert len(samples) == 3
    reason = "slice slice_000.dcm: truncated: the pixel data is shorter than its header says"
    assert samples.skipped == [f"{case}: {reason}"]


def test_folder_with_classes_outside_options_classes(med_png_folder: Path):
    with pytest.raises(DataError, match=r"class folders \['normal'\] are not in data\.options\.classes"):
        read_medical_folder(str(med_png_folder), options={"classes": ["lesion", "other"]})
    samples = read_medical_folder(str(med_png_folder), options={"classes": ["normal", "lesion"]})
    assert samples.classes == ["normal", "lesion"]  # the fixed order is the label order
    assert samples.labels[samples.paths.index(med_png_folder / "normal" / "normal_000.png")] == 0


def test_a_class_with_only_unreadable_files_is_an_error(med_png_folder: Path, med_copy, tmp_path: Path):
    data = med_copy(med_png_folder)
    for png in (data / "normal").iterdir():
        png.write_text("broken")
    with pytest.raises(DataError, match="class 'normal' has no readable images"):
        read_medical_folder(str(data))


# ---------------------------------------------------------------- CSV manifests


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "path,label") -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path


def test_csv_row_naming_a_missing_file_is_skipped_and_named(med_dicom_folder: Path, tmp_path: Path):
    rows = [(str(p), p.parent.name) for p in sorted(med_dicom_folder.rglob("*.dcm"))]
    csv = write_csv(tmp_path / "data.csv", rows + [("gone/missing.dcm", "lesion")])
    samples = read_medical_csv(str(csv))
    assert len(samples) == 8
    assert samples.skipped == [f"{tmp_path / 'gone' / 'missing.dcm'}: file does not exist"]
    with pytest.raises(DataError, match=r"missing\.dcm: file does not exist; remove it, or set data\.strict: false"):
        read_medical_csv(str(csv), strict=True)


def test_csv_label_outside_the_class_list_is_an_error(med_png_folder: Path, tmp_path: Path):
    rows = [(str(p), p.parent.name) for p in sorted(med_png_folder.rglob("*.png"))]
    csv = write_csv(tmp_path / "data.csv", rows + [(rows[0][0], "tumour")])
    with pytest.raises(DataError, match=r"labels \['tumour'\] are not in data\.options\.classes \(normal, lesion\)"):
        read_medical_csv(str(csv), options={"classes": ["normal", "lesion"]})
    with pytest.raises(DataError, match=r"labels \['tumour'\] were not in the training data"):
        read_medical_csv(str(csv), classes=["lesion", "normal"])


def test_csv_relative_paths_and_series_folders(med_series_folder: Path, tmp_path: Path):
    data = shutil.copytree(med_series_folder, tmp_path / "series")
    rows = [(str(p.relative_to(tmp_path)), p.parent.name) for p in sorted(data.glob("*/*")) if p.is_dir()]
    samples = read_medical_csv(str(write_csv(tmp_path / "data.csv", rows)), options={"spatial_dims": 3})
    assert len(samples) == 4 and samples.classes == ["lesion", "normal"]


def test_csv_with_a_wrong_header(tmp_path: Path):
    with pytest.raises(DataError, match="the header must name the columns 'path' and 'label'"):
        read_medical_csv(str(write_csv(tmp_path / "x.csv", [("a", "b")], header="file,class")))


# ---------------------------------------------------------------- segmentation


def test_segmentation_folder_pairs_images_and_masks(med_seg_folder: Path):
    samples = read_segmentation(str(med_seg_folder))
    assert len(samples) == 5 and samples.labels == [] and samples.is_segmentation
    assert samples.classes == ["background", "foreground"]
    assert [p.name for p in samples.paths] == [m.name for m in samples.masks]
    assert all(m.parent.name == "masks" for m in samples.masks)


def test_image_and_mask_of_different_shapes_names_both(med_seg_folder: Path, med_copy):
    from tl_medical.synthetic import write_nifti

    data = med_copy(med_seg_folder)
    write_nifti(data / "masks" / "case_002.nii.gz", np.zeros((20, 32), dtype=np.uint8), (0.7, 0.7), dtype="uint8")
    with pytest.raises(DataError) as err:
        read_segmentation(str(data))
    message = str(err.value)
    assert "\n" not in message
    assert str(data / "images" / "case_002.nii.gz") in message and "(32, 32)" in message
    assert str(data / "masks" / "case_002.nii.gz") in message and "(20, 32)" in message


def test_image_without_a_mask_is_skipped(med_seg_folder: Path, med_copy):
    data = med_copy(med_seg_folder)
    (data / "masks" / "case_004.nii.gz").unlink()
    samples = read_segmentation(str(data))
    assert len(samples) == 4
    assert samples.skipped == [f"{data / 'images' / 'case_004.nii.gz'}: no mask named like it in {data / 'masks'}"]
    with pytest.raises(DataError, match="no mask named like it"):
        read_segmentation(str(data), strict=True)


def test_segmentation_csv_and_mask_values_outside_the_classes(med_seg_folder: Path, tmp_path: Path):
    from tl_medical.synthetic import write_nifti

    rows = [(f"{med_seg_folder}/images/case_00{i}.nii.gz", f"{med_seg_folder}/masks/case_00{i}.nii.gz")
            for i in range(3)]
    samples = read_segmentation(str(write_csv(tmp_path / "seg.csv", rows, header="image,mask")))
    assert len(samples) == 3
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[4:8, 4:8] = 255
    write_nifti(tmp_path / "m255.nii.gz", mask, (0.7, 0.7), dtype="uint8")
    bad = write_csv(tmp_path / "bad.csv", rows + [(rows[0][0], str(tmp_path / "m255.nii.gz"))], header="image,mask")
    with pytest.raises(DataError, match=r"m255\.nii\.gz: mask value 255 is outside the class list .* saved as 0/1"):
        read_segmentation(str(bad), options={"classes": ["background", "lesion"]})
    with pytest.raises(DataError, match=r"m255\.nii\.gz: mask value 255; .*save a 0/255 mask as 0/1"):
        read_segmentation(str(bad))


def test_3d_segmentation_and_the_wrong_dimensionality(med_seg3d_folder: Path):
    samples = read_segmentation(str(med_seg3d_folder), options={"spatial_dims": 3})
    assert len(samples) == 3 and samples.spatial_dims == 3
    with pytest.raises(DataError, match="spatial_dims: 3"):
        read_segmentation(str(med_seg3d_folder))


# ---------------------------------------------------------------- read(config, seed) of the data formats


def formats() -> dict:
    return {f.name: f for f in DATA_FORMATS}


def test_data_formats_are_registered_with_options():
    found = formats()
    assert set(found) == {"medical-folder", "medical-csv", "medical-segmentation"}
    assert found["medical-folder"].task == found["medical-csv"].task == "medical-classification"
    assert found["medical-segmentation"].task == "medical-segmentation"
    assert all(f.options is MedicalOptions and f.read_split is not None for f in found.values())


def test_read_splits_and_carries_the_options(med_png_folder: Path):
    options = MedicalOptions(size=24, window="lung").model_dump()  # as the recipe layer hands it over
    config = DataConfig(format="medical-folder", path=str(med_png_folder), test_path=str(med_png_folder),
                        val_fraction=0.25, options=options)
    data = formats()["medical-folder"].read(config, 0)
    assert isinstance(data, MedicalData) and isinstance(data, ClassificationData)
    assert isinstance(data.train, MedicalSamples) and isinstance(data.val, MedicalSamples)
    assert data.options.size == 24 and data.options.window == "lung"
    assert len(data.train) == 6 and sorted(data.val.labels) == [0, 1] and len(data.test) == 8
    assert data.summary()["options"]["window"] == "lung"
    assert formats()["medical-folder"].read(config, 0).val.paths == data.val.paths  # seeded
    sized = formats()["medical-folder"].read(config.model_copy(update={"image_size": 16}), 0)
    assert sized.options.size == 16  # data.image_size, when set, wins


def test_read_segmentation_random_split(med_seg_folder: Path):
    config = DataConfig(format="medical-segmentation", path=str(med_seg_folder), val_fraction=0.4)
    data = formats()["medical-segmentation"].read(config, 3)
    assert data.is_segmentation and data.classes == ["background", "foreground"]
    assert len(data.train) == 3 and len(data.val) == 2 and data.test is None
    assert len(data.val.masks) == 2 and data.val.labels == []


def test_read_split_takes_options_or_defaults(med_png_folder: Path, med_nifti3d_folder: Path):
    read_split = formats()["medical-folder"].read_split
    assert len(read_split(str(med_png_folder), strict=False, classes=["lesion", "normal"])) == 8  # defaults: 2D
    volumes = read_split(str(med_nifti3d_folder), strict=False, classes=["lesion", "normal"],
                         options={"spatial_dims": 3})
    assert len(volumes) == 6
    with pytest.raises(DataError, match="spatial_dims"):
        read_split(str(med_nifti3d_folder), strict=False, classes=["lesion", "normal"])


def test_options_are_validated():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="one spacing per spatial axis"):
        MedicalOptions(spatial_dims=3, spacing=(1.0, 1.0))
    with pytest.raises(ValidationError, match="extra"):
        MedicalOptions(windw="lung")
    with pytest.raises(ValidationError):
        MedicalOptions(window="liver")
    with pytest.raises(DataError, match="data.options.size"):
        read_medical_folder("/nowhere", options={"size": 0})


# ---------------------------------------------------------------- MedicalDataset


def test_dataset_2d_shapes_window_and_determinism(med_dicom_folder: Path):
    samples = read_medical_folder(str(med_dicom_folder))
    dataset = MedicalDataset(samples, MedicalOptions(size=16, window="lung"), augment=False)
    x, y = dataset[0]
    assert tuple(x.shape) == (1, 16, 16) and str(x.dtype) == "torch.float32" and isinstance(y, int)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert (dataset[0][0] == x).all()  # no randomness without augment
    three = MedicalDataset(samples, {"size": 16, "channels": 3}, augment=False)
    assert tuple(three[0][0].shape) == (3, 16, 16)


def test_window_changes_what_the_model_sees(med_dicom_folder: Path):
    samples = read_medical_folder(str(med_dicom_folder))
    lung = MedicalDataset(samples, MedicalOptions(size=16, window="lung"), augment=False)[0][0]
    soft = MedicalDataset(samples, MedicalOptions(size=16, window="soft-tissue"), augment=False)[0][0]
    assert float(soft.mean()) < 0.1 < float(lung.mean())  # lung parenchyma is black in a soft-tissue window


def test_dataset_3d_series_with_resampling(med_series_folder: Path):
    samples = read_medical_folder(str(med_series_folder), options={"spatial_dims": 3})
    options = MedicalOptions(spatial_dims=3, size=8, spacing=(2.0, 1.0, 1.0), window="lung")
    x, y = MedicalDataset(samples, options, augment=False)[1]
    assert tuple(x.shape) == (1, 8, 8, 8) and str(x.dtype) == "torch.float32" and y in (0, 1)


def test_dataset_segmentation_shapes(med_seg3d_folder: Path):
    samples = read_segmentation(str(med_seg3d_folder), options={"spatial_dims": 3})
    x, mask = MedicalDataset(samples, MedicalOptions(spatial_dims=3, size=8), augment=True)[0]
    assert tuple(x.shape) == (1, 8, 8, 8) and tuple(mask.shape) == (8, 8, 8)
    assert str(mask.dtype) == "torch.int64" and set(mask.unique().tolist()) <= {0, 1}


def bright_square(tmp_path: Path) -> MedicalSamples:
    """One 2D image with a bright square in its top-left quarter, and the square as its mask."""
    from tl_medical.synthetic import write_nifti

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image = np.zeros((32, 32), dtype=np.float32)
    mask = np.zeros((32, 32), dtype=np.uint8)
    image[4:12, 2:10] = 1000.0
    mask[4:12, 2:10] = 1
    write_nifti(tmp_path / "images" / "a.nii.gz", image, (1.0, 1.0), dtype="float32")
    write_nifti(tmp_path / "masks" / "a.nii.gz", mask, (1.0, 1.0), dtype="uint8")
    return read_segmentation(str(tmp_path))


def test_augmentation_changes_the_image_but_keeps_the_mask_on_the_object(tmp_path: Path):
    import torch

    samples = bright_square(tmp_path)
    options = MedicalOptions(size=32)
    plain_x, plain_mask = MedicalDataset(samples, options, augment=False)[0]
    augmented = MedicalDataset(samples, options, augment=True)
    moved = 0
    for seed in range(12):
        torch.manual_seed(seed)
        x, mask = augmented[0]
        on = mask.bool()
        assert on.any()
        assert float(x[0][on].mean()) > 0.8 and float(x[0][~on].mean()) < 0.1  # the mask covers the bright object
        moved += int(not torch.equal(mask, plain_mask))
    assert moved > 0  # flips, rotations and affine moved image and mask together


def test_augmentation_is_reproducible_from_the_torch_seed(med_png_folder: Path):
    import torch

    samples = read_medical_folder(str(med_png_folder))
    dataset = MedicalDataset(samples, MedicalOptions(size=16), augment=True)
    draws = []
    for seed in (7, 7, 8, 9):
        torch.manual_seed(seed)
        draws.append(dataset[0][0])
    assert torch.equal(draws[0], draws[1])
    assert not (torch.equal(draws[0], draws[2]) and torch.equal(draws[0], draws[3]))


# ---------------------------------------------------------------- synthetic writers


@pytest.mark.parametrize("dims,fmt", [(2, "png"), (2, "nifti"), (2, "dicom"), (3, "nifti"), (3, "dicom")])
def test_synthetic_classification_is_readable_with_bright_lesions(tmp_path: Path, dims: int, fmt: str):
    from tl_medical.io import read_image
    from tl_medical.synthetic import write_classification

    out = write_classification(tmp_path / "data", 2, dims, fmt, size=16, seed=9)
    samples = read_medical_folder(str(out), options={"spatial_dims": dims})
    assert len(samples) == 4 and samples.skipped == [] and sorted(samples.labels) == [0, 0, 1, 1]
    peaks = {c: [read_image(p)[0].max() for p, label in zip(samples.paths, samples.labels)
                 if samples.classes[label] == c] for c in ("normal", "lesion")}
    assert min(peaks["lesion"]) > max(peaks["normal"])  # lesions are compact bright objects


def test_synthetic_dicom_is_ct_in_hounsfield_units(med_dicom_folder: Path):
    import pydicom

    from tl_medical.io import read_image

    path = med_dicom_folder / "lesion" / "lesion_000.dcm"
    ds = pydicom.dcmread(path)
    assert ds.Modality == "CT" and float(ds.RescaleIntercept) == -1024
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # Explicit VR Little Endian
    hu, spacing = read_image(path)
    assert -1024 <= hu.min() < -700 and hu.max() > 0 and spacing == pytest.approx((0.7, 0.7))


def test_synthetic_segmentation_masks_mark_the_lesions(med_seg_folder: Path):
    from tl_medical.io import read_image

    image, _ = read_image(med_seg_folder / "images" / "case_000.nii.gz")
    mask, _ = read_image(med_seg_folder / "masks" / "case_000.nii.gz")
    assert set(np.unique(mask).tolist()) == {0.0, 1.0}
    assert image[mask == 1].mean() > image[mask == 0].mean() + 500


def test_synthetic_cli_writes_and_refuses_a_non_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    from tl_medical import synthetic

    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["synthetic", "segmentation", str(out), "--n", "2", "--size", "16"])
    synthetic.main()
    assert "wrote 2 2D image/mask pairs" in capsys.readouterr().out
    assert len(read_segmentation(str(out))) == 2
    with pytest.raises(SystemExit, match="is not empty"):
        synthetic.main()
    monkeypatch.setattr(sys, "argv", ["synthetic", "classification", str(tmp_path / "v"), "--dims", "3",
                                      "--format", "png"])
    with pytest.raises(SystemExit, match="PNG holds 2D images only"):
        synthetic.main()
