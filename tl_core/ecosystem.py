"""Backbones by name from the libraries of the field (issue 14): ``timm:NAME`` builds any timm model as a
:class:`~tl_core.components.BackboneSpec`, everything derived from timm's own metadata:

- the pooled features: ``timm.create_model(NAME, num_classes=0)``, ``head_hidden_size`` wide (``num_features``
  for a model without a hidden head layer);
- the layer groups, stem first: timm's ``group_matcher()`` through ``timm.models.group_parameters`` - the groups
  timm's own layer-wise decay uses (``timm.optim.param_groups_layer_decay``), each as the modules that hold its
  parameters;
- the input and its preprocessing: ``pretrained_cfg``'s input size, mean, std, crop and interpolation;
- the weights: an ``hf`` entry for ``pretrained_cfg["hf_hub_id"]``'s ``model.safetensors`` (timm's hub files),
  its classifier (``pretrained_cfg["classifier"]``) dropped on load; no sha256 is published, so none is pinned.

``backbone.weights: none`` builds the model from its config, with nothing downloaded (what the tests do). The
registry resolves a prefixed name the first time it is asked for one (:meth:`tl_core.registry.Registry.get`); timm
is imported then, never by ``tl plugins`` or the listings.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from tl_core.components import BackboneSpec, InputSpec, LayerGroup
from tl_core.errors import RegistryError, WeightsError, did_you_mean
from tl_core.weights import WeightsEntry, read_state_dict

PHOTOS = "tl_core:builtin/classification/reference/photos"  # natural photographs standing in for ImageNet's domain


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
        raise RegistryError(f"timm:{name}: {str(exc).splitlines()[0]}; timm.list_pretrained('{architecture}*') lists "
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



# ---------------------------------------------------------------------------------------------------- torchvision

#: the last component of a module name whose children are a backbone's stages or blocks, each a layer group
_STAGE_LISTS = ("features", "trunk_output", "encoder", "layers", "layer", "blocks", "stages")
#: builder arguments a model needs to give one output in training as well as in evaluation (no auxiliary heads)
_TV_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False},
              "inception_v3": {"aux_logits": False, "init_weights": False}}
TV_LICENCE = "BSD-3-Clause (torchvision's code; the weights' terms: pytorch.org/vision/stable/models.html)"


def _last_linear(model: Any) -> str | None:
    """The name of the classifier a torchvision model ends in: its last ``nn.Linear``."""
    from torch import nn

    return next((n for n, m in reversed(list(model.named_modules())) if isinstance(m, nn.Linear)), None)


def _torchvision_headless(name: str) -> tuple[Any, str, int]:
    """torchvision's ``name`` without weights, its classifier (the last linear layer) made an identity - pooled
    features - with that classifier's name and width."""
    import torchvision.models as models
    from torch import nn

    model = models.get_model(name, weights=None, **_TV_KWARGS.get(name, {}))
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


def torchvision_groups(model: Any) -> tuple[LayerGroup, ...]:
    """The stage structure of a torchvision classifier as layer groups, stem first: its top-level modules, the
    stage lists among them (``features``, a ViT's ``encoder.layers``, a RegNet's ``trunk_output`` ...) opened into
    their stages; parameters held directly (a ViT's class token) are their own units; the leading single layers and
    parameters (``conv1``, ``bn1``; ``class_token``, ``conv_proj``, ``encoder.pos_embedding``) form the stem - at most
    six, followed by at least three stages: a VGG's convolutions stay one group each - and
    modules without parameters are left out."""
    units: list[tuple[str, bool]] = []  # (prefix, is a single layer or parameter)

    def walk(module: Any, prefix: str) -> None:
        for pname, _ in module.named_parameters(recurse=False):
            units.append((prefix + pname, True))
        for cname, child in module.named_children():
            full = prefix + cname
            if not any(True for _ in child.parameters()):
                continue
            if cname in _STAGE_LISTS and any(True for _ in child.children()):
                walk(child, full + ".")
            else:
                units.append((full, not any(True for _ in child.children())))

    walk(model, "")
    lead = 0
    while lead < len(units) - 1 and units[lead][1]:
        lead += 1
    if lead > 6 or len(units) - lead < 3:  # a row of single layers is the model's structure (VGG), not a stem
        lead = 0
    groups = [LayerGroup("stem", tuple(p for p, _ in units[:lead]))] if lead else []
    groups += [LayerGroup(f"stage{i}", (p,)) for i, (p, _) in enumerate(units[lead:], start=1)]
    return tuple(groups)


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
    members = [("DEFAULT", enum.DEFAULT)] + [(w.name, w) for w in enum]
    entries = []
    for tag, weights in members:
        transform = weights.transforms()
        crop, resize = int(transform.crop_size[0]), int(transform.resize_size[0])
        digest = re.search(r"-([a-f0-9]{8,})\.", weights.url.rsplit("/", 1)[-1])
        metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
        data = "ImageNet-1k" if "IMAGENET1K" in weights.name else weights.name.rsplit("_", 1)[0]
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
        layer_groups=torchvision_groups(model), weights=weights,
        input=InputSpec(3, default.input_size, default.mean, default.std, 2, default.crop_pct, default.interpolation),
        tasks=("image-classification",),
        description=f"torchvision {name} ({features}-d features; weights {', '.join(e.name for e in weights[1:])})",
    )


