"""LoRA adapters (peft): only the adapters train, new tokens are saved with the adapter and reload onto the base
checkpoint, the merged model reloads with transformers alone, BERT2BERT, and the errors a user meets.

Small models: a Marian (d_model 64, 2+2 layers) built from config with a sentencepiece vocabulary trained on 300
verses of the Chichewa-English corpus, saved once with save_pretrained - the "pretrained checkpoint" a user reloads;
the MiniLM BERT2BERT (random init) only for its own tests."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("peft")

NEW = ["Yahweh", "Yehova", "Mulungu"]  # frequent in the first verses: Yehova, Mulungu (source), Yahweh (target)
LR = 1e-2


def marian_config(vocab_size: int):
    from transformers import MarianConfig

    return MarianConfig(vocab_size=vocab_size, d_model=64, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                        decoder_ffn_dim=128, max_position_embeddings=128, pad_token_id=0, eos_token_id=1,
                        decoder_start_token_id=0)


@pytest.fixture(scope="module")
def pairs():
    from tl_translation.corpus import chichewa_english

    return chichewa_english()[:300]


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, pairs):
    """The base checkpoint: a small Marian and its tokenizer, written by save_pretrained."""
    from transformers import MarianMTModel

    from tl_translation.vocab import train_tokenizer

    tokenizer = train_tokenizer([p.source for p in pairs] + [p.target for p in pairs], 300, "ny", "en")
    torch.manual_seed(0)
    model = MarianMTModel(marian_config(len(tokenizer)))
    folder = tmp_path_factory.mktemp("base")
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def load_base(base_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    return AutoModelForSeq2SeqLM.from_pretrained(str(base_dir)), AutoTokenizer.from_pretrained(str(base_dir))


def batch(tokenizer, pairs, n: int = 12):
    chosen = []  # about n / 3 verses with each new word
    for word in NEW:
        chosen += [p for p in pairs if word in p.source + p.target and p not in chosen][:n // len(NEW)]
    enc = tokenizer([p.source for p in chosen], text_target=[p.target for p in chosen], padding=True,
                    truncation=True, max_length=40, return_tensors="pt")
    enc["labels"][enc["labels"] == tokenizer.pad_token_id] = -100
    return enc


def train(model, enc, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**enc).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    model.eval()
    return losses


def base_name(name: str) -> str:
    """A wrapped base parameter's name in the unwrapped model."""
    for part in ("base_model.model.", ".base_layer", ".token_adapter", ".original_module"):
        name = name.replace(part, "")
    return name


def sources(tokenizer, pairs, n: int = 4):
    chosen = [p.source for p in pairs if any(w in p.source for w in NEW)][:n]
    return tokenizer(chosen, padding=True, return_tensors="pt")


def generate(model, enc):
    with torch.no_grad():
        return model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], num_beams=1,
                              max_new_tokens=12)


def logits(model, enc):
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                     decoder_input_ids=enc["input_ids"][:, :8]).logits


# ------------------------------------------------------------------ only the adapters train


def test_lora_trains_only_the_adapters_and_leaves_the_base_bit_identical(base_dir, pairs):
    from tl_translation.adapters import LoraOptions, apply_lora, lora_parameter_names

    base, tokenizer = load_base(base_dir)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    total = sum(p.numel() for p in base.parameters())
    enc = batch(tokenizer, pairs)
    plain = logits(base, enc)

    model = apply_lora(base, LoraOptions(r=8))
    names = lora_parameter_names(model)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(trainable) == set(names) and all(".lora_A." in n or ".lora_B." in n for n in names)
    # q_proj and v_proj of 2 encoder self-attentions, 2 decoder self-attentions and 2 cross-attentions: 12 x r(64+64)
    assert sum(p.numel() for p in trainable.values()) == 12 * 8 * (64 + 64) < total / 10
    assert sum("encoder_attn.q_proj.lora_A" in n for n in names) == 2  # the cross-attention has adapters too
    assert torch.allclose(logits(model, enc), plain)  # LoRA starts as the identity (B = 0)

    start = {n: p.detach().clone() for n, p in trainable.items()}
    train(model, enc, steps=3)
    assert all(not torch.equal(p, start[n]) for n, p in trainable.items())  # every adapter matrix trained
    frozen = [(n, p) for n, p in model.named_parameters() if n not in trainable]
    assert len(frozen) == len(before)
    for name, value in frozen:
        assert torch.equal(value, before[base_name(name)]), name  # bit-identical base
    assert not torch.allclose(logits(model, enc), plain, atol=1e-4)  # and the adapters change what it computes
    with model.disable_adapter():
        assert torch.equal(logits(model, enc), plain)


# ------------------------------------------------------------------ new tokens: save, reload, merge


