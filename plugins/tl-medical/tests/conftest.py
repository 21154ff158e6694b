"""Fixtures of the tl-medical tests: an isolated environment and tiny synthetic medical data sets (PNG, DICOM files,
NIfTI volumes, DICOM series, segmentation pairs), plus pydicom's and nibabel's own test files.

Fixture names start with ``med_`` so that they never clash with the core's fixtures. The data-set fixtures are
written once per session; a test that changes files copies one with ``med_copy`` first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")


@pytest.fixture(autouse=True)
def med_isolated(tl_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """tl_core.testing's offline, temporary-cache environment, with every installed plugin loaded."""
    monkeypatch.delenv("TL_PLUGINS", raising=False)
    monkeypatch.delenv("TL_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def med_copy(tmp_path: Path):
    """``source -> Path``: a private copy of a session data set in ``tmp_path``, to add or break files in."""

    def copy(source: Path) -> Path:
        target = tmp_path / f"copy-{source.parent.name}"
        shutil.copytree(source, target)
        return target

    return copy


# ---------------------------------------------------------------- files shipped by pydicom and nibabel


@pytest.fixture(scope="session")
def med_pydicom_file():
    """``name -> Path`` of a test file that ships inside pydicom (never downloads: a missing one skips)."""
    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"

    def get(name: str) -> Path:
        path = folder / name
        if not path.is_file():
            pytest.skip(f"pydicom does not ship {name} here")
        return path

    return get


@pytest.fixture(scope="session")
def med_nibabel_file():
    """``name -> Path`` of a test file that ships inside nibabel."""
    from nibabel.testing import data_path

    def get(name: str) -> Path:
        path = Path(data_path) / name
        if not path.is_file():
            pytest.skip(f"nibabel does not ship {name} here")
        return path

    return get


# ---------------------------------------------------------------- synthetic data sets (tiny, written once)


@pytest.fixture(scope="session")
def med_png_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2D PNG, 32x32, 4 per class: ``normal/`` and ``lesion/``."""
    from tl_medical.synthetic import write_classification

    return write_classification(tmp_path_factory.mktemp("png") / "data", 4, 2, "png", size=32)


@pytest.fixture(scope="session")
def med_dicom_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2D CT DICOM files, 32x32, 4 per class."""
    from tl_medical.synthetic import write_classification

    return write_classification(tmp_path_factory.mktemp("dicom") / "data", 4, 2, "dicom", size=32, seed=1)


@pytest.fixture(scope="session")
def med_nifti3d_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3D NIfTI volumes, 16x16x16, 3 per class."""
    from tl_medical.synthetic import write_classification

    return write_classification(tmp_path_factory.mktemp("nifti3d") / "data", 3, 3, "nifti", size=16, seed=2)


@pytest.fixture(scope="session")
def med_series_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3D CT as DICOM series folders (16 slices of 16x16), 2 per class."""
    from tl_medical.synthetic import write_classification

    return write_classification(tmp_path_factory.mktemp("series") / "data", 2, 3, "dicom", size=16, seed=3)


@pytest.fixture(scope="session")
def med_seg_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2D segmentation pairs, 32x32 NIfTI: ``images/`` and ``masks/``, 5 cases."""
    from tl_medical.synthetic import write_segmentation

    return write_segmentation(tmp_path_factory.mktemp("seg") / "data", 5, 2, size=32, seed=4)


@pytest.fixture(scope="session")
def med_seg3d_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3D segmentation pairs, 16x16x16 NIfTI, 3 cases."""
    from tl_medical.synthetic import write_segmentation

    return write_segmentation(tmp_path_factory.mktemp("seg3d") / "data", 3, 3, size=16, seed=5)
