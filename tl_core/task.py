"""The one path that trains a task on the core trainer.

A task describes itself with a :class:`~tl_core.components.TaskSpec` (how its datasets are made, its loss or
steps, its metrics) and :func:`train_task` does the rest, the same for every task: it makes the recipe's freeze
policy, trains the head on cached features when the backbone never changes (else the whole model), scores val
and test, and leaves the model's trainable flags as the policy left them (what the report counts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tl_core import features
from tl_core.components import ModelBundle, TaskSpec, TrainResult
from tl_core.errors import RecipeError
from tl_core.plugins import registry
from tl_core.policies import FreezePolicy, apply_plan
from tl_core.train import resolve_device, run_trainer

if TYPE_CHECKING:
    from tl_core.context import RunContext
    from tl_core.sections import Recipe

SPLITS = ("train", "val", "test")


def make_policy(recipe: Recipe) -> FreezePolicy:
    """The recipe's freeze policy, with its validated options."""
    return registry("policy").get(recipe.policy.name)(**recipe.policy.options)


def cache_decision(recipe: Recipe, policy: FreezePolicy, task: TaskSpec | None = None,
                   splits: dict[str, Any] | None = None) -> str | None:
    """``None`` when the backbone's features can be cached, else why not."""
    if task is not None and task.no_cache:
        return task.no_cache
    if task is not None and task.steps is not None:
        return "the task's model computes its own loss (its own steps): the head cannot train apart from it"
    if not policy.frozen_throughout():
        return f"policy {policy.name} trains the backbone"
    if type(policy).loss_term is not FreezePolicy.loss_term:
        return f"policy {policy.name} adds a loss term, which needs the whole model"
    if splits is not None and not all(hasattr(s, "labels") and hasattr(s, "fingerprint") for s in splits.values()
                                      if s):
        return "the data's items have no labels and content fingerprint to key cached features by"
    if recipe.data.augment:
        return "data.augment is on: the backbone sees different inputs every epoch"
    if not recipe.data.cache_features:
        return "data.cache_features is false"
    return None


def train_task(recipe: Recipe, bundle: ModelBundle, data: Any, ctx: RunContext, task: TaskSpec) -> TrainResult:
    """Train ``bundle`` (its ``model`` has ``backbone`` and ``head``) on ``data`` as ``recipe`` says.

    ``data.train``, ``data.val`` and ``data.test`` are the splits (val and test may be empty or ``None``);
    ``task.make_dataset`` makes each a dataset. Returns the trainer's result with ``model`` set to what the run
    saves and ``info`` holding the preprocessing, the feature-cache decision and ``task.info``."""
    policy = make_policy(recipe)
    splits = {name: getattr(data, name, None) for name in SPLITS}
    classes = list(data.classes) if task.classes is None else task.classes
    why_not = cache_decision(recipe, policy, task, splits)
    info: dict[str, Any] = {"preprocessing": task.preprocessing,
                            "feature_cache": {"used": why_not is None, "reason": why_not}}
    if recipe.train.wise_ft and task.steps is not None:
        raise RecipeError(f"train.wise_ft: task {recipe.task!r} trains with its own steps; WiSE-FT here mixes the "
                          "backbones of classification tasks; remove train.wise_ft")
    if recipe.backbone.adabn:
        if task.steps is not None:
            raise RecipeError(f"backbone.adabn: task {recipe.task!r} trains with its own steps, and AdaBN here "
                              "adapts the backbones of classification tasks; remove backbone.adabn")
        info["adabn"] = adapt_batchnorm(bundle.model.backbone, task.make_dataset(splits["train"], False),
                                        recipe.train.batch_size, task.steps.collate if task.steps else None,
                                        resolve_device(recipe.train.device))
        ctx.log(f"adabn: re-estimated {info['adabn']['layers']} BatchNorm layers' statistics on "
                f"{info['adabn']['items']} training items")
    if why_not is None:
        sets, hits = _cached_features(recipe, bundle, splits, task, ctx)
        info["feature_cache"]["hits"] = hits
        from torch import nn

        from tl_core.model import TransferModel  # torch: imported when a run trains

        head_only = TransferModel(nn.Identity(), bundle.model.head)
        result = run_trainer(head_only, (), policy, recipe.train, ctx, recipe.task, classes,
                             sets["train"], sets["val"], sets["test"], loss=task.loss,
                             metric_names=task.metric_names)
    else:
        made = {name: task.make_dataset(split, name == "train" and recipe.data.augment) if split else None
                for name, split in splits.items()}
        result = run_trainer(bundle.model, bundle.groups, policy, recipe.train, ctx, recipe.task, classes,
                             made["train"], made["val"], made["test"], num_workers=recipe.data.num_workers,
                             loss=task.loss, metric_names=task.metric_names, task_steps=task.steps)
    result.model = bundle.model if task.saved is None else task.saved  # the head-only trainer trained the head in place
    epochs = recipe.train.epochs  # the full model's trainable flags as the policy left them, for the report
    apply_plan(bundle.model, bundle.groups, policy.plan(len(bundle.groups), epochs - 1, epochs))
    result.info.update(info)
    result.info.update(task.info)
    return result