# ---------------------------------------------------------------------------------------------- Hugging Face


def _hf_id(full: str) -> tuple[str, str | None, bool]:
    """``hf:ID[@REVISION]`` -> the hub id (or local folder), the revision, and whether it is a local folder."""
    ident, _, revision = full.split(":", 1)[1].partition("@")
    local = Path(ident).expanduser().is_dir()
    return (str(Path(ident).expanduser()) if local else ident), (revision or None), local


def _hf_config(full: str) -> Any:
    """The model's config, from a local folder or the hub (its local cache when offline); unreachable is one line
    that says how to get a local copy."""
    from transformers import AutoConfig

    ident, revision, local = _hf_id(full)
    if not local and ident.startswith(("/", ".", "~")):
        raise RegistryError(f"{full}: the folder {ident} does not exist; give a folder holding the model's config.json "
                            "(save_pretrained writes one), or a hub id like hf:facebook/dinov2-small")
    try:
        return AutoConfig.from_pretrained(ident, revision=revision)
    except (OSError, ValueError) as exc:
        if local:
            raise RegistryError(f"{full}: the folder holds no readable config.json ({str(exc).splitlines()[0][:160]}); "
                                "save the model there with save_pretrained") from None
        raise RegistryError(f"{full}: cannot read its config from the Hugging Face hub or the local cache "
                            f"({type(exc).__name__}); online, check the id on huggingface.co; offline, download it "
                            f"on a machine with network access (huggingface-cli download {ident} --local-dir DIR) "
                            "and use backbone.name: hf:DIR") from None


def _hf_pooled_class(base: type) -> type:
    """``base`` (a transformers vision model class) whose forward takes a batch of images and returns pooled
    features: the library's pooled output (ConvNeXt, Swin, ResNet: pooled and normalised; DINOv2: the normalised
    class token) or, where the model has none, the final class token (ViT, as ``ViTForImageClassification`` reads
    it). A subclass, not a wrapper, so that its tensors keep the names of the hub's files."""
    if base in _POOLED:
        return _POOLED[base]

    # a ViT's position embeddings interpolated to the run's image size, as its own classifier can be asked to
    size = {"interpolate_pos_encoding": True} if "interpolate_pos_encoding" in inspect.signature(
        base.forward).parameters else {}

    def forward(self: Any, pixel_values: Any) -> Any:
        out = base.forward(self, pixel_values=pixel_values, **size)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        return hidden[:, 0] if hidden.ndim == 3 else hidden.flatten(2).mean(-1)

    _POOLED[base] = type(f"Pooled{base.__name__}", (base,), {"forward": forward, "__module__": __name__})
    return _POOLED[base]


_POOLED: dict[type, type] = {}


