"""Hostile inputs for tl-translation (issue 12): files that are not UTF-8, JSON lines nested too deeply or of the
wrong shape, a vocabulary too small for the text, model folders holding a pickle or damaged files, hub ids and
revisions, a finished run whose saved model was tampered with, a damaged checkpoint under --resume. Each refused
input is one ``error:`` line naming the problem and the fix, exit code 2, no traceback, ``--out`` untouched; each
skipped item is named where a user reads it. And the field's conventions: the saved model's generation_config is
tl's, sentencepiece sizes the vocabulary itself, no temporary folder is left behind, gradients are clipped.

Kept fast: a tiny Marian (d_model 16) saved once with save_pretrained is the model of every run, the data are a
few lines, most cases are refused before any training, and two short runs are shared.
"""

from __future__ import annotations

import gc
import json
import re
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tl_core.testing import assert_refused, snapshot
from tl_translation.formats import read_pairs

NY = ["Moni, muli bwanji?", "Ndili bwino, zikomo kwambiri.", "Dzina langa ndine Chikondi.",
      "Kodi mumalankhula Chingerezi?", "Mwana wanga ali kusukulu.", "Tikupita kumsika mawa."]
EN = ["Hello, how are you?", "I am fine, thank you very much.", "My name is Chikondi.", "Do you speak English?",
      "My child is at school.", "We are going to the market tomorrow."]
CHILD = "translation/marian-child-ny-en"  # marian-small, started from backbone.weights
PARENT = "translation/marian-parent-en-ny"  # marian-small from config, with a sentencepiece vocabulary of its own
TINY = ["train.epochs=1", "train.batch_size=4", "head.num_beams=2", "head.max_new_tokens=8", "compare.scratch=false",
        "data.options.max_source_tokens=16", "data.options.max_target_tokens=16", "data.val_fraction=0.25"]


