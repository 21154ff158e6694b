"""``tl inspect``: what a recipe's freeze policy does to each layer group of its backbone."""

from __future__ import annotations

from typing import Any

from tl_core.model import TransferModel, make_head
from tl_core.plugins import registry
from tl_core.policies import apply_plan, group_parameters
from tl_core.sections import Recipe
from tl_core.task import make_policy


def inspect_recipe(recipe: Recipe, epoch: int = 1) -> list[dict[str, Any]]:
    """Per layer group (stem first, head last): prefixes, parameter count, how many of them train, BatchNorm mode
    and LR. The plan is applied to the model for real, so what is counted is what the run freezes: a trainable
    group's BatchNorm under ``bn: freeze`` counts as frozen.

    The backbone is built without loading weights: the plan does not depend on them.
    """
    spec = registry("backbone").get(recipe.backbone.name)
    policy = make_policy(recipe)
    policy.bind([g.name for g in spec.layer_groups])
    states = policy.plan(len(spec.layer_groups), max(epoch - 1, 0), recipe.train.epochs)
    model = TransferModel(spec.factory(), make_head(recipe.head.name, recipe.head.options, spec.feature_dim, 2))
    apply_plan(model, spec.layer_groups, states)
    rows = []
    for group, params, state in zip(spec.layer_groups, group_parameters(model.backbone, spec.layer_groups), states):
        rows.append({
            "group": group.name,
            "prefixes": list(group.prefixes),
            "parameters": sum(p.numel() for p in params),
            "trainable_parameters": sum(p.numel() for p in params if p.requires_grad),
            "frozen": sum(p.numel() for p in params if not p.requires_grad),
            "trainable": state.trainable,
            "batchnorm": state.bn,
            "lr": recipe.train.lr * state.lr_mult if state.trainable else 0.0,
        })
    head = sum(p.numel() for p in model.head.parameters())
    rows.append({
        "group": "head", "prefixes": ["head"], "parameters": head, "trainable_parameters": head, "frozen": 0,
        "trainable": True, "batchnorm": "-", "lr": recipe.train.lr,
    })
    return rows
