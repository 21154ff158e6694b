"""LoRA adapters (peft) on a translation model, saved and reloaded together with any new tokens.

The pain this module removes (PEFT issues #1457 and #2898): an adapter trained after the vocabulary was extended
does not reload - the new embedding rows are not saved with the adapter, or the base is not resized before the
adapter is loaded, or the rows are saved but the base's freshly resized (random) rows are used instead.

How the embeddings are handled: with peft's **trainable tokens** (``LoraConfig.trainable_token_indices``), not
``modules_to_save``. Trainable tokens store the trained *values* of the chosen rows (not deltas) and write them over
the base's rows in every forward, so the adapter holds exactly the rows it trained and the base's own rows for those
ids - random after a resize, different at every reload - never matter. Tied layers stay tied: the rows are keyed by
the model's input embedding and peft ties the decoder's embedding and the output layer to them. ``modules_to_save``
does neither: on Marian in transformers 5 ``modules_to_save=["shared"]`` trains a module the forward pass never calls
(``shared``, ``encoder.embed_tokens``, ``decoder.embed_tokens`` and ``lm_head`` are four modules sharing one tensor),
``["embed_tokens", "lm_head"]`` makes three untied full copies, and ``ensure_weight_tying`` fails on it. (The plain
list form of ``trainable_token_indices`` has the same trap: it wraps ``shared``; the dict form used here does not.)
After wrapping, :func:`apply_lora` checks that every vocabulary layer the forward pass uses is covered, so the
adapter can never silently leave the new rows untrained.

Which rows: ``apply_lora(model, options, new_tokens=ids)`` trains just the new tokens' rows (the adapter stays small);
``new_tokens=True`` or ``options.train_embeddings`` trains every row (a full copy of the embedding matrix is saved
once, tied layers included).

What :func:`save_adapters` writes into the folder:

* ``adapter_config.json``, ``adapter_model.safetensors`` - peft's ``save_pretrained`` (LoRA matrices and the trained
  token rows; ``save_embedding_layers=False``: the rows the adapter did not train are the base's own);
* the tokenizer (``tokenizer.save_pretrained``), new tokens included;
* ``tl_adapters.json`` - what rebuilding needs: the base's model type, architecture, identity (``_name_or_path``),
  and configuration (as trained, e.g. its ``vocab_size`` after the resize), the number of embedding rows, the
  tokenizer's size, the trained token rows, the LoRA options, and the peft / transformers / torch versions.

:func:`load_with_adapters` reads it back onto the same base (a checkpoint the user reloads): it resizes the base's
embeddings to the saved number of rows first, then ``PeftModel.from_pretrained``; it returns the adapted model
*unmerged* (a ``PeftModel`` in eval mode: it generates as is; :func:`merge` makes a plain transformers model).

BERT2BERT (``EncoderDecoderModel``, :func:`tl_translation.models.minilm_bert2bert`): LoRA works, with
``TaskType.SEQ_2_SEQ_LM`` and ``target_modules: [query, value]`` (self-attention of encoder and decoder and the
decoder's cross-attention, all named ``query``/``value``). New tokens do not: the decoder's output layer has a bias
(which peft's trainable tokens drop) and is tied to the decoder's embeddings outside the model's
``tie_word_embeddings``; :func:`apply_lora` says so in one line.

Nothing here imports torch, transformers or peft at import time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tl_core.api import TLError

INFO_FILE = "tl_adapters.json"
FORMAT = 1

# default LoRA targets: the query and value projections of every attention block (encoder self-attention, decoder
# self-attention and cross-attention all use these names in each family)
_QV_PROJ = ("marian", "bart", "mbart", "m2m_100", "nllb-moe", "pegasus", "pegasus_x", "blenderbot",
            "blenderbot-small", "plbart", "fsmt", "led", "bigbird_pegasus", "prophetnet", "whisper")
_T5 = ("t5", "mt5", "umt5", "longt5", "switch_transformers")
_BERT = ("bert", "roberta", "xlm-roberta", "electra", "camembert", "bert-generation", "ernie")
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{m: ["q_proj", "v_proj"] for m in _QV_PROJ},
    **{m: ["q", "v"] for m in _T5},
    **{m: ["query", "value"] for m in _BERT},
}


class AdapterError(TLError):
    """LoRA adapters that cannot be applied, saved or reloaded as asked."""


class LoraOptions(BaseModel):
    """LoRA adapter options (peft): rank, scaling, dropout, which layers, and whether embeddings train too."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    r: int = Field(8, ge=1, description="rank of the LoRA update matrices")
    alpha: int = Field(16, ge=1, description="LoRA scaling: the update is multiplied by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA branch's input")
    target_modules: list[str] | None = Field(
        None, description="names of the layers that get adapters; default per architecture: the query and value "
        "projections of every attention block (Marian/BART/mBART/NLLB: q_proj, v_proj; T5: q, v; BERT2BERT: "
        "query, value)")
    train_embeddings: bool = Field(
        False, description="also train (and save with the adapter) every row of the token embeddings and the tied "
        "output layer; needed when the vocabulary was extended and the new rows are not named")


