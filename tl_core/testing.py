"""A pytest plugin for tl plugin authors: fixtures, and a conformance suite a plugin runs against itself.

It is registered with pytest through the ``pytest11`` entry point of tl-core, so installing tl makes it available
in any test session. Fixtures (all prefixed ``tl_``):

- ``tl_env``: an isolated, offline environment (Hugging Face, ultralytics and matplotlib caches in a temporary
  folder, a fresh tl feature cache for each test; ``HF_HUB_OFFLINE`` and friends set) - use it with
  ``@pytest.mark.usefixtures("tl_env")`` or ``autouse`` in your ``conftest.py``;
- ``tl_plugin``: ``tl_plugin(obj_or_module, name="...")`` registers a plugin in-process for one test and removes
  it afterwards;
- ``tl_cli``: ``tl_cli("run", recipe, "--out", dir)`` runs the ``tl`` command line in-process and returns
  ``(exit code, stdout, stderr)``; ``assert_refused(result, pattern, out, before)`` asserts that it was a refused
  user error (exit code 2, one ``error:`` line matching ``pattern``, no traceback, ``out`` as :func:`snapshot`
  found it before) - what a plugin's hostile-input tests check;
- ``tl_tiny_backbone``: a registered 3-stage convolutional backbone (``tiny``, 16 features, random init) for
  tests of heads, policies or data formats;
- ``tl_image_folder``: ``tl_image_folder(classes=("cat", "dog"), per_class=6)`` writes a tiny image folder;
- ``tl_tiny_data``: ``tl_tiny_data("translation/minilm-ny-en")`` writes tiny data for that recipe and returns the
  ``--set`` overrides that make the recipe train on it for one short epoch (``None`` when no plugin has tiny data
  for it), through the ``tl_conformance_smoke`` hook (every bundled plugin answers: image folders, detection
  scenes, medical images and volumes, sentence pairs).

The conformance suite: ``pytest --tl-conformance=NAME`` (an entry-point name such as ``medical``, or a plugin
module such as ``tl_medical.plugin``; several, comma-separated) checks everything that plugin registers:

- every backbone builds offline from its factory (for real), covers each parameter with exactly one layer
  group, and (for image inputs) runs forward on its declared input to ``(batch, feature_dim)``; every weights
  entry names its licence, a package or file entry its sha256 (a URL or hub entry without one is a warning), and
  every entry whose file is on the machine (a package's, a local file, a cached download) loads into its
  architecture for real, filling at least half of it;
- every head of an image task builds and maps ``(batch, in_features)`` to ``(batch, outputs)``;
- every policy has a name, description and BatchNorm statement, plans one state per layer group for every
  epoch, is consistent with ``frozen_throughout()``, and - applied to the tiny backbone for a training step -
  leaves exactly its frozen groups (BatchNorm statistics included) unchanged;
- every data format names a task and has a reader, and validates an empty ``data.options``;
- every recipe validates, and names only backbones, heads, policies and data formats that exist; and it trains for
  one tiny epoch on tiny data in its own format, which the plugins give through the ``tl_conformance_smoke`` hook
  (the core answers for its image folders), with its own weights where they can be had offline. What the suite
  must swap out is said in a :class:`ConformanceSwap` warning: an image-classification recipe in a format no
  plugin has tiny data for trains on an image folder, weights that need the network train from random init. A
  recipe without tiny data is skipped, with that reason; every hook answer in that run must have its hook's
  declared shape (:mod:`tl_core.contract`).

A failure names the plugin and the entry that broke the rule.
"""

from __future__ import annotations

import itertools
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tl_core.sample_data import write_image_folder

OPTION = "--tl-conformance"


