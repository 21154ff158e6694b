"""The image classifier: a registry backbone (adapted to RGB images if it was made for other input) with a
registry head sized to the classes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tl_core.components import InputSpec, ModelBundle
from tl_core.model import TransferModel, backbone_for, check_size, make_head
from tl_core.plugins import registry

if TYPE_CHECKING:
    from tl_core.sections import Recipe

RGB = InputSpec(channels=3, spatial_dims=2)  # what an image folder holds: the builder adapts other backbones to it


@dataclass
class Classifier(ModelBundle):
    """What the core's ``tl_build_model`` returns: a :class:`TransferModel`, how its backbone was made, and the
    data format the run reads (whose transforms it trains with; kept from before the run's event hooks, which
    may switch a plugin off and refill the registries)."""

    data_format: Any = None


def build_classifier(recipe: Recipe, num_classes: int, weights: str | None = None) -> Classifier:
    """The recipe's backbone (with ``recipe.backbone.weights``, or ``weights``), its head sized to the classes."""
    built = backbone_for(recipe, RGB, weights)
    check_size(built, recipe.data.image_size)
    head = make_head(recipe.head.name, recipe.head.options, built.spec.feature_dim, num_classes)
    return Classifier(TransferModel(built.module, head), built, registry("data format").get(recipe.data.format))
