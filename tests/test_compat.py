"""Hook API 2.0 runs a plugin written against 1.1 unchanged: it loads, with a deprecation warning for each name that
moved and for the range it states, and its backbone, format, policy, metrics and tiny data all work. A plugin whose
range admits no version this tl runs is refused with one line that says what to change."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import warnings

import pytest
from conftest import make_image_folder

from tl_core import HOOK_API_VERSION, plugins

PLUGIN_11 = '''
"""A plugin as the hook API 1.1 docs taught: imports from the core's modules, a module-level smoke function."""
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tl_core import hookimpl
from tl_core.components import DataFormat, RecipeSource
from tl_core.data import load_classification, read_image_folder  # moved in 2.0
from tl_core.policies import FineTuneOptions, FreezePolicy, GroupState  # FineTuneOptions moved in 2.0
from tl_core.recipe import DataConfig  # moved in 2.0
from tl_core.train import TrainResult  # moved in 2.0

TL_HOOK_API = ">=1.0,<2"
HERE = Path(__file__).parent


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = "none"


def read_split(path, strict=False, classes=None):  # 1.1: read_split took no options
    return read_image_folder(path, strict, classes)


class TopOnlyOptions(FineTuneOptions):
    pass


class TopOnly(FreezePolicy):
    name = "old-top-only"
    description = "only the top group trains"
    batchnorm = "frozen groups: freeze; the top: train"
    Options = TopOnlyOptions

    def plan(self, n_groups, epoch, epochs):
        return [GroupState(i == n_groups - 1, 1.0, "train" if i == n_groups - 1 else "freeze")
                for i in range(n_groups)]


@hookimpl
def tl_register_datasets(register):
    register(DataFormat("old-folder", "image-classification",
                        read=lambda config, seed: load_classification(config, seed, read_split),
                        read_split=read_split, options=Options))


@hookimpl
def tl_register_policies(register):
    register(TopOnly)


@hookimpl
def tl_register_recipes(register):
    register(RecipeSource("old/tiny", HERE / "old_tiny.yaml", "a 1.1 recipe"))


@hookimpl
def tl_evaluate(task, outputs, targets, class_names):  # 1.1: no options parameter
    if task != "image-classification":
        return None
    return {"old_top1": (outputs.argmax(1) == targets).float().mean().item()}


def tl_conformance_smoke(recipe, folder):  # 1.1: a plain module function, called for this plugin's recipes only
    import shutil

    shutil.copytree(HERE / "images", Path(folder) / "images")
    return [f"data.path={Path(folder) / 'images'}"]