def _hf_model(config: Any) -> Any:
    """The vision model of ``config`` built from it (no weights), pooled (:func:`_hf_pooled_class`); a pooling layer
    the library's classifier does not use (ViT's) is left out."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    cls = _hf_pooled_class(MODEL_MAPPING[type(config)])
    kwargs = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls.__init__).parameters else {}
    return cls(config, **kwargs)


def _hf_kind(full: str, config: Any) -> None:
    """Refuse, in one line, an id that is not a vision encoder: a text encoder (a masked language model: BERT,
    RoBERTa, XLM-R) is the warm start of a translation model (tl-translation's bert2bert); anything else is named."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING, MODEL_MAPPING

    kind = getattr(config, "model_type", type(config).__name__)
    cls = MODEL_MAPPING.get(type(config), None)
    if cls is not None and getattr(cls, "main_input_name", "") == "pixel_values":
        return
    if getattr(config, "is_encoder_decoder", False):
        raise RegistryError(f"{full} is a {kind} encoder-decoder, not an image encoder: a translation recipe takes it "
                            f"as backbone.weights: hf:... of its family (tl-translation)")
    if MODEL_FOR_MASKED_LM_MAPPING.get(type(config), None) is not None:
        raise RegistryError(f"{full} is a {kind} text encoder, not an image encoder: it warm-starts a translation "
                            "model as backbone: {name: bert2bert, weights: hf:ID} (tl-translation)")
    raise RegistryError(f"{full} is a {kind} model, neither a vision nor a text encoder: choose an image model "
                        "(ViT, DINOv2, ConvNeXt, Swin ...)")


def _hf_preprocessing(ident: str, revision: str | None, config: Any) -> tuple[int, tuple, tuple, float, str, str]:
    """(size, mean, std, crop_pct, interpolation, what it came from): the model's image processor
    (``preprocessor_config.json``) in tl's terms; ImageNet's defaults, said so, where it has none."""
    size = int(getattr(config, "image_size", 224) or 224)
    try:
        from transformers import AutoImageProcessor

        proc = AutoImageProcessor.from_pretrained(ident, revision=revision)
    except (OSError, ValueError):
        return size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0, "bilinear", "ImageNet defaults (the model " \
            "has no image processor)"

    def side(box: Any) -> int | None:
        if box is None:
            return None
        get = box.get if isinstance(box, dict) else lambda k, d=None: getattr(box, k, d)
        return get("height") or get("shortest_edge")

    resize, crop = side(getattr(proc, "size", None)), side(getattr(proc, "crop_size", None))
    crop_pct = 1.0
    if getattr(proc, "do_center_crop", False) and crop:
        size, crop_pct = int(crop), float(crop) / float(resize or crop)
    elif getattr(proc, "crop_pct", None) and resize and resize < 384:  # ConvNeXt's: resize to size / crop_pct, crop
        size, crop_pct = int(resize), float(proc.crop_pct)
    elif resize:
        size = int(resize)
    resample = getattr(proc, "resample", 2)
    resample = getattr(resample, "value", resample)
    interpolation = {0: "nearest", 2: "bilinear", 3: "bicubic", "nearest": "nearest", "bilinear": "bilinear",
                     "bicubic": "bicubic"}.get(resample, "bilinear")
    return (size, tuple(proc.image_mean), tuple(proc.image_std), crop_pct, interpolation,
            f"its image processor ({type(proc).__name__})")


def read_hf_weights(path: Path, what: str) -> dict[str, Any]:
    """The tensors of a transformers checkpoint file in the model's own names: loaded by ``from_pretrained`` from
    the folder that holds the file and its ``config.json`` (the hub's snapshot folder, or the user's). transformers
    renames tensors between the names its files keep and the names its modules use (version 5 converts on load), so
    a plain key match would miss most of them; ``from_pretrained`` also strips a classifier checkpoint's model
    prefix (``vit.``) and leaves its classifier out. A file without its config beside it is read as it is."""
    folder = Path(path).parent
    if not (folder / "config.json").is_file():
        return read_state_dict(Path(path), what)
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING
    from transformers.utils import logging

    config = AutoConfig.from_pretrained(str(folder))
    cls = MODEL_MAPPING[type(config)]  # the library's own class: its renames are keyed by it, not by a subclass
    kwargs = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls.__init__).parameters else {}
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # tl's own load report says what loaded; transformers' table would repeat it
    logging.disable_progress_bar()
    try:
        model, info = cls.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"weights {what}: transformers cannot read {folder} ({str(exc).splitlines()[0][:160]})"
                           ) from None
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    fresh = set(info.get("missing_keys", ())) | {k.split(":")[0] for k in info.get("mismatched_keys", ())}
    # only what came from the file: transformers fills the rest with its own init, which tl's report must call missing
    return {k: v for k, v in model.state_dict().items() if k not in fresh}


