"""Freeze policies, end to end: parameters (and BatchNorm statistics) that must not change do not change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe

from tl_core.plugins import registry
from tl_core.policies import (
    FeatureExtraction,
    FineTune,
    FreezeFirst,
    FreezeGroups,
    GradualUnfreeze,
    ProbeThenFineTune,
)
from tl_core.recipe import validate
from tl_core.run import execute

GROUPS = {"stem": "backbone.features.0.", "middle": "backbone.features.1.", "top": "backbone.features.2."}


def run(tmp_path, image_folder, policy: dict, epochs: int = 2, **train):
    """Train the tiny backbone under ``policy``; return (initial state, final state, report, log)."""
    from rich.console import Console

    recipe = validate(tiny_recipe(image_folder, policy=policy, data={"cache_features": False},
                                  train={"epochs": epochs, **train}))
    console = Console(record=True, width=200)
    out = tmp_path / "run"
    report = execute(recipe, out, console=console)
    final = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    initial = {f"backbone.{k}": v for k, v in torch.load(report["load_report"]["file"], weights_only=True).items()}
    return initial, final, report, console.export_text()


def changed(initial, final, group: str, kind: str = "all") -> set[bool]:
    """For every tensor of ``group``: did it change? ``kind``: all, params (no BN buffers), bn-stats, bn-affine."""
    out = set()
    for key, value in final.items():
        if not key.startswith(GROUPS[group]) or key.endswith("num_batches_tracked"):
            continue
        is_stat = key.endswith(("running_mean", "running_var"))
        is_bn_affine = ".1." in key[len(GROUPS[group]) - 1:] and key.endswith(("weight", "bias"))
        if kind == "bn-stats" and not is_stat or kind == "bn-affine" and not is_bn_affine:
            continue
        if kind == "params" and is_stat:
            continue
        out.add(not torch.equal(value, initial[key]))
    return out


def test_feature_extraction_leaves_the_backbone_bit_identical(tiny_plugin, image_folder, tmp_path):
    initial, final, report, _ = run(tmp_path, image_folder, {"name": "feature-extraction"})
    for group in GROUPS:
        assert changed(initial, final, group) == {False}, group  # BN running stats included
    assert report["parameters"]["trainable"] == 16 * 3 + 3  # the linear head only


def test_fine_tune_trains_everything_at_a_lower_backbone_lr(tiny_plugin, image_folder, tmp_path):
    initial, final, report, _ = run(tmp_path, image_folder, {"name": "fine-tune", "backbone_lr_mult": 0.1,
                                                             "layer_decay": 0.5}, schedule="constant")
    for group in GROUPS:
        assert changed(initial, final, group) == {True}, group
    rows = {r["group"]: r["lr"] for r in _inspect(image_folder, {"name": "fine-tune", "backbone_lr_mult": 0.1,
                                                                 "layer_decay": 0.5})}
    assert rows == pytest.approx({"stem": 0.01 * 0.1 * 0.25, "middle": 0.01 * 0.1 * 0.5, "top": 0.01 * 0.1,
                                  "head": 0.01})


def test_freeze_first_freezes_the_first_groups_and_their_batchnorm(tiny_plugin, image_folder, tmp_path):
    initial, final, _, _ = run(tmp_path, image_folder, {"name": "freeze-first", "groups": 2})
    assert changed(initial, final, "stem") == {False}
    assert changed(initial, final, "middle") == {False}  # running stats included: frozen BN stays in eval mode
    assert changed(initial, final, "top") == {True}


def test_freeze_groups_freezes_the_named_groups_wherever_they_are(tiny_plugin, image_folder, tmp_path):
    initial, final, _, _ = run(tmp_path, image_folder, {"name": "freeze-groups", "frozen": ["middle"]})
    assert changed(initial, final, "stem") == {True}
    assert changed(initial, final, "middle") == {False}  # running stats included
    assert changed(initial, final, "top") == {True}
    rows = _inspect(image_folder, {"name": "freeze-groups", "frozen": ["stem", "top"]})
    assert [r["trainable"] for r in rows] == [False, True, False, True]


def test_freeze_groups_names_an_unknown_group_and_lists_the_real_ones(tiny_plugin, image_folder, tmp_path):
    from tl_core.errors import RecipeError

    with pytest.raises(RecipeError, match="policy.frozen: no layer group 'encoder' in this backbone; its groups, "
                                          "stem first: stem, middle, top"):
        run(tmp_path, image_folder, {"name": "freeze-groups", "frozen": ["encoder"]})


def test_gradual_unfreeze_adds_one_group_per_step_from_the_top(tiny_plugin, image_folder, tmp_path):
    initial, final, report, log = run(tmp_path, image_folder, {"name": "gradual-unfreeze", "every": 1}, epochs=3)
    assert changed(initial, final, "stem") == {False}
    assert changed(initial, final, "middle") == {True}
    assert changed(initial, final, "top") == {True}
    assert "epoch 2: unfroze layer group 'top'" in log and "epoch 3: unfroze layer group 'middle'" in log
    trainable = [row["trainable_params"] for row in report["epochs"]]
    assert trainable[0] < trainable[1] < trainable[2]


def test_gradual_unfreeze_plan():
    policy = GradualUnfreeze(every=2)
    trainable = [[s.trainable for s in policy.plan(3, epoch, 8)] for epoch in range(8)]
    assert trainable == [[False] * 3] * 2 + [[False, False, True]] * 2 + [[False, True, True]] * 2 + [[True] * 3] * 2


def test_probe_then_fine_tune(tiny_plugin, image_folder, tmp_path):
    initial, final, _, _ = run(tmp_path / "a", image_folder, {"name": "probe-then-fine-tune", "probe_epochs": 1},
                               epochs=1)
    assert all(changed(initial, final, g) == {False} for g in GROUPS)  # probe only: backbone untouched
    initial, final, _, log = run(tmp_path / "b", image_folder, {"name": "probe-then-fine-tune", "probe_epochs": 1},
                                 epochs=2)
    assert all(changed(initial, final, g) == {True} for g in GROUPS)
    assert "epoch 2: unfroze layer group 'top'" in log


def test_bn_freeze_stats_keeps_statistics_but_trains_affine(tiny_plugin, image_folder, tmp_path):
    initial, final, _, _ = run(tmp_path, image_folder, {"name": "fine-tune", "bn": "freeze-stats"})
    for group in GROUPS:
        assert changed(initial, final, group, "bn-stats") == {False}
        assert changed(initial, final, group, "bn-affine") == {True}


def test_bn_freeze_keeps_statistics_and_affine(tiny_plugin, image_folder, tmp_path):
    initial, final, _, _ = run(tmp_path, image_folder, {"name": "fine-tune", "bn": "freeze"})
    for group in GROUPS:
        assert changed(initial, final, group, "bn-stats") == {False}
        assert changed(initial, final, group, "bn-affine") == {False}
        assert changed(initial, final, group, "params") == {True, False}  # convs train, BN does not


def test_every_policy_states_its_batchnorm_behaviour():
    for policy in (FeatureExtraction, FineTune, FreezeFirst, FreezeGroups, GradualUnfreeze, ProbeThenFineTune):
        assert policy.batchnorm and policy.description
        assert registry("policy").get(policy.name) is policy


def _inspect(image_folder, policy):
    from tl_core.inspect import inspect_recipe

    return inspect_recipe(validate(tiny_recipe(image_folder, policy=policy)))


def test_inspect_shows_groups_counts_bn_and_lr(tiny_plugin, image_folder, write_recipe, cli):
    import json

    recipe = write_recipe(tiny_recipe(image_folder, policy={"name": "freeze-first", "groups": 1}))
    code, stdout, _ = cli("inspect", recipe, "--json")
    rows = json.loads(stdout)
    assert [r["group"] for r in rows] == ["stem", "middle", "top", "head"]
    assert [r["trainable"] for r in rows] == [False, True, True, True]
    assert [r["batchnorm"] for r in rows[:3]] == ["freeze", "train", "train"]
    assert rows[0]["parameters"] == 3 * 8 * 9 + 2 * 8  # conv + BN affine of the stem
    code, stdout, _ = cli("inspect", recipe)
    assert "trainable" in stdout and "frozen" in stdout


def test_tl_policies_lists_a_required_option_as_required(cli):
    """freeze-groups has no default for `frozen`: the listing says it is required, not pydantic's sentinel."""
    import json

    code, stdout, _ = cli("policies", "--json")
    rows = {r["name"]: r for r in json.loads(stdout)}
    assert code == 0 and rows["freeze-groups"]["required"] == ["frozen"]
    assert "frozen" not in rows["freeze-groups"]["options"] and rows["fine-tune"]["required"] == []
    code, stdout, _ = cli("policies")
    assert "frozen (required)" in stdout and "Undefined" not in stdout


