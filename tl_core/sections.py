"""A recipe's sections as data: pydantic models of ``task``, ``backbone``, ``head``, ``policy``, ``data``, ``train``
and ``compare``, with their defaults and bounds. Reading recipe files, ``extends:``, ``--set`` and checking the
registry names a recipe uses is :mod:`tl_core.recipe`'s job.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tl_core.errors import DataError

M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)


class BackboneConfig(_Section):
    name: str
    weights: str | None = Field(
        "default", description="weights entry name, a path to a local file, or 'none' for random init"
    )
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-fA-F]{8,64}$",
        description="pin the weights file: its sha256 (or a prefix of at least 8 hex digits); another file is refused. "
                    "report.json records the digest of the file a run used (weights.sha256_actual)"
    )
    revision: str | None = Field(
        None, description="pin a Hugging Face hub file or checkpoint (timm: and hf: backbones, translation's hub "
                          "checkpoints) to a commit, branch or tag of its repo"
    )
    allow_partial: bool = Field(
        False, description="train even when the weights leave most of the backbone's tensors missing or re-initialised"
    )
    adabn: bool = Field(
        False, description="AdaBN: re-estimate the backbone's BatchNorm statistics on the training data before "
                           "training (only the running statistics change)"
    )

    @property
    def random_init(self) -> bool:
        return self.weights is None or self.weights.lower() == "none"


class _Named(BaseModel):
    """``head`` and ``policy``: a name plus options that the named head/policy validates."""

    model_config = ConfigDict(extra="allow", validate_assignment=True, defer_build=True)
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class HeadConfig(_Named):
    name: str = "linear"


class PolicyConfig(_Named):
    name: str = "fine-tune"


class DataConfig(_Section):
    format: str = "image-folder"
    path: str
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    test_path: str | None = None
    image_size: int | None = Field(None, gt=0, description="default: the weights' own input size")
    augment: bool = False
    strict: bool = Field(False, description="true: an undecodable file is an error instead of being skipped")
    num_workers: int = Field(0, ge=0)
    cache_features: bool = True
    options: dict[str, Any] = Field(default_factory=dict, description="options of the data format, if it has any")


class TrainConfig(_Section):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0, description="decoupled weight decay; biases and norm weights get none")
    max_grad_norm: float | None = Field(None, gt=0, description="clip the gradients' total norm to this (HF: 1.0)")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: Literal["cosine", "one-cycle", "constant"] = "cosine"
    grad_accum: int = Field(1, ge=1)
    amp: Literal["auto", "no", "fp16", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    patience: int | None = Field(None, ge=1, description="early stopping: epochs without improvement")
    metric: str = Field("accuracy", description="validation metric that picks the best checkpoint (higher wins)")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    wise_ft: bool = Field(
        False, description="WiSE-FT: after training, interpolate the backbone between its pre-trained and fine-tuned "
                           "weights, the mixing weight chosen on validation (report: wise_ft)"
    )

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        """YAML reads an unquoted ``no`` as false: ``amp: no`` (or ``--set train.amp=no``) means ``"no"``."""
        return "no" if value is False else value


class CompareConfig(_Section):
    scratch: bool = Field(False, description="also train the same architecture from random init, same budget")
    scratch_search: bool = Field(
        True, description="give scratch its own learning rate and batch size: short runs of a small grid (lr x1, "
                          "x3; batch x1, /4) on validation, the best then trained for the full budget"
    )


class Recipe(_Section):
    task: str = "image-classification"
    description: str = ""
    backbone: BackboneConfig
    head: HeadConfig = Field(default_factory=HeadConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    data: DataConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    compare: CompareConfig = Field(default_factory=CompareConfig)

    def resolved(self) -> dict[str, Any]:
        """The recipe with every default filled in, as plain JSON-able data."""
        return self.model_dump(mode="json")


SECTIONS: dict[str, type[BaseModel]] = {
    name: f.annotation for name, f in Recipe.model_fields.items() if isinstance(f.annotation, type)
}


def format_options(model: type[M], options: M | dict[str, Any] | None, key: str = "data.options") -> M:
    """A data format's options model from a validated instance, a ``data.options`` mapping, or ``None`` (the
    defaults); a mapping that does not validate is a :class:`DataError` naming the key."""
    if options is None:
        return model()
    if isinstance(options, model):
        return options
    try:
        return model(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise DataError(f"{key}{'.' + where if where else ''}: {err['msg']} (got {err.get('input')!r:.120})") from None
