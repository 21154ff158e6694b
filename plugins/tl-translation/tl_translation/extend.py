"""Vocabulary extension: give a translation model tokens of a language its tokenizer was not made for.

A sentencepiece model is trained on the new language's text (:func:`tl_translation.vocab.train_sentencepiece`);
its pieces that the model's tokenizer lacks, and today splits into two or more tokens, are added to the tokenizer
(:func:`new_pieces`). :func:`extend_vocabulary` then resizes the model's vocabulary matrices and starts each new
row as the mean of the rows of the old sub-tokens the piece used to split into - in every matrix indexed by token:
the input embeddings (encoder and decoder), the output layer and its bias, and Marian's ``final_logits_bias``.
A new token's logit is then the mean of its sub-tokens' logits, never above the best of them, so the new rows
cannot take over the output distribution (the failure of transformers issue #32948, where randomly started rows
made NLLB generate nothing but new tokens, decoded as empty strings).

How pieces are added depends on the tokenizer:

- **WordPiece** (BERT, MiniLM; a ``tokenizers``-backed tokenizer): whole words only - pieces that the text has
  as words of their own (sentencepiece ``▁word``; also ``word`` where sentencepiece writes a word as ``▁`` +
  ``word``) - as ``AddedToken(word, single_word=True, normalized=True)`` in the tokenizer's normalised form
  (lowercased and accent-stripped for an uncased BERT; the sentencepiece model is trained on normalised text).
  Added tokens are matched on the text before pre-tokenisation, so ``single_word`` is what keeps ``ndi`` from
  matching inside ``kundiuza`` (punctuation next to the word is fine: ``Mulungu,``); ``normalized`` matches
  ``Mulungu`` and ``MULUNGU`` as ``mulungu``; no ``lstrip``/``rstrip``, so the spaces around the word stay with
  the text, and the WordPiece decoder puts them back. Sub-word (non-initial) pieces are skipped: an added token
  cannot be a ``##`` continuation, and a word prefix added as an added token would only ever match the whole
  word. English tokenisation changes only for an English word spelt exactly like an added Chichewa word.
- **sentencepiece** (``MarianTokenizer``): the pieces, word-initial and sub-word, are appended to the
  tokenizer's sentencepiece model itself (normal pieces with the scores the new model gave them) and to its
  ``vocab.json``, so sentencepiece segments running text with old and new pieces together and decodes it as
  before. Added tokens would be wrong here: the Python tokenizer's ``single_word`` only looks for spaces
  (``Mulungu,`` would not match) and added tokens decode without the space in front of them. The price: an old-
  language word that was already split in several pieces may be split differently (with a 1000-piece English
  vocabulary and 300 Chichewa verses: 363 of the 1852 distinct words of 500 English verses, in fewer tokens
  overall), while the words the old model had as one piece stayed one piece (all of them, there).

Other tokenizers (NLLB, mBART, T5 ``tokenizers``-backed sentencepiece) are not supported yet: a clear error.

Everything here imports torch, transformers and sentencepiece lazily.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_core.api import TLError

SPIECE = "▁"
EXAMPLES = 20


@dataclass
class Extension:
    """What :func:`extend_vocabulary` did."""

    added: list[str]  # the tokens added, in id order (ids old_size, old_size + 1, ...)
    old_size: int  # vocabulary size before
    new_size: int  # after (== len(tokenizer))
    examples: dict[str, list[str]]  # for up to 20 added tokens: the old sub-tokens it used to split into
    frozen_old_rows: bool
    method: str = ""  # "added-tokens" (WordPiece) or "sentencepiece" (Marian)
    restore: Callable[[], None] | None = field(default=None, repr=False, compare=False)  # freeze_old: call after
    # every optimizer step (see keep_old_rows)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary for report.json: counts and examples, not the full list."""
        return {"added": len(self.added), "old_size": self.old_size, "new_size": self.new_size,
                "method": self.method, "frozen_old_rows": self.frozen_old_rows, "examples": dict(self.examples)}


