"""``tl inspect``: what a recipe's freeze policy does to each layer group of its backbone."""

from __future__ import annotations

from typing import Any

from tl_core.errors import TLError
from tl_core.model import TransferModel, make_head
from tl_core.plugins import hook, registry
from tl_core.policies import apply_plan, group_parameters
from tl_core.sections import Recipe
from tl_core.task import make_policy


def inspect_recipe(recipe: Recipe, epoch: int = 1) -> list[dict[str, Any]]:
    """Per layer group (stem first, head last): prefixes, parameter count, how many of them train, BatchNorm mode
    and LR. The plan is applied to the model for real, so what is counted is what the run freezes: a trainable
    group's BatchNorm under ``bn: freeze`` counts as frozen.

    The backbone is built without loading weights: the plan does not depend on them. A classification head goes on
    the backbone's pooled features, with no data read. Any other head (a detector, a translation model's decoder)
    is part of a model only its task's plugin builds: the data is read and the model built through
    ``tl_build_model`` as the run builds it, from config (a warm start from a checkpoint of another depth than the
    family's config - a ``bert2bert`` from XLM-R - shows the config's layers).
    """
    spec = registry("backbone").get(recipe.backbone.name)
    if "image-classification" in registry("head").get(recipe.head.name).tasks:
        model: Any = TransferModel(spec.factory(), make_head(recipe.head.name, recipe.head.options, spec.feature_dim,
                                                             2))
        groups = spec.layer_groups
    else:
        model, groups = _domain_model(recipe)
    policy = make_policy(recipe)
    policy.bind([g.name for g in groups])
    states = policy.plan(len(groups), max(epoch - 1, 0), recipe.train.epochs)
    apply_plan(model, groups, states)
    rows = []
    for group, params, state in zip(groups, group_parameters(model.backbone, groups), states):
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


def _domain_model(recipe: Recipe) -> tuple[Any, tuple[Any, ...]]:
    """The task's model as ``tl run`` builds it (its data read, ``tl_build_model`` called) with random weights, and
    the layer groups its freeze policy acts on; a model that is not a backbone and a head (what the core's policies
    act on) is one line."""
    unweighted = recipe.model_copy(deep=True)
    unweighted.backbone.weights = "none"
    data = registry("data format").get(recipe.data.format).read(recipe.data, recipe.train.seed)
    bundle = hook().tl_build_model(recipe=unweighted, data=data)
    if bundle is None:
        raise TLError(f"no installed plugin builds models for task {recipe.task!r}; install the plugin for it")
    if not (hasattr(bundle.model, "backbone") and hasattr(bundle.model, "head")):
        raise TLError(f"tl inspect shows a model as a backbone and a head; the {recipe.task} model of "
                      f"{recipe.backbone.name!r} is trained whole by its library, whose run's report.json counts "
                      "its trainable and frozen parameters")
    return bundle.model, tuple(bundle.groups)
