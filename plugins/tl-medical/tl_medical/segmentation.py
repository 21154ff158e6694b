"""The ``medical-segmentation`` task: a U-Net whose encoder is a registry backbone.

The encoder is the backbone itself, tapped at five points, one per stride 2, 4, 8, 16 and 32 (the last tap at each
stride, on a probe of the randomly initialised architecture at 64 pixels, or at the backbone's own size if larger);
MONAI's ``UNetDecoder`` and ``SegmentationHead`` (the decoder of ``FlexibleUNet``) form the head. The candidate taps
are timm's own ``feature_info`` modules for a timm model (the taps timm's ``features_only`` uses), otherwise the
modules that make up the backbone's layer groups and their parameter-free siblings (a stem's activation and
pooling). Freeze policies act on the encoder's layer groups exactly as for classification; the decoder is the "head"
and always trains. A backbone without features at every one of those strides (a ConvNeXt or ViT starts at stride 4
or 16) is refused with a clear message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core.api import TLError
from tl_medical.tasks import MedicalClassifier, target_input, task_spec

if TYPE_CHECKING:
    from tl_core.api import Recipe, RunContext, TrainResult

DECODER_CHANNELS = (128, 64, 32, 16, 8)
STRIDES = (2, 4, 8, 16, 32)
ENCODERS = "timm:resnet18, torchvision:resnet18, timm:efficientnet_b0, mobilenet_v2"  # ones that qualify


def _candidates(module: Any, spec: Any) -> list[str]:
    """The modules whose outputs may be taps, in the module's own order (see the module docstring)."""
    info = getattr(module, "feature_info", None)
    if isinstance(info, (list, tuple)) and info and all(isinstance(d, dict) and "module" in d for d in info):
        return [d["module"] for d in info]  # timm's
    prefixes = {p for group in spec.layer_groups for p in group.prefixes}
    parents = {p.rpartition(".")[0] for p in prefixes}
    names = []
    for name, child in module.named_modules():
        if not name:
            continue
        if name in prefixes or (name.rpartition(".")[0] in parents and not any(True for _ in child.parameters())):
            names.append(name)
    return names


def taps(spec: Any) -> list[str]:
    """The five modules whose outputs the U-Net takes (strides 2 to 32), found on the spec's architecture at random
    init, before any weights are fetched: a backbone that cannot be an encoder fails at once."""
    import torch

    module = spec.factory().eval()
    seen: list[tuple[str, int]] = []
    volume = spec.input.spatial_dims == 3
    side = 64 if volume else max(64, spec.input.size)  # a 2D probe at the size it was made for (a ViT's is fixed)
    handles = []
    for name in _candidates(module, spec):
        def hook(_m: Any, _i: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.ndim == 2 + spec.input.spatial_dims and out.shape[-1] > 0 \
                    and side % out.shape[-1] == 0:
                seen.append((name, side // out.shape[-1]))
        handles.append(module.get_submodule(name).register_forward_hook(hook))
    shape = (1, spec.input.channels, *([32] if volume else []), side, side)  # strides read along the last axis
    try:
        with torch.no_grad():
            module(torch.zeros(shape))
    except Exception as exc:  # noqa: BLE001 - the reason of the refusal
        raise TLError(f"backbone {spec.name!r} cannot be a segmentation encoder: it fails on a {side}-pixel probe "
                      f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); use {ENCODERS}"
                      ) from None
    finally:
        for h in handles:
            h.remove()
    last = {stride: name for name, stride in seen if stride <= STRIDES[-1]}  # the last tap at each stride
    if any(s not in last for s in STRIDES):
        found = (f"its feature maps come at strides {', '.join(str(s) for s in sorted(last))}" if last else
                 "its layers give no feature maps at these strides (a transformer's are tokens)")
        raise TLError(
            f"backbone {spec.name!r} cannot be a segmentation encoder: a U-Net needs feature maps at each of the "
            f"strides {', '.join(map(str, STRIDES))}, and {found}; use {ENCODERS}"
        )
    direct = [n for n, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]]
    if direct:  # the encoder holds the backbone's layers, not the backbone itself (see build)
        raise TLError(f"backbone {spec.name!r} cannot be a segmentation encoder: it holds tensors outside its layers "
                      f"({', '.join(direct[:3])}); use {ENCODERS}")
    return [last[s] for s in STRIDES]


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
    points = taps(spec)  # before any weights are fetched
    built = backbone_for(recipe, target_input(options), weights)

    class Encoder(nn.Module):
        """The backbone's layers under their own names (its layer groups and weights apply as they are),
        returning the input and the output of each tap; the backbone runs its own forward."""

        def __init__(self, backbone: nn.Module) -> None:
            super().__init__()
            for name, child in backbone.named_children():
                self.add_module(name, child)
            self._net = [backbone]  # a list: not registered twice

        def train(self, mode: bool = True) -> Encoder:
            super().train(mode)
            self._net[0].training = mode
            return self

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
            net, out = self._net[0], {}
            handles = [net.get_submodule(t).register_forward_hook(
                lambda _m, _i, o, t=t: out.__setitem__(t, o)) for t in points]
            try:
                net(x)
            finally:
                for h in handles:
                    h.remove()
            return [x] + [out[t] for t in points]

    encoder = Encoder(built.module)
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
