"""Adapting pre-trained backbones to medical input: channel count, and 2D -> 3D inflation.

Channel rule (``adapt_channels``): the stem's kernels for ``C`` target channels are built from the ``S``
source channels so that an input whose channels are all equal gives exactly the response the original network
gave to that input replicated over its ``S`` channels. Fewer channels: target channel ``j`` is the *sum* of
the source kernels ``i`` with ``i % C == j`` (3 -> 1: the sum of the RGB kernels). More channels, ``C`` a
multiple of ``S``: target channel ``j`` repeats source kernel ``j % S``, scaled by ``S / C``
(repeat-and-rescale). More channels otherwise: every target channel gets the sum of the source kernels
divided by ``C``. Where it gives exactly this rule (a 2D RGB stem to 1 channel or to a multiple of 3), the kernel
comes from timm's ``adapt_input_conv``, the helper timm's own ``in_chans=`` uses.

Inflation rule (``inflate``, I3D, Carreira and Zisserman 2017): every 2D convolution with a ``k x k`` kernel
becomes a 3D one with a ``k x k x k`` kernel, its weights repeated along depth and divided by ``k``, so a
volume that is constant along depth gives the 2D network's response on each slice. Strides and padding are
copied to the depth axis; BatchNorm and pooling layers become their 3D versions with the same parameters (timm's
BatchNorm + activation layers keep their activation; timm's squeeze-and-excitation averages over every spatial
axis).

The backbones of any library (``timm:NAME``, ``torchvision:NAME``, ``hf:ID``) are adapted by the same rules, and
then *checked* (``check``) against a copy of the backbone as it was: on a random input whose channels are equal,
the adapted network must run and give the original's features of that input over the original's channels; an
inflated one gets a random slice repeated over depth and must give the 2D network's features of the slice (with
replicate padding in both, so that the depth border repeats the slice and the I3D identity holds exactly). A
forward that does 2D-only work in code rather than in layers - ``x.mean((2, 3))``, ``F.adaptive_avg_pool2d``, a
permute of 4 axes - fails that check instead of training a silently wrong model, and the backbone is refused in
one line; so does an input check the adaptation did not reach. Neither timm nor MONAI ships an inflation or such
a check (timm's ``adapt_input_conv`` is the channel sum, used above); this is where tl does more.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from tl_core.api import TLError

#: what to use when a backbone cannot be inflated to 3D
USE_3D = ("use a 3D backbone (resnet18_3d, densenet121_3d, resnet152_3d_ct) or an inflatable 2D one "
          "(timm:resnet18, torchvision:resnet18, mobilenet_v2), or 2D data")
#: parameter names of position embeddings laid out for a 2D grid of patches (timm, torchvision, transformers)
POSITION_NAMES = ("pos_embed", "pos_embedding", "position_embedding", "relative_position")


def _is_transformers(backbone: Any) -> bool:
    module = sys.modules.get("transformers")  # never imported here: only a model built by it can be one
    return module is not None and isinstance(backbone, module.PreTrainedModel)


def _stem_weight(old: Any, source: int, target: int) -> tuple[Any, str]:
    """The stem's new kernel by the channel rule (module docstring), and how it was made."""
    import torch

    if old.ndim == 4 and source == 3 and (target == 1 or target % 3 == 0):
        # timm's helper gives exactly tl's rule here: the RGB sum for 1 channel, repeat-and-rescale for 3k
        from timm.models import adapt_input_conv

        new = adapt_input_conv(target, old)
    elif target < source:
        new = torch.stack([old[:, [i for i in range(source) if i % target == j]].sum(1) for j in range(target)], dim=1)
    elif target % source == 0:
        new = old[:, torch.arange(target) % source] * (source / target)
    else:
        # tl does more than timm here: timm repeats and truncates (RGB RG scaled by 3/5 for 5 channels), which does
        # not keep the response to equal channels; the sum spread evenly does, for any count and any kernel rank
        new = old.sum(1, keepdim=True).repeat(1, target, *([1] * (old.ndim - 2))) / target
    if target < source:
        how = "summed" if target == 1 else f"summed in {target} groups"
    elif target % source == 0:
        how = f"repeated and scaled by {source}/{target}"
    else:
        how = f"summed and spread evenly over {target}"
    return new, how


