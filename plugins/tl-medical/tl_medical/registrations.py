"""What tl-medical registers, as data: its data formats, naming their readers and options by reference
(``"module:attribute"``), so that registering them - every ``tl`` command does - imports nothing of the readers."""

from __future__ import annotations

from tl_core.api import DataFormat

CLASSIFICATION_TASK = "medical-classification"
SEGMENTATION_TASK = "medical-segmentation"
OPTIONS = "tl_medical.data:MedicalOptions"

DATA_FORMATS: tuple[DataFormat, ...] = (
    DataFormat(
        "medical-folder", CLASSIFICATION_TASK, read="tl_medical.data:read_folder_data",
        read_split="tl_medical.data:read_medical_folder", options=OPTIONS,
        description="one sub-folder per class of DICOM, NIfTI or PNG/JPEG files (3D: also DICOM series folders)",
    ),
    DataFormat(
        "medical-csv", CLASSIFICATION_TASK, read="tl_medical.data:read_csv_data",
        read_split="tl_medical.data:read_medical_csv", options=OPTIONS,
        description="a CSV of path,label rows naming DICOM, NIfTI or PNG/JPEG files or DICOM series folders",
    ),
    DataFormat(
        "medical-segmentation", SEGMENTATION_TASK, read="tl_medical.data:read_segmentation_data",
        read_split="tl_medical.data:read_segmentation", options=OPTIONS,
        description="images/ and masks/ matched by name (or a CSV of image,mask rows); masks hold class indices",
    ),
)
