"""The ``medical-classification`` task: any registry backbone (adapted to the data's channels and 2D/3D by
``tl_adapt_backbone``) with a registry head, trained on the core's one path on MONAI-preprocessed data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tl_core.api import InputSpec, ModelBundle, TaskSpec

if TYPE_CHECKING:
    from tl_core.api import Recipe, RunContext, TrainResult

#: class names that usually mean "no finding": made the positive class only by default, they get a warning
NEGATIVE_NAMES = frozenset({"normal", "negative", "healthy", "control", "benign"})


@dataclass
class MedicalClassifier(ModelBundle):
    """What ``tl_build_model`` returns for the medical tasks (the core trainer drives it): the model, its
    backbone, and the validated ``data.options``."""

    options: Any = None


def target_input(options: Any) -> InputSpec:
    """What the data holds, for the backbone to be adapted to: its channels and its 2D or 3D."""
    return InputSpec(channels=options.channels, size=options.size, spatial_dims=options.spatial_dims)


def build_classifier(recipe: Recipe, data: Any, weights: str | None = None) -> MedicalClassifier:
    from tl_core.api import TransferModel, backbone_for, make_head

    built = backbone_for(recipe, target_input(data.options), weights)
    head = make_head(recipe.head.name, recipe.head.options, built.spec.feature_dim, len(data.classes))
    return MedicalClassifier(TransferModel(built.module, head), built, data.options)


def normalisation(clf: MedicalClassifier) -> tuple[list[float], list[float]]:
    """The weights' mean and std for the data's channels: averaged over the source channels when the stem was
    adapted (a grayscale input stands for the same value on every source channel)."""
    mean, std = list(clf.backbone.input.mean), list(clf.backbone.input.std)
    channels = clf.options.channels
    if len(mean) != channels:
        mean = [sum(mean) / len(mean)] * channels
        std = [sum(std) / len(std)] * channels
    return mean, std


class Normalised:
    """``(x - mean) / std`` per channel on top of a dataset of ``(image, target)``."""

    def __init__(self, dataset: Any, mean: list[float], std: list[float], spatial_dims: int) -> None:
        import torch

        shape = (-1,) + (1,) * spatial_dims
        self.dataset = dataset
        self.mean = torch.tensor(mean).view(shape)
        self.std = torch.tensor(std).view(shape)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        image, target = self.dataset[i]
        return (image - self.mean) / self.std, target


def task_spec(clf: MedicalClassifier, **more: Any) -> TaskSpec:
    """The medical task's description for the core's one path: MONAI-read items, normalised as the weights
    expect; ``more`` adds the segmentation task's loss and metrics."""
    from tl_medical.data import MedicalDataset

    options = clf.options
    mean, std = normalisation(clf)

    def make(samples: Any, augment: bool) -> Any:
        return Normalised(MedicalDataset(samples, options, augment), mean, std, options.spatial_dims)

    return TaskSpec(make_dataset=make, preprocessing={**options.model_dump(mode="json"), "mean": mean, "std": std},
                    **more)


def positive_class(classes: list[str], options: Any) -> str | None:
    """The class sensitivity, specificity and ROC AUC score as positive: ``data.options.positive_class``, else the
    last of two classes; ``None`` with more classes and none given (one-vs-rest, macro)."""
    from tl_medical.metrics import positive_index

    index = positive_index(list(classes), options.positive_class)
    return None if index is None else list(classes)[index]


def announce_positive(classes: list[str], options: Any, ctx: RunContext) -> str | None:
    """Record the resolved positive class in the run's report (``positive_class``), say it once in the run log, and
    warn when the default made a class named like a negative one (``normal``, ``healthy``...) the positive one."""
    positive = positive_class(classes, options)
    ctx.info["positive_class"] = positive
    if ctx.name != "transfer":  # the from-scratch comparison scores the same class: said once
        return positive
    if positive is None:
        ctx.log(f"positive class: none ({len(classes)} classes): sensitivity, specificity and ROC AUC are one-vs-rest "
                "macro averages; set data.options.positive_class to score one class against the rest")
        return positive
    given = "data.options.positive_class" if options.positive_class is not None else "the last class, by default"
    ctx.log(f"positive class: {positive} ({given}): sensitivity, specificity and ROC AUC score it against the rest")
    if options.positive_class is None and positive.lower() in NEGATIVE_NAMES and ctx.main_process:
        others = [c for c in classes if c != positive]
        # a warning, not an epoch line: shown under --quiet too
        ctx.console.print(
            f"[yellow]warning[/] sensitivity, specificity and ROC AUC treat {positive!r} as the positive class (the "
            f"last class), though it is named like a negative one; to score {others[-1]!r} instead, set "
            f"data.options.positive_class: {others[-1]} in the recipe (or --set data.options.positive_class="
            f"{others[-1]})", highlight=False, soft_wrap=True)
    return positive


def train(recipe: Recipe, clf: MedicalClassifier, data: Any, ctx: RunContext) -> TrainResult:
    from tl_core.api import train_task

    announce_positive(data.classes, clf.options, ctx)
    return train_task(recipe, clf, data, ctx, task_spec(clf))