def _require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise AdapterError("lora: LoRA adapters need peft: pip install tl-translation[peft]") from None


def _model_type(model: Any) -> str:
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) or type(model).__name__


def _describe(model: Any) -> str:
    return f"{_model_type(model)} ({type(model).__name__})"


def default_targets(model: Any) -> list[str]:
    """The attention projections LoRA adapts by default for ``model``'s architecture."""
    config = getattr(model, "config", None)
    kind = _model_type(model)
    if kind == "encoder-decoder":  # EncoderDecoderModel: the names of its encoder's and decoder's families
        kinds = [getattr(getattr(config, side, None), "model_type", None) for side in ("encoder", "decoder")]
        found = [DEFAULT_TARGETS.get(k or "") for k in kinds]
        if all(found):
            return sorted({name for names in found for name in names})  # type: ignore[union-attr]
        kind = "/".join(str(k) for k in kinds)
    elif kind in DEFAULT_TARGETS:
        return list(DEFAULT_TARGETS[kind])
    else:
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

        if kind in PEFT_TARGETS:
            return list(PEFT_TARGETS[kind])
    raise AdapterError(f"lora: no default target_modules for model type {kind} ({type(model).__name__}); name "
                       f"its attention layers in lora.target_modules (its linear layers: {_linear_names(model)})")


def _linear_names(model: Any, limit: int = 12) -> str:
    from torch import nn

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                    if isinstance(m, nn.Linear) and m is not output})
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "") if names else "none"


def _module_names(model: Any) -> dict[int, str]:
    return {id(m): n for n, m in model.named_modules()}


def _path(model: Any, part: Any, layer: Any) -> str | None:
    """The name under which ``part`` (a submodule of ``model``, or ``model``) reaches ``layer``: one module may sit
    under several names (Marian after a resize: ``shared``, ``encoder.embed_tokens``, ``decoder.embed_tokens``), and
    peft wraps a name, not a module."""
    prefix = "" if part is model else _module_names(model).get(id(part))
    if prefix is None:
        return None
    for name, module in part.named_modules(remove_duplicate=False):
        if module is layer and name:
            return f"{prefix}.{name}" if prefix else name
    return None


def _input_embedding_name(model: Any) -> str | None:
    """The name through which ``model.get_input_embeddings()`` reaches its module - the name peft must wrap for its
    weight tying to follow (Marian: ``model.encoder.embed_tokens``; T5: ``shared``). Found by putting a stand-in
    under each of the module's names in turn."""
    from torch import nn

    source = model.get_input_embeddings()
    for name, module in list(model.named_modules(remove_duplicate=False)):
        if module is not source or not name:
            continue
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        stand_in = nn.Identity()
        setattr(parent, attr, stand_in)
        try:
            hit = model.get_input_embeddings() is stand_in
        except Exception:  # a getter that looks inside the module: not this name
            hit = False
        finally:
            setattr(parent, attr, source)
        if hit:
            return name
    return None


def vocabulary_layers(model: Any) -> dict[str, Any]:
    """The layers with one row per token that the forward pass calls, by the name it calls them under: the
    encoder's and the decoder's input embeddings and the output layer (Marian: ``model.encoder.embed_tokens``,
    ``model.decoder.embed_tokens``, ``lm_head`` - not ``model.shared``, the same module or tensor, never called)."""
    found: list[tuple[Any, Any]] = []
    for side in ("get_encoder", "get_decoder"):
        part = getattr(model, side, None)
        if part is not None:
            found.append((part(), part().get_input_embeddings()))
    found.append((model, model.get_output_embeddings()))
    layers: dict[str, Any] = {}
    for part, layer in found:
        name = _path(model, part, layer) if layer is not None else None
        if name is not None:
            layers.setdefault(name, layer)
    return layers


