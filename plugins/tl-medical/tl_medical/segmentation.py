"""The ``medical-segmentation`` task: a U-Net whose encoder is a registry backbone.

The encoder is the backbone's own feature stack, tapped at the end of each of its layer groups (five taps,
strides 2 to 32); MONAI's ``UNetDecoder`` and ``SegmentationHead`` (the decoder of ``FlexibleUNet``) form the
head. Freeze policies act on the encoder's layer groups exactly as for classification; the decoder is the
"head" and always trains. Backbones whose features are one ``nn.Sequential`` under ``features`` (the core's
``mobilenet_v2``, and its 3D inflation) qualify; others are refused with a clear message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core.api import TLError
from tl_medical.tasks import MedicalClassifier, target_input, task_spec

if TYPE_CHECKING:
    from tl_core.api import Recipe, RunContext, TrainResult

DECODER_CHANNELS = (128, 64, 32, 16, 8)


def _taps(spec: Any) -> list[int]:
    """Index of the last ``features.N`` module of each layer group."""
    taps = []
    for group in spec.layer_groups:
        indices = [int(p.split(".")[1]) for p in group.prefixes if p.startswith("features.") and p.count(".") == 1]
        if len(indices) != len(group.prefixes):
            raise TLError(
                f"backbone {spec.name!r} cannot be a segmentation encoder: its layer groups are not slices of one "
                "'features' sequence; use mobilenet_v2"
            )
        taps.append(max(indices))
    if len(taps) != 5:
        raise TLError(f"backbone {spec.name!r} has {len(taps)} layer groups; a segmentation encoder needs 5")
    return taps


def build(recipe: Recipe, data: Any, weights: str | None = None) -> MedicalClassifier:
    import torch
    from monai.networks.nets.flexible_unet import SegmentationHead, UNetDecoder
    from torch import nn

    from tl_core.api import TransferModel, backbone_for, registry

    options = data.options
    if options.size % 32:
        raise TLError(
            f"medical-segmentation needs data.options.size to be a multiple of 32 (the encoder's total stride), "
            f"got {options.size}"
        )
    spec = registry("backbone").get(recipe.backbone.name)
    taps = _taps(spec)  # before any weights are fetched: a backbone that cannot be an encoder fails at once
    built = backbone_for(recipe, target_input(options), weights)
    features = getattr(built.module, "features", None)
    if not isinstance(features, nn.Sequential):
        raise TLError(f"backbone {spec.name!r} cannot be a segmentation encoder: no 'features' sequence")

    class Encoder(nn.Module):
        """The backbone's features, returning the input and the output of each layer group."""

        def __init__(self) -> None:
            super().__init__()
            self.features = features

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            out = [x]
            for i, layer in enumerate(self.features):
                x = layer(x)
                if i in taps:
                    out.append(x)
            return out

    encoder = Encoder()
    dims = options.spatial_dims
    with torch.no_grad():
        channels = [t.shape[1] for t in encoder.eval()(torch.zeros(1, options.channels, *([32] * dims)))]

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = UNetDecoder(
                spatial_dims=dims, encoder_channels=channels, decoder_channels=DECODER_CHANNELS,
                act=("relu", {"inplace": True}), norm=("batch", {"eps": 1e-3, "momentum": 0.1}), dropout=0.0,
                bias=False, upsample="nontrainable", pre_conv="default", interp_mode="nearest", align_corners=None,
                is_pad=True,
            )
            self.segmentation_head = SegmentationHead(dims, DECODER_CHANNELS[-1], len(data.classes), kernel_size=3)

        def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
            return self.segmentation_head(self.decoder(feats, len(feats) - 2))

    return MedicalClassifier(TransferModel(encoder, Decoder()), built, options)


def loss() -> Any:
    from monai.losses import DiceCELoss

    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)
    return lambda out, y: dice_ce(out, y.unsqueeze(1))


def train(recipe: Recipe, model: MedicalClassifier, data: Any, ctx: RunContext) -> TrainResult:
    from tl_core.api import train_task

    return train_task(recipe, model, data, ctx, task_spec(
        model, loss=loss(), metric_names={"dice", "hausdorff95"},
        no_cache="segmentation decodes every layer's features"))
