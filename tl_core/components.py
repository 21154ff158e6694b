"""The plain, torch-free data types of tl: what plugins register (backbones, heads, data formats, recipes) and
what the hooks hand each other (a model bundle, the steps of a task, a training result).

Each description carries factories (callables) that import torch only when called, so that filling the
registries - and therefore ``tl plugins``, ``tl backbones`` and friends - never imports torch.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tl_core.errors import PluginError, WeightsError, did_you_mean

if TYPE_CHECKING:
    import pydantic

    from tl_core.weights import WeightsEntry


def resolve(reference: str, what: str) -> Any:
    """The object a ``"module:attribute"`` reference names, imported now; a reference that does not import is a
    :class:`PluginError` naming ``what``."""
    module, _, attribute = reference.partition(":")
    try:
        return functools.reduce(getattr, attribute.split("."), importlib.import_module(module))
    except (ImportError, AttributeError, ValueError) as exc:
        raise PluginError(f"{what} is {reference!r}, which cannot be imported ({type(exc).__name__}: {exc}); "
                          "fix the plugin that registered it") from None


class Lazy:
    """The fields a class lists in ``lazy`` may be given as ``"module:attribute"`` strings: the object is imported
    the first time the field is read. Registering then imports nothing an entry needs only when it is used, so
    ``tl plugins`` and ``tl --help`` stay instant however large a plugin is."""

    lazy: ClassVar[tuple[str, ...]] = ()

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if isinstance(value, str) and name in type(self).lazy:
            what = f"{type(self).__name__} {object.__getattribute__(self, 'name')!r}: {name}"
            value = resolve(value, what)
            object.__setattr__(self, name, value)  # resolved once; frozen dataclasses included
        return value


@dataclass(frozen=True)
class InputSpec:
    """What a backbone eats: channels, spatial dimensions (2 for images, 3 for volumes), a default size along each
    axis, the normalisation it expects, and how an image is brought to that size for evaluation: its shorter side
    resized to ``size / crop_pct`` with ``interpolation``, then centre-cropped to ``size`` (timm's terms; torchvision
    says ``resize_size`` and ``crop_size``: ``crop_pct = crop_size / resize_size``)."""

    channels: int = 3
    size: int = 224
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    spatial_dims: int = 2
    crop_pct: float = 0.875
    interpolation: str = "bilinear"  # "bilinear", "bicubic" or "nearest"


@dataclass(frozen=True)
class LayerGroup:
    """A named, ordered slice of a backbone: the parameters whose names start with one of ``prefixes``."""

    name: str
    prefixes: tuple[str, ...]

    def owns(self, parameter_name: str) -> bool:
        """True when ``parameter_name`` (a ``state_dict``/``named_parameters`` key) belongs to this group."""
        return any(parameter_name == p or parameter_name.startswith(p + ".") for p in self.prefixes)


@dataclass(frozen=True)
class BackboneSpec(Lazy):
    """A pre-trainable feature extractor.

    ``factory()`` builds a ``torch.nn.Module`` mapping a batch of inputs to a ``(batch, feature_dim)`` tensor.
    ``layer_groups`` run from the input (stem) to the output and together cover every parameter; the freeze
    policies act on them. ``weights`` lists the entries that load into this architecture; the first is the
    default when a recipe does not name one. ``tasks`` says what it was made for (shown by ``tl backbones``);
    other tasks may use it where their model builder can adapt it. ``factory`` may be a ``"module:function"``
    reference, imported when it is first used.
    """

    lazy: ClassVar[tuple[str, ...]] = ("factory",)

    name: str
    factory: Callable[[], Any]
    feature_dim: int
    layer_groups: tuple[LayerGroup, ...]
    weights: tuple[WeightsEntry, ...] = ()
    input: InputSpec = field(default_factory=InputSpec)
    tasks: tuple[str, ...] = ("image-classification",)
    description: str = ""

    def weights_entry(self, name: str) -> WeightsEntry:
        """The weights entry called ``name`` for this backbone; unknown names raise with suggestions."""
        for entry in self.weights:
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self.weights) or "none"
        raise WeightsError(
            f"backbone {self.name!r} has no weights entry {name!r}"
            f"{did_you_mean(name, [e.name for e in self.weights])}; known: {known}; "
            "or give a path to a local file, or 'none' for random init"
        )


@dataclass(frozen=True)
class HeadSpec(Lazy):
    """A task head: ``factory(in_features, num_outputs, **options)`` returns a ``torch.nn.Module``.

    ``options`` is a pydantic model class validating the recipe's ``head:`` keys other than ``name``. Either may be
    a ``"module:attribute"`` reference, imported when it is first used.
    """

    lazy: ClassVar[tuple[str, ...]] = ("factory", "options")

    name: str
    factory: Callable[..., Any]
    tasks: tuple[str, ...] = ("image-classification",)
    options: type[pydantic.BaseModel] | None = None
    description: str = ""


@dataclass(frozen=True)
class DataFormat(Lazy):
    """A way of reading a data set from disk for one task.

    ``read(config, seed)`` reads everything the recipe's ``data:`` section names and returns the task's data
    object, splits included (the core's: :class:`tl_core.data.ClassificationData`). ``read_split(path, strict,
    classes, options)`` reads one more set of the same format against a finished run's classes and data options
    (``tl evaluate``; ``options`` is the validated ``data.options`` mapping, as training passes it through
    ``load_classification``; ``format_options(Model, options)`` makes it the format's model). Both raise
    :class:`tl_core.errors.DataError` for unusable data, and skip-and-count undecodable files unless ``strict``.
    ``options`` is a pydantic model class validating the recipe's ``data.options`` mapping (for example CT windows
    of a medical format); ``read`` finds the validated values in ``config.options``. ``transforms(input, size,
    augment)`` - given the backbone's :class:`InputSpec` (what its weights expect: channels, mean, std), the run's
    size and whether to augment - returns the transform applied to each item, where the task's default (for
    images: resized crops, flips, the weights' normalisation) does not suit the data (spectrograms, say).

    ``read``, ``read_split``, ``options`` and ``transforms`` may each be a ``"module:attribute"`` reference,
    imported when it is first used, so that registering the format imports nothing.
    """

    lazy: ClassVar[tuple[str, ...]] = ("read", "read_split", "options", "transforms")

    name: str
    task: str
    read: Callable[..., Any]
    read_split: Callable[..., Any] | None = None
    options: type[pydantic.BaseModel] | None = None
    description: str = ""
    transforms: Callable[[InputSpec, int, bool], Callable[[Any], Any]] | None = None


@dataclass
class ModelBundle:
    """What ``tl_build_model`` hands to ``tl_train``: the model to train and how its backbone was made
    (a :class:`tl_core.model.BuiltBackbone`: weights entry, load report, spec). Each task subclasses it with what
    its trainer needs besides."""

    model: Any
    backbone: Any

    @property
    def groups(self) -> tuple[LayerGroup, ...]:
        """The backbone's layer groups, stem first: what the freeze policies act on."""
        return self.backbone.spec.layer_groups