def lines(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("corpus")
    train = lines(folder / "train.tsv", [f"{s}\t{t}" for s, t in zip(NY * 2, EN * 2)] + ["one field, no tab"])
    test = lines(folder / "test.tsv", [f"{s}\t{t}" for s, t in zip(NY[:3], EN[:3])])
    return SimpleNamespace(folder=folder, train=train, test=test)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny Marian and its sentencepiece tokenizer, as save_pretrained writes them: a user's model folder."""
    from transformers import MarianConfig, MarianMTModel

    from tl_translation.vocab import train_tokenizer

    tokenizer = train_tokenizer(NY + EN, 100, "ny", "en")
    torch.manual_seed(0)
    model = MarianMTModel(MarianConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    folder = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def sets(corpus: SimpleNamespace, *more: str, data: Path | None = None) -> list[str]:
    given = [f"data.format={'tsv' if data is None else data.suffix.lstrip('.')}",
             f"data.path={data or corpus.train}", *TINY, *more]
    return [arg for s in given for arg in ("--set", s)]


def tamper(model: Path, where: Path, change) -> Path:
    """A copy of the model folder ``model`` at ``where``, changed by ``change(folder)``."""
    shutil.copytree(model, where)
    change(where)
    return where


# ------------------------------------------------------------------ readers: encodings, nesting, shapes


def test_tsv_not_utf8_is_refused_naming_file_and_line(tl_cli, corpus, tiny, tmp_path):
    data = tmp_path / "latin1.tsv"
    data.write_bytes(f"{NY[0]}\t{EN[0]}\nNdili bwino\tCaf\u00e9\n".encode("latin-1"))
    out = tmp_path / "run"
    assert_refused(tl_cli("run", CHILD, "--out", out, *sets(corpus, f"backbone.weights={tiny}", data=data)),
                   r"latin1\.tsv is not UTF-8 text \(byte 0xe9 on line 2\); save it as UTF-8", out)


def test_moses_target_not_utf8_is_refused_naming_that_file_and_line(tl_cli, corpus, tiny, tmp_path):
    lines(tmp_path / "corpus.ny", NY[:3])
    (tmp_path / "corpus.en").write_bytes("\n".join([EN[0], EN[1], "Caf\u00e9"]).encode("cp1252") + b"\n")
    out = tmp_path / "run"
    args = sets(corpus, f"backbone.weights={tiny}", "data.format=moses", f"data.path={tmp_path / 'corpus'}",
                "data.options.source_lang=ny", "data.options.target_lang=en")
    assert_refused(tl_cli("run", CHILD, "--out", out, *args),
                   r"corpus\.en is not UTF-8 text \(byte 0xe9 on line 3\); save it as UTF-8", out)


def test_jsonl_not_utf8_is_refused(tl_cli, corpus, tiny, tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_bytes(b'{"source": "Moni", "target": "Hello"}\n{"source": "\xff", "target": "x"}\n')
    out = tmp_path / "run"
    assert_refused(tl_cli("run", CHILD, "--out", out, *sets(corpus, f"backbone.weights={tiny}", data=data)),
                   r"train\.jsonl is not UTF-8 text \(byte 0xff on line 2\); save it as UTF-8", out)


DEEP = '{"source": ' + "[" * 100_000 + "]" * 100_000 + ', "target": "x"}'


def jsonl_with_bad_lines(path: Path) -> Path:
    good = [json.dumps({"source": s, "target": t}) for s, t in zip(NY, EN)]
    bad = [DEEP, "[1, 2]", '{"source": "Moni", "target": 5}', '{"source": {"ny": "Moni"}, "target": "Hello"}',
           '{"source": "Moni", "target": ' + "9" * 5000 + "}", '{"translation": ["Moni", "Hello"]}',
           '{"source": "Moni", "target": "Hello"']
    return lines(path, good[:3] + bad + good[3:])


def test_jsonl_lines_nested_too_deeply_or_of_the_wrong_shape_are_skipped_and_named(tmp_path):
    path = jsonl_with_bad_lines(tmp_path / "train.jsonl")
    got = read_pairs(path, "jsonl", source_lang="ny", target_lang="en")
    assert [p.source for p in got] == NY
    assert got.skipped[:4] + got.skipped[5:] == [
        f"{path}:4: JSON nested too deeply to read; skipped",
        f"{path}:5: a JSON array, expected an object; skipped",
        f"{path}:6: 'target' is a JSON number, expected a string; skipped",
        f"{path}:7: 'source' is a JSON object, expected a string; skipped",
        f"{path}:9: 'translation' is a JSON array, expected an object of language codes; skipped",
        f"{path}:10: not valid JSON (Expecting ',' delimiter at column 37); skipped",
    ]
    assert got.skipped[4].startswith(f"{path}:8: not valid JSON (Exceeds the limit (4300 digits)")  # a huge number
    assert got.counts["malformed"] == 7


def test_jsonl_line_nested_too_deeply_under_strict_is_refused(tl_cli, corpus, tiny, tmp_path):
    data = jsonl_with_bad_lines(tmp_path / "train.jsonl")
    out = tmp_path / "run"
    assert_refused(tl_cli("run", CHILD, "--out", out, *sets(corpus, f"backbone.weights={tiny}", "data.strict=true",
                                                              data=data)),
                   r"train\.jsonl:4: JSON nested too deeply to read; fix or remove the line, or set data\.strict: "
                   r"false", out)


# ------------------------------------------------------------------ sentencepiece


def test_sentencepiece_sizes_a_too_large_vocabulary_down_in_one_training(tmp_path, monkeypatch):
    import sentencepiece as spm

    from tl_translation.vocab import train_sentencepiece

    calls = []
    train = spm.SentencePieceTrainer.train

    def spy(**kwargs):
        calls.append(kwargs)
        return train(**kwargs)

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", spy)
    model = train_sentencepiece(NY + EN, 8000, tmp_path / "spm")
    size = spm.SentencePieceProcessor(model_file=str(model)).get_piece_size()
    assert 3 < size < 200  # what six sentence pairs allow, not 8000
    assert len(calls) == 1 and calls[0]["hard_vocab_limit"] is False  # no retry with a number parsed from an error
    assert not (tmp_path / "spm.txt").exists()  # the training text is not left beside the model


def test_a_vocabulary_smaller_than_the_texts_characters_is_refused_with_the_size_it_needs(tl_cli, corpus, tmp_path):
    many = "".join(chr(0x4E00 + i) for i in range(150))  # 150 distinct CJK characters
    data = lines(tmp_path / "cjk.tsv", [f"{many[i:i + 10]}\t{many[i + 5:i + 15]}" for i in range(0, 140, 5)])
    out = tmp_path / "run"
    line = assert_refused(tl_cli("run", PARENT, "--out", out, *sets(corpus, "data.options.vocab_size=100", data=data)),
                          r"vocabulary of 100 pieces cannot hold the training text's \d+ distinct characters .*set "
                          r"data\.options\.vocab_size .* to at least \d+", out)
    found = re.search(r"(\d+) distinct characters .* at least (\d+)", line)
    chars, need = int(found.group(1)), int(found.group(2))
    assert 130 < chars <= 150 and need == chars + 3  # the training split's characters, and <pad> </s> <unk>


# ------------------------------------------------------------------ backbone.weights: folders, pickles, hub ids


class Payload:
    """Unpickling this runs code (it writes ``marker``): what a hostile pytorch_model.bin does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_a_pickle_in_a_model_folder_is_refused_and_never_unpickled(tl_cli, corpus, tiny, tmp_path):
    marker = tmp_path / "pickle-ran"

    def pickled(folder: Path) -> None:
        (folder / "model.safetensors").unlink()
        torch.save({"model.shared.weight": Payload(marker)}, folder / "pytorch_model.bin")

    folder = tamper(tiny, tmp_path / "pickled", pickled)
    out = tmp_path / "run"
    assert_refused(tl_cli("run", CHILD, "--out", out, *sets(corpus, f"backbone.weights={folder}")),
                   r"holds its weights as pytorch_model\.bin, a pickle, .*convert it to safetensors", out)
    assert not marker.exists()


def cut(name: str, keep: int):
    def change(folder: Path) -> None:
        (folder / name).write_bytes((folder / name).read_bytes()[:keep])

    return change


def write(name: str, content: bytes):
    def change(folder: Path) -> None:
        (folder / name).write_bytes(content)

    return change


def drop_tensor(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    del state["model.encoder.layers.0.fc1.weight"]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def edit_config(**changes):
    def change(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        (folder / "config.json").write_text(json.dumps({**config, **changes}), encoding="utf-8")

    return change


@pytest.mark.parametrize(("change", "pattern"), [
    (cut("model.safetensors", 200), r"model\.safetensors is truncated or not a safetensors file"),
    (write("config.json", b"{not json"), r"config\.json: not valid JSON at line 1 column 2"),
    (write("config.json", b"[1, 2]"), r"config\.json is not a transformers model config"),
    (write("config.json", b'{"model_type": "marian", "name": "\xe9"}'), r"config\.json is not UTF-8 text"),
    (write("source.spm", b"garbage"), r"is not a model folder written by save_pretrained .*source\.spm"),
    (edit_config(encoder_ffn_dim=64), r"its tensors do not have the shapes its config\.json gives"),
], ids=["truncated-safetensors", "config-not-json", "config-a-list", "config-not-utf8", "spm-garbage", "shapes"])
def test_a_damaged_model_folder_as_backbone_weights_is_refused(tl_cli, corpus, tiny, tmp_path, change, pattern):
    folder = tamper(tiny, tmp_path / "damaged", change)
    out = tmp_path / "run"
    assert_refused(tl_cli("run", CHILD, "--out", out, *sets(corpus, f"backbone.weights={folder}")),
                   pattern + r".*point backbone\.weights at a folder that save_pretrained wrote", out)


def test_a_model_folder_missing_a_tensor_loads_and_the_load_report_names_it(tiny, tmp_path):
    from tl_translation.models import build

    folder = tamper(tiny, tmp_path / "partial", drop_tensor)
    recipe = SimpleNamespace(backbone=SimpleNamespace(name="marian-small", weights=str(folder), allow_partial=False),
                             head=SimpleNamespace(name="seq2seq", options={"num_beams": 1}),
                             policy=SimpleNamespace(name="fine-tune", options={}))
    bundle = build(recipe, SimpleNamespace(options=SimpleNamespace(source_lang="ny", target_lang="en"), train=[]))
    report = bundle.backbone.report
    assert report.missing == ["model.encoder.layers.0.fc1.weight"] and report.missing[0] not in report.loaded
    assert "1 missing (model.encoder.layers.0.fc1.weight)" in report.summary()


def test_a_hub_id_pinned_to_a_revision_offline_is_refused_naming_it(tl_cli, corpus, tmp_path):
    out = tmp_path / "run"
    assert_refused(tl_cli("run", CHILD, "--out", out,
                          *sets(corpus, "backbone.weights=hf:Helsinki-NLP/opus-mt-en-ny@0123abc")),
                   r"backbone\.weights hf:Helsinki-NLP/opus-mt-en-ny@0123abc is not in the local Hugging Face "
                   r"cache.*set backbone\.weights to that folder", out)


@pytest.mark.parametrize("weights", ["hf:/opus-mt-en-ny", "hf:Helsinki-NLP/opus-mt-en-ny@", "hf:a/b/c"])
def test_a_malformed_hub_id_is_refused(tl_cli, corpus, tmp_path, weights):
    out = tmp_path / "run"
    assert_refused(tl_cli("run", CHILD, "--out", out, *sets(corpus, f"backbone.weights={weights}")),
                   r"is not a hub id; write hf:owner/name, or hf:owner/name@REVISION", out)


def test_the_revision_reaches_from_pretrained_and_the_report(tiny, corpus, tmp_path, monkeypatch):
    """Offline, the hub is a local folder here: what matters is that the revision is passed on and recorded."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    import tl_core.api
    from tl_core.api import WeightsEntry
    from tl_core.recipe import load_recipe
    from tl_core.run import execute
    from tl_translation import models

    asked = []

    def from_pretrained(real):
        def load(location, **kwargs):
            asked.append((location, kwargs.get("revision")))
            return real(str(tiny), **{k: v for k, v in kwargs.items() if k != "revision"})
        return load

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", from_pretrained(AutoTokenizer.from_pretrained))
    monkeypatch.setattr(AutoModelForSeq2SeqLM, "from_pretrained",
                        from_pretrained(AutoModelForSeq2SeqLM.from_pretrained))
    given = ["data.format=tsv", f"data.path={corpus.train}", "backbone.weights=hf:Helsinki-NLP/opus-mt-en-ny@0123abc",
             *TINY]
    report = execute(load_recipe(CHILD, given), tmp_path / "run", quiet=True)
    assert asked == [("Helsinki-NLP/opus-mt-en-ny", "0123abc")] * 2  # tokenizer and model, both pinned
    assert report["load_report"]["file"] == "Helsinki-NLP/opus-mt-en-ny@0123abc"
    assert report["hub"] == {"repo": "Helsinki-NLP/opus-mt-en-ny", "revision": "0123abc", "pinned": True}

    asked.clear()  # a weights entry's revision field goes the same way
    entry = WeightsEntry(name="en-ny", architecture="opus-mt", source="hf", location="Helsinki-NLP/opus-mt-en-ny",
                         sha256=None, licence="", mean=(), std=(), revision="fedcba9")
    monkeypatch.setattr(tl_core.api, "resolve_weights", lambda spec, weights: entry)
    recipe = SimpleNamespace(backbone=SimpleNamespace(name="opus-mt", weights="en-ny", allow_partial=False),
                             head=SimpleNamespace(name="seq2seq", options={"num_beams": 1}),
                             policy=SimpleNamespace(name="fine-tune", options={}))
    data = SimpleNamespace(options=SimpleNamespace(source_lang="ny", target_lang="en"), train=[])
    bundle = models.build(recipe, data)
    assert asked == [("Helsinki-NLP/opus-mt-en-ny", "fedcba9")] * 2
    assert bundle.hub == {"repo": "Helsinki-NLP/opus-mt-en-ny", "revision": "fedcba9"}


# ------------------------------------------------------------------ a finished run: generation_config, evaluate


@pytest.fixture(scope="module")
def finished(tmp_path_factory, corpus, tiny) -> tuple[Path, dict]:
    """One short run of the tiny model on the tiny corpus (beam search, 2 beams, 8 new tokens)."""
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    out = tmp_path_factory.mktemp("finished") / "run"
    given = ["data.format=tsv", f"data.path={corpus.train}", f"data.test_path={corpus.test}",
             f"backbone.weights={tiny}", "head.no_repeat_ngram_size=3", "head.length_penalty=1.2", *TINY]
    return out, execute(load_recipe(CHILD, given), out, quiet=True)


def test_the_saved_generation_config_is_tls_and_generate_translates_as_tl_did(finished):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    out, report = finished
    model = AutoModelForSeq2SeqLM.from_pretrained(str(out / "model")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "model"))
    config = model.generation_config
    assert (config.num_beams, config.max_new_tokens, config.length_penalty, config.no_repeat_ngram_size,
            config.early_stopping, config.do_sample) == (2, 8, 1.2, 3, True, False)
    samples = report["samples"]
    enc = tokenizer([s["source"] for s in samples], padding=True, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**enc)  # no arguments: the saved generation_config
    again = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    assert len(samples) == 3 and again == [s["translation"] for s in samples]


def test_a_skipped_training_line_is_named_in_report_json(finished, corpus):
    _, report = finished
    assert report["data"]["skipped"] == [f"{corpus.train}:13: 1 tab-separated fields, expected 2 (source<TAB>target); "
                                         "skipped"]
    assert report["data"]["counts"]["malformed"] == 1


def test_the_bundled_recipes_clip_gradients_at_1(finished):
    from tl_core.recipe import load_recipe

    for name in ("translation/minilm-ny-en", "translation/minilm-ny-en-vocab", "translation/opus-mt-ny-en", PARENT,
                 CHILD):
        assert load_recipe(name).train.max_grad_norm == 1.0, name
    assert finished[1]["recipe"]["train"]["max_grad_norm"] == 1.0  # and a run of one records it


def test_tl_evaluate_names_every_line_it_skipped(finished, tl_cli, tmp_path):
    out, _ = finished
    data = lines(tmp_path / "more.tsv", [f"{NY[0]}\t{EN[0]}", "only one field", f"{NY[1]}\t", f"{NY[2]}\t{EN[2]}"])
    code, stdout, stderr = tl_cli("evaluate", out, "--data", data, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["items"] == 2
    assert result["skipped"] == [f"{data}:2: 1 tab-separated fields, expected 2 (source<TAB>target); skipped",
                                 f"{data}:3: empty target; skipped"]


def copy_run(finished, where: Path, change) -> Path:
    run = where / "run"
    shutil.copytree(finished[0], run)
    change(run / "model")
    return run


@pytest.mark.parametrize(("change", "pattern"), [
    (cut("model.safetensors", 1000), r"model\.safetensors is truncated or not a safetensors file"),
    (write("config.json", b"\x00garbage"), r"config\.json: not valid JSON"),
    (cut("vocab.json", 20), r"vocab\.json: not valid JSON"),
    (write("target.spm", b"garbage"), r"is not a model folder written by save_pretrained .*target\.spm"),
    (drop_tensor, r"model lacks 1 of the model's tensors \(model\.encoder\.layers\.0\.fc1\.weight\)"),
], ids=["truncated-safetensors", "config-garbage", "vocab-truncated", "spm-garbage", "tensor-missing"])
def test_tl_evaluate_on_a_tampered_saved_model_is_refused(finished, tl_cli, corpus, tmp_path, change, pattern):
    run = copy_run(finished, tmp_path, change)
    before = snapshot(run)
    assert_refused(tl_cli("evaluate", run, "--data", corpus.test),
                   pattern + r".*restore RUN/model, or train again with tl run", run, before)


def test_tl_evaluate_with_data_that_is_not_utf8_is_refused(finished, tl_cli, tmp_path):
    out, _ = finished
    data = tmp_path / "more.tsv"
    data.write_bytes("Moni\tCaf\u00e9\n".encode("latin-1"))
    before = snapshot(out)
    assert_refused(tl_cli("evaluate", out, "--data", data), r"more\.tsv is not UTF-8 text \(byte 0xe9 on line 1\)",
                   out, before)


def test_resume_with_a_damaged_checkpoint_is_refused(finished, tl_cli, corpus, tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished[0], run)
    checkpoint = run / "checkpoints" / "last.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:500])
    before = snapshot(run)
    args = sets(corpus, f"backbone.weights={tiny}", f"data.test_path={corpus.test}", "head.no_repeat_ngram_size=3",
                "head.length_penalty=1.2")
    assert_refused(tl_cli("run", CHILD, "--out", run, "--resume", *args),
                   r"--resume: .*last\.pt is damaged or not a tl checkpoint", run, before)


# ------------------------------------------------------------------ temporary folders


def test_a_marian_run_with_its_own_vocabulary_leaves_no_temporary_folder(corpus, tmp_path, monkeypatch):
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    report = execute(load_recipe(PARENT, ["data.format=tsv", f"data.path={corpus.train}", *TINY]), tmp_path / "run",
                     quiet=True)
    assert report["vocabulary"]["size"] < 8000  # the recipe's 8000 pieces, sized down to what the text allows
    gc.collect()
    assert not list(scratch.glob("tl-spm-*"))
    assert (tmp_path / "run" / "model" / "source.spm").is_file()  # the run keeps its own copy