@dataclass
class _Piece:
    token: str  # as it goes into the tokenizer's vocabulary
    old_tokens: list[str]  # what the old tokenizer made of it
    old_ids: list[int]
    score: float  # the new sentencepiece model's log-probability of the piece
    gain: int  # tokens it saves on the texts (uses x (old length - 1))


# ------------------------------------------------------------------ the pieces


def _kind(tokenizer: Any) -> str:
    if hasattr(tokenizer, "spm_files") and hasattr(tokenizer, "spm_source") and hasattr(tokenizer, "encoder"):
        if getattr(tokenizer, "separate_vocabs", False):
            raise TLError("vocabulary extension: a Marian tokenizer with separate source and target vocabularies "
                          "is not supported (one shared vocabulary only)")
        return "sentencepiece"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and type(backend.model).__name__ == "WordPiece":
        return "added-tokens"
    raise TLError(f"vocabulary extension supports WordPiece tokenizers (BERT, MiniLM) and MarianTokenizer "
                  f"(sentencepiece); {type(tokenizer).__name__} is not supported")


def _train(texts: list[str], vocab_size: int) -> tuple[list[tuple[str, float]], Counter[str]]:
    """The normal pieces of a sentencepiece model trained on ``texts`` (with scores, in the model's order) and how
    often its segmentation of ``texts`` uses each."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    from tl_translation.vocab import train_sentencepiece

    texts = [t for t in texts if t.strip()]
    if not texts:
        raise TLError("vocabulary extension: no text to train a sentencepiece model on")
    with tempfile.TemporaryDirectory(prefix="tl-spm-new-") as folder:
        path = train_sentencepiece(texts, vocab_size, Path(folder) / "new")
        proto = pb.ModelProto.FromString(path.read_bytes())
        processor = spm.SentencePieceProcessor(model_file=str(path))
    normal = pb.ModelProto.SentencePiece.NORMAL
    pieces = [(p.piece, p.score) for p in proto.pieces if p.type == normal]
    used = Counter(piece for pieces_ in processor.encode(texts, out_type=str) for piece in pieces_)
    return pieces, used


def _wordpiece_pieces(tokenizer: Any, texts: list[str], vocab_size: int) -> list[_Piece]:
    backend = tokenizer.backend_tokenizer
    normalize = backend.normalizer.normalize_str if backend.normalizer is not None else (lambda s: s)
    normalized = [normalize(t) for t in texts]
    pre = backend.pre_tokenizer
    words: Counter[str] = Counter(w for t in normalized for w, _ in (pre.pre_tokenize_str(t) if pre else
                                                                      [(x, None) for x in t.split()]))
    pieces, _ = _train(normalized, vocab_size)
    vocab = tokenizer.get_vocab()
    out, seen = [], set()
    for piece, score in pieces:
        word = normalize(piece.removeprefix(SPIECE))
        if len(word) < 2 or not word.isalpha() or word in vocab or word in seen or not words[word]:
            continue  # only what the text has as a whole word: a sub-word piece cannot be an added token
        seen.add(word)
        old = tokenizer.tokenize(word)
        if len(old) < 2:
            continue
        out.append(_Piece(word, old, tokenizer.convert_tokens_to_ids(old), score, words[word] * (len(old) - 1)))
    return out


def _no_prefix(processor: Any) -> Any:
    """The same sentencepiece model without the dummy ``▁`` in front: how it splits a piece inside a word."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto.FromString(processor.serialized_model_proto())
    proto.normalizer_spec.add_dummy_prefix = False
    return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())