def test_l2_sp_keeps_the_backbone_nearer_its_pretrained_weights(tiny_plugin, image_folder, write_recipe, cli,
                                                                tmp_path):
    """Same seed and budget: alpha 0 is fine-tuning exactly; alpha 1 ends nearer w0, and its penalty is recorded."""
    import json

    from safetensors.torch import load_file

    from tl_core.weights import read_state_dict

    w0 = read_state_dict(Path(tiny_plugin.spec.weights[0].location), "tiny")

    def distance(policy: dict, name: str) -> tuple[float, dict]:
        out = tmp_path / name
        recipe = tiny_recipe(image_folder, policy=policy, train={"epochs": 3, "lr": 0.05, "weight_decay": 0.0})
        code, _, stderr = cli("run", write_recipe(recipe, f"{name}.yaml"), "--out", out, "--quiet")
        assert code == 0, stderr
        after = load_file(str(out / "checkpoints" / "best.safetensors"))
        moved = sum(float((after[f"backbone.{k}"] - v).pow(2).sum()) for k, v in w0.items()
                    if f"backbone.{k}" in after and after[f"backbone.{k}"].is_floating_point()
                    and "running" not in k)
        return moved ** 0.5, json.loads((out / "report.json").read_text())

    plain, _ = distance({"name": "fine-tune", "backbone_lr_mult": 1.0}, "fine-tune")
    zero, _ = distance({"name": "l2-sp", "alpha": 0.0}, "l2-sp-0")
    pulled, report = distance({"name": "l2-sp", "alpha": 1.0}, "l2-sp-1")
    assert zero == pytest.approx(plain, rel=1e-6)
    assert pulled < 0.8 * plain
    assert all(row["train_penalty"] >= 0 for row in report["epochs"]) and report["epochs"][-1]["train_penalty"] > 0


