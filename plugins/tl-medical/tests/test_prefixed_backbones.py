"""Backbones of the libraries (``timm:NAME``, ``torchvision:NAME``, ``hf:FOLDER``, issue 14) adapted to medical input
through ``tl_adapt_backbone``: 1 channel, 2D -> 3D inflation, and refusals in one line where the adaptation cannot
hold; trained one tiny epoch end to end through ``tl run``, all from random init (``backbone.weights: none``) or
from a local file of weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tl_core.components import InputSpec
from tl_core.errors import TLError
from tl_core.model import build_backbone
from tl_core.plugins import registry
from tl_core.policies import group_parameters
from tl_core.testing import assert_refused

#: the first convolution of each architecture: the one adapted to 1 channel
STEMS = {"timm:resnet18": "conv1", "torchvision:resnet18": "conv1", "timm:convnext_atto": "stem.0",
         "timm:efficientnet_b0": "conv_stem", "torchvision:efficientnet_b0": "features.0.0",
         "torchvision:densenet121": "features.conv0", "hf": "embeddings.patch_embeddings"}


@pytest.fixture(scope="module")
def hf_convnext(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny transformers ConvNeXt saved with save_pretrained: ``hf:<folder>``."""
    import transformers

    folder = tmp_path_factory.mktemp("hf") / "convnext"
    config = transformers.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1])
    transformers.ConvNextModel(config).save_pretrained(str(folder))
    return f"hf:{folder}"