# ------------------------------------------------------------------ pytest wiring


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("tl").addoption(
        OPTION, action="store", default=None, metavar="PLUGIN",
        help="run tl's conformance suite against PLUGIN (an entry-point name or a plugin module; comma-separated; "
             "'ecosystem': a sample of timm:, torchvision: and hf: backbones)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "tl_conformance: a check of tl's plugin conformance suite")
    if config.getoption("tl_conformance", None):
        suite = str(Path(__file__).with_name("conformance.py"))
        given = [a for a in config.invocation_params.args if not str(a).startswith("-") and "=" not in str(a)
                 and Path(str(a).split("::")[0]).exists()]
        config.args[:] = [*config.args, suite] if given else [suite]  # no paths given: the suite alone


# ------------------------------------------------------------------ fixtures

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0"}


@pytest.fixture
def tl_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An offline environment whose caches live in a temporary folder; yields that folder."""
    home = tmp_path_factory.getbasetemp() / "tl-home"
    for var, value in OFFLINE.items():
        monkeypatch.setenv(var, value)
    for var, sub in (("HF_HOME", "hf"), ("YOLO_CONFIG_DIR", "yolo"), ("MPLCONFIGDIR", "mpl")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("TL_CACHE_DIR", str(tmp_path_factory.mktemp("tl-cache")))  # each test its own feature cache
    yield home


@pytest.fixture
def tl_plugin() -> Iterator[Callable[..., Any]]:
    """``tl_plugin(obj, name="test-plugin")``: register a plugin for this test only."""
    from tl_core.plugins import register_plugin, unregister_plugin

    names: list[str] = []

    def register(obj: Any, name: str = "test-plugin") -> Any:
        register_plugin(obj, name)
        names.append(name)
        return obj

    yield register
    for name in names:
        unregister_plugin(name)


@pytest.fixture
def tl_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    """``tl_cli(*args)``: run the ``tl`` command line in-process; ``(exit code, stdout, stderr)``."""
    from tl_core import cli

    def run(*args: Any) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["tl", *map(str, args)])
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def snapshot(folder: Path) -> dict[str, tuple[int, int]] | None:
    """What is in ``folder`` (every file's relative path, size and modification time), or ``None`` when it does not
    exist: take one before a command and compare after, to show that the command left the folder untouched. The
    run folder's lock file (``.tl-lock``, rewritten by every run that tries the folder) is not part of it."""
    from tl_core.files import RunLock

    folder = Path(folder)
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != RunLock.NAME}


def assert_refused(result: tuple[int, str, str], pattern: str, out: Path | None = None,
                   before: dict[str, tuple[int, int]] | None = None) -> str:
    """Assert that a ``tl_cli`` result is a refused user error, as the README promises: exit code 2, exactly one line
    on stderr, starting ``error:`` and matching the regular expression ``pattern``, no traceback; and, given ``out``,
    that the folder is as it was (``before``, a :func:`snapshot` taken first; by default: it does not exist).
    Returns the error line."""
    import re

    code, _, stderr = result
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert code == 2, f"exit code {code}, not 2:\n{stderr}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line:\n{stderr}"
    assert re.search(pattern, lines[0]), f"{pattern!r} not in: {lines[0]}"
    if out is not None:
        assert snapshot(out) == before, f"{out} was changed: {snapshot(out)} (before: {before})"
    return lines[0]


def tiny_spec() -> Any:
    """A 3-stage conv-BN-ReLU backbone with global pooling (16 features), random init: fast on a CPU."""
    from tl_core.components import BackboneSpec, InputSpec, LayerGroup

    def factory() -> Any:
        from torch import nn

        from tl_core.model import Pooled

        def stage(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU())

        return Pooled(nn.Sequential(stage(3, 8), stage(8, 16), stage(16, 16)))

    return BackboneSpec(
        name="tiny", factory=factory, feature_dim=16,
        layer_groups=(LayerGroup("stem", ("features.0",)), LayerGroup("middle", ("features.1",)),
                      LayerGroup("top", ("features.2",))),
        input=InputSpec(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        description="tl_core.testing's tiny backbone (random init)",
    )


@pytest.fixture
def tl_tiny_backbone(tl_plugin: Callable[..., Any]) -> Any:
    """The ``tiny`` backbone, registered for this test; yields its spec."""
    from tl_core import hookimpl

    spec = tiny_spec()

    class TinyPlugin:
        @hookimpl
        def tl_register_backbones(self, register: Any) -> None:
            register(spec)

    tl_plugin(TinyPlugin(), "tl-testing-tiny")
    return spec


@pytest.fixture
def tl_image_folder(tmp_path: Path) -> Callable[..., Path]:
    """``tl_image_folder(classes=("cat", "dog"), per_class=6)``: a tiny image folder under ``tmp_path``."""

    def make(classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 6, name: str = "images") -> Path:
        return write_image_folder(tmp_path / name, tuple(classes), per_class)

    return make


SHORT_RUN = ["train.epochs=1", "train.batch_size=4", "train.device=cpu", "compare.scratch=false",
             "train.patience=null"]


class ConformanceSwap(UserWarning):
    """Something the conformance suite swapped out of a recipe for its tiny run (its data format, its weights), and
    why: shown in pytest's warnings summary, so that what was not tested is said."""


def tiny_data(recipe_name: str, folder: Path) -> list[str] | None:
    """Tiny data for ``recipe_name``, written into ``folder``: the ``--set`` overrides that point the recipe at it,
    followed by :data:`SHORT_RUN` (one epoch of batch 4 on the CPU); ``None`` when no plugin has tiny data for it.

    The plugins answer ``tl_conformance_smoke`` with data in the recipe's own format (the core answers for its
    image-folder and image-CSV formats). An image-classification recipe of another format that no plugin answers
    for trains on an image folder instead; weights that cannot be had offline are swapped for random init. Each
    swap is a :class:`ConformanceSwap` warning that names it and says why."""
    from tl_core.errors import WeightsError
    from tl_core.plugins import hook, registry
    from tl_core.recipe import load_recipe
    from tl_core.weights import offline_reason, resolve_weights

    recipe = load_recipe(recipe_name)
    answer = hook().tl_conformance_smoke(recipe_name=recipe_name, folder=Path(folder))
    swaps = []
    if answer is None and recipe.task == "image-classification":
        images = write_image_folder(Path(folder) / "images", per_class=4)
        answer = [f"data.path={images}", "data.format=image-folder", "data.test_path=null", "data.image_size=32",
                  "data.augment=false", "data.options={}"]
        swaps.append(f"data.format {recipe.data.format!r} swapped for 'image-folder': no plugin answered "
                     "tl_conformance_smoke with tiny data in that format")
    if answer is None:
        return None
    overrides = [*answer, *SHORT_RUN]
    tiny = load_recipe(recipe_name, overrides)
    spec = registry("backbone").get(tiny.backbone.name)
    try:
        entry = resolve_weights(spec, tiny.backbone.weights)
        why_not = offline_reason(entry) if entry is not None else None
    except WeightsError as exc:
        why_not = str(exc)
    if why_not is not None:
        overrides.append("backbone.weights=none")
        swaps.append(f"backbone.weights {tiny.backbone.weights!r} swapped for random init: {why_not}")
    for swap in swaps:
        warnings.warn(ConformanceSwap(f"{recipe_name}: {swap}"), stacklevel=2)
    return overrides


@pytest.fixture
def tl_tiny_data(tmp_path: Path) -> Callable[[str], list[str] | None]:
    """``tl_tiny_data(recipe_name)``: :func:`tiny_data` in a fresh folder under ``tmp_path``."""
    made = itertools.count()

    def make(recipe_name: str) -> list[str] | None:
        folder = tmp_path / f"tiny-data-{next(made)}"
        folder.mkdir()
        return tiny_data(recipe_name, folder)

    return make


# ------------------------------------------------------------------ what a plugin registered


#: the prefixed backbone names ``--tl-conformance=ecosystem`` checks (issue 14): six timm families, four torchvision
#: ones and, built from tiny configs in a temporary folder (the hub is not needed), four transformers vision encoders
ECOSYSTEM_SAMPLE = (
    "timm:resnet18", "timm:convnext_atto", "timm:efficientnet_b0", "timm:vit_tiny_patch16_224",
    "timm:mobilenetv3_small_050", "timm:regnetx_002",
    "torchvision:resnet18", "torchvision:mobilenet_v3_small", "torchvision:convnext_tiny", "torchvision:vit_b_16",
)
ECOSYSTEM = "ecosystem"


def tiny_hf_encoders(folder: Path) -> list[str]:
    """Four transformers vision encoders (ViT, DINOv2, ConvNeXt, Swin) from tiny configs, each saved into
    ``folder`` with an image processor as a hub repo holds them; returns their ``hf:`` backbone names."""
    import transformers as tf

    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
    models = {
        "vit": (tf.ViTConfig(intermediate_size=64, **tiny), tf.ViTImageProcessor(size={"height": 32, "width": 32})),
        "dinov2": (tf.Dinov2Config(**tiny), tf.BitImageProcessor(size={"shortest_edge": 36},
                                                                   crop_size={"height": 32, "width": 32})),
        "convnext": (tf.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1]),
                     tf.ConvNextImageProcessor(size={"shortest_edge": 32})),
        "swin": (tf.SwinConfig(embed_dim=8, depths=[1, 1], num_heads=[1, 2], image_size=32, patch_size=4,
                               window_size=2), tf.ViTImageProcessor(size={"height": 32, "width": 32})),
    }
    names = []
    for kind, (config, processor) in models.items():
        path = folder / f"tiny-{kind}"
        config.save_pretrained(path)
        processor.save_pretrained(path)
        names.append(f"hf:{path}")
    return names