@pytest.fixture(scope="module")
def with_new_tokens(tmp_path_factory, base_dir, pairs):
    """What a user does: reload the base, add tokens, resize, LoRA + the new rows, train, save_adapters."""
    from tl_translation.adapters import LoraOptions, apply_lora, save_adapters

    base, tokenizer = load_base(base_dir)
    old = len(tokenizer)
    assert tokenizer.add_tokens(NEW) == len(NEW)
    ids = tokenizer.convert_tokens_to_ids(NEW)
    assert ids == list(range(old, old + len(NEW)))
    base.resize_token_embeddings(len(tokenizer))
    enc = batch(tokenizer, pairs)
    assert all((enc["input_ids"] == i).any() or (enc["labels"] == i).any() for i in ids)  # the batch uses them
    initial = base.get_input_embeddings().weight[ids].detach().clone()
    old_rows = base.get_input_embeddings().weight[:old].detach().clone()

    model = apply_lora(base, LoraOptions(), new_tokens=ids)
    train(model, enc, steps=5)
    src = sources(tokenizer, pairs)
    trained = SimpleNamespace(
        encoder=model.get_base_model().get_encoder().get_input_embeddings()(torch.tensor(ids)).detach().clone(),
        decoder=model.get_base_model().get_decoder().get_input_embeddings()(torch.tensor(ids)).detach().clone(),
    )
    folder = tmp_path_factory.mktemp("adapter")
    save_adapters(model, tokenizer, folder)
    return SimpleNamespace(model=model, tokenizer=tokenizer, ids=ids, old=old, initial=initial, old_rows=old_rows,
                           trained=trained, src=src, generated=generate(model, src), logits=logits(model, src),
                           folder=folder)


def test_new_token_rows_train_and_are_saved_with_the_adapter(with_new_tokens):
    from safetensors.torch import load_file

    from tl_translation.adapters import lora_parameter_names

    t = with_new_tokens
    assert not torch.allclose(t.trained.encoder, t.initial)  # the new rows trained ...
    assert torch.equal(t.trained.encoder, t.trained.decoder)  # ... once, for encoder, decoder and output layer
    names = lora_parameter_names(t.model)
    assert sum("trainable_tokens_delta" in n for n in names) == 1
    assert torch.equal(t.model.get_base_model().get_input_embeddings().token_adapter.base_layer.weight[:t.old],
                       t.old_rows)  # the base's own rows are untouched

    files = {p.name for p in t.folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tl_adapters.json", "tokenizer_config.json"} <= files
    saved = load_file(str(t.folder / "adapter_model.safetensors"))
    rows = [v for k, v in saved.items() if "trainable_tokens_delta" in k]
    assert len(rows) == 1 and torch.equal(rows[0], t.trained.encoder)  # just the new rows, as trained
    assert all(v.shape[0] < t.old for v in saved.values())  # no full embedding matrix
    info = json.loads((t.folder / "tl_adapters.json").read_text())
    assert info["embedding_rows"] == info["tokenizer_size"] == t.old + len(NEW)
    assert info["trained_token_rows"] == t.ids
    assert info["model_type"] == "marian" and info["architecture"] == "MarianMTModel"
    assert info["base_config"]["d_model"] == 64 and info["lora"]["target_modules"] == ["q_proj", "v_proj"]


def test_adapter_with_new_tokens_reloads_onto_the_base_checkpoint_identically(with_new_tokens, base_dir):
    from tl_translation.adapters import load_with_adapters

    t = with_new_tokens
    torch.manual_seed(1234)  # the resized rows of the reloaded base are random: the adapter must replace them
    base, _ = load_base(base_dir)
    assert base.get_input_embeddings().weight.shape[0] == t.old
    model, tokenizer = load_with_adapters(base, t.folder)
    assert len(tokenizer) == t.old + len(NEW) and tokenizer.convert_tokens_to_ids(NEW) == t.ids
    assert tokenizer(t.tokenizer.batch_decode(t.src["input_ids"], skip_special_tokens=True), padding=True,
                     return_tensors="pt")["input_ids"].tolist() == t.src["input_ids"].tolist()
    hf = model.get_base_model()
    ids = torch.tensor(t.ids)
    assert torch.equal(hf.get_encoder().get_input_embeddings()(ids), t.trained.encoder)
    assert torch.equal(hf.get_decoder().get_input_embeddings()(ids), t.trained.encoder)
    hidden = torch.randn(2, 64)
    assert torch.allclose(hf.get_output_embeddings()(hidden)[:, t.ids], hidden @ t.trained.encoder.T)
    assert torch.allclose(logits(model, t.src), t.logits, atol=1e-5)
    assert torch.equal(generate(model, t.src), t.generated)


def test_merged_model_reloads_with_transformers_alone(with_new_tokens, base_dir, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, MarianMTModel

    from tl_translation.adapters import load_with_adapters, merge

    t = with_new_tokens
    base, _ = load_base(base_dir)
    q_before = base.model.encoder.layers[0].self_attn.q_proj.weight.detach().clone()
    model, tokenizer = load_with_adapters(base, t.folder)
    merged = merge(model)
    assert type(merged) is MarianMTModel and not any("lora" in n or "token_adapter" in n
                                                      for n in merged.state_dict())
    assert not torch.equal(merged.model.encoder.layers[0].self_attn.q_proj.weight, q_before)  # LoRA merged in
    merged.save_pretrained(str(tmp_path / "merged"))
    tokenizer.save_pretrained(str(tmp_path / "merged"))

    again = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "merged")).eval()
    assert type(again) is MarianMTModel
    assert torch.equal(again.get_input_embeddings().weight[t.ids], t.trained.encoder)
    assert torch.equal(again.get_output_embeddings().weight[t.ids], t.trained.encoder)
    assert torch.allclose(logits(again, t.src), t.logits, atol=1e-4)
    assert torch.equal(generate(again, t.src), t.generated)


