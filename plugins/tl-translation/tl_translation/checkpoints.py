"""Reading a transformers checkpoint for translation - a hub id or a ``save_pretrained`` folder - safely and in one
clear line when it cannot be read: the folder checks (no pickles, JSON that parses), the load and what it left
fresh, and the names of the parameter kinds the layer groups and the load reports tell apart. Used by
:mod:`tl_translation.models` (every family) and :mod:`tl_translation.bert2bert` (its warm start), which is why it
is a module of its own: each imports it, neither the other."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_core.api import TLError, WeightsError

#: cross-attention parameters, by the names the seq2seq families give them
_CROSS = re.compile(r"crossattention|encoder_attn|EncDecAttention")
#: the prefix peft puts before a wrapped model's parameter names, and the names of the parameters it adds
_PEFT_PREFIX = "base_model.model."
_ADAPTER = re.compile(r"(^|\.)(lora_[A-Za-z_]+|trainable_tokens_delta|modules_to_save)\.")


def _quiet() -> None:
    import warnings

    from transformers.utils import logging

    logging.disable_progress_bar()  # tl shows its own progress; no "Loading weights" bars in its output

    # EncoderDecoderModel warns on every labelled forward that pre-4.12 checkpoints computed the loss differently
    warnings.filterwarnings("ignore", message="Version v4.12.0 introduces", category=FutureWarning)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _hub_error(what: str, exc: Exception) -> WeightsError:
    return WeightsError(
        f"{what} is not in the local Hugging Face cache and the hub cannot be reached ({_first_line(exc)}); run "
        "once with network access, or save the model with save_pretrained and set backbone.weights to that folder"
    )


#: files of a pickled checkpoint: code can run when one is unpickled, so tl never loads one from a local folder
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: the JSON files a save_pretrained folder of a seq2seq model and its tokenizer may hold
JSON_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
              "tokenizer.json", "vocab.json", "added_tokens.json", "model.safetensors.index.json")
#: parameters a reloaded model may lack without harm: BERT2BERT's encoder pooler (tl builds it without one; the
#: Auto classes add one, unused in translation)
_UNUSED = re.compile(r"(^|\.)pooler\.")
FOLDER_FIX = "point backbone.weights at a folder that save_pretrained wrote (a tl run's RUN/model)"


@dataclass
class Pretrained:
    """What :func:`load_pretrained` (or a BERT2BERT warm start) loaded: the model, its tokenizer, the model's
    parameters the checkpoint did not have (they start as the architecture initialises them), the hub revision asked
    for, and the checkpoint's tensors the model does not use."""

    model: Any
    tokenizer: Any
    missing: list[str] = field(default_factory=list)
    revision: str | None = None
    dropped: list[str] = field(default_factory=list)


def check_folder(folder: Path, what: str, error: type[TLError] = WeightsError, fix: str = FOLDER_FIX) -> None:
    """Refuse, in one ``error`` line ending with ``fix``, a local model folder transformers would load badly or
    unsafely: no ``config.json``; a JSON file that is not UTF-8, not JSON, nested too deeply or (``config.json``)
    not an object; weights only as a pickle (``pytorch_model.bin`` and the like: never loaded, since unpickling can
    run code); a ``.safetensors`` file that is truncated or not safetensors."""
    from safetensors import safe_open

    from tl_core.api import read_json

    if not (folder / "config.json").is_file():
        raise error(f"{what}: {folder} has no config.json, so it is not a model folder written by save_pretrained; "
                    f"{fix}")
    for name in JSON_FILES:
        if (folder / name).is_file():
            try:
                value = read_json(folder / name, error=error)
            except TLError as exc:
                raise error(f"{what}: {exc}; {fix}") from None
            if name == "config.json" and not (isinstance(value, dict) and isinstance(value.get("model_type"), str)):
                raise error(f"{what}: {folder / name} is not a transformers model config (a JSON object with a "
                            f"model_type); {fix}")
    tensors = sorted(folder.glob("*.safetensors"))
    if not tensors:
        pickles = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in PICKLES)
        if pickles:
            raise error(f"{what}: {folder} holds its weights as {pickles[0]}, a pickle, which can run code when it "
                        "is loaded; tl loads only safetensors from a local folder: convert it to safetensors (where "
                        "you trust it: AutoModelForSeq2SeqLM.from_pretrained(folder).save_pretrained(folder) writes "
                        "model.safetensors)")
        raise error(f"{what}: {folder} has no model.safetensors; {fix}")
    for file in tensors:
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as exc:  # safetensors' SafetensorError, OSError
            raise error(f"{what}: {file} is truncated or not a safetensors file ({_first_line(exc)}); {fix}") \
                from None


def load_failure(exc: Exception, what: str, location: str, local: bool, error: type[TLError] = WeightsError,
                 fix: str = FOLDER_FIX) -> TLError:
    """The one line a failed transformers load becomes: a local folder is not what save_pretrained writes (ending
    with ``fix``); a hub id is not in the cache with no network to fetch it (:func:`_hub_error`), or its cached
    copy is damaged."""
    reason = _first_line(exc)
    if "ignore_mismatched_sizes" in reason:
        reason = "its tensors do not have the shapes its config.json gives"
    if local:
        return error(f"{what}: {location} is not a model folder written by save_pretrained ({reason}); {fix}")
    if isinstance(exc, (OSError, ValueError)):
        return _hub_error(what, exc)
    return WeightsError(f"{what}: {location} from the Hugging Face hub cannot be loaded ({reason}); delete it from "
                        "the Hugging Face cache and download it again")


def load_pretrained(location: str, what: str, revision: str | None = None, error: type[TLError] = WeightsError,
                    fix: str = FOLDER_FIX) -> Pretrained:
    """A seq2seq model and its tokenizer from a ``save_pretrained`` folder (checked first, :func:`check_folder`;
    safetensors only) or a hub id (at ``revision``: a commit, branch or tag; ``None``: the repo's main). Whatever
    fails is one ``error`` line (for a folder, ending with ``fix``), never a transformers traceback."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
    from transformers.utils import logging

    _quiet()
    local = Path(location).is_dir()
    if local:
        check_folder(Path(location), what, error, fix)
    pinned = {} if local or revision is None else {"revision": revision}
    level = logging.get_verbosity()
    logging.set_verbosity_error()  # no load-report table on the console: tl reports the missing tensors itself
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **pinned)
        model, info = AutoModelForSeq2SeqLM.from_pretrained(location, output_loading_info=True,
                                                            **({"use_safetensors": True} if local else pinned))
    except Exception as exc:  # transformers, sentencepiece and safetensors raise many kinds
        raise load_failure(exc, what, location, local, error, fix) from None
    finally:
        logging.set_verbosity(level)
    if not getattr(model.config, "is_encoder_decoder", False):
        raise error(f"{what}: {location} is not an encoder-decoder (seq2seq) model")
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise error(f"{what}: the tokenizer in {location} has {len(tokenizer)} tokens but the model's "
                    f"embeddings have {rows} rows: they are not a pair; use the tokenizer saved with the model")
    missing = sorted(k for k in info.get("missing_keys") or [] if not _UNUSED.search(k))
    return Pretrained(model, tokenizer, missing, revision)


