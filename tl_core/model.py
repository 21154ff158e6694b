"""The core's model: a registry backbone with a registry head on top, weights loaded and reported."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tl_core.components import BackboneSpec, InputSpec
from tl_core.errors import TLError, WeightsError
from tl_core.files import first_line
from tl_core.plugins import hook, registry
from tl_core.weights import LoadReport, WeightsEntry, load_into, resolve_weights

if TYPE_CHECKING:
    from tl_core.sections import Recipe


class Pooled(nn.Module):
    """``features`` followed by global average pooling: a feature map (2D or 3D) becomes a ``(batch, channels)``
    vector."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(2).mean(-1)


class TransferModel(nn.Module):
    """``head(backbone(x))``: what the core trains, saves and evaluates for classification."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@dataclass
class BuiltBackbone:
    """A backbone module and everything known about how it came to be."""

    module: nn.Module
    spec: BackboneSpec
    entry: WeightsEntry | None
    report: LoadReport | None

    @property
    def input(self) -> InputSpec:
        """The preprocessing the loaded weights expect (the spec's default when there are none)."""
        if self.entry is None:
            return self.spec.input
        return InputSpec(self.spec.input.channels, self.entry.input_size, self.entry.mean, self.entry.std,
                         self.spec.input.spatial_dims, self.entry.crop_pct, self.entry.interpolation)


def pinned(entry: WeightsEntry | None, sha256: str | None = None, revision: str | None = None) -> WeightsEntry | None:
    """``entry`` held to a recipe's pins: ``backbone.sha256`` replaces the digest the file is checked against (a
    local file's too), ``backbone.revision`` the hub commit an ``hf`` file is taken from (another source cannot take
    one: said in one line)."""
    if entry is None or (sha256 is None and revision is None):
        return entry
    if revision is not None and entry.architecture.startswith("hf:"):
        raise WeightsError(f"backbone.revision: an hf: backbone takes its revision in its name, for its config and its "
                           f"weights alike: backbone.name: {entry.architecture.partition('@')[0]}@{revision}")
    if revision is not None and entry.source != "hf":
        raise WeightsError(f"backbone.revision pins a Hugging Face hub file, but weights {entry.name} of "
                           f"{entry.architecture} come from {entry.source} ({entry.location}); remove it, or pin the "
                           "file with backbone.sha256")
    return replace(entry, sha256=sha256.lower() if sha256 else entry.sha256,
                   revision=revision if revision is not None else entry.revision)


def build_backbone(spec: BackboneSpec, weights: str | None, target: InputSpec | None = None,
                   allow_partial: bool = False, sha256: str | None = None,
                   revision: str | None = None) -> BuiltBackbone:
    """Build ``spec``'s module, load the named weights into it (held to the ``sha256`` and ``revision`` pins, see
    :func:`pinned`) and adapt it to ``target`` inputs if needed.

    A load that leaves most of the architecture's tensors missing or re-initialised is an error unless
    ``allow_partial`` (a recipe's ``backbone.allow_partial``)."""
    module = spec.factory()
    entry = pinned(resolve_weights(spec, weights), sha256, revision)
    report = load_into(module, entry, allow_partial=allow_partial) if entry is not None else None
    if target is not None and (target.channels, target.spatial_dims) != (spec.input.channels,
                                                                          spec.input.spatial_dims):
        answer = hook().tl_adapt_backbone(backbone=module, spec=spec, target=target)
        if answer is None:
            raise TLError(
                f"backbone {spec.name!r} takes {spec.input.channels}-channel {spec.input.spatial_dims}D input and no "
                f"plugin can adapt it to {target.channels}-channel {target.spatial_dims}D input; install a plugin "
                "that does (e.g. tl-medical) or convert the data"
            )
        module, reshaped = answer
        if report is not None:
            report.reshaped.extend(reshaped)
    return BuiltBackbone(module, spec, entry, report)


def backbone_for(recipe: Recipe, target: InputSpec | None = None, weights: str | None = None) -> BuiltBackbone:
    """The recipe's backbone, built: ``backbone.name`` from the registry, ``backbone.weights`` (or ``weights``: e.g.
    ``"none"`` to rebuild a finished run's architecture) loaded and reported, adapted to ``target`` inputs
    (channels, 2D/3D) when they differ from the backbone's own. Every task's model builder starts here."""
    spec = registry("backbone").get(recipe.backbone.name)
    return build_backbone(spec, recipe.backbone.weights if weights is None else weights, target,
                          # a recipe-like object a plugin builds by hand may not carry the field
                          allow_partial=getattr(recipe.backbone, "allow_partial", False),
                          sha256=getattr(recipe.backbone, "sha256", None),
                          revision=getattr(recipe.backbone, "revision", None))


def check_size(built: BuiltBackbone, size: int | None) -> None:
    """Refuse, in one line, a run size the backbone cannot take: one forward pass of a blank image at ``size``,
    made only when it is not the backbone's own size (a ViT of torchvision or timm takes its own size only; a
    convolutional network takes any). Without it the first training batch would fail with the model's own
    traceback."""
    own = built.input.size
    if not size or size == own or built.spec.input.spatial_dims != 2:
        return
    was_training = built.module.training
    built.module.eval()
    try:
        with torch.no_grad():
            built.module(torch.zeros(1, built.spec.input.channels, size, size))
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise TLError(f"backbone {built.spec.name!r} cannot take {size}x{size} images ({first_line(exc)}); set "
                      f"data.image_size to its own size, {own}, or choose a backbone that takes any size") from None
    finally:
        built.module.train(was_training)


def make_head(name: str, options: dict[str, Any], in_features: int, num_outputs: int) -> nn.Module:
    """Build the registry head ``name`` for ``in_features`` inputs and ``num_outputs`` outputs."""
    return registry("head").get(name).factory(in_features, num_outputs, **options)