def _sentencepiece_pieces(tokenizer: Any, texts: list[str], vocab_size: int) -> list[_Piece]:
    pieces, used = _train(texts, vocab_size)
    old = tokenizer.spm_source
    inside = _no_prefix(old)
    known = set(tokenizer.get_vocab()) | {old.id_to_piece(i) for i in range(old.get_piece_size())}
    out = []
    for piece, score in pieces:
        initial = piece.startswith(SPIECE)
        core = piece[len(SPIECE):] if initial else piece
        if piece in known or not core.isalpha() or not used[piece]:
            continue
        split = (old if initial else inside).encode(core, out_type=str)
        if len(split) < 2:
            continue
        out.append(_Piece(piece, split, tokenizer.convert_tokens_to_ids(split), score,
                          used[piece] * (len(split) - 1)))
    return out


def _pieces(tokenizer: Any, texts: list[str], vocab_size: int, max_new: int | None) -> list[_Piece]:
    kind = _kind(tokenizer)
    found = (_wordpiece_pieces if kind == "added-tokens" else _sentencepiece_pieces)(tokenizer, texts, vocab_size)
    order = sorted(range(len(found)), key=lambda i: (-found[i].gain, i))  # most tokens saved first
    kept = [found[i] for i in order]
    return kept if max_new is None else kept[:max_new]


def new_pieces(tokenizer: Any, texts: list[str], vocab_size: int, max_new: int | None = None) -> list[str]:
    """The tokens :func:`extend_vocabulary` would add to ``tokenizer`` for ``texts``, most tokens saved first.

    A sentencepiece model of (at most) ``vocab_size`` pieces is trained on ``texts``; a piece is kept when the
    tokenizer does not have it as one token, splits it into two or more tokens today, and it is made of letters
    (no punctuation, digits or sentencepiece specials). For a WordPiece tokenizer the pieces are whole words
    (``▁word`` -> ``word``, in the tokenizer's normalised form: lowercased for an uncased BERT; only pieces that
    occur in ``texts`` as words of their own); sub-word pieces are skipped, because an added token cannot be a
    ``##`` continuation (it is matched on the text as a whole word, see the module's docstring). For
    a Marian tokenizer they are sentencepiece pieces as they are (``▁word``, and sub-word pieces like ``ngu``).
    ``max_new`` keeps that many, those that save the most tokens on ``texts``."""
    return [p.token for p in _pieces(tokenizer, texts, vocab_size, max_new)]


# ------------------------------------------------------------------ adding them to the tokenizer


def _add_words(tokenizer: Any, pieces: list[_Piece]) -> None:
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(p.token, single_word=True, lstrip=False, rstrip=False, normalized=True,
                                     special=False) for p in pieces])


def _add_to_sentencepiece(tokenizer: Any, pieces: list[_Piece], first: int) -> None:
    """Append the pieces to the Marian tokenizer's sentencepiece models and vocabulary (new files in a folder of
    their own, which ``save_pretrained`` copies); ids from ``first`` on."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    from transformers.models.marian.tokenization_marian import load_spm

    from tl_translation.vocab import SCRATCH_PREFIX, remove_with

    added = {tok: i for tok, i in tokenizer.get_vocab().items() if i >= len(tokenizer.encoder)}
    if added:
        raise TLError(f"vocabulary extension: the Marian tokenizer has added tokens beyond its vocabulary "
                      f"({', '.join(list(added)[:3])}); extend a tokenizer without them")
    folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}ext-"))  # the tokenizer reads its files again when
    remove_with(tokenizer, folder)  # it is copied: they stay as long as it does
    files = []
    for name, processor in (("source.spm", tokenizer.spm_source), ("target.spm", tokenizer.spm_target)):
        proto = pb.ModelProto.FromString(processor.serialized_model_proto())
        have = {p.piece for p in proto.pieces}
        for p in pieces:
            if p.token not in have:
                new = proto.pieces.add()
                new.piece, new.score, new.type = p.token, p.score, pb.ModelProto.SentencePiece.NORMAL
        (folder / name).write_bytes(proto.SerializeToString())
        files.append(str(folder / name))
    encoder = dict(tokenizer.encoder)
    encoder.update({p.token: first + i for i, p in enumerate(pieces)})
    (folder / "vocab.json").write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")

    tokenizer.encoder = encoder
    tokenizer.decoder = {v: k for k, v in encoder.items()}
    tokenizer.spm_files = files
    tokenizer.spm_source, tokenizer.spm_target = (load_spm(f, tokenizer.sp_model_kwargs) for f in files)
    tokenizer.current_spm, tokenizer.current_encoder = tokenizer.spm_source, encoder
    tokenizer.init_kwargs.update(source_spm=files[0], target_spm=files[1], vocab=str(folder / "vocab.json"))
    tokenizer._update_total_vocab_size()


# ------------------------------------------------------------------ the model's matrices


def _is_composite(model: Any) -> bool:
    """transformers' EncoderDecoderModel (BERT2BERT): two models, resized one by one."""
    from transformers import EncoderDecoderModel

    return isinstance(model, EncoderDecoderModel)


