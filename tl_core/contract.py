"""The shape of each answering hook's answer, as docs/plugin_hooks.md declares it.

The core checks every answer where it calls the hook (:func:`tl_core.plugins.first_answer`,
:func:`tl_core.plugins.answers`), so a plugin that answers with the wrong shape is named in one line - which
plugin, which hook, what it gave, what the hook expects - instead of failing far away with an ``AttributeError``.
The conformance suite's tiny training runs go through the same checks.

Each check returns ``None`` for a good answer, else what is wrong with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from tl_core.components import FeatureSet, ModelBundle, TrainResult


def _metrics(value: Any, what: str) -> str | None:
    if not isinstance(value, Mapping):
        return f"{what} must be a mapping of metric name to number"
    for key, number in value.items():
        if not isinstance(key, str) or isinstance(number, bool) or not isinstance(number, Real):
            return f"{what} must map metric names to numbers; {key!r} is {type(number).__name__}"
    return None


def adapt_backbone(answer: Any) -> str | None:
    from torch import nn

    if not (isinstance(answer, tuple | list) and len(answer) == 2):
        return "must return (adapted_backbone, reshaped) or None"
    module, reshaped = answer
    if not isinstance(module, nn.Module):
        return f"the adapted backbone must be a torch.nn.Module, not {type(module).__name__}"
    if not isinstance(reshaped, list | tuple) or not all(isinstance(k, str) for k in reshaped):
        return "reshaped must be a list of 'key: how' strings"
    return None


def build_model(answer: Any) -> str | None:
    if not isinstance(answer, ModelBundle):
        return "must return a tl_core.components.ModelBundle (or a subclass) or None"
    return None


def train(answer: Any) -> str | None:
    if not isinstance(answer, TrainResult):
        return "must return a tl_core.components.TrainResult or None"
    if not isinstance(answer.history, list) or not answer.history:
        return "TrainResult.history must list one row per epoch"
    for row in answer.history:
        if not isinstance(row, Mapping) or not {"epoch", "train_loss"} <= set(row):
            return "each TrainResult.history row must hold at least 'epoch' and 'train_loss'"
    if not isinstance(answer.metrics, Mapping):
        return "TrainResult.metrics must map each split to its metrics"
    for split, metrics in answer.metrics.items():
        problem = _metrics(metrics, f"TrainResult.metrics[{split!r}]")
        if problem:
            return problem
    return None


def evaluate(answer: Any) -> str | None:
    return _metrics(answer, "the answer")


def evaluate_run(answer: Any) -> str | None:
    if not isinstance(answer, Mapping) or "metrics" not in answer or "items" not in answer:
        return "must return a mapping with at least 'items' and 'metrics' (or None)"
    problem = _metrics(answer["metrics"], "'metrics'")
    if problem:
        return problem
    try:
        json.dumps(answer)
    except (TypeError, ValueError) as exc:
        return f"must be JSON-serialisable (it is written to RUN/evaluations): {exc}"
    return None


def extract_features(answer: Any) -> str | None:
    import torch

    if not isinstance(answer, FeatureSet):
        return "must return a tl_core.components.FeatureSet or None"
    f = answer.features
    if not isinstance(f, torch.Tensor) or f.ndim != 2 or len(f) == 0:
        return f"FeatureSet.features must be a tensor (items, dimensions), not of shape {_shape(f)}"
    if answer.labels is None and answer.targets is None:
        return "must give labels (a task with classes) or targets (one without)"
    labels, targets, ref = answer.labels, answer.targets, answer.reference
    if labels is not None and (not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (len(f),)
                               or labels.is_floating_point()):
        return f"FeatureSet.labels must be {len(f)} integers, one per feature row, not of shape {_shape(labels)}"
    if targets is not None and (not isinstance(targets, torch.Tensor) or targets.ndim != 2 or len(targets) != len(f)):
        return f"FeatureSet.targets must be a tensor ({len(f)}, k), one row per feature row, not {_shape(targets)}"
    if ref is not None and (not isinstance(ref, torch.Tensor) or ref.ndim != 2 or ref.shape[1] != f.shape[1]):
        return (f"FeatureSet.reference must be a tensor (m, {f.shape[1]}), as wide as the features, not "
                f"{_shape(ref)}")
    return None


def _shape(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


def conformance_smoke(answer: Any) -> str | None:
    if not isinstance(answer, list | tuple) or not all(isinstance(a, str) and "=" in a for a in answer):
        return "must return a list of --set overrides ('key.path=value') or None"
    return None


#: hook name -> check of one plugin's (non-None) answer
CHECKS: dict[str, Callable[[Any], str | None]] = {
    "tl_adapt_backbone": adapt_backbone,
    "tl_build_model": build_model,
    "tl_train": train,
    "tl_evaluate": evaluate,
    "tl_evaluate_run": evaluate_run,
    "tl_conformance_smoke": conformance_smoke,
    "tl_extract_features": extract_features,
}