@pytest.fixture(scope="module")
def hf_vit(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny transformers ViT for 32-pixel images."""
    import transformers

    folder = tmp_path_factory.mktemp("hf") / "vit"
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=32)
    transformers.ViTModel(config).save_pretrained(str(folder))
    return f"hf:{folder}"


def stem_of(name: str) -> str:
    return STEMS["hf" if name.startswith("hf:") else name]


def recipe(tmp_path: Path, data: Path, backbone: str, dims: int, size: int, weights: str = "none",
           task: str = "medical-classification", **train) -> Path:
    body = {
        "task": task,
        "backbone": {"name": backbone, "weights": weights},
        "policy": {"name": "fine-tune", "backbone_lr_mult": 0.3},
        "data": {"format": "medical-segmentation" if task == "medical-segmentation" else "medical-folder",
                 "path": str(data), "val_fraction": 0.25 if dims == 2 else 0.34, "augment": False,
                 "options": {"spatial_dims": dims, "size": size}},
        "train": {"epochs": 1, "batch_size": 3 if dims == 2 else 2, "lr": 0.003, "seed": 0, "device": "cpu",
                  "metric": "dice" if task == "medical-segmentation" else "auc", **train},
        "compare": {"scratch": False},
    }
    if task == "medical-classification":
        body["head"] = {"name": "linear"}
        body["data"]["options"]["positive_class"] = "lesion"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def assert_groups_cover(module: torch.nn.Module, spec) -> None:
    """Every parameter of the adapted backbone is in exactly one layer group (group_parameters raises if not)."""
    split = group_parameters(module, spec.layer_groups)
    assert sum(len(s) for s in split) == len(list(module.parameters()))


# ---------------------------------------------------------------- one tiny epoch through `tl run`


@pytest.mark.parametrize("name", ["timm:resnet18", "torchvision:resnet18", "timm:convnext_atto", "hf-convnext"])
def test_2d_one_channel_classification_trains(name, hf_convnext, med_png_folder, tl_cli, tmp_path):
    name = hf_convnext if name == "hf-convnext" else name
    out = tmp_path / "run"
    code, _, err = tl_cli("run", recipe(tmp_path, med_png_folder, name, 2, 32), "--out", out, "--quiet")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["preprocessing"]["channels"] == 1 and report["preprocessing"]["spatial_dims"] == 2
    assert len(report["preprocessing"]["mean"]) == 1  # the weights' RGB mean, averaged for the summed stem
    assert report["parameters"]["trainable"] == report["parameters"]["total"] > 0
    assert set(report["metrics"]["val"]) >= {"auc", "sensitivity"}


@pytest.mark.parametrize("name", ["timm:resnet18", "torchvision:resnet18"])
def test_3d_classification_of_an_inflated_backbone_trains(name, med_nifti3d_folder, tl_cli, tmp_path):
    out = tmp_path / "run"
    code, _, err = tl_cli("run", recipe(tmp_path, med_nifti3d_folder, name, 3, 16), "--out", out, "--quiet")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["preprocessing"]["spatial_dims"] == 3 and report["parameters"]["trainable"] > 0


def test_3d_from_a_local_file_reports_the_summed_and_inflated_stem(med_nifti3d_folder, tl_cli, tmp_path):
    spec = registry("backbone").get("torchvision:resnet18")
    torch.manual_seed(0)
    torch.save(spec.factory().state_dict(), tmp_path / "resnet18.pth")
    out = tmp_path / "run"
    code, _, err = tl_cli("run", recipe(tmp_path, med_nifti3d_folder, spec.name, 3, 16, str(tmp_path / "resnet18.pth")),
                          "--out", out, "--quiet")
    assert code == 0, err
    load = json.loads((out / "report.json").read_text())["load_report"]
    assert not load["missing"] and load["reshaped"][:2] == [
        "conv1.weight: (64, 3, 7, 7) -> (64, 1, 7, 7), 3 input channels summed",
        "conv1.weight: (64, 1, 7, 7) -> (64, 1, 7, 7, 7), inflated (repeated over depth, divided by 7)"]
    assert len([r for r in load["reshaped"] if "inflated" in r]) == 20  # every convolution of a ResNet-18


# ---------------------------------------------------------------- load, then adapt: the kernels


@pytest.mark.parametrize(("name", "dims"), [("timm:resnet18", 2), ("timm:resnet18", 3), ("torchvision:resnet18", 2),
                                            ("torchvision:resnet18", 3), ("timm:convnext_atto", 2), ("hf", 2)])
def test_the_adapted_stem_of_loaded_weights_is_their_rgb_sum(name, dims, hf_convnext, tmp_path):
    name = hf_convnext if name == "hf" else name
    spec = registry("backbone").get(name)
    torch.manual_seed(1)
    weights = spec.factory().state_dict()
    path = tmp_path / "weights" / "backbone.pth"  # a folder without config.json: read as a plain state dict
    path.parent.mkdir()
    torch.save(weights, path)
    built = build_backbone(spec, str(path), InputSpec(channels=1, size=32 if dims == 2 else 16, spatial_dims=dims))
    stem = stem_of(name)
    kernel = built.module.get_submodule(stem).weight.detach()
    rgb = weights[f"{stem}.weight"]
    summed = rgb.sum(1, keepdim=True)
    if dims == 2:
        torch.testing.assert_close(kernel, summed)
    else:  # I3D: repeated over depth and divided by it, so its sum over depth is the 2D kernel
        assert kernel.shape == (*summed.shape[:2], summed.shape[2], *summed.shape[2:])
        torch.testing.assert_close(kernel.sum(2), summed)
    report = built.report
    assert report.reshaped[0].startswith(f"{stem}.weight: {tuple(rgb.shape)} -> ")
    assert report.reshaped[0].endswith("3 input channels summed") and not report.missing
    assert_groups_cover(built.module, spec)


@pytest.mark.parametrize(("name", "dims"), [
    ("timm:resnet18", 2), ("timm:resnet18", 3), ("timm:convnext_atto", 2), ("timm:efficientnet_b0", 2),
    ("timm:efficientnet_b0", 3), ("torchvision:resnet18", 2), ("torchvision:resnet18", 3),
    ("torchvision:efficientnet_b0", 2), ("torchvision:efficientnet_b0", 3), ("torchvision:densenet121", 2),
    ("hf", 2), ("efficientnet_lite0", 3),
])
def test_a_gray_input_gets_the_original_features_and_the_groups_still_cover(name, dims, hf_convnext):
    """The channel rule through the whole network: a gray image (a depth-constant volume, with replicate padding so
    that the border repeats the slice) gets the features the original gave the image replicated over RGB."""
    name = hf_convnext if name == "hf" else name
    spec = registry("backbone").get(name)
    torch.manual_seed(0)
    original = spec.factory()
    size = 32 if dims == 2 else 16
    torch.manual_seed(0)  # the same initialisation as the original's
    adapted = build_backbone(spec, "none", InputSpec(channels=1, size=size, spatial_dims=dims)).module
    assert_groups_cover(adapted, spec)
    gray = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(3))
    x = gray if dims == 2 else gray.unsqueeze(2).expand(2, 1, size, size, size).contiguous()
    if dims == 3:
        from tl_medical.adapt import _symmetric_reference

        _symmetric_reference(original)  # timm's TF "same" padding, made symmetric as inflation makes it
        for net in (original, adapted):
            for m in net.modules():
                if isinstance(m, torch.nn.modules.conv._ConvNd) and not isinstance(m.padding, str):
                    m.padding_mode = "replicate"
    with torch.no_grad():
        want = original.eval()(gray.repeat(1, 3, 1, 1))
        got = adapted.eval()(x)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


def test_efficientnet_keeps_its_activations_and_squeeze_excitation_in_3d():
    from tl_medical.layers3d import BatchNormAct3d, SqueezeExciteNd

    module = build_backbone(registry("backbone").get("timm:efficientnet_b0"), "none",
                            InputSpec(channels=1, size=16, spatial_dims=3)).module
    assert type(module.bn1) is BatchNormAct3d and type(module.bn1.act).__name__ == "SiLU"
    assert isinstance(module.blocks[1][0].se, SqueezeExciteNd)
    assert not any(type(m).__name__.endswith("2d") for m in module.modules() if not any(m.children()))


@pytest.mark.parametrize("name", ["timm:vit_tiny_patch16_224", "hf-vit"])
def test_a_vit_patch_embedding_takes_one_channel_by_its_rgb_sum(name, hf_vit):
    name, size = (hf_vit, 32) if name == "hf-vit" else (name, 224)
    spec = registry("backbone").get(name)
    torch.manual_seed(0)
    original = spec.factory().eval()
    torch.manual_seed(0)
    built = build_backbone(spec, "none", InputSpec(channels=1, size=size))
    assert built.module.state_dict().keys() == original.state_dict().keys()
    gray = torch.rand(1, 1, size, size)
    with torch.no_grad():
        torch.testing.assert_close(built.module.eval()(gray), original(gray.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)
    assert_groups_cover(built.module, spec)


# ---------------------------------------------------------------- refused, in one line


@pytest.mark.parametrize(("name", "says"), [
    ("timm:convnext_atto", r"cannot inflate layer 'stem.1' \(LayerNorm2d\) to 3D in 'timm:convnext_atto'.*"
                           r"use a 3D backbone \(resnet18_3d"),
    ("hf", r"cannot inflate 'hf:.*' to 3D: it is a transformers convnext model.*use a 3D backbone"),
])
def test_3d_inflation_that_cannot_hold_is_refused_in_one_line(name, says, hf_convnext, med_nifti3d_folder, tl_cli,
                                                              tmp_path):
    name = hf_convnext if name == "hf" else name
    assert_refused(tl_cli("run", recipe(tmp_path, med_nifti3d_folder, name, 3, 16), "--out", tmp_path / "run"),
                   says, tmp_path / "run")


@pytest.mark.parametrize(("name", "says"), [
    ("timm:vit_tiny_patch16_224", r"position embeddings for a 2D grid of patches \('pos_embed'\).*3D patch and "
                                  r"position embeddings"),
    ("torchvision:vit_b_16", r"position embeddings .*'encoder.pos_embedding'"),
    # F.adaptive_avg_pool2d in torchvision's DenseNet.forward: no layer to inflate, caught by the check
    ("torchvision:densenet121", r"cannot inflate 'torchvision:densenet121' to 3D: a volume repeating one slice over "
                                r"depth gets features of shape \(1, 2048\) where the original's have \(1, 1024\)"),
])
def test_other_backbones_that_cannot_be_inflated(name, says):
    with pytest.raises(TLError, match=says):
        build_backbone(registry("backbone").get(name), "none", InputSpec(channels=1, size=32, spatial_dims=3))


def test_2d_only_code_in_a_forward_is_caught_by_the_check():
    """A network whose forward averages over (2, 3) in code - timm's SE layers did before tl replaced them - runs on
    a volume but pools depth and height only: the depth-constant check sees it and refuses."""
    from torch import nn

    from tl_medical.adapt import adapt

    class MeanOver23(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.gate = nn.Conv2d(8, 8, 1)

        def forward(self, x):
            x = self.conv(x)
            return (x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))).flatten(2).mean(-1)

    with pytest.raises(TLError, match=r"cannot inflate 'toy' to 3D: a volume repeating one slice over depth gets "
                                      r"features that differ .* 2D-only work in code"):
        adapt(MeanOver23(), 3, 2, 1, 3, name="toy", size=16)


def test_a_vit_at_another_size_names_its_own():
    with pytest.raises(TLError, match=r"does not take inputs of 48 pixels a side .*data.options.size to one it takes "
                                      r"\(its own: 224\)"):
        build_backbone(registry("backbone").get("timm:vit_tiny_patch16_224"), "none", InputSpec(channels=1, size=48))


def test_a_transformers_vit_interpolates_its_position_embeddings_to_another_size(hf_vit):
    import torch

    built = build_backbone(registry("backbone").get(hf_vit), "none", InputSpec(channels=1, size=48))
    with torch.no_grad():
        assert built.module.eval()(torch.rand(2, 1, 48, 48)).shape == (2, built.spec.feature_dim)


# ---------------------------------------------------------------- segmentation: a U-Net on a library's backbone


@pytest.mark.parametrize(("name", "dims"), [("timm:resnet18", 2), ("torchvision:resnet18", 3)])
def test_a_unet_on_a_prefixed_encoder_trains(name, dims, med_seg_folder, med_seg3d_folder, tl_cli, tmp_path):
    data = med_seg_folder if dims == 2 else med_seg3d_folder
    out = tmp_path / "run"
    path = recipe(tmp_path, data, name, dims, 32, task="medical-segmentation", batch_size=2)
    code, _, err = tl_cli("run", path, "--out", out, "--quiet")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert 0.0 <= report["metrics"]["val"]["dice"] <= 1.0
    assert report["parameters"]["trainable"] == report["parameters"]["total"]


def test_the_unet_taps_one_feature_map_per_stride():
    from tl_medical.segmentation import taps

    assert taps(registry("backbone").get("timm:resnet18")) == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert taps(registry("backbone").get("torchvision:resnet18")) == ["relu", "layer1", "layer2", "layer3", "layer4"]
    assert taps(registry("backbone").get("mobilenet_v2")) == [f"features.{i}" for i in (1, 3, 6, 13, 18)]


@pytest.mark.parametrize(("name", "says"), [
    ("timm:convnext_atto", r"its feature maps come at strides 4, 8, 16, 32; use timm:resnet18"),
    ("hf", r"its feature maps come at strides 4, 8, 16, 32"),
])
def test_an_encoder_without_every_stride_is_refused_in_one_line(name, says, hf_convnext, med_seg_folder, tl_cli,
                                                                tmp_path):
    name = hf_convnext if name == "hf" else name
    path = recipe(tmp_path, med_seg_folder, name, 2, 32, task="medical-segmentation", batch_size=2)
    assert_refused(tl_cli("run", path, "--out", tmp_path / "run"),
                   r"cannot be a segmentation encoder: a U-Net needs feature maps at each of the strides 2, 4, 8, "
                   r"16, 32, and " + says, tmp_path / "run")
