"""Layer groups from a model's module structure: its stages, stem first (torchvision's classifiers, transformers'
vision encoders)."""

from __future__ import annotations

from typing import Any

from tl_core.components import LayerGroup

#: the last component of a module name whose children are a backbone's stages or blocks, each a layer group
_STAGE_LISTS = ("features", "trunk_output", "encoder", "layers", "layer", "blocks", "stages")


def stage_groups(model: Any) -> tuple[LayerGroup, ...]:
    """The stage structure of a torchvision classifier as layer groups, stem first: its top-level modules, the
    stage lists among them (``features``, a ViT's ``encoder.layers``, a RegNet's ``trunk_output`` ...) opened into
    their stages; parameters held directly (a ViT's class token) are their own units; the leading single layers and
    parameters (``conv1``, ``bn1``; ``class_token``, ``conv_proj``, ``encoder.pos_embedding``) form the stem - at most
    six, followed by at least three stages: a VGG's convolutions stay one group each - and
    modules without parameters are left out."""
    units: list[tuple[str, bool]] = []  # (prefix, is a single layer or parameter)

    def walk(module: Any, prefix: str) -> None:
        for pname, _ in module.named_parameters(recurse=False):
            units.append((prefix + pname, True))
        for cname, child in module.named_children():
            full = prefix + cname
            if not any(True for _ in child.parameters()):
                continue
            if cname in _STAGE_LISTS and any(True for _ in child.children()):
                walk(child, full + ".")
            else:
                units.append((full, not any(True for _ in child.children())))

    walk(model, "")
    lead = 0
    while lead < len(units) - 1 and units[lead][1]:
        lead += 1
    if lead > 6 or len(units) - lead < 3:  # a row of single layers is the model's structure (VGG), not a stem
        lead = 0
    groups = [LayerGroup("stem", tuple(p for p, _ in units[:lead]))] if lead else []
    groups += [LayerGroup(f"stage{i}", (p,)) for i, (p, _) in enumerate(units[lead:], start=1)]
    return tuple(groups)
