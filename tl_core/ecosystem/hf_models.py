"""``hf:ID[@REVISION]``: a transformers vision encoder from the hub or a local folder as a backbone."""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

from tl_core.components import BackboneSpec, InputSpec
from tl_core.ecosystem.stages import stage_groups
from tl_core.errors import RegistryError, WeightsError
from tl_core.files import first_line
from tl_core.weights import WeightsEntry, read_state_dict


def _hf_id(full: str) -> tuple[str, str | None, bool]:
    """``hf:ID[@REVISION]`` -> the hub id (or local folder), the revision, and whether it is a local folder."""
    ident, _, revision = full.split(":", 1)[1].partition("@")
    local = Path(ident).expanduser().is_dir()
    return (str(Path(ident).expanduser()) if local else ident), (revision or None), local


def _transformers(full: str) -> None:
    """transformers is not a dependency of tl-core (tl-translation brings it): its absence is one line."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise RegistryError(f"{full}: hf: backbones are built by transformers, which is not installed: pip install "
                            "'tl-core[hf]' (or transformers)") from None


def _hf_config(full: str) -> Any:
    """The model's config, from a local folder or the hub (its local cache when offline); unreachable is one line
    that says how to get a local copy."""
    _transformers(full)
    from transformers import AutoConfig

    ident, revision, local = _hf_id(full)
    if not local and ident.startswith(("/", ".", "~")):
        raise RegistryError(f"{full}: the folder {ident} does not exist; give a folder holding the model's config.json "
                            "(save_pretrained writes one), or a hub id like hf:facebook/dinov2-small")
    try:
        return AutoConfig.from_pretrained(ident, revision=revision)
    except (OSError, ValueError) as exc:
        if local:
            raise RegistryError(f"{full}: the folder holds no readable config.json ({first_line(exc)}); "
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


def _no_pooler(cls: type) -> dict[str, Any]:
    """The builder argument that leaves out a pooling layer the library's own classifier does not use (ViT's)."""
    return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls.__init__).parameters else {}


def _hf_model(config: Any) -> Any:
    """The vision model of ``config`` built from it (no weights), pooled (:func:`_hf_pooled_class`); a pooling layer
    the library's classifier does not use (ViT's) is left out."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    cls = _hf_pooled_class(MODEL_MAPPING[type(config)])
    kwargs = _no_pooler(cls)
    return cls(config, **kwargs)


def _hf_kind(full: str, config: Any) -> None:
    """Refuse, in one line, an id that is not a vision encoder: a text encoder (a masked language model: BERT,
    RoBERTa, XLM-R) is the warm start of a translation model (tl-translation's bert2bert); anything else is named."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
        MODEL_FOR_MASKED_LM_MAPPING,
        MODEL_MAPPING,
    )

    kind = getattr(config, "model_type", type(config).__name__)
    cls = MODEL_MAPPING.get(type(config), None)
    if cls is not None and getattr(cls, "main_input_name", "") == "pixel_values":
        if MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING.get(type(config), None) is not None:
            return  # an image encoder transformers itself puts a classifier on
        raise RegistryError(f"{full} is a {kind} model that takes images but is no image classifier's encoder "
                            "(a detector, a video or a generative model): choose an image model (ViT, DINOv2, "
                            "ConvNeXt, Swin ...)")
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
    kwargs = _no_pooler(cls)
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # tl's own load report says what loaded; transformers' table would repeat it
    logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory() as view:  # the file given (a user's may be named otherwise) as the model's
            (Path(view) / "config.json").symlink_to((folder / "config.json").resolve())
            (Path(view) / "model.safetensors").symlink_to(Path(path).resolve())
            model, info = cls.from_pretrained(view, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"weights {what}: transformers cannot read {folder} ({first_line(exc)})"
                           ) from None
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    fresh = set(info.get("missing_keys", ())) | {k[0] if isinstance(k, (tuple, list)) else str(k).split(":")[0]
                                                 for k in info.get("mismatched_keys", ())}
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
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, channels, size, size))
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise RegistryError(f"{full}: a {size}x{size} image through it fails ({first_line(exc)}); it "
                            "cannot be an image backbone") from None
    if out.ndim != 2:
        raise RegistryError(f"{full} gives features of shape {tuple(out.shape)}, not one vector per image: it cannot "
                            "be an image backbone")
    features = int(out.shape[-1])
    kind = getattr(config, "model_type", "hf")
    entry = WeightsEntry(
        name="default", architecture=full, source="file" if local else "hf",
        location=f"{ident}/model.safetensors", sha256=None, revision=revision,
        licence="see the model card" + ("" if local else f" (huggingface.co/{ident})"),
        mean=mean, std=std, input_size=size, crop_pct=crop_pct, interpolation=interpolation,
        reader="tl_core.ecosystem.hf_models:read_hf_weights",
        description=f"{ident} {'from the local folder' if local else 'from the Hugging Face hub'}"
                    + (f" at {revision}" if revision else "") + f"; preprocessing from {how}",
    )
    return BackboneSpec(
        name=full, factory=lambda: _hf_model(config), feature_dim=features, layer_groups=stage_groups(model),
        weights=(entry,), input=InputSpec(channels, size, mean, std, 2, crop_pct, interpolation),
        tasks=("image-classification",), description=f"transformers {kind} {ident} ({features}-d features)",
    )
