"""WiSE-FT (``train.wise_ft``): the fine-tuned backbone mixed with its pre-trained weights, the mixing weight chosen
on validation, the curve in the report - and refused where it cannot mean anything."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_recipe
from safetensors.torch import load_file

from tl_core.testing import assert_refused, snapshot


def test_wise_ft_keeps_the_best_mix_and_reports_the_curve(tiny_plugin, tiny_weights_file, image_folder,
                                                         write_recipe, cli, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 2, "wise_ft": True}))
    out = tmp_path / "run"
    code, stdout, err = cli("run", recipe, "--out", out, "--quiet")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    block = report["wise_ft"]
    curve = block["curve"]
    assert [p["alpha"] for p in curve] == pytest.approx([i / 10 for i in range(11)])
    best = max(p["val_accuracy"] for p in curve)
    assert next(p for p in curve if p["alpha"] == block["alpha"])["val_accuracy"] == best
    # alpha 1 is the fine-tuned model itself: the best epoch's validation scores
    epoch = report["epochs"][report["best_epoch"] - 1]
    assert curve[-1]["val_accuracy"] == epoch["val_accuracy"]
    assert curve[-1]["val_loss"] == pytest.approx(epoch["val_loss"], rel=1e-5)
    assert report["metrics"]["val"]["accuracy"] == best  # what the run scores and saves is the chosen mix
    # the saved backbone is (1 - alpha) w0 + alpha w: w0 the pre-trained file, w the best epoch's checkpoint
    alpha = block["alpha"]
    w0 = torch.load(tiny_weights_file, weights_only=True)
    tuned = load_file(str(out / "checkpoints" / "best.safetensors"))
    saved = load_file(str(out / "model.safetensors"))
    for key, value in saved.items():
        if key.startswith("backbone.") and value.is_floating_point():
            expected = torch.lerp(w0[key.removeprefix("backbone.")], tuned[key], alpha)
            assert torch.allclose(value, expected, atol=1e-6), key
        elif key.startswith("head."):
            assert torch.equal(value, tuned[key]), key  # the head stays as trained


@pytest.mark.parametrize("change,says", [
    ({"policy": {"name": "feature-extraction"}}, "policy feature-extraction never trains the backbone"),
    ({"backbone": {"weights": "none"}}, "no pre-trained weights to mix with"),
    ({"data": {"val_fraction": 0.0}}, "needs a validation split"),
], ids=["frozen backbone", "random init", "no validation"])
def test_wise_ft_is_refused_where_it_means_nothing(tiny_plugin, image_folder, write_recipe, cli, tmp_path, change,
                                                   says):
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1, "wise_ft": True}, **change))
    out = tmp_path / "run"
    before = snapshot(tmp_path)
    result = cli("run", recipe, "--out", out)
    assert_refused(result, says, tmp_path, before)
    assert "remove train.wise_ft" in result[2]
