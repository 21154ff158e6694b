"""Assembling and training the core's image classifier: backbone + head, the feature cache when it applies."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tl_core.components import ModelBundle
from tl_core.model import BuiltBackbone, TransferModel, build_backbone, make_head
from tl_core.plugins import registry

if TYPE_CHECKING:
    from tl_core.components import TrainResult
    from tl_core.context import RunContext
    from tl_core.data import ClassificationData, Samples
    from tl_core.policies import FreezePolicy
    from tl_core.sections import Recipe


class Classifier(ModelBundle):
    """What the core's ``tl_build_model`` returns: a :class:`TransferModel` and how its backbone was made."""


def build_classifier(recipe: Recipe, num_classes: int, weights: str | None = None) -> Classifier:
    """Backbone from the registry with ``recipe.backbone.weights`` (or ``weights``), head sized to the classes."""
    from tl_core.components import InputSpec

    spec = registry("backbone").get(recipe.backbone.name)
    rgb = InputSpec(channels=3, size=spec.input.size, mean=spec.input.mean, std=spec.input.std, spatial_dims=2)
    built = build_backbone(spec, recipe.backbone.weights if weights is None else weights, rgb)
    head = make_head(recipe.head.name, recipe.head.options, spec.feature_dim, num_classes)
    return Classifier(TransferModel(built.module, head), built)


def make_policy(recipe: Recipe) -> FreezePolicy:
    return registry("policy").get(recipe.policy.name)(**recipe.policy.options)


def preprocessing(recipe: Recipe, built: BuiltBackbone) -> dict[str, Any]:
    spec = built.input
    return {"size": recipe.data.image_size or spec.size, "mean": list(spec.mean), "std": list(spec.std)}


def cache_decision(recipe: Recipe, policy: FreezePolicy) -> str | None:
    """``None`` when features can be cached, else why not."""
    if not policy.frozen_throughout():
        return f"policy {policy.name} trains the backbone"
    if recipe.data.augment:
        return "data.augment is on: the backbone sees different inputs every epoch"
    if not recipe.data.cache_features:
        return "data.cache_features is false"
    return None


def image_datasets(recipe: Recipe, clf: Classifier) -> tuple[dict[str, Any], Callable[[Samples, bool], Any]]:
    """The core's preprocessing description and dataset maker: PIL images, resized, cropped and normalised."""
    from tl_core.data import ImageDataset, transforms

    pre = preprocessing(recipe, clf.backbone)

    def make(samples: Samples, augment: bool) -> Any:
        return ImageDataset(samples, transforms(clf.backbone.input, pre["size"], augment=augment))

    return pre, make


def train_classifier(
    recipe: Recipe,
    clf: Classifier,
    data: ClassificationData,
    ctx: RunContext,
    datasets: tuple[dict[str, Any], Callable[[Samples, bool], Any]] | None = None,
) -> TrainResult:
    """Train ``clf`` on ``data``: on cached features when the backbone never changes, else end to end.

    ``datasets`` is ``(preprocessing, make)``: a JSON-able description of the preprocessing (recorded in the
    report and part of the feature-cache key) and ``make(samples, augment)`` returning a dataset of
    ``(input, label)``. A domain plugin passes its own (DICOM volumes, say); the default reads images with PIL.
    """
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    from tl_core import features
    from tl_core.train import resolve_device, run_trainer

    policy = make_policy(recipe)
    pre, make = datasets or image_datasets(recipe, clf)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    why_not = cache_decision(recipe, policy)
    info: dict[str, Any] = {"preprocessing": pre, "feature_cache": {"used": why_not is None, "reason": why_not}}
    if why_not is None:
        weights = clf.backbone.report.sha256 if clf.backbone.report else f"random-init-seed-{recipe.train.seed}"
        device = resolve_device(recipe.train.device)
        sets: dict[str, Any] = {}
        hits: dict[str, bool] = {}
        for split, samples in splits.items():
            if samples is None:
                sets[split] = None
                continue
            key = features.cache_key(recipe.backbone.name, weights, pre, samples)
            feats, hits[split], path = features.cached(
                clf.model.backbone, make(samples, False), key, recipe.train.batch_size, device
            )
            sets[split] = TensorDataset(feats, torch.tensor(samples.labels))
            ctx.log(f"features {split}: {'cache hit' if hits[split] else 'computed and cached'} ({path.name[:12]}...)")
        info["feature_cache"].update(hits=hits)
        head_only = TransferModel(nn.Identity(), clf.model.head)
        result = run_trainer(
            head_only, (), policy, recipe.train, ctx, recipe.task, data.classes,
            sets["train"], sets["val"], sets["test"],
        )
    else:
        result = run_trainer(
            clf.model, clf.groups, policy, recipe.train, ctx, recipe.task, data.classes,
            make(data.train, recipe.data.augment),
            make(data.val, False) if data.val else None,
            make(data.test, False) if data.test else None,
            num_workers=recipe.data.num_workers,
        )
    result.model = clf.model  # the head-only trainer trained clf.model.head in place
    from tl_core.policies import apply_plan

    epochs = recipe.train.epochs  # the full model's trainable flags as the policy left them, for the report
    apply_plan(clf.model, clf.groups, policy.plan(len(clf.groups), epochs - 1, epochs))
    result.info.update(info)
    return result
