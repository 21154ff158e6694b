"""Layers that inflation (:mod:`tl_medical.adapt`) puts in place of timm layers whose forward is written for 2D
images; each keeps the original's children, so every tensor keeps its name. Imported only when a backbone is
inflated (it imports torch)."""

from __future__ import annotations

from typing import Any

from torch import nn


class BatchNormAct3d(nn.BatchNorm3d):
    """timm's ``BatchNormAct2d`` (BatchNorm, then its ``drop`` and ``act`` children) in 3D: timm's forward asserts a
    4D input, and a plain ``BatchNorm3d`` in its place would lose the activation."""

    def forward(self, x: Any) -> Any:
        return self.act(self.drop(super().forward(x)))


class SqueezeExciteNd(nn.Module):
    """timm's efficientnet ``SqueezeExcite`` averaging over every spatial axis, where timm's averages over
    ``(2, 3)``: on a volume that would pool depth and height only."""

    def __init__(self, se: nn.Module) -> None:
        super().__init__()
        for name, child in se.named_children():
            self.add_module(name, child)

    def forward(self, x: Any) -> Any:
        s = self.conv_reduce(x.mean(tuple(range(2, x.ndim)), keepdim=True))
        return x * self.gate(self.conv_expand(self.act1(s)))
