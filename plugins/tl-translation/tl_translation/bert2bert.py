"""The ``bert2bert`` family: a translation model warm-started from any text encoder (BERT, RoBERTa, XLM-R, mBERT,
ELECTRA, ...) as transformers' ``EncoderDecoderModel`` (Rothe, Narayan and Severyn 2020, "Leveraging Pre-trained
Checkpoints for Sequence Generation"): the encoder *and* the decoder start from the same checkpoint, the decoder
built with ``is_decoder=True, add_cross_attention=True``, so that only its cross-attention (and, for a checkpoint
saved without one, the output layer's transform) starts fresh.

- :func:`load`: ``EncoderDecoderModel.from_encoder_decoder_pretrained(enc, enc)`` taken step by step - the encoder
  through ``AutoModel``, the decoder through ``AutoModelForCausalLM`` - so that each load's own report is kept and
  the load report can say which tensors came from the checkpoint and which start fresh. The tokenizer is the
  encoder's own (``AutoTokenizer`` from the same id or folder). A checkpoint that is no text encoder (a seq2seq
  model, a vision model, a decoder-only GPT) is refused in one line saying what it is and what to use instead,
  before any weights are read; a whole BERT2BERT (a finished run's ``RUN/model``) loads as it was saved.
- :func:`from_config`: ``backbone.weights: none``, a small BERT2BERT (256 wide, 3+3 layers) built from its config
  with a cased WordPiece vocabulary trained on the run's training text (``data.options.vocab_size``), as the other
  families built from config train theirs: nothing is downloaded.
- :func:`layer_groups`: stem first, one group per layer, so that layer-wise decay, ``freeze-first`` and
  ``gradual-unfreeze`` act at a layer's grain: ``encoder-embeddings``, ``encoder-layer-0`` ..., ``decoder-embeddings``
  (a tied output layer goes with them), ``decoder-layer-0`` ... (each with its cross-attention), ``lm-head``.

Every built model gets the special tokens generation needs (:func:`set_special_tokens`: the decoder starts with
the tokenizer's ``[CLS]``/``<s>``, ends with ``[SEP]``/``</s>``, pads with its pad token), and loses the encoder's
pooler, which translation never calls (it would hold parameters no gradient reaches).

Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tl_core.api import LayerGroup, TLError, WeightsError
from tl_translation.checkpoints import (
    _ADAPTER,
    _CROSS,
    _PEFT_PREFIX,
    FOLDER_FIX,
    Pretrained,
    _quiet,
    check_folder,
    load_failure,
)
from tl_translation.families import BERT2BERT as NAME
from tl_translation.families import BERT2BERT_SMALL as SMALL

#: the encoder checkpoints the family's README and errors point at: multilingual, the natural warm start for a
#: language with little text of its own
SUGGESTED = "hf:FacebookAI/xlm-roberta-base or hf:google-bert/bert-base-multilingual-cased"
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: the family that loads a seq2seq checkpoint, by its model_type (any of them loads any; this one fits it)
SEQ2SEQ_FAMILY = {"marian": "opus-mt", "mbart": "mbart-50", "m2m_100": "m2m100 (or nllb-200)", "t5": "t5-small",
                  "mt5": "mt5-small", "umt5": "mt5-small"}


# ------------------------------------------------------------------ what the checkpoint is


def refuse_non_encoder(config: Any, what: str, location: str, error: type[TLError] = WeightsError) -> None:
    """One ``error`` line when ``config`` is not a text encoder that transformers can also run as a decoder with
    cross-attention: it says what the checkpoint is and what to use instead."""
    from transformers.models.auto import modeling_auto as auto

    kind = getattr(config, "model_type", None) or type(config).__name__
    head = f"{what}: {location} is"
    instead = f"BERT2BERT warm-starts from a text encoder such as {SUGGESTED}"
    if getattr(config, "is_encoder_decoder", False):
        family = SEQ2SEQ_FAMILY.get(kind, "marian-small (any seq2seq family loads it)")
        raise error(f"{head} a {kind} encoder-decoder (seq2seq) model, not an encoder: it translates as it is; set "
                    f"backbone.name: {family} and keep backbone.weights")
    masked = kind in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    causal = kind in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    if kind in auto.MODEL_FOR_IMAGE_MAPPING_NAMES or hasattr(config, "num_channels"):
        raise error(f"{head} a vision model ({kind}), not a text encoder; {instead}")
    if causal and not masked:
        raise error(f"{head} a decoder-only language model ({kind}), not an encoder; {instead}")
    if masked and not causal:
        raise error(f"{head} a {kind} encoder, which transformers cannot run as a decoder with cross-attention (it "
                    f"has no causal-LM class); {instead}, or another BERT, RoBERTa or ELECTRA checkpoint")
    if not masked:
        raise error(f"{head} a {kind} model, not a text encoder transformers knows; {instead}")


def _config(location: str, what: str, pinned: dict[str, Any], local: bool, error: type[TLError],
            fix: str) -> Any:
    from transformers import AutoConfig
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()  # a config's own warnings (token ids, deprecated keys) are not the user's errors
    try:
        return AutoConfig.from_pretrained(location, **pinned)
    except Exception as exc:  # an unknown model_type, a damaged file, no network
        raise load_failure(exc, what, location, local, error, fix) from None
    finally:
        logging.set_verbosity(level)


# ------------------------------------------------------------------ building


def load(location: str, what: str, revision: str | None = None, error: type[TLError] = WeightsError,
         fix: str = FOLDER_FIX) -> Pretrained:
    """The BERT2BERT of the checkpoint at ``location`` (a hub id at ``revision``, or a ``save_pretrained`` folder,
    checked first and read from safetensors only) and its tokenizer. An encoder is warm-started as encoder and
    decoder; a whole BERT2BERT (``model_type: encoder-decoder``, such as a finished run's ``RUN/model``: the parent of
    a parent->child transfer) loads as it was saved; anything else is refused (:func:`refuse_non_encoder`).

    For a warm start, ``missing`` names the tensors that start fresh (the cross-attention; the output layer's
    transform when the checkpoint had none), ``dropped`` the checkpoint's tensors neither side uses (its pooler, a
    pre-training head's next-sentence layer)."""
    import copy

    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, EncoderDecoderModel
    from transformers.utils import logging

    from tl_translation.checkpoints import load_pretrained

    _quiet()
    local = Path(location).is_dir()
    if local:
        check_folder(Path(location), what, error, fix)
    pinned = {} if local or revision is None else {"revision": revision}
    config = _config(location, what, pinned, local, error, fix)
    if config.model_type == "encoder-decoder":
        got = load_pretrained(location, what, revision, error, fix)
        drop_pooler(got.model)
        set_special_tokens(got.model, got.tokenizer)
        return got
    refuse_non_encoder(config, what, location, error)
    config.is_decoder = config.add_cross_attention = False  # the encoder side, whatever the checkpoint was saved as
    decoder_config = copy.deepcopy(config)
    decoder_config.is_decoder = decoder_config.add_cross_attention = True
    weights = {"use_safetensors": True} if local else pinned
    level = logging.get_verbosity()
    logging.set_verbosity_error()  # no load-report tables on the console: tl reports what is fresh itself
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **pinned)
        encoder, enc_info = AutoModel.from_pretrained(location, config=config, output_loading_info=True, **weights)
        decoder, dec_info = AutoModelForCausalLM.from_pretrained(location, config=decoder_config,
                                                                 output_loading_info=True, **weights)
    except Exception as exc:  # transformers, tokenizers and safetensors raise many kinds
        raise load_failure(exc, what, location, local, error, fix) from None
    finally:
        logging.set_verbosity(level)
    if not any(_CROSS.search(n) for n, _ in decoder.named_parameters()):
        raise error(f"{what}: {location} ({config.model_type}) has no cross-attention when transformers builds it "
                    f"as a decoder, so it cannot attend to the source; use {SUGGESTED}")
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    pooler = drop_pooler(model)
    fresh = {f"encoder.{k}" for k in enc_info.get("missing_keys") or ()}
    fresh |= {f"decoder.{k}" for k in dec_info.get("missing_keys") or ()}
    missing = [n for n, _ in model.named_parameters() if n in fresh]
    base = getattr(decoder, "base_model_prefix", "")

    def plain(key: str) -> str:  # a checkpoint key without the base model's prefix (bert., roberta.)
        return key.removeprefix(f"{base}.") if base else key

    unused_by_encoder = {plain(k) for k in enc_info.get("unexpected_keys") or ()} | {plain(k) for k in pooler}
    dropped = sorted(k for k in {plain(k) for k in dec_info.get("unexpected_keys") or ()} if k in unused_by_encoder)
    rows = model.decoder.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise error(f"{what}: the tokenizer in {location} has {len(tokenizer)} tokens but the model's embeddings "
                    f"have {rows} rows: they are not a pair; use the tokenizer saved with the encoder")
    set_special_tokens(model, tokenizer)
    return Pretrained(model, tokenizer, missing, revision, dropped=dropped)