@dataclass(frozen=True)
class RecipeSource:
    """A recipe file shipped by a plugin, listed as ``domain/name``."""

    name: str
    path: Path
    description: str = ""


def recipes_in(folder: Path) -> list[RecipeSource]:
    """``folder/<domain>/<name>.yaml`` as recipes ``domain/name``; a first line ``# ...`` is the description."""
    sources = []
    for path in sorted(folder.glob("*/*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
        description = first.lstrip("# ").strip() if first.startswith("#") else ""
        sources.append(RecipeSource(f"{path.parent.name}/{path.stem}", path, description))
    return sources


@dataclass
class TrainResult:
    """What a trainer hands back: per-epoch history, final metrics per split, and the trained model.

    ``info`` is merged into ``report.json``. Its ``watches`` list holds a task's own warnings about the trained
    model, each ``{"name": ..., "flagged": bool, "message": "...", ...measurements}`` (tl-translation's
    degenerate-output watch is one); ``tl run`` and ``tl report`` print the message of each flagged one."""

    model: Any
    history: list[dict[str, float]]
    metrics: dict[str, dict[str, float]]
    best_epoch: int | None = None
    metric: str | None = None
    stopped_early: bool = False
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    #: split -> (outputs, targets) of the final model, where the trainer keeps them (the core's does): what the
    #: verdict's paired bootstrap resamples; never written to the report
    predictions: dict[str, tuple[Any, Any]] = field(default_factory=dict)


@dataclass
class TaskSteps:
    """For models that compute their own loss and return structured predictions (torchvision detectors):
    ``train(model, x, y)`` returns the loss of a batch, ``predict(model, x)`` a list with one prediction per
    item, ``collate`` builds batches, ``after_step(model)`` runs after every optimizer step (e.g. to put back
    rows of an embedding that must stay frozen while the rest of it trains). Predictions and targets reach
    ``tl_evaluate`` as lists."""

    train: Callable[[Any, Any, Any], Any]
    predict: Callable[[Any, Any], list[Any]]
    collate: Callable[[list[Any]], Any] | None = None
    after_step: Callable[[Any], None] | None = None  # called with the (unwrapped) model after every optimizer step


@dataclass
class TaskSpec:
    """How a task trains on the core's one training path (:func:`tl_core.task.train_task`): the task describes
    itself, the path does the rest (the policy, the feature cache, the loaders, the trainer, the final plan).

    ``make_dataset(split, augment)`` turns one split of the data (``data.train``, ``data.val``, ``data.test``)
    into a dataset of ``(input, target)``. ``loss(outputs, targets)`` is the task's loss (default: cross-entropy
    on class scores), or ``steps`` the steps of a model that computes its own (:class:`TaskSteps`).
    ``metric_names`` are the metrics its ``tl_evaluate`` gives (default: asked of the metric plugins);
    ``classes`` default to ``data.classes``. ``preprocessing`` (JSON-able) is recorded in the report and is part
    of the feature-cache key. ``no_cache`` says why the backbone's features cannot be cached for this task
    (``None``: they can be, when the policy keeps the backbone frozen and nothing random sits between the data
    and it). ``saved`` is what the run writes as its model (default: the bundle's model; a bundle with
    ``save_to`` saves itself). ``info`` is merged into the report.
    """

    make_dataset: Callable[[Any, bool], Any]
    loss: Callable[[Any, Any], Any] | None = None
    steps: TaskSteps | None = None
    metric_names: set[str] | None = None
    classes: list[str] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    no_cache: str | None = None
    saved: Any = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeatureSet:
    """What ``tl_extract_features`` answers: one feature vector per labelled item of the target data, from one
    forward pass of the model's backbone (no gradient), for ``tl diagnose`` to score.

    ``features`` is a ``(n, d)`` tensor. ``labels`` (``(n,)`` integers, the class of each item) is given where the
    task has classes; a task without classes gives real-valued ``targets`` ``(n, k)`` instead (scored by LogME's
    regression form only). ``unit`` names the items (``"images"``, ``"boxes"``, ``"sentence pairs"``) and ``how``
    says in a few words how the features were made (``"pooled backbone output"``). ``reference`` is the same
    backbone's features ``(m, d)`` of a small sample of the data its weights were trained on, when the weights
    entry carries one (``reference_name`` says what it is): the domain-shift score compares the two.
    ``skipped`` names items that gave no features."""

    features: Any
    labels: Any = None
    targets: Any = None
    classes: list[str] = field(default_factory=list)
    unit: str = "items"
    how: str = ""
    reference: Any = None
    reference_name: str = ""
    skipped: list[str] = field(default_factory=list)
