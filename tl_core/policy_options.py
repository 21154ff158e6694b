"""The options of the core's freeze policies, as pydantic models. :mod:`tl_core.policies` names them by reference,
so that registering the policies - every ``tl`` command does - imports no pydantic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from tl_core.policies import BNMode


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class FineTuneOptions(_Options):
    backbone_lr_mult: float = Field(0.1, gt=0, description="backbone LR = head LR x this")
    layer_decay: float = Field(1.0, gt=0, le=1, description="each group below the top gets LR x this once more")
    bn: BNMode = Field("train", description="BatchNorm in trainable groups: train, freeze-stats or freeze")


class FreezeFirstOptions(FineTuneOptions):
    groups: int = Field(1, ge=0, description="how many layer groups, from the stem, stay frozen")
    backbone_lr_mult: float = Field(1.0, gt=0, description="backbone LR = head LR x this")


class GradualUnfreezeOptions(FineTuneOptions):
    every: int = Field(1, ge=1, description="unfreeze one more group (from the top) every this many epochs")


class FreezeGroupsOptions(FineTuneOptions):
    frozen: list[str] = Field(..., min_length=1, description="names of the layer groups that stay frozen")
    backbone_lr_mult: float = Field(1.0, gt=0, description="backbone LR = head LR x this")


class ProbeThenFineTuneOptions(FineTuneOptions):
    probe_epochs: int = Field(1, ge=0, description="epochs of linear probing (frozen backbone) before fine-tuning")


class L2SPOptions(FineTuneOptions):
    alpha: float = Field(0.01, ge=0, description="strength of the pull alpha x |w - w0|^2 towards the pre-trained "
                                                 "backbone weights w0")
    backbone_lr_mult: float = Field(1.0, gt=0, description="backbone LR = head LR x this")
