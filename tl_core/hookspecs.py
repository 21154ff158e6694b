"""Every hook of tl. The docstring of each spec is the contract; ``docs/plugin_hooks.md`` repeats it.

pluggy calls every hook. Registration hooks receive a ``register`` callback and return nothing. They run once,
lazily, the first time a registry is needed, and must not import torch (or MONAI, ultralytics, transformers): put
heavy imports inside the factories they register. "Who handles this?" hooks are ``firstresult``: the first
implementation that returns something other than ``None`` wins, and the core's own implementation runs last.
Event hooks are called on every plugin; their return values are ignored. Hook wrappers are allowed on every hook
but the registration hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core import hookspec

if TYPE_CHECKING:
    import torch
    import typer

    from tl_core.components import (
        BackboneSpec,
        DataFormat,
        FeatureSet,
        HeadSpec,
        InputSpec,
        ModelBundle,
        RecipeSource,
        TrainResult,
    )
    from tl_core.context import RunContext
    from tl_core.policies import FreezePolicy
    from tl_core.sections import Recipe


@hookspec
def tl_register_backbones(register: Callable[[BackboneSpec], None]) -> None:
    """Register backbones by calling ``register(BackboneSpec(...))`` once per backbone.

    Each spec carries its factory, feature size, ordered layer groups (stem first), input spec and the weights
    entries that load into it. Names must be unique across all plugins.
    """


@hookspec
def tl_register_heads(register: Callable[[HeadSpec], None]) -> None:
    """Register task heads by calling ``register(HeadSpec(...))`` once per head."""


@hookspec
def tl_register_policies(register: Callable[[type[FreezePolicy]], None]) -> None:
    """Register freeze policies by calling ``register(PolicyClass)`` with a :class:`tl_core.policies.FreezePolicy`
    subclass; the class attributes ``name``, ``description``, ``batchnorm`` and ``Options`` describe it."""


@hookspec
def tl_register_datasets(register: Callable[[DataFormat], None]) -> None:
    """Register data formats by calling ``register(DataFormat(...))``; ``recipe.data.format`` names one."""


@hookspec
def tl_register_recipes(register: Callable[[RecipeSource], None]) -> None:
    """Register recipe files shipped as package data by calling ``register(RecipeSource("domain/name", path))``."""


@hookspec(firstresult=True)
def tl_adapt_backbone(
    backbone: torch.nn.Module, spec: BackboneSpec, target: InputSpec
) -> tuple[torch.nn.Module, list[str]] | None:
    """Adapt a built (and weight-loaded) backbone to inputs that differ from ``spec.input``.

    Called only when ``target`` differs from ``spec.input`` in channel count or in ``spatial_dims`` (a 2D
    backbone for 3D volumes). Return ``(adapted_backbone, reshaped)`` where ``reshaped`` lists the ``state_dict`` keys
    whose tensors were adapted, each as ``"key: how"``; they appear under ``reshaped`` in the load report.
    Return ``None`` to let another plugin answer. When nobody answers, the run stops with a clear error.
    """


@hookspec(firstresult=True)
def tl_build_model(recipe: Recipe, data: Any) -> ModelBundle | None:
    """Assemble the model for ``recipe.task``, its head sized from ``data`` (e.g. ``len(data.classes)``).

    ``data`` is what the recipe's data format read. Return ``None`` for tasks you do not handle. The core's
    image-classification plugin answers last for ``image-classification`` with a ``Classifier`` (registry backbone
    with its weights loaded and reported, plus a registry head); domains return their own
    :class:`tl_core.components.ModelBundle` subclass.
    """


@hookspec(firstresult=True)
def tl_train(recipe: Recipe, model: Any, data: Any, ctx: RunContext) -> TrainResult | None:
    """Train ``model`` on ``data`` as ``recipe`` says, writing checkpoints under ``ctx.out``.

    A domain with a native trainer (ultralytics, the HF Trainer) answers for its task and returns a
    :class:`tl_core.components.TrainResult` whose ``history`` rows hold at least ``epoch`` and ``train_loss``. The
    core's image-classification plugin answers last, for its own ``Classifier``. Implementations call
    ``ctx.epoch_end(epoch, metrics)`` after each epoch so that event hooks fire. With ``compare.scratch`` it is
    called a second time, with ``ctx.name == "scratch"``.
    """


@hookspec
def tl_evaluate(
    task: str, outputs: torch.Tensor, targets: torch.Tensor, class_names: list[str], options: Mapping[str, Any]
) -> Mapping[str, float] | None:
    """Return metrics for ``task`` computed from model ``outputs`` and ``targets``, or ``None``.

    ``options`` is the run's validated ``data.options`` (a decision threshold, say); an implementation may leave
    the parameter out. Every plugin's answer is merged into one dict (later plugins cannot overwrite an earlier
    key). The core answers for ``image-classification`` with accuracy, balanced accuracy and macro F1.
    """


@hookspec(firstresult=True)
def tl_evaluate_run(run_dir: Path, report: Mapping[str, Any], data: str) -> Mapping[str, Any] | None:
    """Score a finished run of your task on new data (``tl evaluate RUN --data PATH``), or return ``None``.

    ``report`` is the run's ``report.json``; ``data`` is a path in the run's data format. Rebuild the trained
    model from what the run wrote, score it, and return ``{"items": n, "unit": "...", "skipped": [...],
    "metrics": {...}}`` (anything else JSON-able may be added). The core writes the answer to
    ``RUN/evaluations/<name>.json`` and prints it; it answers for ``image-classification`` itself.
    """


@hookspec(firstresult=True)
def tl_extract_features(recipe: Recipe, model: Any, data: Any, progress: Callable[[int], None]) -> FeatureSet | None:
    """Features of the target data for ``tl diagnose``, from ``model`` (what ``tl_build_model`` built for
    ``recipe``, pre-trained or random-init) in one forward pass without gradients; or ``None`` when ``model`` is
    not yours.

    Use the labelled items a run would train and validate on (``data.train`` and ``data.val``, never the test
    split), preprocessed as evaluation preprocesses them (no augmentation). Return a
    :class:`tl_core.components.FeatureSet`: pooled image or volume features with their class labels, per-box
    features with the box's class for detection, mean encoder states for translation (with real-valued
    ``targets``), and - when the weights entry carries a reference sample of its own training domain - the same
    backbone's features of it. Call ``progress(n)`` after each batch of ``n`` items. The core checks the answer's
    shapes and refuses a wrong one, naming the plugin.
    """


@hookspec(firstresult=True)
def tl_conformance_smoke(recipe_name: str, folder: Path) -> list[str] | None:
    """Tiny data for tl's conformance suite (and the ``tl_tiny_data`` fixture): write a few items for the recipe
    called ``recipe_name`` into ``folder``, in the recipe's own data format, and return the ``--set`` overrides
    that point the recipe at them (``["data.path=...", ...]``); or ``None`` for recipes that are not yours.

    The suite then trains the recipe for one short epoch on the CPU, with its own data format and, where they
    can be had offline, its own weights.
    """


@hookspec
def tl_on_run_start(ctx: RunContext) -> None:
    """Called once when a run starts (after validation, before training), with the run's context.

    What a plugin puts in ``ctx.info`` ends up in ``report.json``. An event hook that raises is reported and
    its plugin switched off; the run goes on.
    """


@hookspec
def tl_on_epoch_end(ctx: RunContext, epoch: int, metrics: Mapping[str, float]) -> None:
    """Called after every epoch (1-based ``epoch``) with that epoch's training and validation metrics."""


@hookspec
def tl_on_run_end(ctx: RunContext, report: Mapping[str, Any]) -> None:
    """Called once when a run has finished and ``report.json`` is written, with the report's content."""


@hookspec
def tl_add_commands(cli: typer.Typer) -> None:
    """Add sub-commands to the ``tl`` command line, e.g. with ``@cli.command()``. Keep imports lazy."""
