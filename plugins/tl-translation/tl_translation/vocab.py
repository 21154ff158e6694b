"""Vocabularies: a sentencepiece model trained on the run's own text (models built from config).

Everything here imports sentencepiece and transformers lazily.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

from tl_core.api import DataError

SCRATCH_PREFIX = "tl-spm-"  # the temporary folders of a tokenizer's files: tl-spm-*, removed with the tokenizer


def _remove(path: str, pid: int) -> None:
    if os.getpid() == pid:  # a forked data-loader worker never removes its parent's files
        shutil.rmtree(path, ignore_errors=True)


def remove_with(owner: Any, folder: Path) -> None:
    """Remove ``folder`` when ``owner`` (a tokenizer that reads its files again when it is copied) is
    garbage-collected, or at the latest when the process exits."""
    weakref.finalize(owner, _remove, str(folder), os.getpid())


def train_sentencepiece(texts: list[str], vocab_size: int, prefix: Path, model_type: str = "unigram") -> Path:
    """Train a sentencepiece model on ``texts``; returns ``PREFIX.model``. ``<pad>`` is 0, ``</s>`` 1, ``<unk>``
    2 (Marian's convention), no ``<s>``. ``vocab_size`` is an upper bound (sentencepiece's
    ``hard_vocab_limit=False``): a text too small for it gets the vocabulary it allows. A ``vocab_size`` below the
    number of distinct characters of the text is one :class:`DataError` line saying how large it must be."""
    import sentencepiece as spm

    corpus = prefix.with_suffix(".txt")
    corpus.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    try:
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, model_type=model_type,
            hard_vocab_limit=False, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
            minloglevel=2, input_sentence_size=200_000, shuffle_input_sentence=True, num_threads=1,
        )
    except RuntimeError as exc:  # "Vocabulary size is smaller than required_chars. 100 vs 204. ..."
        found = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(exc))
        if not found:
            raise
        need = int(found.group(1))
        raise DataError(f"a sentencepiece vocabulary of {vocab_size} pieces cannot hold the training text's "
                        f"{need - 3} distinct characters and its 3 special tokens; set data.options.vocab_size "
                        f"(for a vocabulary extension: head.extend_vocab) to at least {need}") from None
    finally:
        corpus.unlink(missing_ok=True)
    return prefix.with_suffix(".model")


def train_tokenizer(texts: list[str], vocab_size: int, source_lang: str | None, target_lang: str | None) -> Any:
    """A MarianTokenizer on one sentencepiece model trained on both sides' text (a joint vocabulary). Its files are
    in a ``tl-spm-*`` folder of the temporary directory, which is removed with the tokenizer (it reads them again
    when it is copied; ``save_pretrained`` writes copies of its own)."""
    import sentencepiece as spm
    from transformers import MarianTokenizer

    folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    try:
        model = train_sentencepiece(texts, vocab_size, folder / "spm")
        processor = spm.SentencePieceProcessor(model_file=str(model))
        vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
        (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        tokenizer = MarianTokenizer(source_spm=str(model), target_spm=str(model), vocab=str(folder / "vocab.json"),
                                    source_lang=source_lang, target_lang=target_lang, unk_token="<unk>",
                                    eos_token="</s>", pad_token="<pad>", model_max_length=512)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    remove_with(tokenizer, folder)
    return tokenizer
