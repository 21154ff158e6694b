"""tl_core.testing's conformance suite: the bundled plugins pass it (make test runs it on each); a broken plugin
fails it with messages that name the broken entry."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

BROKEN = '''
from tl_core import hookimpl
from tl_core.components import BackboneSpec, LayerGroup, RecipeSource
from tl_core.policies import FeatureExtraction, GroupState
from tl_core.plugins import register_plugin
from tl_core.testing import tiny_spec


class Liar(FeatureExtraction):
    name = "liar"
    description = "says the backbone stays frozen, then trains its top group"
    batchnorm = "freeze"

    def plan(self, n_groups, epoch, epochs):
        return [GroupState(False, 0.0, "freeze")] * (n_groups - 1) + [GroupState(True, 1.0, "train")]


class Broken:
    @hookimpl
    def tl_register_backbones(self, register):
        good = tiny_spec()
        register(BackboneSpec("holey", good.factory, 16, good.layer_groups[:2], input=good.input))  # no "top"

    @hookimpl
    def tl_register_policies(self, register):
        register(Liar)

    @hookimpl
    def tl_register_recipes(self, register):
        path = __import__("pathlib").Path(__file__).with_name("bad.yaml")
        path.write_text("task: image-classification\\nbackbone: {name: no-such-net}\\ndata: {path: x}\\n")
        register(RecipeSource("broken/bad", path, "names a backbone that does not exist"))
        path = path.with_name("answers.yaml")
        path.write_text("task: image-classification\\nbackbone: {name: mobilenet_v2}\\ndata: {path: x}\\n")
        register(RecipeSource("broken/answers", path, "valid, but the plugin's tl_evaluate answers wrongly"))

    @hookimpl
    def tl_evaluate(self, task, outputs, targets, class_names):
        return {"accuracy": "high"}


register_plugin(Broken(), "broken")
'''


def test_a_broken_plugin_fails_the_suite_naming_each_broken_entry(pytester, monkeypatch):
    monkeypatch.setenv("TL_PLUGINS", "")  # the inner session sees the core and the broken plugin only
    pytester.makeconftest(textwrap.dedent(BROKEN))
    result = pytester.runpytest_subprocess("--tl-conformance=broken", "-p", "no:cacheprovider", "-q")
    out = result.stdout.str()
    result.assert_outcomes(failed=4, passed=3, skipped=result.parseoutcomes().get("skipped", 0))
    assert "broken: backbone 'holey': backbone parameter 'features.2.0.weight' belongs to no layer group" in out
    assert "broken: policy 'liar' says the backbone is frozen throughout but its plan trains a group" in out
    assert "broken: recipe 'broken/bad' does not validate" in out and "no-such-net" in out
    assert "plugin 'broken' broke the tl_evaluate contract" in out and "'accuracy' is str" in out


MANGLED = '''
import dataclasses
from pathlib import Path

import torch

from tl_core import hookimpl
from tl_core.api import WeightsEntry, register_plugin, sha256_of
from tl_core.testing import tiny_spec

spec = tiny_spec()
state = spec.factory().state_dict()
path = Path(__file__).with_name("mangled.pt")
torch.save({(k if k.startswith("features.0.") else f"stage.{k}"): v for k, v in state.items()}, path)
entry = WeightsEntry(name="mangled", architecture="tiny", source="file", location=str(path), sha256=sha256_of(path),
                     licence="test", mean=(0.5,) * 3, std=(0.5,) * 3)


class Mangled:
    @hookimpl
    def tl_register_backbones(self, register):
        register(dataclasses.replace(spec, name="mangled-net", weights=(entry,)))


register_plugin(Mangled(), "mangled")
'''


def test_a_weights_entry_whose_key_map_does_not_fit_fails_the_suite(pytester, monkeypatch):
    """An entry that fills a third of its backbone would train on mostly random weights: the suite loads every
    entry it can have offline for real, and says which one does not fit."""
    monkeypatch.setenv("TL_PLUGINS", "")
    pytester.makeconftest(textwrap.dedent(MANGLED))
    result = pytester.runpytest_subprocess("--tl-conformance=mangled", "-p", "no:cacheprovider", "-q",
                                           "-k", "offline")
    out = result.stdout.str()
    result.assert_outcomes(failed=1)
    assert "mangled: weights mangled-net/mangled do not load into 'mangled-net'" in out
    assert "only 5 of 15 tensors of tiny come from mangled.pt" in out


def test_an_unknown_plugin_name_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setenv("TL_PLUGINS", "")
    result = pytester.runpytest_subprocess("--tl-conformance=nobody", "-p", "no:cacheprovider", "-q")
    assert result.ret != 0 and "--tl-conformance: no plugin 'nobody' is loaded" in result.stderr.str() + \
        result.stdout.str()


@pytest.mark.parametrize("plugin", ["tl.classification", "tl.policies"])
def test_the_core_builtins_pass_the_suite(pytester, monkeypatch, plugin):
    monkeypatch.setenv("TL_PLUGINS", "")
    result = pytester.runpytest_subprocess(f"--tl-conformance={plugin}", "-p", "no:cacheprovider", "-q")
    assert result.ret == 0, result.stdout.str()[-2000:]


def test_tl_tiny_data_gives_a_recipe_tiny_data_for_its_task(tl_tiny_data, tl_tiny_backbone, tl_plugin, tmp_path,
                                                            monkeypatch):
    """The fixture an author's tests use: image classification gets a tiny image folder; a recipe of a plugin with
    ``tl_conformance_smoke`` gets that plugin's data; both end in one short CPU epoch."""
    import sys
    import types

    from tl_core import hookimpl
    from tl_core.components import RecipeSource
    from tl_core.recipe import load_recipe
    from tl_core.run import execute
    from tl_core.testing import SHORT_RUN

    overrides = tl_tiny_data("vision/linear-probe")
    assert overrides[-len(SHORT_RUN):] == SHORT_RUN
    report = execute(load_recipe("vision/linear-probe", overrides), tmp_path / "run", quiet=True)
    assert len(report["epochs"]) == 1 and "accuracy" in report["metrics"]["val"], report["metrics"]

    recipe = tmp_path / "mine.yaml"
    recipe.write_text("task: image-classification\nbackbone: {name: tiny, weights: none}\ndata: {path: nowhere}\n")
    module = types.ModuleType("tl_fake_tiny_data")
    asked = []

    def smoke(name, folder):
        asked.append(name)
        return [f"data.path={folder}", "data.image_size=16"]

    module.tl_conformance_smoke = smoke
    module.tl_register_recipes = hookimpl(lambda register: register(RecipeSource("fake/mine", recipe, "mine")))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    tl_plugin(module, "fake-tiny-data")
    overrides = tl_tiny_data("fake/mine")
    assert asked == ["fake/mine"] and overrides[0].startswith("data.path=") and overrides[1] == "data.image_size=16"
    assert overrides[2:] == SHORT_RUN


def test_tiny_data_for_an_image_csv_recipe_is_a_csv(tl_tiny_data, tmp_path, tl_plugin):
    """The core's tiny data keeps a recipe's own format: an image-csv recipe gets a CSV naming tiny images."""
    from tl_core import hookimpl
    from tl_core.components import RecipeSource
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    recipe = tmp_path / "csv.yaml"
    recipe.write_text("task: image-classification\nbackbone: {name: mobilenet_v2, weights: none}\n"
                      "data: {format: image-csv, path: nowhere.csv}\n")

    class Recipes:
        @hookimpl
        def tl_register_recipes(self, register):
            register(RecipeSource("mine/csv", recipe))

    tl_plugin(Recipes(), "csv-recipes")
    overrides = tl_tiny_data("mine/csv")
    path = overrides[0].removeprefix("data.path=")
    assert path.endswith("images.csv") and not any(o.startswith("data.format=") for o in overrides)
    report = execute(load_recipe("mine/csv", overrides), tmp_path / "run", quiet=True)
    assert report["recipe"]["data"]["format"] == "image-csv" and report["data"]["train"] > 0