def _ecosystem() -> dict[str, list[tuple[str, Any]]]:
    import atexit
    import shutil
    import tempfile

    from tl_core.plugins import REGISTRATION_HOOKS, registry

    folder = Path(tempfile.mkdtemp(prefix="tl-ecosystem-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the tiny hub folders, gone with the process
    names = [*ECOSYSTEM_SAMPLE, *tiny_hf_encoders(folder)]
    out: dict[str, list[tuple[str, Any]]] = {kind: [] for kind in REGISTRATION_HOOKS}
    out["backbone"] = [(n, registry("backbone").get(n)) for n in names]
    return out


def owned(plugin: str) -> dict[str, list[tuple[str, Any]]]:
    """``{kind: [(name, item), ...]}``: what the plugin called ``plugin`` (entry-point name or module) registered;
    ``ecosystem``: the backbones of :data:`ECOSYSTEM_SAMPLE` and :func:`tiny_hf_encoders`, by their prefixed names."""
    from tl_core.plugins import REGISTRATION_HOOKS, load_plugins, plugins, registry

    load_plugins()
    if plugin == ECOSYSTEM:
        return _ecosystem()
    names = {p.name: p for p in plugins()}
    by_module = {p.module: p.name for p in plugins()}
    name = plugin if plugin in names else by_module.get(plugin)
    if name is None:
        known = ", ".join(sorted(names))
        raise pytest.UsageError(f"{OPTION}: no plugin {plugin!r} is loaded (plugins: {known})")
    info = names[name]
    if info.status != "loaded":
        raise pytest.UsageError(f"{OPTION}: plugin {name!r} is {info.status}: {info.reason}")
    out: dict[str, list[tuple[str, Any]]] = {}
    for kind in REGISTRATION_HOOKS:
        reg = registry(kind)
        out[kind] = [(n, item) for n, item in reg.items() if reg.owner(n) == name]
    return out


def conformance_targets(config: pytest.Config) -> list[str]:
    value = config.getoption("tl_conformance", None) or os.environ.get("TL_CONFORMANCE", "")
    return [p.strip() for p in value.split(",") if p.strip()]
