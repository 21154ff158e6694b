"""``tl inspect``: what a recipe's freeze policy does to each layer group of its backbone."""

from __future__ import annotations

from typing import Any

from tl_core.sections import Recipe


def inspect_recipe(recipe: Recipe, epoch: int = 1) -> list[dict[str, Any]]:
    """Per layer group (stem first, head last): prefixes, parameter count, trainable, BatchNorm mode, LR.

    The backbone is built without loading weights: the plan does not depend on them.
    """
    from tl_core.classifier import make_policy
    from tl_core.model import make_head
    from tl_core.plugins import registry
    from tl_core.policies import group_parameters

    spec = registry("backbone").get(recipe.backbone.name)
    policy = make_policy(recipe)
    backbone = spec.factory()
    policy.bind([g.name for g in spec.layer_groups])
    states = policy.plan(len(spec.layer_groups), max(epoch - 1, 0), recipe.train.epochs)
    rows = []
    for group, params, state in zip(spec.layer_groups, group_parameters(backbone, spec.layer_groups), states):
        rows.append({
            "group": group.name,
            "prefixes": list(group.prefixes),
            "parameters": sum(p.numel() for p in params),
            "trainable": state.trainable,
            "batchnorm": state.bn,
            "lr": recipe.train.lr * state.lr_mult if state.trainable else 0.0,
        })
    head = make_head(recipe.head.name, recipe.head.options, spec.feature_dim, 2)
    rows.append({
        "group": "head", "prefixes": ["head"], "parameters": sum(p.numel() for p in head.parameters()),
        "trainable": True, "batchnorm": "-", "lr": recipe.train.lr,
    })
    return rows