def test_adabn_changes_only_the_batchnorm_statistics_to_the_target_datas(tiny_plugin, image_folder):
    """After AdaBN the first BatchNorm's running mean is the mean of its input over the data (one batch: exact);
    every parameter is as it was, and so is every module's train/eval mode."""
    from conftest import tiny_factory

    from tl_core.builtin.classification.images import ImageDataset, read_image_folder, transforms
    from tl_core.components import InputSpec
    from tl_core.task import adapt_batchnorm

    backbone = tiny_factory().eval()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    dataset = ImageDataset(read_image_folder(str(image_folder)), transforms(InputSpec(size=16, mean=(0.5,) * 3,
                                                                                      std=(0.5,) * 3), 16, False))
    done = adapt_batchnorm(backbone, dataset, batch_size=64)
    assert done == {"layers": 3, "items": 24}
    after = backbone.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all("running" in k or "num_batches" in k for k in changed)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        first = backbone.features[0][0](images)  # the first convolution: what the first BatchNorm sees
    assert torch.allclose(after["features.0.1.running_mean"], first.mean((0, 2, 3)), atol=1e-5)
    assert not backbone.training and backbone.features[0][1].momentum == 0.1


def test_a_run_with_adabn_records_it_and_caches_apart(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    import json

    for adabn, name in ((False, "plain"), (True, "adabn")):
        recipe = tiny_recipe(image_folder, policy={"name": "feature-extraction"}, backbone={"adabn": adabn},
                             train={"epochs": 1})
        code, _, stderr = cli("run", write_recipe(recipe, f"{name}.yaml"), "--out", tmp_path / name)
        assert code == 0, stderr
    report = json.loads((tmp_path / "adabn" / "report.json").read_text())
    assert report["adabn"] == {"layers": 3, "items": 18}  # the training split
    assert report["feature_cache"]["hits"]["train"] is False  # not the plain run's features
    assert "adabn: re-estimated 3 BatchNorm layers' statistics on 18 training items" in stderr