def adapt_channels(backbone: Any, source: int, target: int, name: str = "the backbone") -> list[str]:
    """Rebuild the first convolution that takes ``source`` channels to take ``target``; returns report lines."""
    from torch import nn

    for mname, module in backbone.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and module.in_channels == source:
            if module.groups != 1:
                break
            old = module.weight.detach()
            new, how = _stem_weight(old, source, target)
            module.in_channels = target
            module.weight = nn.Parameter(new.contiguous(), requires_grad=module.weight.requires_grad)
            if _is_transformers(backbone):
                # transformers' embeddings refuse pixel values whose channels differ from their num_channels
                # (ViTPatchEmbeddings, ConvNextEmbeddings, ...): the conv's enclosing modules say the new count
                parts = mname.split(".")
                for depth in range(len(parts)):
                    owner = backbone.get_submodule(".".join(parts[:depth]))
                    if getattr(owner, "num_channels", None) == source:
                        owner.num_channels = target
            return [f"{mname}.weight: {tuple(old.shape)} -> {tuple(new.shape)}, {source} input channels {how}"]
    label = name if name == "the backbone" else repr(name)
    raise TLError(
        f"cannot adapt {label} to {target} input channels: no plain convolution takes its {source} channels; "
        f"convert the data to {source} channels instead (data.options.channels: {source})"
    )


def inflate(backbone: Any, name: str = "the backbone") -> tuple[Any, list[str]]:
    """Turn a 2D network into a 3D one in place (see the module docstring); returns it and report lines."""
    from torch import nn

    label = name if name == "the backbone" else repr(name)
    if _is_transformers(backbone):
        raise TLError(
            f"cannot inflate {label} to 3D: it is a transformers {getattr(backbone.config, 'model_type', 'vision')} "
            f"model, whose embeddings and layers are written for 2D images (4D reshapes, 2D patch and position "
            f"embeddings) where inflation cannot reach; {USE_3D}"
        )
    position = next((p for p, _ in backbone.named_parameters() if any(k in p for k in POSITION_NAMES)), None)
    if position is not None:
        raise TLError(
            f"cannot inflate {label} to 3D: it has position embeddings for a 2D grid of patches ({position!r}); a 3D "
            f"vision transformer needs 3D patch and position embeddings, which tl does not build; {USE_3D}"
        )
    lines: list[str] = []
    replacements = []
    for mname, module in backbone.named_modules():
        new = _inflate_module(module, mname, lines)
        if new is not None:
            replacements.append((mname, new))
        elif type(module).__name__.endswith("2d") and not _is_container(module):
            raise TLError(
                f"cannot inflate layer {mname!r} ({type(module).__name__}) to 3D in {label}: tl has no 3D version "
                f"of it; {USE_3D}"
            )
    for mname, new in replacements:
        parent_name, _, child = mname.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, child, new)
    if not any(isinstance(m, nn.Conv3d) for m in backbone.modules()):
        raise TLError(f"cannot inflate {label} to 3D: it has no 2D convolution")
    return backbone, lines


def _is_container(module: Any) -> bool:
    return any(True for _ in module.children())


def _triple(value: Any, depth: int | None = None) -> tuple[int, int, int]:
    a, b = (value, value) if isinstance(value, int) else tuple(value)
    return (a if depth is None else depth, a, b)


