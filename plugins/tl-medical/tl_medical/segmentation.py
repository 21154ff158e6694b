"""The ``medical-segmentation`` task: a U-Net whose encoder is a registry backbone.

The encoder is the backbone's own feature stack, tapped at the end of each of its layer groups (five taps,
strides 2 to 32); MONAI's ``UNetDecoder`` and ``SegmentationHead`` (the decoder of ``FlexibleUNet``) form the
head. Freeze policies act on the encoder's layer groups exactly as for classification; the decoder is the
"head" and always trains. Backbones whose features are one ``nn.Sequential`` under ``features`` (the core's
``mobilenet_v2``, and its 3D inflation) qualify; others are refused with a clear message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core.errors import TLError
from tl_medical.data import SEGMENTATION_TASK

if TYPE_CHECKING:
    from tl_core.recipe import Recipe
    from tl_core.run import RunContext

SEGMENTATION = SEGMENTATION_TASK
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


def build(recipe: Recipe, data: Any, weights: str | None = None) -> Any:
    import torch
    from monai.networks.nets.flexible_unet import SegmentationHead, UNetDecoder
    from torch import nn

    from tl_core.components import InputSpec
    from tl_core.model import TransferModel, build_backbone
    from tl_core.plugins import registry
    from tl_medical.tasks import MedicalClassifier

    options = data.options
    if options.size % 32:
        raise TLError(
            f"medical-segmentation needs data.options.size to be a multiple of 32 (the encoder's total stride), "
            f"got {options.size}"
        )
    spec = registry("backbone").get(recipe.backbone.name)
    taps = _taps(spec)
    target = InputSpec(channels=options.channels, size=options.size, spatial_dims=options.spatial_dims)
    built = build_backbone(spec, recipe.backbone.weights if weights is None else weights, target)
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


def train(recipe: Recipe, model: Any, data: Any, ctx: RunContext) -> Any:
    from tl_core.classifier import make_policy
    from tl_core.policies import apply_plan
    from tl_core.train import run_trainer
    from tl_medical.data import MedicalDataset
    from tl_medical.tasks import Normalised, normalisation

    options = model.options
    mean, std = normalisation(model)

    def make(samples: Any, augment: bool) -> Any:
        return Normalised(MedicalDataset(samples, options, augment), mean, std, options.spatial_dims)

    policy = make_policy(recipe)
    result = run_trainer(
        model.model, model.groups, policy, recipe.train, ctx, recipe.task, data.classes,
        make(data.train, recipe.data.augment), make(data.val, False) if data.val else None,
        make(data.test, False) if data.test else None, num_workers=recipe.data.num_workers,
        loss=loss(), metric_names={"dice", "hausdorff95"},
    )
    result.model = model.model
    epochs = recipe.train.epochs
    apply_plan(model.model, model.groups, policy.plan(len(model.groups), epochs - 1, epochs))
    result.info.update(preprocessing={**options.model_dump(mode="json"), "mean": mean, "std": std},
                       feature_cache={"used": False, "reason": "segmentation decodes every layer's features"})
    return result
