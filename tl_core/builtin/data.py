"""The core's data formats for image classification: an image folder and a CSV manifest."""

from __future__ import annotations

from functools import partial
from typing import Any

from tl_core import hookimpl
from tl_core.components import DataFormat
from tl_core.data import load_classification, read_image_csv, read_image_folder


@hookimpl
def tl_register_datasets(register: Any) -> None:
    register(DataFormat(
        "image-folder", "image-classification",
        read=partial(_read, read_image_folder), read_split=read_image_folder,
        description="one sub-folder of images per class",
    ))
    register(DataFormat(
        "image-csv", "image-classification",
        read=partial(_read, read_image_csv), read_split=read_image_csv,
        description="a CSV with path,label columns (paths relative to the CSV)",
    ))


def _read(reader: Any, config: Any, seed: int) -> Any:
    return load_classification(config, seed, reader)