def check_wise_ft(recipe: Recipe, bundle: Any, data: Any) -> None:
    """WiSE-FT mixes a fine-tuned backbone with its pre-trained weights, choosing on validation: refuse, before
    anything is written, what it cannot do (a task with its own steps is refused where its TaskSpec is known)."""
    fix = "remove train.wise_ft"
    if not all(hasattr(getattr(bundle, "model", None), part) for part in ("backbone", "head")):
        raise RecipeError(f"train.wise_ft: task {recipe.task!r} trains a model that is not a backbone and a head on "
                          f"tl's trainer, whose backbone WiSE-FT mixes with its pre-trained weights; {fix}")
    policy = make_policy(recipe)
    if policy.frozen_throughout():
        raise RecipeError(f"train.wise_ft: policy {policy.name} never trains the backbone, so there is nothing to "
                          f"mix with its pre-trained weights; use a policy that trains it (fine-tune), or {fix}")
    if getattr(getattr(bundle, "backbone", None), "report", None) is None:
        raise RecipeError(f"train.wise_ft: backbone.weights is {recipe.backbone.weights!r}: no pre-trained weights to "
                          f"mix with; name a weights entry, or {fix}")
    if not getattr(data, "val", None):
        raise RecipeError(f"train.wise_ft needs a validation split to choose the mixing weight on; set "
                          f"data.val_fraction above 0, or {fix}")


def adapt_batchnorm(backbone: Any, dataset: Any, batch_size: int, collate: Any = None, device: str = "cpu"
                    ) -> dict[str, Any]:
    """AdaBN (Li et al. 2016): every BatchNorm layer of ``backbone`` gets the mean and variance of its inputs over
    ``dataset`` (the target data, without augmentation) in place of the source data's, in one pass without
    gradients (the average of the batches' statistics, as BatchNorm's cumulative mode keeps it). Nothing else
    changes: parameters, momentum and train/eval mode are as they were. Returns how many layers and items."""
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.utils.data import DataLoader

    layers = [m for m in backbone.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not layers:
        return {"layers": 0, "items": 0}
    was_training = {m: m.training for m in backbone.modules()}
    momenta = {m: m.momentum for m in layers}
    backbone.to(device)
    backbone.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    items = 0
    with torch.no_grad():
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
            backbone(x.to(device))
            items += len(x)
    for m in layers:
        m.momentum = momenta[m]
    for m, training in was_training.items():
        m.train(training)
    return {"layers": len(layers), "items": items}


def feature_key(recipe: Recipe, bundle: ModelBundle, preprocessing: dict[str, Any], samples: Any) -> str:
    """The feature-cache key of ``samples`` through ``bundle``'s backbone: its name, its weights' digest (or the seed
    of its random init), AdaBN, the preprocessing and the data."""
    report = bundle.backbone.report
    weights = report.sha256 if report else f"random-init-seed-{recipe.train.seed}"
    adapted = "+adabn" if recipe.backbone.adabn else ""  # statistics of this data: another backbone's features
    return features.cache_key(recipe.backbone.name, weights + adapted, preprocessing, samples)


def _cached_features(recipe: Recipe, bundle: ModelBundle, splits: dict[str, Any], task: TaskSpec,
                     ctx: RunContext) -> tuple[dict[str, Any], dict[str, bool]]:
    """Each split's features from the frozen backbone, computed once and cached on disk, as tensor datasets."""
    import torch
    from torch.utils.data import TensorDataset

    device = resolve_device(recipe.train.device)
    sets: dict[str, Any] = {}
    hits: dict[str, bool] = {}
    for name, samples in splits.items():
        if not samples:
            sets[name] = None
            continue
        key = feature_key(recipe, bundle, task.preprocessing, samples)
        feats, hits[name], path = features.cached(
            bundle.model.backbone, task.make_dataset(samples, False), key, recipe.train.batch_size, device
        )
        sets[name] = TensorDataset(feats, torch.tensor(samples.labels))
        ctx.log(f"features {name}: {'cache hit' if hits[name] else 'computed and cached'} ({path.name[:12]}...)")
    return sets, hits
