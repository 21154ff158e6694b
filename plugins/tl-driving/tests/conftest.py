"""Fixtures of the tl-driving tests: an isolated environment, a writer of tiny images, and small synthetic street-scene
data sets in every label format.

Fixture names start with ``drv_`` so that they never clash with the core's or other plugins' fixtures. The scene
sets are written once per session; a test that changes files copies one with ``drv_copy`` first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")

SCENES = 8  # per format: scenes 0..7 (no background scene: that is every tenth, index 9)
SCENE_SIZE = (160, 96)


@pytest.fixture(autouse=True)
def drv_isolated(tl_env, monkeypatch: pytest.MonkeyPatch) -> None:
    """tl_core.testing's offline, temporary-cache environment, with every installed plugin loaded."""
    monkeypatch.delenv("TL_PLUGINS", raising=False)
    monkeypatch.delenv("TL_DISABLE_PLUGINS", raising=False)


@pytest.fixture
def drv_copy(tmp_path: Path):
    """``source -> Path``: a private copy of a session data set folder in ``tmp_path``, to add or break files in."""

    def copy(source: Path) -> Path:
        target = tmp_path / f"copy-{source.name}"
        shutil.copytree(source, target)
        return target

    return copy


@pytest.fixture(scope="session")
def drv_write_image():
    """``(path, width=96, height=64, colour=...) -> path``: write a small image (the suffix picks the format), with a
    few coloured bands so that it is not a flat colour."""

    def write(path: Path, width: int = 96, height: int = 64, colour: tuple[int, int, int] = (90, 90, 95)) -> Path:
        from PIL import Image, ImageDraw

        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (width, height), colour)
        draw = ImageDraw.Draw(image)
        draw.rectangle([0, 0, width // 3 - 1, height - 1], fill=(200, 40, 40))
        draw.rectangle([2 * width // 3, 0, width - 1, height // 2 - 1], fill=(40, 40, 200))
        image.save(path)
        return path

    return write


@pytest.fixture(scope="session")
def drv_scenes(tmp_path_factory: pytest.TempPathFactory):
    """``fmt -> Path``: the same 8 synthetic street scenes (160x96) written in format ``fmt`` (``data.path``)."""
    from tl_driving.synthetic import write_scenes

    written: dict[str, Path] = {}

    def get(fmt: str) -> Path:
        if fmt not in written:
            written[fmt] = write_scenes(tmp_path_factory.mktemp(f"scenes-{fmt}") / "data", SCENES, fmt,
                                        width=SCENE_SIZE[0], height=SCENE_SIZE[1], seed=0)
        return written[fmt]

    return get


@pytest.fixture(scope="session")
def drv_yolo_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 YOLO scenes, the last 3 in the data YAML's ``val`` split (scene 9 is an empty street)."""
    from tl_driving.synthetic import write_scenes

    return write_scenes(tmp_path_factory.mktemp("scenes-yolo-val") / "data", 10, "yolo", seed=1, split_val=3)
