"""Vocabularies: a sentencepiece model trained on the run's own text (models built from config).

Everything here imports sentencepiece and transformers lazily.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any


def train_sentencepiece(texts: list[str], vocab_size: int, prefix: Path, model_type: str = "unigram") -> Path:
    """Train a sentencepiece model on ``texts``; returns ``PREFIX.model``. ``<pad>`` is 0, ``</s>`` 1, ``<unk>``
    2 (Marian's convention), no ``<s>``. A vocabulary larger than the text allows is reduced to what it allows."""
    import sentencepiece as spm

    corpus = prefix.with_suffix(".txt")
    corpus.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    size = vocab_size
    while True:
        try:
            spm.SentencePieceTrainer.train(
                input=str(corpus), model_prefix=str(prefix), vocab_size=size, model_type=model_type,
                pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, minloglevel=2,
                input_sentence_size=200_000, shuffle_input_sentence=True, num_threads=1,
            )
            break
        except RuntimeError as exc:  # "Vocabulary size is too high ... Please set it to a value <= N."
            import re

            found = re.search(r"value <= (\d+)", str(exc))
            if not found or int(found.group(1)) >= size:
                raise
            size = int(found.group(1))
    return prefix.with_suffix(".model")


def train_tokenizer(texts: list[str], vocab_size: int, source_lang: str | None, target_lang: str | None) -> Any:
    """A MarianTokenizer on one sentencepiece model trained on both sides' text (a joint vocabulary)."""
    import sentencepiece as spm
    from transformers import MarianTokenizer

    folder = Path(tempfile.mkdtemp(prefix="tl-spm-"))  # the tokenizer reads its files again when it saves
    model = train_sentencepiece(texts, vocab_size, folder / "spm")
    processor = spm.SentencePieceProcessor(model_file=str(model))
    vocab = {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return MarianTokenizer(source_spm=str(model), target_spm=str(model), vocab=str(folder / "vocab.json"),
                           source_lang=source_lang, target_lang=target_lang, unk_token="<unk>", eos_token="</s>",
                           pad_token="<pad>", model_max_length=512)