def drop_pooler(model: Any) -> list[str]:
    """Remove the encoder's pooler (``BertModel``'s ``[CLS]`` dense layer), which translation never calls: its
    parameters would train on no gradient and sit in no layer group. Returns the names it had (``pooler.dense.weight``
    ...). A model reloaded with the Auto classes gets a fresh one again, unused
    (:data:`tl_translation.checkpoints._UNUSED` lets it be missing)."""
    pooler = getattr(model.encoder, "pooler", None)
    if pooler is None:
        return []
    names = [f"pooler.{n}" for n, _ in pooler.named_parameters()]
    model.encoder.pooler = None
    return names


def set_special_tokens(model: Any, tokenizer: Any) -> None:
    """The config fields generation reads, from the tokenizer: the decoder starts with ``[CLS]`` (XLM-R: ``<s>``),
    ends with ``[SEP]`` (``</s>``) and pads with the pad token; ``vocab_size`` is the decoder's. The labels are
    tokenised as ``[CLS] ... [SEP]`` too, so the decoder learns to begin and end as it generates."""
    cfg = model.config
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if start is None or end is None or tokenizer.pad_token_id is None:
        raise WeightsError(f"backbone {NAME}: the tokenizer ({type(tokenizer).__name__}) has no "
                           f"{'[CLS]/<s>' if start is None else '[SEP]/</s>' if end is None else 'pad'} token, which "
                           "the decoder needs to start, end or pad; use the encoder's own tokenizer")
    cfg.decoder_start_token_id, cfg.eos_token_id, cfg.pad_token_id = start, end, tokenizer.pad_token_id
    cfg.vocab_size = cfg.decoder.vocab_size
    for key in ("decoder_start_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, key, getattr(cfg, key))


def train_wordpiece(texts: list[str], vocab_size: int) -> Any:
    """A cased WordPiece tokenizer (``BertTokenizerFast``: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3,
    ``[MASK]`` 4) trained on ``texts``; ``vocab_size`` is an upper bound, as for the sentencepiece vocabularies. No
    file outlives the call: the fast tokenizer holds its vocabulary in memory and ``save_pretrained`` writes it."""
    import tempfile

    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    trainer = BertWordPieceTokenizer(clean_text=True, lowercase=False, strip_accents=False)
    trainer.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=list(SPECIALS),
                                show_progress=False)
    vocab = trainer.get_vocab()
    with tempfile.TemporaryDirectory(prefix="tl-wordpiece-") as folder:
        (Path(folder) / "vocab.txt").write_text("".join(f"{t}\n" for t in sorted(vocab, key=vocab.get)),
                                                encoding="utf-8")
        return BertTokenizerFast.from_pretrained(folder, do_lower_case=False, strip_accents=False,
                                                 model_max_length=SMALL["max_position_embeddings"])