def hf_spec(full: str) -> BackboneSpec:
    """The spec of ``hf:ID[@REVISION]``: a transformers vision encoder (ViT, DINOv2, ConvNeXt, Swin, ...) from the hub
    or a local folder, as ``AutoModel`` builds it from its config; its layer groups the embeddings, the encoder's
    layers (or stages) and the final norm; its weights the repo's ``model.safetensors`` (a classifier's file too: the
    model prefix is stripped, the classifier dropped); its preprocessing its image processor's."""
    import torch

    ident, revision, local = _hf_id(full)
    config = _hf_config(full)
    _hf_kind(full, config)
    model = _hf_model(config)
    size, mean, std, crop_pct, interpolation, how = _hf_preprocessing(ident, revision, config)
    channels = int(getattr(config, "num_channels", 3) or 3)
    model.eval()
    with torch.no_grad():
        features = int(model(torch.zeros(1, channels, size, size)).shape[-1])
    kind = getattr(config, "model_type", "hf")
    entry = WeightsEntry(
        name="default", architecture=full, source="file" if local else "hf",
        location=f"{ident}/model.safetensors", sha256=None, revision=revision,
        licence="see the model card" + ("" if local else f" (huggingface.co/{ident})"),
        mean=mean, std=std, input_size=size, crop_pct=crop_pct, interpolation=interpolation,
        reader="tl_core.ecosystem:read_hf_weights",
        description=f"{ident} {'from the local folder' if local else 'from the Hugging Face hub'}"
                    + (f" at {revision}" if revision else "") + f"; preprocessing from {how}",
    )
    return BackboneSpec(
        name=full, factory=lambda: _hf_model(config), feature_dim=features, layer_groups=torchvision_groups(model),
        weights=(entry,), input=InputSpec(channels, size, mean, std, 2, crop_pct, interpolation),
        tasks=("image-classification",), description=f"transformers {kind} {ident} ({features}-d features)",
    )


# ---------------------------------------------------------------------------------------------------- finding


def search(term: str) -> list[dict[str, Any]]:
    """The models of timm and torchvision whose names contain ``term`` (case-insensitive), as backbone names: one row
    per timm pretrained tag (with its licence, as timm's ``pretrained_cfg`` states it) and per timm architecture
    without one, and one per torchvision classifier (its weights enum's tags; torchvision states a licence only for
    some weights). Imports timm and torchvision: only ``tl backbones --search`` calls it."""
    import timm
    import torchvision.models as models
    from timm.models import get_pretrained_cfg

    pattern = f"*{term.lower()}*"
    rows: list[dict[str, Any]] = []
    tagged = timm.list_pretrained(pattern)
    for name in tagged:
        cfg = get_pretrained_cfg(name)
        rows.append({"name": f"timm:{name}", "library": "timm", "pretrained": True,
                     "weights": [str(getattr(cfg, "tag", "") or "default")],
                     "licence": str(getattr(cfg, "license", None) or "not stated")})
    with_weights = {n.partition(".")[0] for n in tagged}
    rows += [{"name": f"timm:{n}", "library": "timm", "pretrained": False, "weights": [], "licence": "not stated"}
             for n in timm.list_models(pattern) if n not in with_weights]
    for name in _classification_models():
        if term.lower() in name.lower():
            enum = models.get_model_weights(name)
            licences = sorted({str(w.meta.get("license")) for w in enum if w.meta.get("license")})
            rows.append({"name": f"torchvision:{name}", "library": "torchvision", "pretrained": len(enum) > 0,
                         "weights": ["DEFAULT", *(w.name for w in enum)],
                         "licence": ", ".join(licences) or "not stated (torchvision's code: BSD-3-Clause)"})
    return sorted(rows, key=lambda r: (r["library"], r["name"]))
