"""``data.options`` of the driving data formats (:class:`DrivingOptions`): which classes, renamed how, what an
unlabelled image is, the training size. The readers (:mod:`tl_driving.formats`) and the recipe side
(:mod:`tl_driving.data`) both take them. And the ``yolo`` head's options (:class:`YoloOptions`): which ultralytics
integrations a YOLO run turns on (none by default)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tl_core.api import format_options


class DrivingOptions(BaseModel):
    """``data.options`` of the driving data formats."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    classes: list[str] | None = Field(
        None, description="keep only these classes, in this order (= label ids); boxes of others are dropped and "
        "counted as 'filtered class'. Default: YOLO's names, else the sorted names found"
    )
    class_map: dict[str, str | None] = Field(
        default_factory=dict, description="rename source classes before anything else ({Pedestrian: person}); "
        "null drops the class"
    )
    missing_labels: Literal["background", "error"] = Field(
        "background", description="an image without a label file (YOLO, VOC, KITTI): a background image, or an error"
    )
    voc_skip_difficult: bool = Field(False, description="Pascal VOC: drop objects marked difficult")
    image_size: int = Field(320, ge=32, description="training size of the longer image side (data.image_size wins)")
    images: str | None = Field(
        None, description="COCO, BDD100K: the image folder (relative to the JSON's folder); default: beside the JSON"
    )

    @field_validator("classes")
    @classmethod
    def _classes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("list at least one class (or leave classes out to keep every class)")
        if len(set(value)) != len(value) or not all(v.strip() for v in value):
            raise ValueError("class names must be unique and non-empty")
        return value

    @field_validator("class_map")
    @classmethod
    def _class_map(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        if any(not k or (v is not None and not v.strip()) for k, v in value.items()):
            raise ValueError("class names must be non-empty (map a class to null to drop it)")
        return value

    @model_validator(mode="after")
    def _mapped_into_classes(self) -> DrivingOptions:
        if self.classes is not None:
            lost = sorted({v for v in self.class_map.values() if v is not None and v not in self.classes})
            if lost:
                raise ValueError(
                    f"class_map maps to {lost}, which classes ({', '.join(self.classes)}) would filter out; add "
                    "them to classes or map them to null"
                )
        return self


def as_options(options: DrivingOptions | dict[str, Any] | None) -> DrivingOptions:
    """``DrivingOptions`` from a validated model, a ``data.options`` mapping, or ``None`` (the defaults)."""
    return format_options(DrivingOptions, options)


#: the ultralytics integrations a YOLO run can turn on (``head.integrations``); each names the module of
#: ``ultralytics.utils.callbacks`` that holds its callbacks (``analytics``: ``ultralytics.utils.events``)
INTEGRATIONS = {
    "analytics": "ultralytics.utils.events",
    "platform": "ultralytics.utils.callbacks.platform",
    "clearml": "ultralytics.utils.callbacks.clearml",
    "comet": "ultralytics.utils.callbacks.comet",
    "dvc": "ultralytics.utils.callbacks.dvc",
    "mlflow": "ultralytics.utils.callbacks.mlflow",
    "neptune": "ultralytics.utils.callbacks.neptune",
    "raytune": "ultralytics.utils.callbacks.raytune",
    "tensorboard": "ultralytics.utils.callbacks.tensorboard",
    "wandb": "ultralytics.utils.callbacks.wb",
}
Integration = Literal["analytics", "platform", "clearml", "comet", "dvc", "mlflow", "neptune", "raytune",
                      "tensorboard", "wandb"]


class YoloOptions(BaseModel):
    """Options of the ``yolo`` head: what tl lets ultralytics' trainer do besides training."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    integrations: list[Integration] = Field(
        default_factory=list, description="ultralytics integrations to turn on for the run (experiment loggers "
        "mlflow, clearml, comet, dvc, wandb, neptune, tensorboard, raytune; platform: Ultralytics Platform uploads; "
        "analytics: ultralytics' anonymous usage events). Default none, whatever ultralytics' own settings say; "
        "an integration also needs its package installed"
    )

    @field_validator("integrations")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))