def test_resized_model_whose_new_rows_were_not_trained_is_refused_at_reload(base_dir, tmp_path):
    """PEFT #1457 / #2898: the adapter of a resized model without its new rows cannot reproduce the model."""
    from tl_core.errors import TLError
    from tl_translation.adapters import LoraOptions, apply_lora, load_with_adapters, save_adapters

    base, tokenizer = load_base(base_dir)
    tokenizer.add_tokens(NEW)
    base.resize_token_embeddings(len(tokenizer))
    save_adapters(apply_lora(base, LoraOptions()), tokenizer, tmp_path / "adapter")  # new_tokens forgotten
    fresh, _ = load_base(base_dir)
    with pytest.raises(TLError, match=r"trained with 303 embedding rows but saved none of rows 300\.\.302 .*"
                                      r"new_tokens") as exc:
        load_with_adapters(fresh, tmp_path / "adapter")
    assert "\n" not in str(exc.value)


def test_train_embeddings_trains_and_saves_every_row_once(base_dir, pairs, tmp_path):
    from safetensors.torch import load_file

    from tl_translation.adapters import LoraOptions, apply_lora, load_with_adapters, save_adapters

    base, tokenizer = load_base(base_dir)
    rows = base.get_input_embeddings().weight.shape[0]
    model = apply_lora(base, LoraOptions(train_embeddings=True))
    train(model, batch(tokenizer, pairs, n=4), steps=2)
    save_adapters(model, tokenizer, tmp_path / "adapter")
    saved = [v for k, v in load_file(str(tmp_path / "adapter" / "adapter_model.safetensors")).items()
             if "trainable_tokens_delta" in k]
    assert len(saved) == 1 and saved[0].shape == (rows, 64)  # one matrix: encoder, decoder and output stay tied
    src = sources(tokenizer, pairs, n=2)
    reloaded, _ = load_with_adapters(load_base(base_dir)[0], tmp_path / "adapter")
    assert torch.allclose(logits(reloaded, src), logits(model, src), atol=1e-5)


# ------------------------------------------------------------------ other architectures


def test_t5_default_targets_and_new_tokens_tied_through_shared():
    from peft.utils.other import TrainableTokensWrapper
    from transformers import T5Config, T5ForConditionalGeneration

    from tl_translation.adapters import LoraOptions, apply_lora, lora_parameter_names, vocabulary_layers

    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(T5Config(vocab_size=100, d_model=32, d_kv=8, num_heads=2, num_layers=1, d_ff=64,
                                             decoder_start_token_id=0))
    hf.resize_token_embeddings(102)
    model = apply_lora(hf, LoraOptions(r=4), new_tokens=[100, 101])
    names = lora_parameter_names(model)
    assert {re.sub(r".*\.(\w+)\.lora_[AB]\..*", r"\1", n) for n in names if "lora_" in n} == {"q", "v"}
    assert sum("EncDecAttention.q.lora_A" in n for n in names) == 1
    layers = vocabulary_layers(model.get_base_model())
    assert set(layers) == {"encoder.embed_tokens", "decoder.embed_tokens", "lm_head"}
    assert all(isinstance(layer, TrainableTokensWrapper) for layer in layers.values())


@pytest.fixture(scope="module")
def bert2bert():
    from tl_translation.models import minilm_bert2bert

    def build():
        torch.manual_seed(0)  # random init: the same seed is the same base
        model = minilm_bert2bert()
        for key, value in (("decoder_start_token_id", 101), ("pad_token_id", 0), ("eos_token_id", 102)):
            setattr(model.config, key, value)
            setattr(model.generation_config, key, value)
        return model

    return build


