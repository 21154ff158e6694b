"""Stem adaptation (channels) and 2D -> 3D inflation of pre-trained backbones, through tl_adapt_backbone."""

from __future__ import annotations

import pytest
import torch

from tl_core.components import InputSpec
from tl_core.errors import TLError
from tl_core.model import build_backbone
from tl_core.plugins import registry


def spec(name: str):
    return registry("backbone").get(name)


def test_rgb_imagenet_stem_summed_to_one_channel_gives_the_same_features():
    """The channel rule: a gray image through the adapted stem = the replicated image through the original."""
    original = build_backbone(spec("mobilenet_v2"), "imagenet").module.eval()
    adapted = build_backbone(spec("mobilenet_v2"), "imagenet", InputSpec(channels=1)).module.eval()
    gray = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = adapted(gray)
        # equal up to float32 summation order (a summed kernel adds in another order than three channels do)
        assert torch.allclose(features, original(gray.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)
        assert features.abs().sum() > 0


@pytest.mark.parametrize(("channels", "how"), [(6, "repeated and scaled by 3/6"),
                                                (5, "summed and spread evenly over 5")])
def test_more_channels(channels, how):
    original = build_backbone(spec("mobilenet_v2"), "imagenet").module.eval()
    built = build_backbone(spec("mobilenet_v2"), "imagenet", InputSpec(channels=channels))
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = built.module.eval()(x.repeat(1, channels, 1, 1))
        assert torch.allclose(same, original(x.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4) and same.abs().sum() > 0
    stem = f"features.0.0.weight: (32, 3, 3, 3) -> (32, {channels}, 3, 3)"
    assert built.report.reshaped == [f"{stem}, 3 input channels {how}"]


def test_inflation_to_3d_is_reported_and_keeps_depth_constant_volumes_like_2d():
    torch.manual_seed(0)
    built = build_backbone(spec("resnet18"), "none", InputSpec(channels=1, spatial_dims=3))
    assert built.report is None  # random init: no load report, the adaptation still happened
    conv = built.module.conv1
    assert conv.weight.shape == (64, 1, 7, 7, 7)
    # I3D: each 2D kernel is repeated over depth and divided by its depth, so the depth-sum is the 2D kernel
    torch.manual_seed(0)
    flat = build_backbone(spec("resnet18"), "none", InputSpec(channels=1))
    torch.testing.assert_close(conv.weight.sum(2), flat.module.conv1.weight)


def test_inflated_imagenet_mobilenet_runs_on_ct_volumes_and_reports_every_inflated_kernel():
    built = build_backbone(spec("mobilenet_v2"), "imagenet", InputSpec(channels=1, spatial_dims=3))
    with torch.no_grad():
        assert built.module.eval()(torch.rand(2, 1, 32, 32, 32)).shape == (2, 1280)
    convs = sum(1 for m in built.module.modules() if isinstance(m, torch.nn.Conv3d))
    inflated = [r for r in built.report.reshaped if "inflated" in r]
    assert len(inflated) == convs == 52
    assert built.report.reshaped[0].endswith("3 input channels summed")


def test_a_layer_that_cannot_be_inflated_is_a_clear_error():
    with pytest.raises(TLError, match=r"cannot inflate layer 'features.0.1' \(LayerNorm2d\) to 3D"):
        build_backbone(spec("convnext_tiny"), "none", InputSpec(channels=1, spatial_dims=3))


def test_3d_to_2d_is_refused():
    with pytest.raises(TLError, match="cannot turn a 3D backbone into a 2D one"):
        build_backbone(spec("resnet18_3d"), "none", InputSpec(channels=1, spatial_dims=2))


def test_a_channel_count_the_stem_cannot_take_is_a_clear_error():
    from torch import nn

    from tl_medical.adapt import adapt_channels

    depthwise_stem = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.Conv2d(3, 8, 1))
    with pytest.raises(TLError, match="cannot adapt the backbone to 1 input channels.*convert the data to 3"):
        adapt_channels(depthwise_stem, 3, 1)