def _token_indices(model: Any, rows: list[int]) -> dict[str, list[int]]:
    """``trainable_token_indices`` for peft: the rows on every vocabulary layer, keyed so that peft ties what the
    model ties (the input embedding's name for everything tied to it). A layout peft cannot follow: an error."""
    what = _describe(model)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    layers = vocabulary_layers(model)
    source = model.get_input_embeddings()
    source_name = _input_embedding_name(model)
    indices: dict[str, list[int]] = {}
    owners: dict[int, str] = {}
    for name, layer in layers.items():
        bias = getattr(layer, "bias", None)
        if bias is not None:
            raise AdapterError(f"lora: new tokens (or train_embeddings) are not supported with adapters on {what}: "
                               f"its output layer {name} has a bias, which peft's trainable tokens leave out; "
                               "extend the vocabulary of a model without one (marian-small, opus-mt, t5, ...) or "
                               "fine-tune the whole model without lora")
        if tied and source_name is not None and layer.weight is source.weight:
            indices[source_name] = rows  # peft ties the others to the input embedding's rows
            continue
        if id(layer.weight) in owners:
            raise AdapterError(f"lora: new tokens (or train_embeddings) are not supported with adapters on {what}: "
                               f"{name} shares its weights with {owners[id(layer.weight)]} outside the model's "
                               "tie_word_embeddings, which peft cannot keep tied; fine-tune the whole model "
                               "without lora")
        owners[id(layer.weight)] = name
        indices[name] = rows
    return indices


def apply_lora(hf_model: Any, options: LoraOptions, new_tokens: bool | Sequence[int] = False) -> Any:
    """``hf_model`` (a transformers encoder-decoder) with LoRA adapters on ``options.target_modules``: a peft model
    in which only the adapters (and the token rows below) require grad. The base model is modified in place.

    ``new_tokens``: the token ids whose embedding rows train and are saved with the adapter (the ids added to the
    tokenizer, after ``resize_token_embeddings``); ``True``: every row (as ``options.train_embeddings``)."""
    _require_peft()
    from peft import LoraConfig, PeftModel, TaskType, get_peft_model
    from peft.utils.other import TrainableTokensWrapper

    if isinstance(hf_model, PeftModel) or hasattr(hf_model, "peft_config"):
        raise AdapterError(f"lora: {_describe(hf_model)} already has adapters; apply_lora takes the base model")
    config = getattr(hf_model, "config", None)
    if not getattr(config, "is_encoder_decoder", False) or not hasattr(hf_model, "get_input_embeddings"):
        raise AdapterError(f"lora: adapters are for transformers encoder-decoder (translation) models; "
                           f"{_describe(hf_model)} is not one")
    targets = list(options.target_modules) if options.target_modules else default_targets(hf_model)
    vocab = hf_model.get_input_embeddings().weight.shape[0]
    rows: list[int] | None = None
    if options.train_embeddings or new_tokens is True:
        rows = list(range(vocab))
    elif new_tokens is not False and new_tokens is not None:
        rows = sorted({int(i) for i in new_tokens})
        if not rows:
            rows = None
        elif rows[0] < 0 or rows[-1] >= vocab:
            raise AdapterError(f"lora: new token id {rows[0] if rows[0] < 0 else rows[-1]} is outside the model's "
                               f"{vocab} embedding rows; call resize_token_embeddings(len(tokenizer)) first")
    indices = _token_indices(hf_model, rows) if rows is not None else None
    lora = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=options.r, lora_alpha=options.alpha,
                      lora_dropout=options.dropout, target_modules=targets, trainable_token_indices=indices)
    try:
        model = get_peft_model(hf_model, lora)
    except ValueError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "not found in the base model" in first or "target_modules" in first or "Target module" in first:
            try:
                hint = f"; leave lora.target_modules out for the default, {default_targets(hf_model)}"
            except AdapterError:
                hint = ""
            raise AdapterError(f"lora.target_modules {targets} match no layer peft can adapt in "
                               f"{_describe(hf_model)}; its linear layers are named {_linear_names(hf_model)}{hint}") \
                from None
        raise AdapterError(f"lora: peft cannot adapt {_describe(hf_model)} ({first[:200]}); set "
                           "lora.target_modules to its attention layers or train without lora") from None
    if rows is not None:  # every vocabulary layer of the forward pass must use the trained rows
        missed = [n for n, layer in vocabulary_layers(model.get_base_model()).items()
                  if not isinstance(layer, TrainableTokensWrapper)]
        if missed:
            raise AdapterError(f"lora: peft did not attach the trained token rows to {', '.join(missed)} of "
                               f"{_describe(hf_model)}; new tokens cannot be trained with adapters on this model")
    if not lora_parameter_names(model):
        raise AdapterError(f"lora.target_modules {targets} gave {_describe(hf_model)} no trainable adapter")
    return model


_ADAPTER_PARAM = re.compile(r"(^|\.)(lora_[A-Za-z_]+|trainable_tokens_delta|modules_to_save)\.")


def lora_parameter_names(model: Any) -> list[str]:
    """The adapter's own parameter names in ``model`` (a peft model): the LoRA matrices, the trained token rows and
    any ``modules_to_save`` copies - what training updates and :func:`save_adapters` saves."""
    return [n for n, _ in model.named_parameters() if _ADAPTER_PARAM.search(n)]