def test_bert2bert_lora_on_query_and_value_trains_saves_and_reloads(bert2bert, tmp_path):
    from transformers import BertTokenizerFast

    from tl_translation.adapters import (
        LoraOptions,
        apply_lora,
        load_with_adapters,
        lora_parameter_names,
        save_adapters,
    )
    from tl_translation.models import minilm_tokenizer

    tokenizer = minilm_tokenizer()
    hf = bert2bert()
    before = {n: p.detach().clone() for n, p in hf.named_parameters() if ".layer.0." in n or "cls." in n}
    model = apply_lora(hf, LoraOptions(r=4, dropout=0.0))
    names = lora_parameter_names(model)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(trainable) == set(names)
    # query and value of 6 encoder self-attentions, 6 decoder self-attentions and 6 cross-attentions
    assert sum(p.numel() for p in trainable.values()) == 36 * 4 * (384 + 384)
    assert sum("crossattention.self.query.lora_A" in n for n in names) == 6
    enc = tokenizer(["moni dziko", "mulungu ndi wabwino"], text_target=["hello world", "god is good"],
                    padding=True, return_tensors="pt")
    enc["labels"][enc["labels"] == tokenizer.pad_token_id] = -100
    start = {n: p.detach().clone() for n, p in trainable.items()}
    train(model, enc, steps=2)
    assert all(not torch.equal(p, start[n]) for n, p in trainable.items())
    for name, value in model.named_parameters():
        if base_name(name) in before and name not in trainable:
            assert torch.equal(value, before[base_name(name)]), name
    src = {k: enc[k] for k in ("input_ids", "attention_mask")}
    expected = generate(model, src)
    save_adapters(model, tokenizer, tmp_path / "adapter")

    reloaded, tok = load_with_adapters(bert2bert(), tmp_path / "adapter")
    assert isinstance(tok, BertTokenizerFast) and len(tok) == len(tokenizer)
    assert torch.equal(generate(reloaded, src), expected)


def test_bert2bert_new_tokens_are_one_clear_error(bert2bert):
    from tl_core.errors import TLError
    from tl_translation.adapters import LoraOptions, apply_lora

    for kwargs in ({"new_tokens": [30521]}, {"new_tokens": True}):
        with pytest.raises(TLError, match=r"lora: new tokens \(or train_embeddings\) are not supported with adapters "
                                          r"on encoder-decoder \(EncoderDecoderModel\): its output layer "
                                          r"decoder\.cls\.predictions\.decoder has a bias") as exc:
            apply_lora(bert2bert(), LoraOptions(), **kwargs)
        assert "\n" not in str(exc.value)


# ------------------------------------------------------------------ errors


def test_target_modules_that_match_nothing_are_one_clear_error(base_dir):
    from tl_core.errors import TLError
    from tl_translation.adapters import LoraOptions, apply_lora

    base, _ = load_base(base_dir)
    expected = (r"^lora\.target_modules \['query', 'value'\] match no layer peft can adapt in "
                r"marian \(MarianMTModel\); its linear layers are named fc1, fc2, k_proj, out_proj, q_proj, v_proj; "
                r"leave lora.target_modules out for the default, \['q_proj', 'v_proj'\]$")
    with pytest.raises(TLError, match=expected) as exc:
        apply_lora(base, LoraOptions(target_modules=["query", "value"]))
    assert "\n" not in str(exc.value)


def test_a_model_that_is_not_a_seq2seq_transformer_is_one_clear_error():
    from tl_core.errors import TLError
    from tl_translation.adapters import LoraOptions, apply_lora

    with pytest.raises(TLError, match=r"adapters are for transformers encoder-decoder \(translation\) models; "
                                      r"Linear \(Linear\) is not one"):
        apply_lora(torch.nn.Linear(4, 4), LoraOptions())


def test_cli_turns_an_adapter_error_into_one_line_and_exit_code_2(base_dir, capsys, monkeypatch):
    from tl_core import cli
    from tl_translation.adapters import LoraOptions, apply_lora

    base, _ = load_base(base_dir)
    monkeypatch.setattr(cli, "_add_plugin_commands", lambda: None)
    monkeypatch.setattr(cli, "app", lambda: apply_lora(base, LoraOptions(target_modules=["nothing"])))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and "Traceback" not in err
    assert "lora.target_modules ['nothing'] match no layer peft can adapt in marian (MarianMTModel)" in err


def test_options_forbid_unknown_keys_and_adapters_refuse_a_second_wrap(base_dir):
    from pydantic import ValidationError

    from tl_core.errors import TLError
    from tl_translation.adapters import LoraOptions, apply_lora

    with pytest.raises(ValidationError):
        LoraOptions(rank=4)
    base, _ = load_base(base_dir)
    model = apply_lora(base, LoraOptions())
    with pytest.raises(TLError, match="already has adapters"):
        apply_lora(model, LoraOptions())