assert TrainResult and DataConfig  # imported as 1.1 plugins did
'''

RECIPE = """# a recipe of the 1.1 plugin
task: image-classification
backbone: {name: tiny, weights: pretrained}
policy: {name: old-top-only}
data: {format: old-folder, path: images, image_size: 16, options: {note: kept}}
train: {epochs: 2, batch_size: 8, device: cpu}
"""


@pytest.fixture
def old_plugin(tmp_path, monkeypatch):
    folder = tmp_path / "oldplugin"
    folder.mkdir()
    (folder / "tl_old_plugin.py").write_text(textwrap.dedent(PLUGIN_11))
    (folder / "old_tiny.yaml").write_text(RECIPE)
    make_image_folder(folder / "images", per_class=6)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    sys.modules.pop("tl_old_plugin", None)


def test_a_hook_api_1_1_plugin_runs_unchanged_with_a_warning_for_each_moved_name(old_plugin, tiny_plugin, tmp_path,
                                                                               cli, tl_tiny_data):
    with pytest.warns(DeprecationWarning) as imported:
        module = importlib.import_module("tl_old_plugin")
    said = " | ".join(str(w.message) for w in imported)
    for name in ("tl_core.data.read_image_folder", "tl_core.policies.FineTuneOptions", "tl_core.recipe.DataConfig",
                 "tl_core.train.TrainResult"):
        assert f"{name} moved to " in said and "import it from tl_core.api" in said, name
    with pytest.warns(DeprecationWarning) as loaded:
        plugins.register_plugin(module, "old")
    notes = " | ".join(str(w.message) for w in loaded)
    assert (f"written for tl hook API 1.1 (TL_HOOK_API '>=1.0,<2'); runs on {HOOK_API_VERSION} through its "
            "compatibility layer") in notes
    assert "tl_conformance_smoke is a hook since tl hook API 2.0; mark it with @hookimpl" in notes
    try:
        info = {p.name: p for p in plugins.plugins()}["old"]
        assert info.status == "loaded" and "Migrating from hook API 1.1" in info.reason
        code, _, stderr = cli("run", "old/tiny", "--out", tmp_path / "run", "--quiet")
        assert code == 0, stderr
        report = json.loads((tmp_path / "run" / "report.json").read_text())
        assert "old_top1" in report["metrics"]["val"]  # its tl_evaluate, without options, still answers
        assert report["parameters"]["frozen"] > 0  # its policy (options from a moved model) froze the lower groups
        with pytest.warns(DeprecationWarning, match="read_split takes no options"):
            code, stdout, stderr = cli("evaluate", tmp_path / "run", "--data", old_plugin / "images", "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["items"] == 18
        overrides = tl_tiny_data("old/tiny")  # its module-level smoke function, through the hook
        assert overrides[0].startswith("data.path=") and overrides[0].endswith("images")
        core = tl_tiny_data("vision/linear-probe")  # as in 1.1, not asked for another plugin's recipe
        assert core[0].endswith("tiny-data-1/images") and "old_plugin" not in " ".join(core)
    finally:
        plugins.unregister_plugin("old")


def test_a_plugin_whose_range_admits_no_version_this_tl_runs_is_refused_in_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "future"
    folder.mkdir()
    (folder / "tl_future_plugin.py").write_text("TL_HOOK_API = '>=3,<4'\n")
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module("tl_future_plugin")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused, not warned about
        plugins.register_plugin(module, "future")
    info = {p.name: p for p in plugins.plugins()}["future"]
    assert info.status == "incompatible"
    assert info.reason == f"needs tl hook API >=3,<4; this tl has {HOOK_API_VERSION} (upgrade the plugin or tl)"
    plugins.unregister_plugin("future")
    sys.modules.pop("tl_future_plugin", None)


def test_every_name_hook_api_1_1_documented_still_imports(recwarn):
    """What the 1.1 docs told plugin authors to import, from where they said."""
    places = {
        "tl_core.components": ["BackboneSpec", "InputSpec", "LayerGroup", "HeadSpec", "DataFormat", "ModelBundle",
                               "RecipeSource", "recipes_in"],
        "tl_core.weights": ["WeightsEntry", "LoadReport", "cache_dir", "sha256_of"],
        "tl_core.policies": ["FreezePolicy", "GroupState"],
        "tl_core.data": ["Samples", "ClassificationData", "load_classification", "read_image_folder"],
        "tl_core.model": ["build_backbone", "make_head", "TransferModel", "Pooled", "BuiltBackbone"],
        "tl_core.plugins": ["registry", "register_plugin", "unregister_plugin", "plugins", "reset"],
        "tl_core.train": ["TrainResult", "TaskSteps", "run_trainer"],
        "tl_core.run": ["RunContext", "execute"],
        "tl_core.recipe": ["load_recipe", "DataConfig", "Recipe", "format_options", "validate"],
        "tl_core.classifier": ["Classifier", "build_classifier", "make_policy", "train_classifier"],
        "tl_core.errors": ["TLError", "DataError", "WeightsError", "RunError", "RecipeError", "PluginError"],
    }
    for module, names in places.items():
        imported = importlib.import_module(module)
        for name in names:
            assert getattr(imported, name) is not None, f"{module}.{name}"
    moved = {str(w.message).split(" moved to ")[0] for w in recwarn if " moved to " in str(w.message)}
    assert {"tl_core.train.TrainResult", "tl_core.run.RunContext", "tl_core.classifier.make_policy"} <= moved
