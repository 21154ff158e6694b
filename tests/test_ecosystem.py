"""Any timm model as a backbone by name (``timm:NAME``, issue 14): built from timm's own metadata - its pooled
features, its layer groups (``group_matcher``), its preprocessing (``pretrained_cfg``), its hub weights entry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import make_image_folder, tiny_recipe

from tl_core.testing import assert_refused


@pytest.mark.parametrize("name", ["timm:resnet18", "timm:convnext_atto"])
def test_a_timm_model_trains_one_tiny_epoch_from_its_config(name, write_recipe, cli, tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=4, size=64)  # 9 training images: 3 batches of 3
    recipe = write_recipe(tiny_recipe(images, backbone={"name": name, "weights": "none"},
                                      policy={"name": "fine-tune", "layer_decay": 0.7},
                                      train={"epochs": 1, "batch_size": 3}, data={"image_size": 64}))
    code, _, err = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["recipe"]["backbone"]["name"] == name and report["parameters"]["trainable"] > 0
    assert report["preprocessing"]["interpolation"] in ("bicubic", "bilinear")  # timm's own, not the core default
    code, out, _ = cli("inspect", recipe, "--json")
    rows = json.loads(out)
    assert rows[0]["group"] == "group0" and sum(r["trainable_parameters"] for r in rows) == sum(
        r["parameters"] for r in rows)


def test_the_groups_are_timms_and_cover_every_parameter():
    import timm
    from timm.models import group_parameters

    from tl_core.plugins import registry

    spec = registry("backbone").get("timm:convnext_atto")
    model = spec.factory()
    names = [n for n, _ in model.named_parameters()]
    owners = {n: [g.name for g in spec.layer_groups if g.owns(n)] for n in names}
    assert all(len(o) == 1 for o in owners.values()), [n for n, o in owners.items() if len(o) != 1][:3]
    timm_groups = group_parameters(model, model.group_matcher(coarse=False))
    for index, params in timm_groups.items():
        assert {owners[n][0] for n in params} == {f"group{index}"}
    cfg = timm.create_model("convnext_atto", pretrained=False).pretrained_cfg
    assert spec.input.mean == tuple(cfg["mean"]) and spec.input.crop_pct == cfg["crop_pct"]
    assert spec.feature_dim == model.num_features
    entry = spec.weights[0]
    assert entry.source == "hf" and entry.location == f"{cfg['hf_hub_id']}/model.safetensors"
    assert entry.classifier == (cfg["classifier"],)


def test_layer_wise_decay_over_timms_groups_matches_timms_own():
    """tl's fine-tune plan (layer_decay d) gives every parameter of a timm backbone the learning-rate scale timm's
    param_groups_layer_decay gives it (the model without a classifier: the last group at scale 1 in both)."""
    from timm.optim import param_groups_layer_decay

    from tl_core.plugins import registry
    from tl_core.policies import FineTune

    spec = registry("backbone").get("timm:convnext_atto")
    model = spec.factory()
    decay = 0.65
    plan = FineTune(backbone_lr_mult=1.0, layer_decay=decay).plan(len(spec.layer_groups), 0, 1)
    mine = {}
    for name, _ in model.named_parameters():
        index = next(i for i, g in enumerate(spec.layer_groups) if g.owns(name))
        mine[name] = plan[index].lr_mult
    by_id = {id(p): n for n, p in model.named_parameters()}
    theirs = {by_id[id(p)]: group["lr_scale"]
              for group in param_groups_layer_decay(model, weight_decay=0.0, layer_decay=decay)
              for p in group["params"]}
    assert set(mine) == set(theirs)
    assert all(mine[n] == pytest.approx(theirs[n]) for n in mine)
    assert len({round(v, 9) for v in mine.values()}) == len(spec.layer_groups)  # one scale per group: decay applies


def test_unknown_names_and_tags_are_one_line(write_recipe, cli, tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=2)
    for name, says in (("timm:resnet1888", "timm has no model 'resnet1888'.*did you mean"),
                       ("timm:resnet18.no_such_tag", "timm:resnet18.no_such_tag: .*list_pretrained")):
        recipe = write_recipe(tiny_recipe(images, backbone={"name": name, "weights": "none"}), "bad.yaml")
        assert_refused(cli("inspect", recipe), says)


def test_listing_plugins_and_backbones_never_imports_timm(tmp_path):
    code = ("import sys; from tl_core.plugins import registry, plugins; plugins(); registry('backbone'); "
            "print('timm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_hub_weights_offline_are_one_line_naming_the_file(write_recipe, cli, tmp_path):
    images = make_image_folder(tmp_path / "images", per_class=2)
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "timm:resnet18", "weights": "default"}))
    assert_refused(cli("run", recipe, "--out", tmp_path / "run"),
                   "cannot fetch model.safetensors from the Hugging Face hub repo timm/resnet18.a1_in1k.*"
                   "set backbone.weights to the local file", tmp_path / "run")
