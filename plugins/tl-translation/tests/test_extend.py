"""Vocabulary extension on the real Chichewa text: Chichewa words become tokens of their own, the new rows start
from the old sub-tokens' rows, generation still works, the extended model and tokenizer reload and translate
identically, and the old rows can be kept bit-identical through training."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from tl_core.plugins import registry

N_CHICHEWA = 300


@pytest.fixture(scope="module")
def pairs():
    from tl_translation.corpus import chichewa_english

    return chichewa_english()


@pytest.fixture(scope="module")
def chichewa(pairs) -> list[str]:
    return [p.source for p in pairs[:N_CHICHEWA]]


def vocab_tensors(model) -> dict[str, torch.Tensor]:
    """Every tensor indexed by token id, vocabulary on dim 0, by parameter name (tied ones once)."""
    from tl_translation.extend import _slots

    return {slot.name: slot.rows() for slot in _slots(model)}


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: rows.detach().clone() for name, rows in vocab_tensors(model).items()}


def marian(tokenizer):
    from transformers import MarianConfig, MarianMTModel

    from tl_translation.models import FAMILIES, _configure

    torch.manual_seed(0)
    f = FAMILIES["marian-small"]
    model = MarianMTModel(MarianConfig(**{**f.config_kwargs, "vocab_size": len(tokenizer),
                                          "pad_token_id": tokenizer.pad_token_id,
                                          "eos_token_id": tokenizer.eos_token_id,
                                          "decoder_start_token_id": tokenizer.pad_token_id}))
    with torch.no_grad():  # from config it is all zeros: make it something the extension must average
        model.final_logits_bias.normal_(0.0, 0.5)
    _configure(model, tokenizer)
    return model.eval()


def english_tokenizer(pairs, size: int = 1000):
    """A Marian sentencepiece tokenizer that has seen only English: Chichewa words fall apart in it."""
    from tl_translation.vocab import train_tokenizer

    return train_tokenizer([p.target for p in pairs[N_CHICHEWA:N_CHICHEWA + 2000]], size, "ny", "en")


def minilm():
    from tl_core.weights import load_into
    from tl_translation.models import _configure, minilm_bert2bert, minilm_tokenizer

    model, tokenizer = minilm_bert2bert(), minilm_tokenizer()
    load_into(model, registry("backbone").get("minilm-bert2bert").weights_entry("minilm-en"))
    _configure(model, tokenizer)
    return model.eval(), tokenizer


class Extended:
    """A model and tokenizer before and after extension (``old_*``: a fresh copy of the old tokenizer)."""

    def __init__(self, model, tokenizer, old_tokenizer, texts: list[str]) -> None:
        from tl_translation.extend import extend_vocabulary

        self.old_tokenizer = old_tokenizer
        self.before = snapshot(model)
        self.generated_before = generate(model, tokenizer, texts[:2])
        self.extension = extend_vocabulary(model, tokenizer, texts, vocab_size=8000)
        self.model, self.tokenizer = model, tokenizer


@pytest.fixture(scope="module")
def minilm_extended(chichewa):
    from tl_translation.models import minilm_tokenizer

    model, tokenizer = minilm()
    return Extended(model, tokenizer, minilm_tokenizer(), chichewa)


@pytest.fixture(scope="module")
def marian_extended(pairs, chichewa):
    tokenizer = english_tokenizer(pairs)
    return Extended(marian(tokenizer), tokenizer, english_tokenizer(pairs), chichewa)


@pytest.fixture(params=["minilm", "marian"])
def extended(request) -> Extended:
    return request.getfixturevalue(f"{request.param}_extended")


def generate(model, tokenizer, sources: list[str], max_new_tokens: int = 10) -> torch.Tensor:
    enc = tokenizer(sources, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.generate(**enc, num_beams=1, max_new_tokens=max_new_tokens)


def n_tokens(tokenizer, texts: list[str]) -> int:
    return sum(len(ids) for ids in tokenizer(texts)["input_ids"])


def frequent_split_word(old_tokenizer, tokenizer, texts: list[str], new_token) -> str:
    """The most frequent word of ``texts`` that the old tokenizer split into 3+ tokens and the new one does not."""
    words = Counter(w.strip(".,;:!?'\"()") for t in texts for w in t.split())
    for word, _ in words.most_common():
        if word.isalpha() and len(old_tokenizer.tokenize(word)) >= 3 and tokenizer.tokenize(word) == [
                new_token(word)]:
            return word
    raise AssertionError("no frequent Chichewa word became one token")


# ------------------------------------------------------------------ the tokenizer


def test_minilm_chichewa_words_become_single_wordpiece_tokens(minilm_extended, chichewa):
    ext, tok, old = minilm_extended.extension, minilm_extended.tokenizer, minilm_extended.old_tokenizer
    assert ext.method == "added-tokens" and len(ext.added) > 100
    assert ext.old_size == 30522 and ext.new_size == len(tok) == ext.old_size + len(ext.added)
    assert all(t == t.lower() and t.isalpha() for t in ext.added)  # uncased: lowercased whole words
    word = frequent_split_word(old, tok, chichewa, str.lower)
    assert word.lower() in ext.added
    for form in (word, word.upper(), f"{word},"):  # normalised like the rest of the text; punctuation split off
        assert tok.tokenize(form)[0] == word.lower()
    assert word.lower() not in tok.tokenize(f"ku{word.lower()}")  # a whole word, never inside another word
    assert tok.tokenize("Mulungu") == ["mulungu"] and old.tokenize("Mulungu") == ["mu", "##lun", "##gu"]
    before, after = n_tokens(old, chichewa), n_tokens(tok, chichewa)
    assert after < 0.8 * before
    # running text decodes as before
    assert [tok.decode(tok(t)["input_ids"], skip_special_tokens=True) for t in chichewa[:50]] == \
        [old.decode(old(t)["input_ids"], skip_special_tokens=True) for t in chichewa[:50]]
    english = ["In the beginning, God created the heavens and the earth.", "The cat sat on the mat."]
    assert tok(english)["input_ids"] == old(english)["input_ids"]
    summary = json.loads(json.dumps(ext.as_dict()))
    assert summary["added"] == len(ext.added) and len(summary["examples"]) == 20
    assert summary["examples"][ext.added[0]] == old.tokenize(ext.added[0])


def test_marian_chichewa_pieces_enter_the_sentencepiece_vocabulary(marian_extended, chichewa, pairs):
    ext, tok, old = marian_extended.extension, marian_extended.tokenizer, marian_extended.old_tokenizer
    assert ext.method == "sentencepiece" and len(ext.added) > 100
    assert ext.old_size == 1000 and ext.new_size == len(tok) == 1000 + len(ext.added)
    assert tok.convert_tokens_to_ids(ext.added) == list(range(1000, ext.new_size))
    word = frequent_split_word(old, tok, chichewa, lambda w: f"▁{w}")
    assert f"▁{word}" in ext.added
    assert tok.tokenize(f"{word},")[0] == f"▁{word}"  # punctuation next to it is fine
    before, after = n_tokens(old, chichewa), n_tokens(tok, chichewa)
    assert after < 0.6 * before
    assert [tok.decode(tok(t)["input_ids"], skip_special_tokens=True) for t in chichewa[:50]] == \
        [old.decode(old(t)["input_ids"], skip_special_tokens=True) for t in chichewa[:50]]
    english = [p.target for p in pairs[N_CHICHEWA + 3000:N_CHICHEWA + 3200]]
    assert n_tokens(tok, english) <= n_tokens(old, english)  # English is not made worse
    assert tok(text_target=chichewa[:3])["input_ids"] == tok(chichewa[:3])["input_ids"]  # one shared vocabulary
    assert all(p.removeprefix("▁").isalpha() for p in ext.added)  # no punctuation, digits, specials
    assert json.loads(json.dumps(ext.as_dict()))["new_size"] == ext.new_size


def test_new_pieces_lists_what_would_be_added_most_useful_first(pairs, chichewa):
    from tl_translation.extend import new_pieces

    tok = english_tokenizer(pairs)
    pieces = new_pieces(tok, chichewa, 8000)
    assert len(pieces) > 100 and len(tok) == 1000  # nothing added
    assert new_pieces(tok, chichewa, 8000, max_new=10) == pieces[:10]
    vocab = tok.get_vocab()
    assert not any(p in vocab for p in pieces)
    assert all(len(tok.tokenize(p[1:])) >= 2 for p in pieces[:100] if p.startswith("▁"))
    assert {"<unk>", "<pad>", "</s>", "▁"}.isdisjoint(pieces)


# ------------------------------------------------------------------ the model's rows


def test_new_rows_are_the_mean_of_the_old_sub_token_rows_and_old_rows_are_untouched(extended):
    ext, model = extended.extension, extended.model
    rows, before = vocab_tensors(model), extended.before
    expected = {"added-tokens": {"encoder.embeddings.word_embeddings.weight",
                                 "decoder.bert.embeddings.word_embeddings.weight", "decoder.cls.predictions.bias"},
                "sentencepiece": {"model.shared.weight", "final_logits_bias"}}[ext.method]
    assert set(rows) == expected  # every matrix indexed by token (tied output layers are these very tensors)
    if ext.method == "added-tokens":
        decoder = model.decoder
        assert decoder.cls.predictions.decoder.weight is decoder.bert.embeddings.word_embeddings.weight
        assert model.config.encoder.vocab_size == model.config.decoder.vocab_size == ext.new_size
    else:
        assert model.lm_head.weight is model.model.shared.weight
        assert model.config.vocab_size == model.config.decoder_vocab_size == ext.new_size
    token = next(iter(ext.examples))
    new_id = extended.tokenizer.convert_tokens_to_ids(token)
    old_ids = extended.old_tokenizer.convert_tokens_to_ids(ext.examples[token])
    assert len(old_ids) >= 2 and max(old_ids) < ext.old_size
    for name, now in rows.items():
        assert now.shape[0] == ext.new_size, name
        assert torch.equal(now[:ext.old_size], before[name]), name  # old rows unchanged by the extension
        assert torch.equal(now[new_id], before[name][old_ids].mean(0)), name
        new = now[ext.old_size:]
        assert torch.isfinite(new).all(), name
        if before[name].unique().numel() > 1:  # (MiniLM's output bias is all zeros: so are its new entries)
            assert not torch.equal(now[new_id], now[old_ids[0]]) and not torch.equal(new[0], new[1]), name


def test_generation_still_works_and_new_tokens_never_outscore_their_sub_tokens(extended, chichewa):
    """transformers #32948: after a resize NLLB generated empty strings - the new rows dominated the output."""
    model, tok, ext = extended.model, extended.tokenizer, extended.extension
    assert all(t.strip() for t in tok.batch_decode(extended.generated_before, skip_special_tokens=True))
    out = generate(model, tok, chichewa[:2])
    texts = tok.batch_decode(out, skip_special_tokens=True)
    assert all(t.strip() for t in texts), texts
    assert (out[:, 1:] < ext.old_size).any()  # not only new tokens
    # a new token's logit is the mean of its old sub-tokens' logits: never above the best of them
    enc = tok(chichewa[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc, decoder_input_ids=out).logits
    for token, old_tokens in ext.examples.items():
        new = logits[..., tok.convert_tokens_to_ids(token)]
        sub = logits[..., extended.old_tokenizer.convert_tokens_to_ids(old_tokens)]
        assert (new <= sub.max(-1).values + 1e-4).all(), token
        assert torch.allclose(new, sub.mean(-1), atol=1e-4), token
    assert (logits[..., ext.old_size:].max(-1).values <= logits[..., :ext.old_size].max(-1).values + 1e-4).all()


@pytest.mark.parametrize("kind", ["minilm", "marian"])
def test_extended_model_and_tokenizer_reload_and_translate_identically(kind, request, chichewa, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    extended = request.getfixturevalue(f"{kind}_extended")
    extended.model.save_pretrained(str(tmp_path))
    extended.tokenizer.save_pretrained(str(tmp_path))
    model = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(tokenizer) is type(extended.tokenizer) and len(tokenizer) == extended.extension.new_size
    sources = chichewa[3:6]
    assert tokenizer(sources)["input_ids"] == extended.tokenizer(sources)["input_ids"]
    assert torch.equal(generate(model, tokenizer, sources), generate(extended.model, extended.tokenizer, sources))
    again = {name: rows for name, rows in vocab_tensors(model).items()}
    for name, rows in vocab_tensors(extended.model).items():
        assert torch.equal(again[name], rows), name


# ------------------------------------------------------------------ keeping the old rows through training


def train_steps(model, tokenizer, pairs, steps: int, after_step=None) -> None:
    enc = tokenizer([p.source for p in pairs], text_target=[p.target for p in pairs], padding=True,
                    truncation=True, max_length=24, return_tensors="pt")
    enc["labels"][enc["labels"] == tokenizer.pad_token_id] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**enc).loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step(model, optimizer)
    model.eval()


@pytest.mark.parametrize("kind", ["marian", "minilm"])
def test_keep_old_rows_keeps_them_bit_identical_through_adamw_with_weight_decay(kind, pairs, chichewa):
    from tl_translation.extend import _slots, extend_vocabulary
    from tl_translation.models import _configure, _quiet, minilm_bert2bert, minilm_tokenizer

    _quiet()
    if kind == "marian":
        tokenizer = english_tokenizer(pairs)
        model = marian(tokenizer)
    else:  # random init is enough here: the same matrices as the warm start
        torch.manual_seed(0)
        model, tokenizer = minilm_bert2bert(), minilm_tokenizer()
        _configure(model, tokenizer)
    ext = extend_vocabulary(model, tokenizer, chichewa, max_new=40, freeze_old=True)
    assert ext.frozen_old_rows and ext.restore is not None and len(ext.added) == 40
    batch = pairs[:2]
    start = snapshot(model)
    others = {n: p.detach().clone() for n, p in model.named_parameters() if "embeddings" not in n and "shared" not in n}

    def check_gradients(model, optimizer):
        for slot in _slots(model):
            param = slot.tensor()
            if isinstance(param, torch.nn.Parameter):
                assert param.grad[ext.old_size:].any(), slot.name
                assert not param.grad[:ext.old_size].any(), slot.name  # hooks zeroed the old rows' gradients
                assert not optimizer.state[param]["exp_avg"][:ext.old_size].any(), slot.name  # no moments spent
        ext.restore()

    train_steps(model, tokenizer, batch, 3, check_gradients)
    now = vocab_tensors(model)
    for name, rows in now.items():
        assert torch.equal(rows[:ext.old_size], start[name][:ext.old_size]), name  # bit-identical
    new_rows_changed = [name for name, rows in now.items() if not torch.equal(rows[ext.old_size:],
                                                                              start[name][ext.old_size:])]
    assert new_rows_changed and any(name.endswith("weight") for name in new_rows_changed)
    assert any(not torch.equal(p, others[n]) for n, p in model.named_parameters() if n in others)

    ext.restore.remove()  # without it, AdamW (and its weight decay) moves the old rows too
    train_steps(model, tokenizer, batch, 3)
    for name, rows in vocab_tensors(model).items():
        if rows.requires_grad:
            assert not torch.equal(rows[:ext.old_size], start[name][:ext.old_size]), name
