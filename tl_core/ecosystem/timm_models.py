"""``timm:NAME``: any timm model as a backbone, everything derived from timm's own metadata:

- the pooled features: ``timm.create_model(NAME, num_classes=0)``, ``head_hidden_size`` wide (``num_features``
  for a model without a hidden head layer);
- the layer groups, stem first: timm's ``group_matcher()`` through ``timm.models.group_parameters`` - the groups
  timm's own layer-wise decay uses (``timm.optim.param_groups_layer_decay``), each as the modules that hold its
  parameters;
- the input and its preprocessing: ``pretrained_cfg``'s input size, mean, std, crop and interpolation;
- the weights: an ``hf`` entry for ``pretrained_cfg["hf_hub_id"]``'s ``model.safetensors`` (timm's hub files),
  its classifier (``pretrained_cfg["classifier"]``) dropped on load; no sha256 is published, so none is pinned.
"""

from __future__ import annotations

from typing import Any

from tl_core.components import BackboneSpec, InputSpec, LayerGroup
from tl_core.errors import RegistryError, did_you_mean
from tl_core.files import first_line
from tl_core.weights import WeightsEntry


def _timm_model(name: str) -> Any:
    import timm

    return timm.create_model(name, pretrained=False, num_classes=0)


def timm_groups(model: Any) -> tuple[LayerGroup, ...]:
    """timm's fine layer groups of ``model`` (``group_matcher(coarse=False)``), stem first, each as the modules
    owning its parameters (a parameter ``stages.0.blocks.1.conv.weight`` -> module ``stages.0.blocks.1.conv``)."""
    from timm.models import group_parameters

    grouped = group_parameters(model, model.group_matcher(coarse=False))
    groups = []
    for index in sorted(grouped):
        modules = sorted({n.rpartition(".")[0] or n for n in grouped[index]})
        groups.append(LayerGroup(f"group{index}", tuple(modules)))
    return tuple(groups)


def timm_spec(full: str) -> BackboneSpec:
    """The spec of ``timm:NAME`` (``NAME`` as timm spells it, with or without a pretrained tag:
    ``convnext_nano.in12k_ft_in1k``)."""
    import timm

    name = full.split(":", 1)[1]
    architecture = name.partition(".")[0]
    if not timm.is_model(architecture):
        raise RegistryError(f"timm has no model {architecture!r}"
                            f"{did_you_mean(architecture, timm.list_models())}; timm.list_models('*part*') lists "
                            "them, or try tl backbones")
    try:
        model = _timm_model(name)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise RegistryError(f"timm:{name}: {first_line(exc)}; timm.list_pretrained('{architecture}*') lists "
                            "its tags") from None
    # the width of the pooled output: a head's own hidden layer (MobileNetV3's conv_head) where there is one
    features = getattr(model, "head_hidden_size", None) or getattr(model, "num_features", None)
    if not isinstance(features, int) or not hasattr(model, "group_matcher"):
        raise RegistryError(f"timm:{name} gives no pooled features (no num_features or group_matcher): it cannot be a "
                            "backbone; choose a classification model")
    cfg = dict(model.pretrained_cfg)
    channels, size = int(cfg.get("input_size", (3, 224, 224))[0]), int(cfg.get("input_size", (3, 224, 224))[-1])
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    crop_pct = float(cfg.get("crop_pct") or 0.875)
    interpolation = cfg.get("interpolation") or "bilinear"
    interpolation = interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bilinear"
    weights: tuple[WeightsEntry, ...] = ()
    hub = cfg.get("hf_hub_id")
    if hub:
        classifier = cfg.get("classifier")
        weights = (WeightsEntry(
            name=cfg.get("tag") or "default", architecture=full, source="hf", location=f"{hub}/model.safetensors",
            sha256=None, licence=str(cfg.get("license") or "see the model card"), mean=mean, std=std,
            input_size=size, crop_pct=crop_pct, interpolation=interpolation,
            classifier=tuple(classifier) if isinstance(classifier, (list, tuple)) else ((classifier,) if classifier
                                                                                      else ()),
            training_data=str(cfg.get("tag") or ""),
            description=f"timm {name} from the Hugging Face hub ({hub}; downloaded on first use)",
        ),)
    return BackboneSpec(
        name=full, factory=lambda: _timm_model(name), feature_dim=features, layer_groups=timm_groups(model),
        weights=weights, input=InputSpec(channels, size, mean, std, 2, crop_pct, interpolation),
        tasks=("image-classification",), description=f"timm {name} ({features}-d features)",
    )
