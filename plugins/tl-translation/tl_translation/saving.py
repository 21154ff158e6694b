"""Saving a trained translation model in its own ecosystem's format: ``RUN/model/`` as ``save_pretrained`` writes
it (tokenizer included), and with adapters ``RUN/adapter/`` as peft writes it.

Each folder is written aside (``RUN/.model.tmp``), every file in it and the folder itself flushed to disk
(``fsync``), then renamed into place and the rename made durable (``fsync`` of ``RUN``): after a power loss, a
``report.json`` never sits beside an empty or half-written model (what the core's ``write_atomic`` does for one
file, done for a folder that a library's own writer filled).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tl_core.api import commit_folder

if TYPE_CHECKING:
    from tl_translation.models import Translator

MODEL_DIR = "model"


def save_model(bundle: Translator, out: Path) -> Path:
    """``OUT/model/``: the model and its tokenizer as ``save_pretrained`` writes them (written aside, then moved
    into place, so a half-written folder never looks like a model), with tl's generation settings in its
    ``generation_config.json``."""
    target = out / MODEL_DIR
    tmp = out / f".{MODEL_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    from transformers.utils import logging

    logging.disable_progress_bar()  # no "Writing model shards" bar in tl's output
    model = bundle.hf_model
    if hasattr(model, "peft_config"):  # adapters: RUN/adapter as peft writes it, and RUN/model merged
        import copy

        from tl_translation.adapters import merge, save_adapters

        adapter, adapter_tmp = out / "adapter", out / ".adapter.tmp"
        shutil.rmtree(adapter_tmp, ignore_errors=True)
        save_adapters(model, bundle.tokenizer, adapter_tmp)
        commit_folder(adapter_tmp, adapter)
        model = merge(copy.deepcopy(model))
    from tl_translation.generation import set_generation_config

    set_generation_config(model.generation_config, bundle.generation)  # generate() unasked translates as tl does
    model.save_pretrained(str(tmp))
    bundle.tokenizer.save_pretrained(str(tmp))
    commit_folder(tmp, target)
    return target
