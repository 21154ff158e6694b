"""Hook API 1.1's home of the image classifier. The classifier moved into the built-in image-classification plugin
(:mod:`tl_core.builtin.classification`) and training into the core's one path (:func:`tl_core.task.train_task`);
the old names still work, with a :class:`DeprecationWarning`."""

from __future__ import annotations

import warnings
from typing import Any

from tl_core.compat import MIGRATION, moved

__getattr__ = moved(__name__, {
    "Classifier": "tl_core.builtin.classification.model",
    "build_classifier": "tl_core.builtin.classification.model",
    "make_policy": "tl_core.task",
    "cache_decision": "tl_core.task",
})


def train_classifier(recipe: Any, clf: Any, data: Any, ctx: Any, datasets: Any = None) -> Any:
    """1.1's classifier training: ``datasets`` is ``(preprocessing, make)``; now ``train_task`` with a ``TaskSpec``."""
    from tl_core.builtin.classification.training import train
    from tl_core.components import TaskSpec
    from tl_core.task import train_task

    warnings.warn("tl_core.classifier.train_classifier is replaced by tl_core.api.train_task(recipe, bundle, data, "
                  f"ctx, TaskSpec(make_dataset=..., preprocessing=...)) in tl hook API 2.0 ({MIGRATION})",
                  DeprecationWarning, stacklevel=2)
    if datasets is None:
        return train(recipe, clf, data, ctx)
    pre, make = datasets
    return train_task(recipe, clf, data, ctx, TaskSpec(make_dataset=make, preprocessing=pre))