def _same_padding(module: Any) -> tuple[int, ...]:
    """The symmetric padding that replaces timm's TF-style dynamic "same" padding (``Conv2dSame``)."""
    return tuple(d * (k - 1) // 2 for d, k in zip(module.dilation, module.kernel_size))


def _is_same(module: Any) -> bool:
    return type(module).__name__ == "Conv2dSame"  # timm's TF-style dynamic "same" padding


def _inflate_module(module: Any, name: str, lines: list[str]) -> Any | None:
    import torch
    from torch import nn

    kind = type(module)
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0]
        padding = module.padding if isinstance(module.padding, str) else _triple(module.padding)
        same = _is_same(module)
        if same:
            padding = _triple(_same_padding(module))
        conv = nn.Conv3d(module.in_channels, module.out_channels, _triple(module.kernel_size), _triple(module.stride),
                         padding, _triple(module.dilation), module.groups, module.bias is not None,
                         module.padding_mode)
        with torch.no_grad():
            conv.weight.copy_(module.weight.unsqueeze(2).repeat(1, 1, k, 1, 1) / k)
            if module.bias is not None:
                conv.bias.copy_(module.bias)
        conv.weight.requires_grad_(module.weight.requires_grad)
        lines.append(f"{name}.weight: {tuple(module.weight.shape)} -> {tuple(conv.weight.shape)}, inflated "
                     f"(repeated over depth, divided by {k})" + ("; TF 'same' padding made symmetric" if same else ""))
        return conv
    if isinstance(module, nn.BatchNorm2d):
        act = kind.__name__ == "BatchNormAct2d" and kind.__module__.startswith("timm.")
        if not act and kind is not nn.BatchNorm2d and _is_container(module):
            return None  # another library's BatchNorm with more inside: left as it is, for the check to judge
        if act:  # a plain BatchNorm3d in its place would lose the activation
            from tl_medical.layers3d import BatchNormAct3d as cls
        else:
            cls = nn.BatchNorm3d
        bn = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if act:
            bn.drop, bn.act = module.drop, module.act
        bn.load_state_dict(module.state_dict())
        for p, q in zip(bn.parameters(), module.parameters()):
            p.requires_grad_(q.requires_grad)
        return bn
    if kind.__name__ == "SqueezeExcite" and kind.__module__.startswith("timm.models._efficientnet_blocks"):
        from tl_medical.layers3d import SqueezeExciteNd

        return SqueezeExciteNd(module)
    if isinstance(module, nn.MaxPool2d):
        return nn.MaxPool3d(_triple(module.kernel_size), _triple(module.stride), _triple(module.padding),
                            _triple(module.dilation), ceil_mode=module.ceil_mode)
    if isinstance(module, nn.AvgPool2d):
        return nn.AvgPool3d(_triple(module.kernel_size), _triple(module.stride), _triple(module.padding),
                            module.ceil_mode, module.count_include_pad)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return nn.AdaptiveAvgPool3d(1 if module.output_size in (1, (1, 1)) else _triple(module.output_size))
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveMaxPool3d(1 if module.output_size in (1, (1, 1)) else _triple(module.output_size))
    return None


