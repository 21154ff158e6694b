"""Adapting pre-trained backbones to medical input: channel count, and 2D -> 3D inflation.

Channel rule (``adapt_channels``): the stem's kernels for ``C`` target channels are built from the ``S``
source channels so that an input whose channels are all equal gives exactly the response the original network
gave to that input replicated over its ``S`` channels. Fewer channels: target channel ``j`` is the *sum* of
the source kernels ``i`` with ``i % C == j`` (3 -> 1: the sum of the RGB kernels). More channels, ``C`` a
multiple of ``S``: target channel ``j`` repeats source kernel ``j % S``, scaled by ``S / C``
(repeat-and-rescale). More channels otherwise: every target channel gets the sum of the source kernels
divided by ``C``.

Inflation rule (``inflate``, I3D, Carreira and Zisserman 2017): every 2D convolution with a ``k x k`` kernel
becomes a 3D one with a ``k x k x k`` kernel, its weights repeated along depth and divided by ``k``, so a
volume that is constant along depth gives the 2D network's response on each slice. Strides and padding are
copied to the depth axis; BatchNorm and pooling layers become their 3D versions with the same parameters.
"""

from __future__ import annotations

from typing import Any

from tl_core.api import TLError


def adapt_channels(backbone: Any, source: int, target: int) -> list[str]:
    """Rebuild the first convolution that takes ``source`` channels to take ``target``; returns report lines."""
    import torch
    from torch import nn

    for name, module in backbone.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and module.in_channels == source:
            if module.groups != 1:
                break
            old = module.weight.detach()
            idx = torch.arange(target)
            if target < source:
                new = torch.stack([old[:, [i for i in range(source) if i % target == j]].sum(1) for j in range(target)],
                                  dim=1)
                how = "summed" if target == 1 else f"summed in {target} groups"
            elif target % source == 0:
                new = old[:, idx % source] * (source / target)
                how = f"repeated and scaled by {source}/{target}"
            else:
                new = old.sum(1, keepdim=True).repeat(1, target, *([1] * (old.ndim - 2))) / target
                how = f"summed and spread evenly over {target}"
            module.in_channels = target
            module.weight = nn.Parameter(new.contiguous(), requires_grad=module.weight.requires_grad)
            return [f"{name}.weight: {tuple(old.shape)} -> {tuple(new.shape)}, {source} input channels {how}"]
    raise TLError(
        f"cannot adapt the backbone to {target} input channels: no plain convolution takes its {source} channels; "
        f"convert the data to {source} channels instead"
    )


def inflate(backbone: Any) -> tuple[Any, list[str]]:
    """Turn a 2D network into a 3D one in place (see the module docstring); returns it and report lines."""
    from torch import nn

    lines: list[str] = []
    replacements = []
    for name, module in backbone.named_modules():
        new = _inflate_module(module, name, lines)
        if new is not None:
            replacements.append((name, new))
        elif type(module).__name__.endswith("2d") and not _is_container(module):
            raise TLError(
                f"cannot inflate layer {name!r} ({type(module).__name__}) to 3D; use a 3D backbone "
                "(e.g. resnet18_3d) or 2D data"
            )
    for name, new in replacements:
        parent_name, _, child = name.rpartition(".")
        parent = backbone.get_submodule(parent_name) if parent_name else backbone
        setattr(parent, child, new)
    if not any(isinstance(m, nn.Conv3d) for m in backbone.modules()):
        raise TLError("cannot inflate the backbone to 3D: it has no 2D convolution")
    return backbone, lines


def _is_container(module: Any) -> bool:
    return any(True for _ in module.children())


def _triple(value: Any, depth: int | None = None) -> tuple[int, int, int]:
    a, b = (value, value) if isinstance(value, int) else tuple(value)
    return (a if depth is None else depth, a, b)


def _inflate_module(module: Any, name: str, lines: list[str]) -> Any | None:
    import torch
    from torch import nn

    if isinstance(module, nn.Conv2d):
        k = module.kernel_size[0]
        padding = module.padding if isinstance(module.padding, str) else _triple(module.padding)
        same = type(module).__name__ == "Conv2dSame"  # timm's TF-style dynamic "same" padding
        if same:
            padding = tuple(d * (s - 1) // 2 for d, s in zip(_triple(module.dilation), _triple(module.kernel_size)))
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
        bn = nn.BatchNorm3d(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        bn.load_state_dict(module.state_dict())
        return bn
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


def adapt(backbone: Any, source_channels: int, source_dims: int, target_channels: int, target_dims: int
          ) -> tuple[Any, list[str]]:
    """Inflate (2D -> 3D) and/or adapt the channel count; 3D -> 2D is refused."""
    lines: list[str] = []
    if target_dims != source_dims:
        if (source_dims, target_dims) != (2, 3):
            raise TLError(f"cannot turn a {source_dims}D backbone into a {target_dims}D one; choose a "
                          f"{target_dims}D backbone")
        backbone, lines = inflate(backbone)
    if target_channels != source_channels:
        lines = adapt_channels(backbone, source_channels, target_channels) + lines
    return backbone, lines