def _trained_rows(model: Any) -> list[int]:
    config = model.peft_config[model.active_adapter]
    indices = getattr(config, "trainable_token_indices", None) or {}
    if isinstance(indices, dict):
        found: set[int] = set()
        for rows in indices.values():
            found.update(rows)
        return sorted(found)
    return sorted(set(indices))


def save_adapters(model: Any, tokenizer: Any, folder: str | Path) -> None:
    """Write the adapter, the tokenizer and ``tl_adapters.json`` into ``folder`` (see the module's docstring)."""
    _require_peft()
    import peft
    import torch
    import transformers
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise AdapterError(f"save_adapters: {type(model).__name__} has no adapters; use apply_lora first (or "
                           "save_pretrained for a plain model)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = model.get_base_model()
    rows = int(base.get_input_embeddings().weight.shape[0])
    if len(tokenizer) > rows:
        raise AdapterError(f"save_adapters: the tokenizer has {len(tokenizer)} tokens but the model only {rows} "
                           "embedding rows; resize_token_embeddings(len(tokenizer)) before apply_lora")
    model.save_pretrained(str(folder), save_embedding_layers=False)
    tokenizer.save_pretrained(str(folder))
    config = model.peft_config[model.active_adapter]
    base_config = base.config.to_dict()
    info = {
        "format": FORMAT,
        "model_type": _model_type(base),
        "architecture": type(base).__name__,
        "base_model": getattr(base.config, "_name_or_path", "") or getattr(base, "name_or_path", "") or None,
        "base_config": base_config,
        "embedding_rows": rows,
        "tokenizer_size": len(tokenizer),
        "trained_token_rows": _trained_rows(model),
        "lora": {"r": config.r, "alpha": config.lora_alpha, "dropout": config.lora_dropout,
                 "target_modules": sorted(config.target_modules) if config.target_modules else None},
        "versions": {"peft": peft.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")


def read_info(folder: str | Path) -> dict[str, Any]:
    """``tl_adapters.json`` of an adapter folder written by :func:`save_adapters`."""
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        raise AdapterError(f"{folder} is not an adapter folder written by save_adapters (no {INFO_FILE})")
    from tl_core.api import read_json

    info = read_json(path, error=AdapterError)  # not UTF-8, not JSON, nested too deeply: one line naming it
    if not isinstance(info, dict):
        raise AdapterError(f"{path} is not the object save_adapters writes; save the adapter again")
    return info


def load_with_adapters(base_model: Any, folder: str | Path) -> tuple[Any, Any]:
    """The base model (the checkpoint the adapter was trained on, reloaded) with the adapter of ``folder``, and the
    saved tokenizer. The base is resized to the saved number of embedding rows first; the new rows come from the
    adapter. Returns the peft model, unmerged, in eval mode (``generate`` works on it; :func:`merge` for a plain
    transformers model). ``base_model`` is modified in place."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    info = read_info(folder)
    _require_peft()
    what = _describe(base_model)
    if info.get("format") != FORMAT:
        raise AdapterError(f"{folder}: adapter format {info.get('format')} is not {FORMAT}; save it again")
    if _model_type(base_model) != info["model_type"] or type(base_model).__name__ != info["architecture"]:
        raise AdapterError(f"{folder}: the adapter was trained on {info['model_type']} ({info['architecture']}), "
                           f"not on {what}; load the same base model")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    rows = int(info["embedding_rows"])
    have = int(base_model.get_input_embeddings().weight.shape[0])
    if have > rows:
        raise AdapterError(f"{folder}: the base model has {have} embedding rows, more than the {rows} the adapter "
                           "was trained with; load the base model the adapter was trained on")
    if have < rows:
        missing = sorted(set(range(have, rows)) - set(info.get("trained_token_rows") or []))
        if missing:
            raise AdapterError(f"{folder}: the adapter was trained with {rows} embedding rows but saved none of "
                               f"rows {missing[0]}..{missing[-1]} (the base has {have}); train it with "
                               "apply_lora(..., new_tokens=the added ids) so the new rows are saved with it")
        base_model.resize_token_embeddings(rows, mean_resizing=False)  # the adapter overwrites the new rows
    try:
        model = PeftModel.from_pretrained(base_model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(f"{folder}: the adapter does not fit {what} ({first[:200]}); load the base model it "
                           "was trained on") from None
    model.eval()
    return model, tokenizer


def merge(model: Any) -> Any:
    """A plain transformers model with the adapters (and trained token rows) merged into its weights:
    ``save_pretrained`` writes a folder that ``AutoModelForSeq2SeqLM.from_pretrained`` reloads alone."""
    _require_peft()
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        raise AdapterError(f"merge: {type(model).__name__} has no adapters to merge")
    return model.merge_and_unload()