@dataclass(frozen=True)
class _Slot:
    """One tensor indexed by token id: ``getattr(owner, attr)``, vocabulary on dim 0 (``final_logits_bias``, shape
    (1, V): on dim 1). Looked up afresh each time, so that ``.to(device)`` (which replaces buffers) is no trouble."""

    name: str
    owner: Any
    attr: str

    def tensor(self) -> Any:
        return getattr(self.owner, self.attr)

    def rows(self) -> Any:
        t = self.tensor()
        return t[0] if self.attr == "final_logits_bias" else t


def _slots(model: Any) -> list[_Slot]:
    """Every distinct tensor indexed by token id: input embeddings (encoder, decoder), output layer weight and
    bias, ``final_logits_bias``. Tied tensors count once."""
    parts = [model.encoder, model.decoder] if _is_composite(model) else [model]
    owners: list[tuple[Any, str]] = []
    for part in parts:
        modules = [part.get_input_embeddings(), part.get_output_embeddings()]
        for side in ("get_encoder", "get_decoder"):
            sub = getattr(part, side, None)
            sub = sub() if callable(sub) else None
            if sub is not None and sub is not part and hasattr(sub, "get_input_embeddings"):
                modules.append(sub.get_input_embeddings())
        for module in modules:
            if module is None:
                continue
            owners.append((module, "weight"))
            if getattr(module, "bias", None) is not None:
                owners.append((module, "bias"))
        if getattr(part, "final_logits_bias", None) is not None:
            owners.append((part, "final_logits_bias"))
    names: dict[int, str] = {}
    for n, t in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        names.setdefault(id(t), n)
    out, seen = [], set()
    for owner, attr in owners:
        t = getattr(owner, attr)
        if id(t) in seen:
            continue
        seen.add(id(t))
        out.append(_Slot(names.get(id(t), attr), owner, attr))
    return out


def _vocab_rows(model: Any) -> int:
    return min(slot.rows().shape[0] for slot in _slots(model))


def _resize(model: Any, size: int) -> None:
    """Resize every vocabulary matrix to ``size`` rows and keep the configs consistent (``save_pretrained`` ->
    ``from_pretrained`` rebuilds the same shapes)."""
    if _is_composite(model):  # EncoderDecoderModel.resize_token_embeddings is not supported by transformers
        for part, config in ((model.encoder, model.config.encoder), (model.decoder, model.config.decoder)):
            part.resize_token_embeddings(size, mean_resizing=False)
            part.config.vocab_size = size
            config.vocab_size = size
        if getattr(model.config, "vocab_size", None) is not None:
            model.config.vocab_size = size
    else:
        model.resize_token_embeddings(size, mean_resizing=False)
        if hasattr(model.config, "decoder_vocab_size") and getattr(model.config, "share_encoder_decoder_embeddings",
                                                                    True):
            model.config.decoder_vocab_size = size


def _initialise(model: Any, pieces: list[_Piece], first: int) -> None:
    """Row ``first + i`` of every vocabulary tensor = the mean of the rows of piece i's old sub-tokens."""
    import torch

    with torch.no_grad():
        for slot in _slots(model):
            rows = slot.rows()
            for i, p in enumerate(pieces):
                index = torch.tensor(p.old_ids, device=rows.device)
                rows[first + i] = rows.index_select(0, index).float().mean(0).to(rows.dtype)


