"""torchvision detectors on registry backbones: built, trained one step, predicting 0-based classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tl_core.plugins import plugins, registry


def recipe(head: str, backbone: str = "mobilenet_v2", weights: str = "imagenet"):
    return SimpleNamespace(backbone=SimpleNamespace(name=backbone, weights=weights),
                           head=SimpleNamespace(name=head, options={}), data=SimpleNamespace(image_size=None))


DATA = SimpleNamespace(classes=["car", "person", "stop sign"], options=SimpleNamespace(image_size=128))
IMAGES = [torch.rand(3, 96, 128), torch.rand(3, 64, 128)]
TARGETS = [
    {"boxes": torch.tensor([[10.0, 20, 50, 60]]), "labels": torch.tensor([0])},
    {"boxes": torch.tensor([[30.0, 10, 90, 60], [5, 5, 20, 40]]), "labels": torch.tensor([2, 1])},
]


def test_plugin_is_listed_and_lists_without_torch():
    info = {p.name: p for p in plugins()}["driving"]
    assert info.status == "loaded" and info.distribution == "tl-driving"
    code = ("import sys, json; from tl_core.plugins import plugins; plugins();"
            "print(json.dumps(sorted(m for m in ('torch', 'torchvision', 'ultralytics') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("head", ["faster-rcnn", "retinanet", "fcos", "ssdlite"])
def test_detector_trains_a_step_and_predicts_dataset_classes(head):
    from tl_driving.build import build
    from tl_driving.train import predict_step, train_step

    detector = build(recipe(head), DATA)
    model = detector.model
    assert detector.backbone.report.loaded and not detector.backbone.report.missing  # real ImageNet weights
    every = {id(p) for p in model.parameters()}
    split = {id(p) for p in model.backbone.parameters()} | {id(p) for p in model.head.parameters()}
    assert split == every  # the core's freeze policies and optimizer groups see every parameter
    model.train()
    loss = train_step(model, IMAGES, TARGETS)
    assert torch.isfinite(loss) and loss.requires_grad
    loss.backward()
    model.eval()
    with torch.no_grad():
        predictions = predict_step(model, IMAGES)
    assert len(predictions) == 2
    for p in predictions:
        assert set(p) >= {"boxes", "scores", "labels"}
        assert p["labels"].numel() == 0 or (p["labels"].min() >= 0 and p["labels"].max() < 3)


@pytest.mark.parametrize("backbone", ["timm:convnext_atto", "torchvision:resnet18", "hf"])
def test_a_detector_trains_on_a_backbone_named_by_its_library(backbone, tmp_path):
    """timm:, torchvision: and hf: backbones (built from config) under a feature pyramid, as registered ones."""
    from tl_core.testing import tiny_hf_encoders
    from tl_driving.build import build
    from tl_driving.train import train_step

    if backbone == "hf":
        backbone = next(n for n in tiny_hf_encoders(tmp_path) if n.endswith("convnext"))
    detector = build(recipe("faster-rcnn", backbone, "none"), DATA)
    detector.model.train()
    loss = train_step(detector.model, IMAGES, TARGETS)
    assert torch.isfinite(loss) and loss.requires_grad


@pytest.mark.parametrize("backbone, taps", [
    ("mobilenet_v2", [("features.6", 8, 32), ("features.13", 16, 96), ("features.18", 32, 1280)]),
    ("efficientnet_lite0", [("blocks.2", 8, 40), ("blocks.4", 16, 112), ("blocks.6", 32, 320)]),  # timm's feature_info
    ("timm:resnet18", [("layer2", 8, 128), ("layer3", 16, 256), ("layer4", 32, 512)]),
    ("timm:convnext_atto", [("stages.1", 8, 80), ("stages.2", 16, 160), ("stages.3", 32, 320)]),
    ("torchvision:convnext_tiny", [("features.3", 8, 192), ("features.5", 16, 384), ("features.7", 32, 768)]),
    ("resnet18", [("layer2", 8, 128), ("layer3", 16, 256), ("layer4", 32, 512)]),
])
def test_the_pyramid_reads_each_backbones_last_stage_at_strides_8_16_32(backbone, taps):
    from tl_driving.models import taps as find

    spec = registry("backbone").get(backbone)
    assert find(spec.factory(), spec) == taps


def test_a_backbone_without_features_attribute_is_a_detector_body_too():
    from tl_driving.build import build

    model = build(recipe("faster-rcnn", "resnet18", "none"), DATA).model
    model.train()
    assert torch.isfinite(train_loss(model))


def train_loss(model):
    from tl_driving.train import train_step

    return train_step(model, IMAGES, TARGETS)


def test_a_deep_copy_of_a_detector_taps_its_own_layers():
    import copy

    from tl_driving.build import build

    model = build(recipe("fcos", weights="none"), DATA).model.eval()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.backbone.parameters():
            p.zero_()  # a copy that reads the original's maps would still find objects
        assert not torch.equal(model.detector.backbone(IMAGES[0][None])["0"],
                               twin.detector.backbone(IMAGES[0][None])["0"])


def test_anchor_sizes_must_match_the_pyramid_levels():
    from tl_core.errors import TLError
    from tl_driving.build import build

    bad = recipe("faster-rcnn", weights="none")
    bad.head.options = {"anchor_sizes": [32, 64]}
    with pytest.raises(TLError, match=r"head.anchor_sizes has 2 sizes but the feature pyramid has 4 levels "
                                      r"\(strides 8, 16, 32, 64\)"):
        build(bad, DATA)


def test_detection_heads_are_registered_for_object_detection():
    heads = registry("head")
    for name in ("faster-rcnn", "retinanet", "fcos", "ssdlite"):
        assert heads.get(name).tasks == ("object-detection",) and heads.owner(name) == "driving"


def test_a_classification_head_for_detection_is_a_clear_error():
    from tl_core.errors import TLError
    from tl_driving.build import build

    with pytest.raises(TLError, match="head 'linear' is not a detector; object-detection heads: faster-rcnn, fcos"):
        build(recipe("linear"), DATA)


def test_map_metrics_on_known_boxes():
    from tl_core.train import evaluate_outputs

    truth = [{"boxes": torch.tensor([[10.0, 10, 50, 50]]), "labels": torch.tensor([0])}]
    perfect = [{"boxes": truth[0]["boxes"], "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}]
    m = evaluate_outputs("object-detection", perfect, truth, ["car", "person"])
    assert m["map_50"] == pytest.approx(1.0) and m["map"] == pytest.approx(1.0) and m["ap_car"] == pytest.approx(1.0)
    shifted = [{"boxes": truth[0]["boxes"] + 20, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}]
    m = evaluate_outputs("object-detection", shifted, truth, ["car", "person"])
    assert m["map_50"] == 0.0  # IoU 400/2800 < 0.5