def small(vocab_size: int | None = None) -> Any:
    """The small BERT2BERT of ``backbone.weights: none`` (:data:`SMALL`), randomly initialised; ``vocab_size``
    defaults to BERT's (the model the registry's factory builds, before a vocabulary is trained)."""
    from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel

    config = BertConfig(**SMALL, **({"vocab_size": vocab_size} if vocab_size else {}))
    decoder = BertConfig(**{**config.to_dict(), "is_decoder": True, "add_cross_attention": True})
    return EncoderDecoderModel(encoder=BertModel(config, add_pooling_layer=False), decoder=BertLMHeadModel(decoder))


def from_config(texts: list[str], vocab_size: int) -> tuple[Any, Any]:
    """``backbone.weights: none``: the small BERT2BERT and a WordPiece vocabulary trained on ``texts``."""
    _quiet()
    tokenizer = train_wordpiece(texts, vocab_size)
    model = small(len(tokenizer))
    set_special_tokens(model, tokenizer)
    return model, tokenizer


# ------------------------------------------------------------------ layer groups

_EMBEDDINGS = re.compile(r"^(encoder|decoder)\.(?:[^.]+\.)?embeddings(?:_project)?\.")
_LAYER = re.compile(r"^(encoder|decoder)\.(?:[^.]+\.)?encoder\.layers?\.(\d+)\.")


def group_of(parameter: str, encoder_layers: int) -> str:
    """The layer group of a BERT2BERT parameter: its side's embeddings or numbered layer, or the output layer;
    whatever else the encoder holds (a final norm) goes with its top layer, whatever else the decoder holds with the
    output layer. With peft adapters on, the adapters' own parameters form the group ``adapters``."""
    if _ADAPTER.search(parameter):
        return "adapters"
    parameter = parameter.removeprefix(_PEFT_PREFIX)
    found = _EMBEDDINGS.match(parameter)
    if found:
        return f"{found.group(1)}-embeddings"
    found = _LAYER.match(parameter)
    if found:
        return f"{found.group(1)}-layer-{found.group(2)}"
    if parameter.startswith("encoder."):
        return f"encoder-layer-{max(encoder_layers - 1, 0)}"
    return "lm-head"


def group_names(encoder_layers: int, decoder_layers: int) -> list[str]:
    """The groups, stem first."""
    return ["encoder-embeddings", *(f"encoder-layer-{i}" for i in range(encoder_layers)), "decoder-embeddings",
            *(f"decoder-layer-{i}" for i in range(decoder_layers)), "lm-head", "adapters"]


def layer_groups(model: Any) -> tuple[LayerGroup, ...]:
    """``model``'s parameters in the groups of :func:`group_names` (exact names), stem first; empty groups (the
    adapters without lora) left out. Every parameter is in exactly one. An output layer tied to the decoder's
    embeddings is one tensor, listed under whichever name transformers registers first (XLM-R: ``lm_head.decoder``);
    it goes with the embeddings, whatever its name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    depth = {side: int(getattr(getattr(base.config, side), "num_hidden_layers", 0) or 0)
             for side in ("encoder", "decoder")}
    tied = base.decoder.get_input_embeddings().weight
    names: dict[str, list[str]] = {g: [] for g in group_names(depth["encoder"], depth["decoder"])}
    for name, parameter in model.named_parameters():
        group = "decoder-embeddings" if parameter is tied else group_of(name, depth["encoder"])
        names.setdefault(group, []).append(name)
    return tuple(LayerGroup(g, tuple(n)) for g, n in names.items() if n)
