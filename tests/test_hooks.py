"""One test per hook (the meta-test in test_hook_docs.py keeps it so): each shows what a plugin author sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_recipe

from tl_core import hookimpl
from tl_core.components import DataFormat, HeadSpec, InputSpec, RecipeSource
from tl_core.errors import TLError
from tl_core.plugins import registry, unregister_plugin
from tl_core.policies import FreezePolicy, GroupState
from tl_core.recipe import load_recipe


def test_hook_tl_register_backbones(tiny_plugin, cli):
    code, stdout, _ = cli("backbones", "--json")
    rows = {r["name"]: r for r in json.loads(stdout)}
    assert rows["tiny"]["plugin"] == "tiny-test"
    assert rows["tiny"]["layer_groups"] == ["stem", "middle", "top"]
    assert rows["tiny"]["weights"][0]["name"] == "pretrained"


def test_hook_tl_register_heads(tiny_plugin, plugin, image_folder, write_recipe, cli, tmp_path):
    from pydantic import BaseModel, ConfigDict

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        scale: float = 1.0

    built = []

    def factory(in_features, num_outputs, scale=1.0):
        from torch import nn

        built.append((in_features, num_outputs, scale))
        return nn.Linear(in_features, num_outputs)

    class Heads:
        @hookimpl
        def tl_register_heads(self, register):
            register(HeadSpec("scaled", factory, options=Options))

    plugin(Heads())
    recipe = write_recipe(tiny_recipe(image_folder, head={"name": "scaled", "scale": 2.5}, train={"epochs": 1}))
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    assert built[0] == (16, 3, 2.5)  # sized from the backbone and the data's 3 classes


def test_hook_tl_register_policies(tiny_plugin, plugin, image_folder, write_recipe, cli):
    class TopOnly(FreezePolicy):
        name = "top-only"
        description = "only the top group trains"
        batchnorm = "frozen groups: freeze; the top group: freeze-stats"

        def plan(self, n_groups, epoch, epochs):
            return [GroupState(i == n_groups - 1, 1.0, "freeze-stats" if i == n_groups - 1 else "freeze")
                    for i in range(n_groups)]

    class Policies:
        @hookimpl
        def tl_register_policies(self, register):
            register(TopOnly)

    plugin(Policies())
    code, stdout, _ = cli("policies", "--json")
    assert "top-only" in {r["name"] for r in json.loads(stdout)}
    recipe = write_recipe(tiny_recipe(image_folder, policy={"name": "top-only"}))
    code, stdout, stderr = cli("inspect", recipe, "--json")
    assert code == 0, stderr
    rows = {r["group"]: r for r in json.loads(stdout)}
    assert [rows[g]["trainable"] for g in ("stem", "middle", "top", "head")] == [False, False, True, True]
    assert rows["top"]["batchnorm"] == "freeze-stats"


def test_hook_tl_register_datasets(tiny_plugin, plugin, image_folder, write_recipe, cli, tmp_path):
    from tl_core.api import load_classification, read_image_folder

    calls = []

    def read_list(path, strict=False, classes=None):
        """A text file naming one image folder per line (a toy format)."""
        calls.append(path)
        return read_image_folder(Path(path).read_text().strip(), strict, classes)

    class Formats:
        @hookimpl
        def tl_register_datasets(self, register):
            register(DataFormat("folder-list", "image-classification",
                                read=lambda config, seed: load_classification(config, seed, read_list),
                                read_split=read_list))

    plugin(Formats())
    listing = tmp_path / "list.txt"
    listing.write_text(str(image_folder))
    recipe = write_recipe(tiny_recipe(listing, data={"format": "folder-list"}, train={"epochs": 1}))
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    assert calls == [str(listing)]


def test_hook_tl_register_recipes(tiny_plugin, plugin, image_folder, write_recipe, cli, tmp_path):
    path = write_recipe(tiny_recipe("data"), name="shipped.yaml")

    class Recipes:
        @hookimpl
        def tl_register_recipes(self, register):
            register(RecipeSource("toy/tiny", path, "a shipped recipe"))

    plugin(Recipes())
    code, stdout, _ = cli("recipes", "--json")
    assert {"name": "toy/tiny", "plugin": "test-plugin", "path": str(path), "description": "a shipped recipe"} in \
        json.loads(stdout)
    recipe = load_recipe("toy/tiny", [f"data.path={image_folder}"])
    assert recipe.backbone.name == "tiny" and recipe.data.path == str(image_folder)


def test_hook_tl_adapt_backbone(tiny_plugin, plugin):
    import torch
    from torch import nn

    from tl_core.model import build_backbone

    spec = registry("backbone").get("tiny")
    with pytest.raises(TLError, match="no plugin can adapt it to 1-channel 2D input"):
        build_backbone(spec, "pretrained", InputSpec(channels=1))

    class SumChannels:
        @hookimpl
        def tl_adapt_backbone(self, backbone, spec, target):
            conv = backbone.features[0][0]
            new = nn.Conv2d(target.channels, conv.out_channels, 3, stride=2, padding=1, bias=False)
            with torch.no_grad():
                new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            backbone.features[0][0] = new
            return backbone, ["features.0.0.weight: RGB kernels summed to 1 channel"]

    plugin(SumChannels())
    built = build_backbone(spec, "pretrained", InputSpec(channels=1))
    assert built.module(torch.zeros(2, 1, 16, 16)).shape == (2, 16)
    assert built.report.reshaped == ["features.0.0.weight: RGB kernels summed to 1 channel"]


def test_hook_tl_build_model(tiny_plugin, plugin, image_folder):
    from tl_core.api import load_classification, read_image_folder
    from tl_core.builtin.classification.model import Classifier, build_classifier
    from tl_core.plugins import pm

    recipe = load_recipe(str(_write(tiny_recipe(image_folder), image_folder.parent)))
    data = load_classification(recipe.data, 0, read_image_folder)
    core = pm.hook.tl_build_model(recipe=recipe, data=data)
    assert isinstance(core, Classifier) and core.model.head[1].out_features == 3  # sized from the data

    seen = []

    class Domain:
        @hookimpl
        def tl_build_model(self, recipe, data):
            seen.append(len(data.classes))
            return build_classifier(recipe, len(data.classes) + 1)  # e.g. an extra "background" class

    plugin(Domain())
    mine = pm.hook.tl_build_model(recipe=recipe, data=data)
    assert seen == [3] and mine.model.head[1].out_features == 4  # the plugin answered first


def test_hook_tl_train(tiny_plugin, plugin, image_folder, write_recipe, cli, tmp_path):
    from tl_core.components import TrainResult

    class NativeTrainer:
        @hookimpl
        def tl_train(self, recipe, model, data, ctx):
            ctx.epoch_end(1, {"epoch": 1, "train_loss": 0.5})
            return TrainResult(model=model.model, history=[{"epoch": 1, "train_loss": 0.5}],
                               metrics={"val": {"accuracy": 0.25}}, metric="accuracy", info={"trainer": "native"})

    plugin(NativeTrainer())
    recipe = write_recipe(tiny_recipe(image_folder))
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["trainer"] == "native" and report["metrics"] == {"val": {"accuracy": 0.25}}
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()  # the core trainer never ran


def test_hook_tl_evaluate(tiny_plugin, plugin, image_folder, write_recipe, cli, tmp_path):
    class TopTwo:
        @hookimpl
        def tl_evaluate(self, task, outputs, targets, class_names):
            top2 = outputs.topk(2, dim=1).indices
            return {"top2_accuracy": (top2 == targets[:, None]).any(1).float().mean().item(),
                    "accuracy": -1.0}  # cannot overwrite the core's accuracy

    plugin(TopTwo())
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1, "metric": "top2_accuracy"}))
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    val = json.loads((tmp_path / "run" / "report.json").read_text())["metrics"]["val"]
    assert 0 <= val["top2_accuracy"] <= 1 and val["top2_accuracy"] >= val["accuracy"] >= 0


def test_hook_tl_evaluate_run(tiny_plugin, plugin, cli, tmp_path):
    class Counting:
        """A task whose "model" counts the lines of a text file."""

        @hookimpl
        def tl_register_datasets(self, register):
            register(DataFormat("lines", "line-count", read=lambda config, seed: None))

        @hookimpl
        def tl_evaluate_run(self, run_dir, report, data):
            if report["recipe"]["task"] != "line-count":
                return None
            lines = Path(data).read_text().splitlines()
            return {"items": len(lines), "unit": "lines", "skipped": [], "metrics": {"lines": float(len(lines))}}

    plugin(Counting())
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "report.json").write_text(json.dumps({"recipe": {  # what tl run writes, at the least
        "task": "line-count", "backbone": {"name": "tiny"}, "data": {"format": "lines", "path": "x"}},
        "data": {}, "metrics": {}}))
    (tmp_path / "new.txt").write_text("a\nb\nc\n")
    code, stdout, stderr = cli("evaluate", run_dir, "--data", tmp_path / "new.txt")
    assert code == 0, stderr
    assert "lines" in stdout and "3.0000" in stdout
    code, stdout, _ = cli("evaluate", run_dir, "--data", tmp_path / "new.txt", "--json")
    assert json.loads(stdout)["items"] == 3 and json.loads(stdout)["unit"] == "lines"
    saved = json.loads((run_dir / "evaluations" / "new.txt.json").read_text())
    assert saved["metrics"] == {"lines": 3.0} and saved["data"] == str(tmp_path / "new.txt")

    (run_dir / "report.json").write_text(json.dumps({"recipe": {   # a task no plugin scores: one clear line
        "task": "line-count", "backbone": {"name": "tiny"}, "data": {"format": "lines", "path": "x"}},
        "data": {}, "metrics": {}}))
    unregister_plugin("test-plugin")
    plugin(type("OnlyFormat", (), {"tl_register_datasets": Counting.tl_register_datasets})())
    code, _, stderr = cli("evaluate", run_dir, "--data", tmp_path / "new.txt")
    assert code == 2 and "no installed plugin scores such runs" in stderr


def test_hook_tl_conformance_smoke(tiny_plugin, plugin, tmp_path, tl_tiny_data):
    """A plugin's tiny data for its own recipe wins; a recipe in a format nobody writes tiny data for trains on an
    image folder, and weights that need the network train from random init - each swap said in a warning."""
    from tl_core.testing import SHORT_RUN, ConformanceSwap

    mine, other = tmp_path / "mine.yaml", tmp_path / "other.yaml"
    mine.write_text("task: image-classification\nbackbone: {name: tiny, weights: pretrained}\ndata: {path: x}\n")
    other.write_text("task: image-classification\nbackbone: {name: resnet18, weights: imagenet}\n"
                     "data: {format: folder-list, path: x}\n")
    asked = []

    class Tiny:
        @hookimpl
        def tl_register_recipes(self, register):
            register(RecipeSource("toy/mine", mine))
            register(RecipeSource("toy/other", other))

        @hookimpl
        def tl_register_datasets(self, register):
            register(DataFormat("folder-list", "image-classification", read=lambda config, seed: None))

        @hookimpl
        def tl_conformance_smoke(self, recipe_name, folder):
            asked.append(recipe_name)
            return [f"data.path={folder}", "data.image_size=16"] if recipe_name == "toy/mine" else None

    plugin(Tiny())
    assert tl_tiny_data("toy/mine") == [f"data.path={tmp_path}/tiny-data-0", "data.image_size=16", *SHORT_RUN]
    with pytest.warns(ConformanceSwap) as swaps:
        overrides = tl_tiny_data("toy/other")
    assert asked == ["toy/mine", "toy/other"]
    assert "data.format=image-folder" in overrides and overrides[-1] == "backbone.weights=none"
    said = [str(w.message) for w in swaps]
    assert "toy/other: data.format 'folder-list' swapped for 'image-folder'" in said[0]
    assert "toy/other: backbone.weights 'imagenet' swapped for random init: it downloads from https://" in said[1]


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    @hookimpl
    def tl_on_run_start(self, ctx):
        self.events.append(("start", ctx.name, ctx.out))

    @hookimpl
    def tl_on_epoch_end(self, ctx, epoch, metrics):
        self.events.append(("epoch", ctx.name, epoch, "val_accuracy" in metrics))

    @hookimpl
    def tl_on_run_end(self, ctx, report):
        self.events.append(("end", (ctx.out / "report.json").is_file(), report["best_epoch"]))


@pytest.fixture
def recorded_run(tiny_plugin, plugin, image_folder, write_recipe, cli, tmp_path):
    recorder = plugin(Recorder())
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 3}))
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    return recorder.events, tmp_path / "run"


def test_hook_tl_on_run_start(recorded_run):
    events, out = recorded_run
    assert events[0] == ("start", "transfer", out)


def test_hook_tl_on_epoch_end(recorded_run):
    events, _ = recorded_run
    assert [e for e in events if e[0] == "epoch"] == [("epoch", "transfer", i, True) for i in (1, 2, 3)]


def test_hook_tl_on_run_end(recorded_run):
    events, _ = recorded_run
    assert events[-1][0] == "end" and events[-1][1] is True and events[-1][2] in (1, 2, 3)


def test_hook_tl_add_commands(plugin, cli, monkeypatch):
    from tl_core import cli as cli_module

    class Commands:
        @hookimpl
        def tl_add_commands(self, cli):
            @cli.command("hello")
            def hello(name: str = "world") -> None:
                """Say hello."""
                print(f"hello {name}")

    plugin(Commands())
    monkeypatch.setattr(cli_module, "_plugin_commands_added", False)
    before = list(cli_module.app.registered_commands)
    try:
        code, stdout, _ = cli("hello", "--name", "tl")
    finally:
        cli_module.app.registered_commands[:] = before
    assert code == 0 and stdout.strip() == "hello tl"


def _write(data: dict, folder: Path) -> Path:
    import yaml

    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------- the answers' contract


class WrongModel:
    @hookimpl
    def tl_build_model(self, recipe, data):
        return {"model": "x"}


class WrongTraining:
    @hookimpl
    def tl_train(self, recipe, model, data, ctx):
        return "done"


class WrongMetrics:
    @hookimpl
    def tl_evaluate(self, task, outputs, targets, class_names):
        return {"accuracy": "high"}


@pytest.mark.parametrize("wrong, hook, expected", [
    (WrongModel, "tl_build_model", "must return a tl_core.components.ModelBundle"),
    (WrongTraining, "tl_train", "must return a tl_core.components.TrainResult"),
    (WrongMetrics, "tl_evaluate", "must map metric names to numbers; 'accuracy' is str"),
])
def test_an_answer_of_the_wrong_shape_names_the_plugin_in_one_line(wrong, hook, expected, tiny_plugin, plugin,
                                                                   image_folder, write_recipe, cli, tmp_path):
    """A plugin that answers an answering hook with the wrong shape stops the run with one line that names the
    plugin, the hook and what it expects - not an AttributeError three modules later - and writes no report."""
    plugin(wrong(), "wrong-shape")
    code, _, err = cli("run", write_recipe(tiny_recipe(image_folder)), "--out", tmp_path / "run", "--quiet")
    assert code == 2, err
    line = err.strip().splitlines()[-1]
    assert f"plugin 'wrong-shape' broke the {hook} contract" in line and expected in line
    assert "TL_DISABLE_PLUGINS=wrong-shape" in line and "Traceback" not in err
    assert not (tmp_path / "run" / "report.json").exists()


def test_a_tl_evaluate_run_answer_that_is_not_json_names_the_plugin(plugin, tmp_path):
    from tl_core.plugins import hook

    class NotJson:
        @hookimpl
        def tl_evaluate_run(self, run_dir, report, data):
            return {"items": 3, "metrics": {"bleu": 1.0}, "model": object()}

    plugin(NotJson(), "not-json")
    with pytest.raises(TLError, match="plugin 'not-json' broke the tl_evaluate_run contract: .* JSON-serialisable"):
        hook().tl_evaluate_run(run_dir=tmp_path, report={}, data="x")


def test_answers_are_traced_with_the_plugin_that_gave_them(tiny_plugin, plugin, monkeypatch, capsys):
    import torch

    from tl_core.plugins import hook

    class Extra:
        @hookimpl
        def tl_evaluate(self, task, outputs, targets, class_names):
            return {"extra": 1.0}

    plugin(Extra(), "extra-metrics")
    monkeypatch.setenv("TL_TRACE_PLUGINS", "1")
    given = hook().tl_evaluate(task="image-classification", outputs=torch.eye(2), targets=torch.arange(2),
                               class_names=["a", "b"], options={})
    assert given[0] == {"extra": 1.0} and given[1]["accuracy"] == 1.0  # pluggy's order: the last registered first
    err = capsys.readouterr().err
    assert "tl trace: tl_evaluate answered by 'extra-metrics': {'extra': 1.0}" in err
    assert "tl trace: tl_evaluate answered by 'tl.classification'" in err
