"""Shared fixtures: an isolated environment, a tiny backbone plugin with real weights files, image folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tl_core import hookimpl

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path_factory.getbasetemp() / "home"
    for var, sub in (("HF_HOME", "hf"), ("YOLO_CONFIG_DIR", "yolo"), ("MPLCONFIGDIR", "mpl")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("TL_CACHE_DIR", str(tmp_path_factory.mktemp("tl-cache")))
    # the core's tests see the core alone, whatever domain plugins are installed next to it
    monkeypatch.setenv("TL_PLUGINS", "")
    monkeypatch.delenv("TL_DISABLE_PLUGINS", raising=False)
    from tl_core import plugins

    plugins.reset()
    yield
    plugins.reset()


# ---------------------------------------------------------------- the tiny backbone


def tiny_factory():
    """Three conv-BN-ReLU stages and global pooling: 16 features, fast on a CPU."""
    from torch import nn

    from tl_core.model import Pooled

    def stage(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    return Pooled(nn.Sequential(stage(3, 8), stage(8, 16), stage(16, 16)))


def tiny_spec(weights=()):
    from tl_core.components import BackboneSpec, InputSpec, LayerGroup

    return BackboneSpec(
        name="tiny",
        factory=tiny_factory,
        feature_dim=16,
        layer_groups=(
            LayerGroup("stem", ("features.0",)),
            LayerGroup("middle", ("features.1",)),
            LayerGroup("top", ("features.2",)),
        ),
        weights=tuple(weights),
        input=InputSpec(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        description="tiny test backbone",
    )


@pytest.fixture(scope="session")
def tiny_weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A "pre-trained" state_dict for the tiny backbone, with a source classifier to be dropped by the head swap."""
    import torch

    torch.manual_seed(1234)
    model = tiny_factory()
    state = {**model.state_dict(), "fc.weight": torch.randn(5, 16), "fc.bias": torch.zeros(5)}
    path = tmp_path_factory.mktemp("weights") / "tiny-pretrained.pt"
    torch.save(state, path)
    return path


@pytest.fixture
def tiny_plugin(tiny_weights_file: Path):
    """Registers the ``tiny`` backbone (weights entry ``pretrained``, sha256-pinned) for one test."""
    from tl_core.plugins import register_plugin, unregister_plugin
    from tl_core.weights import WeightsEntry, sha256_of

    entry = WeightsEntry(
        name="pretrained", architecture="tiny", source="file", location=str(tiny_weights_file),
        sha256=sha256_of(tiny_weights_file), licence="test", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        input_size=16, classifier=("fc",),
    )

    class TinyPlugin:
        spec = tiny_spec([entry])

        @hookimpl
        def tl_register_backbones(self, register):
            register(self.spec)

    plugin = TinyPlugin()
    register_plugin(plugin, "tiny-test")
    yield plugin
    unregister_plugin("tiny-test")


@pytest.fixture
def plugin(tl_plugin):
    """``plugin(obj)`` or ``plugin(obj, name)``: tl_core.testing's ``tl_plugin``, the name the core's tests use."""
    return tl_plugin


# ---------------------------------------------------------------- data


COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40)]


def make_image_folder(root: Path, classes: int = 3, per_class: int = 8, size: int = 20, seed: int = 0) -> Path:
    """Real PNG files: each class a colour with noise and a bright square somewhere, so it can be learned."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(COLOURS[c]) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            x, y = rng.integers(0, size - 6, 2)
            pixels[y : y + 5, x : x + 5] = 255
            Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images")


def tiny_recipe(data_path: Path, **sections) -> dict:
    """Raw recipe data for the tiny backbone; keyword arguments replace or extend sections."""
    recipe = {
        "task": "image-classification",
        "backbone": {"name": "tiny", "weights": "pretrained"},
        "head": {"name": "linear"},
        "policy": {"name": "fine-tune"},
        "data": {"format": "image-folder", "path": str(data_path), "val_fraction": 0.25, "image_size": 16},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "seed": 0, "device": "cpu"},
    }
    for key, value in sections.items():
        recipe[key] = {**recipe.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe


@pytest.fixture
def write_recipe(tmp_path: Path):
    """Write raw recipe data as YAML and return its path."""
    import yaml

    def write(data: dict, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``tl ARGS`` in-process; returns ``(exit_code, stdout, stderr)``."""
    from tl_core import cli as cli_module

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["tl", *map(str, args)])
        from rich.console import Console

        monkeypatch.setattr(cli_module, "out", Console(width=200))
        monkeypatch.setattr(cli_module, "err", Console(stderr=True, width=200))
        code = 0
        try:
            cli_module.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
