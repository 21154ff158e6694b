"""`driving/faster-rcnn` end to end on generated street scenes; frozen layers stay frozen."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from tl_driving.synthetic import write_scenes

    return write_scenes(tmp_path_factory.mktemp("streets") / "coco", 12, "coco")


def test_faster_rcnn_recipe_runs_and_frozen_groups_stay_bit_identical(scenes, tmp_path):
    from tl_core.plugins import registry
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    recipe = load_recipe("driving/faster-rcnn", [f"data.path={scenes}", "data.options.image_size=128",
                                                 "train.epochs=2", "train.batch_size=4", "compare.scratch=false",
                                                 "data.val_fraction=0.25"])
    out = tmp_path / "run"
    report = execute(recipe, out, quiet=True)
    assert {"map_50", "map", "mar_100", "ap_car"} <= set(report["metrics"]["val"])
    assert report["load_report"]["loaded"] and not report["load_report"]["missing"]

    final = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    frozen = registry("backbone").get("mobilenet_v2").layer_groups[:2]  # freeze-first, groups: 2
    prefix = "detector.backbone.module."
    checked = changed = 0
    for key, value in final.items():
        name = key[len(prefix):]
        if not key.startswith(prefix) or key.endswith("num_batches_tracked"):
            continue
        if any(g.owns(name) for g in frozen):
            checked += 1
            assert torch.equal(value, initial_weights()[name]), name  # BatchNorm statistics included
        elif not torch.equal(value, initial_weights()[name]):
            changed += 1
    assert checked > 20 and changed > 20  # the first two groups stayed put; the rest trained


_INITIAL = {}


def initial_weights():
    """MobileNetV2 with its ImageNet weights, as tl loads them before training."""
    if not _INITIAL:
        from tl_core.model import build_backbone
        from tl_core.plugins import registry

        _INITIAL.update(build_backbone(registry("backbone").get("mobilenet_v2"), "imagenet").module.state_dict())
    return _INITIAL


@pytest.mark.parametrize("head", ["fcos", "retinanet", "ssdlite"])
def test_every_torchvision_head_runs_through_tl_run(scenes, tmp_path, head):
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    recipe = load_recipe("driving/faster-rcnn", [f"data.path={scenes}", "data.options.image_size=96",
                                                 "train.epochs=1", "compare.scratch=false", f"head.name={head}"])
    report = execute(recipe, tmp_path / "run", quiet=True)
    assert report["recipe"]["head"]["name"] == head and report["data"]["classes"]
    assert {"map_50", "map", "mar_100"} <= set(report["metrics"]["val"])
    assert json.dumps(report)  # the report is JSON-able


def test_yolo_recipe_runs_offline_from_its_yaml_on_coco_data(scenes, tmp_path):
    """COCO annotations are converted to YOLO files for ultralytics; the run is a normal tl run."""
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    recipe = load_recipe("driving/yolo", [f"data.path={scenes}", "data.format=coco", "backbone.weights=none",
                                          "train.epochs=2", "data.options.image_size=64", "train.batch_size=4"])
    out = tmp_path / "run"
    report = execute(recipe, out, quiet=True)
    assert report["trainer"] == "ultralytics" and report["frozen_layers"] == [0, 1, 2, 3, 4, 5]
    assert report["device"]["type"] == "cpu" and report["device"]["precision"] == "no"
    assert report["frozen_layers_changed"] == []
    assert [row["epoch"] for row in report["epochs"]] == [1, 2]
    assert (out / "yolo-data" / "data.yaml").is_file() and (out / "model.safetensors").is_file()
    assert {"map_50", "map", "ap_car"} <= set(report["metrics"]["val"])


def test_a_torchvision_detector_clips_at_train_max_grad_norm_on_the_core_trainer(scenes, tmp_path, monkeypatch):
    from accelerate import Accelerator

    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    norms = []
    clip = Accelerator.clip_grad_norm_

    def spy(self, parameters, max_norm, *args, **kwargs):
        norms.append(max_norm)
        return clip(self, parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", spy)
    recipe = load_recipe("driving/faster-rcnn", [f"data.path={scenes}", "data.options.image_size=96",
                                                 "train.epochs=1", "compare.scratch=false", "head.name=ssdlite",
                                                 "train.max_grad_norm=0.25"])
    execute(recipe, tmp_path / "run", quiet=True)
    assert norms and set(norms) == {0.25}  # every step