def _symmetric_reference(reference: Any) -> None:
    """Give the 2D reference of the check the symmetric padding inflation gives timm's ``Conv2dSame`` layers."""
    import torch
    from torch import nn

    for mname, module in list(reference.named_modules()):
        if _is_same(module):
            conv = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                             _same_padding(module), module.dilation, module.groups, module.bias is not None)
            with torch.no_grad():
                conv.weight.copy_(module.weight)
                if module.bias is not None:
                    conv.bias.copy_(module.bias)
            parent, _, child = mname.rpartition(".")
            setattr(reference.get_submodule(parent) if parent else reference, child, conv)


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def check(name: str, adapted: Any, reference: Any, source_channels: int, target_channels: int, inflated: bool,
          target_dims: int, size: int, native: int | None = None) -> None:
    """Refuse, in one line, an adaptation that does not hold (module docstring). ``reference`` is the backbone before
    adaptation. On a random input whose channels are equal - for an inflated backbone, a random slice repeated over
    depth - the adapted backbone must run and give the features the reference gives to that input (that slice)
    over its own channels. A 3D input is 32 voxels a side first (the check is of the layers, not of the size), then
    the data's ``size``, and twice as deep as it is wide (so that a pooling over fixed axes, or a 2D pooling that
    leaves depth in the features, changes them); a 2D one is ``size``."""
    import torch
    from torch import nn

    if inflated:
        _symmetric_reference(reference)
    models = (adapted, reference)
    modes = [(m, m.training) for net in models for m in net.modules()]
    pads = [(m, m.padding_mode) for net in models for m in net.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    what = f"{target_channels}-channel {target_dims}D"
    unit = "voxels" if target_dims == 3 else "pixels"
    instead = USE_3D if target_dims == 3 else (f"convert the data to {source_channels} channels "
                                               f"(data.options.channels: {source_channels})")
    sides = [min(size, 32), size] if target_dims == 3 and size > 32 else [size]
    got = want = None
    try:
        for net in models:
            net.eval()
        if inflated:
            for m, _ in pads:
                if m.padding_mode == "zeros" and not isinstance(m.padding, str):
                    m.padding_mode = "replicate"  # the depth border of a constant volume repeats its slice
        with torch.no_grad():
            for side in sides:
                dims = 2 if inflated else target_dims
                base = torch.rand(1, 1, *[side] * dims, generator=torch.Generator().manual_seed(0)) * 2 - 1
                x = base.expand(1, target_channels, *[side] * dims)
                if inflated:  # deeper than wide: code that pools fixed axes, or 2D-pools a 3D map, shows
                    x = x.unsqueeze(2).expand(1, target_channels, 2 * side, side, side)
                flat = base.expand(1, source_channels, *[side] * dims).contiguous()
                try:
                    got = adapted(x.contiguous())
                except Exception as exc:  # noqa: BLE001 - any failure of the adapted forward is the reason
                    if side != sides[-1]:
                        continue  # too small for it, perhaps: try the data's size
                    if not _runs(reference, flat):
                        raise TLError(f"backbone {name!r} does not take inputs of {side} {unit} a side "
                                      f"({_first_line(exc)}); set data.options.size to one it takes"
                                      + (f" (its own: {native})" if native else "")) from None
                    raise TLError(f"backbone {name!r} adapted to {what} input fails on a "
                                  f"{'x'.join(map(str, x.shape))} input ({_first_line(exc)}); {instead}") from None
                try:
                    want = reference(flat)
                except Exception:  # noqa: BLE001 - the original does not take this size: nothing to compare
                    want = None
                break
    finally:
        for m, mode in pads:
            m.padding_mode = mode
        for m, mode in modes:
            m.training = mode
    if not (isinstance(got, torch.Tensor) and isinstance(want, torch.Tensor)):
        return
    scale = float(want.abs().max()) if want.numel() else 0.0
    if got.shape == want.shape and bool(torch.isfinite(got).all()) and (
            float((got - want).abs().max()) <= 1e-3 * scale + 1e-6):
        return
    differs = (f"features of shape {tuple(got.shape)} where the original's have {tuple(want.shape)}"
               if got.shape != want.shape else
               f"features that differ by up to {float((got - want).abs().max()):.3g} (of {scale:.3g})")
    if inflated:
        raise TLError(
            f"cannot inflate {name!r} to 3D: a volume repeating one slice over depth gets {differs} from the 2D "
            f"network's of that slice - its forward does 2D-only work in code (a mean or pooling over fixed axes, a "
            f"4D reshape) that inflation cannot reach; {USE_3D}"
        )
    raise TLError(
        f"cannot adapt {name!r} to {target_channels} input channels: an input whose channels are equal gets {differs} "
        f"from the original's over {source_channels} channels - its forward uses the input's channels beyond its "
        f"first convolution; {instead}"
    )


def _runs(net: Any, x: Any) -> bool:
    try:
        net(x)
    except Exception:  # noqa: BLE001
        return False
    return True


def adapt(backbone: Any, source_channels: int, source_dims: int, target_channels: int, target_dims: int,
          name: str = "the backbone", size: int | None = None, native: int | None = None) -> tuple[Any, list[str]]:
    """Adapt the channel count and/or inflate (2D -> 3D; 3D -> 2D is refused), then check the result (:func:`check`,
    at ``size``, the data's size along each axis; not checked when ``size`` is None; ``native``: the size the
    backbone was made for, named when it cannot take ``size``)."""
    if target_dims != source_dims and (source_dims, target_dims) != (2, 3):
        raise TLError(f"cannot turn a {source_dims}D backbone into a {target_dims}D one; choose a "
                      f"{target_dims}D backbone")
    inflating = target_dims != source_dims
    reference = copy.deepcopy(backbone) if size is not None else None
    lines: list[str] = []
    if target_channels != source_channels:  # on the 2D kernel: its sum inflates to the sum of the inflated ones
        lines = adapt_channels(backbone, source_channels, target_channels, name)
    if inflating:
        backbone, inflated = inflate(backbone, name)
        lines += inflated
    if reference is not None:
        check(name, backbone, reference, source_channels, target_channels, inflating, target_dims, size, native)
    return backbone, lines