def extend_vocabulary(model: Any, tokenizer: Any, texts: list[str], vocab_size: int = 8000,
                      max_new: int | None = None, freeze_old: bool = False) -> Extension:
    """Add the new language's pieces (:func:`new_pieces`) to ``tokenizer`` and make room for them in ``model``
    (a transformers seq2seq model: ``EncoderDecoderModel`` such as BERT2BERT, or ``MarianMTModel``), both changed
    in place. Each new row - input embeddings, output layer and its bias, ``final_logits_bias`` - starts as the mean
    of the old rows of the sub-tokens the piece used to split into. ``freeze_old``: the result's ``restore`` keeps
    the old rows bit-identical through training when called after every optimizer step (:func:`keep_old_rows`)."""
    kind = _kind(tokenizer)
    old_size = len(tokenizer)
    rows = _vocab_rows(model)
    if rows < old_size:
        raise TLError(f"vocabulary extension: the model has {rows} vocabulary rows, fewer than its tokenizer's "
                      f"{old_size} tokens; model and tokenizer do not belong together")
    pieces = _pieces(tokenizer, texts, vocab_size, max_new)
    if kind == "added-tokens":
        _add_words(tokenizer, pieces)
    else:
        _add_to_sentencepiece(tokenizer, pieces, old_size)
    new_size = len(tokenizer)
    ids = tokenizer.convert_tokens_to_ids([p.token for p in pieces])
    if new_size != old_size + len(pieces) or ids != list(range(old_size, new_size)):
        raise TLError(f"vocabulary extension: the tokenizer gave the {len(pieces)} new tokens unexpected ids")
    if new_size > rows:
        _resize(model, new_size)
    _initialise(model, pieces, old_size)
    extension = Extension(
        added=[p.token for p in pieces], old_size=old_size, new_size=new_size,
        examples={p.token: list(p.old_tokens) for p in pieces[:EXAMPLES]}, frozen_old_rows=freeze_old, method=kind,
    )
    if freeze_old:
        extension.restore = keep_old_rows(model, old_size)
    return extension


# ------------------------------------------------------------------ keeping the old rows


class OldRows:
    """The old rows of every vocabulary tensor, as they were: calling it copies them back (after an optimizer step,
    so that even weight decay leaves them bit-identical); its gradient hooks zero their gradients, so the
    optimizer's moments for them stay zero. :meth:`remove` takes the hooks off."""

    def __init__(self, model: Any, old_size: int) -> None:
        slots = _slots(model)
        self.old_size = old_size
        self.saved = [(slot, slot.rows()[:old_size].detach().clone()) for slot in slots]
        self.names = [slot.name for slot in slots]
        self.handles = []
        for slot in slots:
            t = slot.tensor()
            if t.requires_grad:
                self.handles.append(t.register_hook(self._zero_old(slot.attr == "final_logits_bias")))

    def _zero_old(self, second_axis: bool) -> Callable[[Any], Any]:
        old = self.old_size

        def hook(grad: Any) -> Any:
            grad = grad.clone()
            if second_axis:
                grad[:, :old] = 0
            else:
                grad[:old] = 0
            return grad

        return hook

    def __call__(self) -> None:
        import torch

        with torch.no_grad():
            for slot, rows in self.saved:
                slot.rows()[:self.old_size].copy_(rows)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []


def keep_old_rows(model: Any, old_size: int) -> Callable[[], None]:
    """Keep rows ``0 .. old_size - 1`` of every vocabulary tensor (embeddings, output layer and bias,
    ``final_logits_bias``) as they are now: gradient hooks zero those rows' gradients, and the returned function,
    called after every optimizer step, copies the saved rows back (exact, whatever the optimizer's weight decay
    did). Only the new rows train."""
    return OldRows(model, old_size)
