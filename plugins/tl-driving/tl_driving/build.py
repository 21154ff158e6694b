"""Which torchvision detector a detection recipe names: a whole COCO detector of torchvision
(``backbone.name: torchvision:<model>``, :mod:`tl_driving.coco_detectors`), or a registry backbone under a new
feature pyramid and the recipe's head (:func:`tl_driving.models.on_backbone`). (YOLO recipes go to
:mod:`tl_driving.yolo`.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tl_core.api import Recipe
    from tl_driving.models import Detector


def build(recipe: Recipe, data: Any, weights: str | None = None) -> Detector:
    """The recipe's detector for ``data.classes`` (``weights``: ``"none"`` to rebuild a finished run's
    architecture)."""
    from tl_driving import coco_detectors, models
    from tl_driving.coco_backbones import coco_model

    if coco_model(recipe.backbone.name) is not None:
        return coco_detectors.build(recipe, data, weights)
    return models.on_backbone(recipe, data, weights)
