"""Freeze policies: the three techniques of transfer learning (feature extraction, fine-tuning, freezing
layers) as one family.

A policy is a pure *plan*: for a given epoch it says, for each backbone layer group (stem first), whether the
group trains, its learning-rate multiplier, and what its BatchNorm layers do. Everything else derives from the
plan: ``requires_grad``, the optimizer's parameter groups (one per trainable layer group, added when a group is
unfrozen), BatchNorm modes after every ``model.train()``, and what ``tl inspect`` prints.

BatchNorm modes:

- ``train``: running statistics update and the affine parameters train (ordinary training);
- ``freeze-stats``: the layer stays in eval mode (statistics fixed), its affine parameters train;
- ``freeze``: eval mode and no gradient.

A *frozen* group's BatchNorm layers are always ``freeze``: in train mode they would keep updating their running
statistics, silently changing the "frozen" backbone - the bug several toolkits shipped.
"""

from __future__ import annotations

from abc import ABCMeta
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from tl_core.compat import moved
from tl_core.components import resolve
from tl_core.errors import RecipeError, TLError

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel
    from torch import nn

    from tl_core.components import LayerGroup

OPTIONS = "tl_core.policy_options"  # the core policies' options models (pydantic), imported when first used
# 1.1 plugins found the option models here
__getattr__ = moved(__name__, dict.fromkeys(("FineTuneOptions", "FreezeFirstOptions", "GradualUnfreezeOptions",
                                             "FreezeGroupsOptions", "ProbeThenFineTuneOptions"), OPTIONS))

BNMode = Literal["train", "freeze-stats", "freeze"]


@dataclass(frozen=True)
class GroupState:
    """What one backbone layer group does during one epoch."""

    trainable: bool
    lr_mult: float
    bn: BNMode


class _PolicyType(ABCMeta):
    """A policy's ``Options`` may name its pydantic model by reference (``"module:Class"``): it is imported the
    first time the class is asked for it, so that registering policies (``tl plugins``) imports no pydantic.
    (An ``ABCMeta``, so that a policy may mix in ``abc.ABC`` without a metaclass conflict.)"""

    def __getattribute__(cls, name: str) -> Any:
        value = super().__getattribute__(name)
        if name == "Options" and isinstance(value, str):
            value = resolve(value, f"policy {super().__getattribute__('name')!r}: Options")
            type.__setattr__(cls, name, value)
        return value


