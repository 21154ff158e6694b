"""``torchvision:NAME``: any of torchvision's classifiers as a backbone, its weights enum's entries, its stages."""

from __future__ import annotations

from typing import Any

from tl_core.components import BackboneSpec, InputSpec
from tl_core.ecosystem.stages import stage_groups
from tl_core.errors import RegistryError, did_you_mean
from tl_core.weights import WeightsEntry

PHOTOS = "tl_core:builtin/classification/reference/photos"  # natural photographs standing in for ImageNet's domain


#: builder arguments a model needs to give one output in training as well as in evaluation (no auxiliary heads)
#: (GoogLeNet and Inception v3 also remap ImageNet-normalised input to the [-1, 1] their ported TensorFlow weights
#: expect, as torchvision's builders set whenever they load weights)
_TV_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False, "transform_input": True},
              "inception_v3": {"aux_logits": False, "init_weights": False, "transform_input": True}}
TV_LICENCE = "BSD-3-Clause (torchvision's code; the weights' terms: pytorch.org/vision/stable/models.html)"


def _last_linear(model: Any) -> str | None:
    """The name of the classifier a torchvision model ends in: its last ``nn.Linear``."""
    from torch import nn

    return next((n for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)), None)


def _tv_size(name: str) -> int | None:
    """The image size a torchvision ViT is built for: its DEFAULT weights' (``meta["min_size"]``: 518 for
    ``vit_h_14``'s SWAG weights), which torchvision's builder sets only when it loads weights; ``None`` for the
    other models, which take any size."""
    import torchvision.models as models

    if not name.startswith("vit_"):
        return None
    return int(models.get_model_weights(name).DEFAULT.meta["min_size"][0])


def _torchvision_headless(name: str) -> tuple[Any, str, int]:
    """torchvision's ``name`` without weights, its classifier (the last linear layer) made an identity - pooled
    features - with that classifier's name and width; a ViT built at its DEFAULT weights' size."""
    import torchvision.models as models
    from torch import nn

    size = _tv_size(name)
    model = models.get_model(name, weights=None, **_TV_KWARGS.get(name, {}),
                             **({"image_size": size} if size else {}))
    head = _last_linear(model)
    if head is None:
        raise RegistryError(f"torchvision:{name} ends in no linear classifier (no pooled features): it cannot be a "
                            "backbone; choose another model")
    width = int(model.get_submodule(head).in_features)
    parent, _, child = head.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model, head, width


def _torchvision_model(name: str) -> Any:
    return _torchvision_headless(name)[0]


def _classification_models() -> list[str]:
    import torchvision.models as models

    return models.list_models(module=models)


def torchvision_entries(name: str, classifier: str | None) -> tuple[WeightsEntry, ...]:
    """A weights entry per member of torchvision's weights enum for ``name``, ``DEFAULT`` first (what
    ``backbone.weights: default`` takes): the URL, the sha256 prefix torchvision puts in the file's name, the
    evaluation transform's size, crop, interpolation and normalisation, and the published ImageNet top-1."""
    import re

    import torchvision.models as models

    enum = models.get_model_weights(name)
    size = _tv_size(name)
    # a ViT is built for one size (its position embeddings): only the weights of that size load into it
    members = [("DEFAULT", enum.DEFAULT)] + [(w.name, w) for w in enum
                                             if size is None or w.meta.get("min_size", (size,))[0] == size]
    entries = []
    for tag, weights in members:
        transform = weights.transforms()
        crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
        digest = re.search(r"-([a-f0-9]{8,})\.", weights.url.rsplit("/", 1)[-1])
        metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
        data = ("Instagram hashtags (SWAG, 3.6B images), fine-tuned on ImageNet-1k" if "SWAG" in weights.name else
                "ImageNet-1k" if "IMAGENET1K" in weights.name else weights.name.rsplit("_", 1)[0])
        entries.append(WeightsEntry(
            name=tag, architecture=f"torchvision:{name}", source="url", location=weights.url,
            sha256=digest.group(1) if digest else None,
            licence=str(weights.meta.get("license") or TV_LICENCE),
            mean=tuple(transform.mean), std=tuple(transform.std), input_size=crop, crop_pct=crop / resize,
            interpolation=transform.interpolation.value, classifier=(classifier,) if classifier else (),
            training_data=data, source_accuracy=metrics.get("acc@1"),
            reference=PHOTOS if "IMAGENET1K" in weights.name else None,
            description=f"torchvision {name} {weights.name}" + (" (DEFAULT)" if tag == "DEFAULT" else "")
                        + f", {weights.meta.get('recipe', '')} (downloaded on first use)",
        ))
    return tuple(entries)


def torchvision_spec(full: str) -> BackboneSpec:
    """The spec of ``torchvision:NAME``: one of torchvision's classification models (``torchvision.models.
    list_models(module=torchvision.models)``) with its weights enum's entries, its stage groups and the DEFAULT
    weights' evaluation transform."""
    import torchvision.models as models

    name = full.split(":", 1)[1]
    known = _classification_models()
    if name not in known:
        if name in models.list_models():
            raise RegistryError(f"torchvision:{name} is not an image classifier (it is in "
                                f"{models.get_model_builder(name).__module__}): torchvision's COCO detectors are "
                                "backbones of tl-driving (tl backbones lists them); segmentation and video models "
                                "are not backbones")
        raise RegistryError(f"torchvision has no classification model {name!r}{did_you_mean(name, known)}; "
                            "tl backbones --search NAME lists them")
    model, classifier, features = _torchvision_headless(name)
    weights = torchvision_entries(name, classifier)
    default = weights[0]
    return BackboneSpec(
        name=full, factory=lambda: _torchvision_model(name), feature_dim=features,
        layer_groups=stage_groups(model), weights=weights,
        input=InputSpec(3, default.input_size, default.mean, default.std, 2, default.crop_pct, default.interpolation),
        tasks=("image-classification",),
        description=f"torchvision {name} ({features}-d features; weights {', '.join(e.name for e in weights[1:])})",
    )