class FreezePolicy(metaclass=_PolicyType):
    """Base class: subclasses set the class attributes and implement :meth:`plan`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    batchnorm: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel] | str | None] = None  # or "module:Class", imported when first used
    example: ClassVar[dict[str, Any]] = {}  # options that make a valid instance (the conformance suite uses them)

    def __init__(self, **options: Any) -> None:
        model = type(self).Options  # through the class, which resolves a reference
        self.options: Any = model(**options) if model is not None else None
        self.group_names: tuple[str, ...] = ()

    def bind(self, group_names: Sequence[str]) -> FreezePolicy:
        """Tell the policy the names of the backbone's layer groups (stem first). Trainers call this before
        :meth:`plan`; a policy that names groups checks its names here."""
        self.group_names = tuple(group_names)
        return self

    def plan(self, n_groups: int, epoch: int, epochs: int) -> list[GroupState]:
        """States of the ``n_groups`` backbone groups (stem first) during 0-based ``epoch`` of ``epochs``."""
        raise NotImplementedError

    def frozen_throughout(self) -> bool:
        """True when the backbone never trains and its BatchNorm never updates: its features can be cached."""
        return False

    def scratch(self) -> dict[str, Any]:
        """The recipe's ``policy:`` section for the from-scratch comparison (``compare.scratch``): this policy's
        train-everything variant. There are no pre-trained weights to protect, so by default every layer trains at
        the recipe's learning rate with BatchNorm training - ``fine-tune`` without its backbone multiplier or
        layer-wise decay. A policy whose from-scratch twin should differ says so here."""
        return {"name": "fine-tune", "backbone_lr_mult": 1.0, "layer_decay": 1.0, "bn": "train"}

    def loss_term(self, model: nn.Module) -> Callable[[nn.Module], torch.Tensor] | None:
        """A loss term this policy adds to every training batch, or ``None`` (the default).

        Called once before training, with the model as built (pre-trained weights loaded; ``model.backbone`` and
        ``model.head``). Return a function of the model being trained that gives a scalar tensor: the trainer adds
        it to the task's loss before every backward pass, and records its mean per epoch as ``train_penalty``.
        L2-SP (Li et al. 2018), which pulls the backbone towards its pre-trained weights, is the classic use."""
        return None

    def _lrs(self, n_groups: int) -> list[float]:
        opts = self.options
        return [opts.backbone_lr_mult * opts.layer_decay ** (n_groups - 1 - i) for i in range(n_groups)]

    def _trainable(self, n_groups: int, trainable: list[bool]) -> list[GroupState]:
        lrs = self._lrs(n_groups)
        return [
            GroupState(True, lrs[i], self.options.bn) if t else GroupState(False, 0.0, "freeze")
            for i, t in enumerate(trainable)
        ]


class FeatureExtraction(FreezePolicy):
    name = "feature-extraction"
    description = "backbone frozen, only the head trains; features are cached when no augmentation runs"
    batchnorm = "freeze: every backbone BatchNorm stays in eval mode with frozen statistics and parameters"

    def plan(self, n_groups: int, epoch: int, epochs: int) -> list[GroupState]:
        return [GroupState(False, 0.0, "freeze")] * n_groups

    def frozen_throughout(self) -> bool:
        return True


class FineTune(FreezePolicy):
    name = "fine-tune"
    description = "everything trains; backbone at head LR x backbone_lr_mult, optional layer-wise decay"
    batchnorm = "option bn (default train): train, freeze-stats or freeze"
    Options = f"{OPTIONS}:FineTuneOptions"

    def plan(self, n_groups: int, epoch: int, epochs: int) -> list[GroupState]:
        return self._trainable(n_groups, [True] * n_groups)


class FreezeFirst(FreezePolicy):
    name = "freeze-first"
    description = "the first `groups` layer groups (from the stem) stay frozen, the rest trains"
    batchnorm = "frozen groups: freeze; trainable groups: option bn (default train)"
    Options = f"{OPTIONS}:FreezeFirstOptions"

    def plan(self, n_groups: int, epoch: int, epochs: int) -> list[GroupState]:
        return self._trainable(n_groups, [i >= self.options.groups for i in range(n_groups)])


class GradualUnfreeze(FreezePolicy):
    name = "gradual-unfreeze"
    description = "head first; then one more group, from the top, every `every` epochs, each a new optimizer group"
    batchnorm = "frozen groups: freeze; unfrozen groups: option bn (default train)"
    Options = f"{OPTIONS}:GradualUnfreezeOptions"

    def plan(self, n_groups: int, epoch: int, epochs: int) -> list[GroupState]:
        unfrozen = min(n_groups, epoch // self.options.every)
        return self._trainable(n_groups, [i >= n_groups - unfrozen for i in range(n_groups)])


class FreezeGroups(FreezePolicy):
    name = "freeze-groups"
    description = "the layer groups named in `frozen` stay frozen, whatever their place; the others train"
    batchnorm = "frozen groups: freeze; trainable groups: option bn (default train)"
    Options = f"{OPTIONS}:FreezeGroupsOptions"
    example = {"frozen": ["middle"]}  # for the conformance suite's 3-group backbone (stem, middle, top)

    def bind(self, group_names: Sequence[str]) -> FreezePolicy:
        unknown = [n for n in self.options.frozen if n not in group_names]
        if unknown:
            raise RecipeError(f"policy.frozen: no layer group {unknown[0]!r} in this backbone; its groups, stem "
                              f"first: {', '.join(group_names)}")
        return super().bind(group_names)

    def plan(self, n_groups: int, epoch: int, epochs: int) -> list[GroupState]:
        if len(self.group_names) != n_groups:
            raise TLError("freeze-groups needs the backbone's layer-group names: call policy.bind(names) first")
        return self._trainable(n_groups, [name not in self.options.frozen for name in self.group_names])


class ProbeThenFineTune(FreezePolicy):
    name = "probe-then-fine-tune"
    description = "a linear probe (frozen backbone) for `probe_epochs`, then fine-tuning from it"
    batchnorm = "probe: freeze; fine-tuning: option bn (default train)"
    Options = f"{OPTIONS}:ProbeThenFineTuneOptions"

    def plan(self, n_groups: int, epoch: int, epochs: int) -> list[GroupState]:
        return self._trainable(n_groups, [epoch >= self.options.probe_epochs] * n_groups)


class L2SP(FineTune):
    """L2-SP (Li, Grandvalet and Davoine, ICML 2018): everything trains, and every batch's loss gains
    ``alpha x |w - w0|^2`` over the backbone's parameters, ``w0`` being their pre-trained values as built, so that
    the penalty - not a smaller learning rate - keeps the backbone near what it learnt. The paper's form also drops
    plain weight decay on the backbone; here ``train.weight_decay`` still applies (set it to 0 for the paper's)."""

    name = "l2-sp"
    description = "everything trains, pulled towards the pre-trained backbone by alpha x |w - w0|^2 on every batch"
    Options = f"{OPTIONS}:L2SPOptions"  # fine-tune's plan and BatchNorm, with its own options and loss term

    def loss_term(self, model: nn.Module) -> Callable[[nn.Module], torch.Tensor] | None:
        alpha = self.options.alpha
        anchors = {name: p.detach().clone() for name, p in model.backbone.named_parameters()}

        def pull(trained: nn.Module) -> torch.Tensor:
            terms = [((p - anchors[name]) ** 2).sum() for name, p in trained.backbone.named_parameters()]
            return alpha * sum(terms[1:], terms[0])

        return pull


CORE_POLICIES: tuple[type[FreezePolicy], ...] = (
    FeatureExtraction, FineTune, FreezeFirst, FreezeGroups, GradualUnfreeze, L2SP, ProbeThenFineTune,
)


# ------------------------------------------------------------------ applying a plan to a model


def group_parameters(backbone: nn.Module, groups: tuple[LayerGroup, ...]) -> list[list[torch.nn.Parameter]]:
    """The backbone's parameters, split by layer group; a parameter in no group (or in two) is a spec bug."""
    split: list[list[torch.nn.Parameter]] = [[] for _ in groups]
    for pname, param in backbone.named_parameters():
        owners = [i for i, g in enumerate(groups) if g.owns(pname)]
        if len(owners) != 1:
            where = "no layer group" if not owners else f"{len(owners)} layer groups"
            raise ValueError(f"backbone parameter {pname!r} belongs to {where}; fix the backbone's layer_groups")
        split[owners[0]].append(param)
    return split


def apply_plan(model: nn.Module, groups: tuple[LayerGroup, ...], states: list[GroupState]) -> None:
    """Set ``requires_grad`` on ``model.backbone`` by group (and on BatchNorm under ``bn: freeze``); the head trains."""
    from torch.nn.modules.batchnorm import _BatchNorm

    for params, state in zip(group_parameters(model.backbone, groups), states):
        for p in params:
            p.requires_grad_(state.trainable)
    for mname, module in model.backbone.named_modules():
        if isinstance(module, _BatchNorm):
            state = _state_of(mname, groups, states)
            if state is not None and state.bn == "freeze":
                for p in module.parameters(recurse=False):
                    p.requires_grad_(False)
    for p in model.head.parameters():
        p.requires_grad_(True)


def _state_of(module_name: str, groups: tuple[LayerGroup, ...], states: list[GroupState]) -> GroupState | None:
    for group, state in zip(groups, states):
        if group.owns(module_name):
            return state
    return None


def set_train_mode(model: nn.Module, groups: tuple[LayerGroup, ...], states: list[GroupState]) -> None:
    """``model.train()``, then BatchNorm layers whose group's mode is not ``train`` back to eval mode."""
    from torch.nn.modules.batchnorm import _BatchNorm

    model.train()
    for mname, module in model.backbone.named_modules():
        if isinstance(module, _BatchNorm):
            state = _state_of(mname, groups, states)
            if state is not None and state.bn != "train":
                module.eval()
    if all(not s.trainable for s in states):
        model.backbone.eval()  # nothing random (dropout) in a frozen feature extractor either


def no_decay(model: nn.Module) -> set[int]:
    """The ids of the parameters weight decay leaves alone, as timm and the Hugging Face Trainer do: every bias and
    normalisation weight (the parameters of one dimension or none, timm's rule, which covers BatchNorm, LayerNorm,
    GroupNorm and RMSNorm whatever their class), and whatever a module lists in its own ``no_weight_decay()``
    (timm's position embeddings and class tokens)."""
    exempt = {id(p) for p in model.parameters() if p.ndim <= 1}
    for module in model.modules():
        listed = getattr(module, "no_weight_decay", None)
        if not callable(listed):
            continue
        try:
            names = set(listed())
        except Exception:  # a module's own method that needs arguments or fails is not ours to judge
            continue
        for pname, param in module.named_parameters():
            if pname in names or pname.split(".")[0] in names:
                exempt.add(id(param))
    return exempt


def param_groups(
    model: nn.Module, groups: tuple[LayerGroup, ...], states: list[GroupState], lr: float,
    weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: the head first, then trainable backbone groups from the top down.

    This order is also the order in which gradual unfreezing adds groups, so a resumed run rebuilds exactly the
    optimizer it saved. Given ``weight_decay``, each group is split in two: ``name`` decays at that rate and
    ``name (no decay)`` holds its biases and normalisation weights (:func:`no_decay`) at 0.
    """
    named = [("head", [p for p in model.head.parameters()], lr)]
    split = group_parameters(model.backbone, groups)
    for i in reversed(range(len(groups))):
        if states[i].trainable:
            params = [p for p in split[i] if p.requires_grad]
            if params:
                named.append((groups[i].name, params, lr * states[i].lr_mult))
    if weight_decay is None:
        return [{"name": name, "params": params, "lr": glr, "base_lr": glr} for name, params, glr in named]
    exempt = no_decay(model)
    out = []
    for name, params, glr in named:
        for suffix, chosen, wd in (("", [p for p in params if id(p) not in exempt], weight_decay),
                                   (" (no decay)", [p for p in params if id(p) in exempt], 0.0)):
            if chosen:
                out.append({"name": name + suffix, "params": chosen, "lr": glr, "base_lr": glr, "weight_decay": wd})
    return out
