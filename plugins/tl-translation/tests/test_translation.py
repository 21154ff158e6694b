"""Translation runs end to end on the real Chichewa-English corpus (tiny budgets): the warm start, partial freezing,
save -> reload -> translate, metrics, and the errors a user meets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tl_core.plugins import plugins, registry

TINY = ["data.options.limit=24", "data.options.test_limit=6", "train.epochs=1", "train.batch_size=8",
        "head.num_beams=1", "head.max_new_tokens=12", "data.options.max_source_tokens=40",
        "data.options.max_target_tokens=40", "compare.scratch=false"]


def run(out, *sets: str, recipe: str = "translation/minilm-ny-en") -> dict:
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    return execute(load_recipe(recipe, [*TINY, *sets]), out, quiet=True)


def minilm_file() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from tl_core.weights import fetch

    return load_file(str(fetch(registry("backbone").get("minilm-bert2bert").weights_entry("minilm-en"))))


def reload_and_translate(run_dir, sources: list[str], generation: dict) -> list[str]:
    """What a user does with a finished run: transformers' Auto classes on RUN/model, nothing of tl."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(str(run_dir / "model")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / "model"))
    enc = tokenizer(sources, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, num_beams=generation["num_beams"], max_new_tokens=generation["max_new_tokens"])
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True,
                                                      clean_up_tokenization_spaces=True)]


def test_plugin_is_listed_and_lists_without_torch():
    info = {p.name: p for p in plugins()}["translation"]
    assert info.status == "loaded" and info.distribution == "tl-translation"
    code = ("import sys, json; from tl_core.plugins import plugins; plugins();"
            "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'sentencepiece') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert json.loads(out.stdout) == []


def test_minilm_warm_start_loads_minilm_into_encoder_and_decoder_only_cross_attention_is_new():
    from tl_core.weights import load_into
    from tl_translation.models import minilm_bert2bert

    model = minilm_bert2bert()
    report = load_into(model, registry("backbone").get("minilm-bert2bert").weights_entry("minilm-en"))
    minilm = minilm_file()
    state = model.state_dict()
    for key in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight",
                "encoder.layer.0.attention.self.query.weight"):
        assert torch.equal(state[f"encoder.{key}"], minilm[key])
        assert torch.equal(state[f"decoder.bert.{key}"], minilm[key])
    assert len(report.sha256) == 64 and len(report.loaded) > 200
    assert report.missing and all("crossattention" in k or k.startswith("decoder.cls.predictions.") for k in
                                  report.missing)
    assert sum("crossattention" in k for k in report.missing) == 6 * 10  # 6 layers x (q, k, v, out, LayerNorm) x 2
    assert {k for k in report.dropped if "pooler" in k} == {"encoder.pooler.dense.weight", "encoder.pooler.dense.bias"}


@pytest.mark.parametrize("name", ["minilm-bert2bert", "marian-small", "t5-small"])
def test_layer_groups_cover_every_parameter_and_match_the_name_rules(name):
    from tl_core.policies import group_parameters
    from tl_translation.models import seq2seq_groups

    spec = registry("backbone").get(name)
    model = spec.factory()
    static = group_parameters(model, spec.layer_groups)  # raises for a parameter in no group or in two
    dynamic = seq2seq_groups(model)
    assert [g.name for g in spec.layer_groups] == [g.name for g in dynamic] == ["embeddings", "encoder", "decoder",
                                                                                 "cross-attention"]
    for group, params, found in zip(spec.layer_groups, static, dynamic):
        assert {id(p) for p in params} == {id(p) for n, p in model.named_parameters() if n in found.prefixes}, \
            group.name


@pytest.fixture(scope="module")
def cross_attention_only(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cross"
    report = run(out, "policy.name=freeze-groups", "policy.frozen=[embeddings, encoder, decoder]")
    return out, report


def test_freeze_groups_trains_only_the_cross_attention(cross_attention_only):
    out, report = cross_attention_only
    final = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    minilm = minilm_file()
    same = changed = 0
    for key, value in final.items():
        name = key.removeprefix("backbone.")
        if "crossattention" in name:
            changed += 1
            continue
        for prefix in ("encoder.", "decoder.bert."):
            if name.startswith(prefix) and name[len(prefix):] in minilm:
                assert torch.equal(value, minilm[name[len(prefix):]]), name  # frozen: bit-identical to MiniLM
                same += 1
    assert same > 190 and changed == 60
    trainable = report["parameters"]["trainable"]
    assert 0 < trainable < report["parameters"]["total"] / 5  # only the cross-attention (about 3.6M of 49M)


def test_cross_attention_really_trained(cross_attention_only):
    from tl_translation.models import minilm_bert2bert

    out, _ = cross_attention_only
    final = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    torch.manual_seed(0)
    fresh = minilm_bert2bert().state_dict()  # the run seeded with 0 too: its initial cross-attention
    cross = [k for k in fresh if "crossattention" in k]
    assert len(cross) == 60 and all(not torch.equal(final[f"backbone.{k}"], fresh[k]) for k in cross)


def test_saved_model_reloads_with_transformers_and_translates_identically(cross_attention_only):
    out, report = cross_attention_only
    assert (out / "model" / "config.json").is_file() and not (out / "model.safetensors").exists()
    samples = report["samples"]
    assert len(samples) == 5 and all(s["source"] and s["reference"] for s in samples)
    again = reload_and_translate(out, [s["source"] for s in samples], report["generation"])
    assert again == [s["translation"] for s in samples]


def test_report_has_metrics_signatures_and_languages(cross_attention_only):
    _, report = cross_attention_only
    assert {"bleu", "chrf"} <= set(report["metrics"]["test"]) and {"bleu", "chrf"} <= set(report["metrics"]["val"])
    assert report["metric_signatures"]["chrf"].startswith("nrefs:1|case:lc")  # MiniLM is uncased
    assert "nw:2" in report["metric_signatures"]["chrf"]  # chrF++: word bigrams
    assert report["languages"] == {"source": "ny", "target": "en"}
    assert report["data"]["pairs"] == {"train": 24, "val": 6, "test": 6}
    assert report["load_report"]["weights"] == "minilm-en"


def test_marian_from_config_with_its_own_sentencepiece_vocabulary_round_trips(tmp_path):
    out = tmp_path / "marian"
    report = run(out, "backbone.name=marian-small", "backbone.weights=none", "data.options.vocab_size=400",
                 "train.lr=0.001")
    assert report["vocabulary"] == {"size": 400, "tokenizer": "MarianTokenizer"}
    assert report["metric_signatures"]["bleu"].startswith("nrefs:1|case:mixed")
    samples = report["samples"]
    assert reload_and_translate(out, [s["source"] for s in samples], report["generation"]) == \
        [s["translation"] for s in samples]


def test_metrics_are_sacrebleu_corpus_scores():
    from tl_core.train import evaluate_outputs

    refs = ["the cat sat on the mat", "in the beginning god created the heavens and the earth"]
    assert evaluate_outputs("translation", refs, refs, []) == {"bleu": pytest.approx(100.0),
                                                               "chrf": pytest.approx(100.0)}
    worse = evaluate_outputs("translation", ["the cat sat on a mat", "in the beginning god made the heavens"], refs, [])
    assert 0 < worse["bleu"] < 100 and 0 < worse["chrf"] < 100


def test_hub_model_offline_is_one_clear_error(tmp_path, capsys, monkeypatch):
    from tl_core import cli

    monkeypatch.setattr(sys, "argv", ["tl", "run", "translation/minilm-ny-en", "--out", str(tmp_path / "r"),
                                      "--set", "backbone.name=opus-mt", "--set", "backbone.weights=mul-en", *
                                      [x for s in TINY for x in ("--set", s)]])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and "Traceback" not in err
    assert "backbone opus-mt weights mul-en (Helsinki-NLP/opus-mt-mul-en) is not in the local Hugging Face cache" in err
    assert "save_pretrained" in err and not (tmp_path / "r" / "report.json").exists()


def test_unknown_language_code_of_a_multilingual_model_suggests_the_right_one():
    from tl_core.errors import TLError
    from tl_translation.models import check_language

    with pytest.raises(TLError, match=r"nllb-200 has no language code 'ny' .*did you mean 'nya_Latn'"):
        check_language("nllb-200", "ny", "source")
    with pytest.raises(TLError, match=r"data.options.target_lang: mbart-50 has no language code 'english'"):
        check_language("mbart-50", "english", "target")
    check_language("nllb-200", "nya_Latn", "source")
    check_language("m2m100", "en", "target")
    check_language("marian-small", "anything", "source")  # a bilingual model has no codes to check


def test_a_classification_backbone_for_translation_is_a_clear_error():
    from tl_core.errors import TLError
    from tl_translation.models import build

    recipe = SimpleNamespace(backbone=SimpleNamespace(name="mobilenet_v2", weights="none"),
                             head=SimpleNamespace(name="seq2seq", options={}))
    with pytest.raises(TLError, match="backbone 'mobilenet_v2' is not a translation model; translation backbones: "
                                      "minilm-bert2bert, bert2bert, marian-small, opus-mt"):
        build(recipe, SimpleNamespace(options=None))


def tl(*args, monkeypatch, capsys) -> tuple[int, str, str]:
    from tl_core import cli

    monkeypatch.setattr(sys, "argv", ["tl", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tl_evaluate_scores_a_run_on_any_aligned_file(cross_attention_only, tmp_path, monkeypatch, capsys):
    from tl_translation.formats import Pair, write_tsv
    from tl_translation.train import metrics

    out, report = cross_attention_only
    samples = report["samples"]
    data = write_tsv([Pair(s["source"], s["reference"], "") for s in samples], tmp_path / "held-out.tsv")
    code, stdout, stderr = tl("evaluate", out, "--data", data, "--json", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["items"] == 5 and result["unit"] == "sentence pairs"
    assert [s["translation"] for s in result["samples"]] == [s["translation"] for s in samples]
    expected = metrics([s["translation"] for s in samples], [s["reference"].lower() for s in samples])
    assert result["metrics"] == pytest.approx(expected)
    assert (out / "evaluations" / "held-out.tsv.json").is_file()


def test_a_tokenizer_that_is_not_the_models_is_refused(cross_attention_only, tmp_path, monkeypatch, capsys):
    import shutil

    from transformers import AutoTokenizer

    out, _ = cross_attention_only
    other = tmp_path / "mismatched"
    shutil.copytree(out / "model", other)
    tokenizer = AutoTokenizer.from_pretrained(str(other))
    tokenizer.add_tokens(["mwana", "dziko", "ambuye"])
    tokenizer.save_pretrained(str(other))
    code, _, err = tl("run", "translation/minilm-ny-en", "--out", tmp_path / "r", "--set",
                      f"backbone.weights={other}", *[x for s in TINY for x in ("--set", s)],
                      monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "\n" not in err.strip()
    assert "has 30525 tokens but the model's embeddings have 30522 rows: they are not a pair" in err


def test_misaligned_moses_files_stop_the_run_with_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "corpus.ny").write_text("Moni\nZikomo\nInde\n", encoding="utf-8")
    (tmp_path / "corpus.en").write_text("Hello\nThank you\n", encoding="utf-8")
    code, _, err = tl("run", "translation/minilm-ny-en", "--out", tmp_path / "r", "--set", "data.format=moses",
                      "--set", f"data.path={tmp_path / 'corpus'}", "--set", "data.options.source_lang=ny",
                      "--set", "data.options.target_lang=en", *[x for s in TINY for x in ("--set", s)],
                      monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "\n" not in err.strip() and "Traceback" not in err
    assert "corpus.ny" in err and "corpus.en" in err and "3" in err and "2" in err
    assert not (tmp_path / "r").exists() or not (tmp_path / "r" / "report.json").exists()


def test_parent_to_child_starts_the_child_from_the_parents_model_and_vocabulary(tmp_path):
    from safetensors.torch import load_file

    parent = tmp_path / "parent"
    run(parent, "data.options.vocab_size=300", "train.lr=0.001", recipe="translation/marian-parent-en-ny")
    child = tmp_path / "child"
    report = run(child, f"backbone.weights={parent}", "policy.name=freeze-groups", "policy.frozen=[embeddings]",
                 recipe="translation/marian-child-ny-en")
    assert report["load_report"]["file"] == str(parent / "model")
    assert (child / "model" / "source.spm").read_bytes() == (parent / "model" / "source.spm").read_bytes()
    before, after = load_file(str(parent / "model" / "model.safetensors")), load_file(
        str(child / "model" / "model.safetensors"))
    assert torch.equal(before["model.shared.weight"], after["model.shared.weight"])  # frozen: the parent's rows
    trained = [k for k in before if "encoder.layers.0" in k and k.endswith("weight")]
    assert trained and all(not torch.equal(before[k], after[k]) for k in trained)  # and the child trained on them


@pytest.mark.parametrize("name", ["translation/minilm-ny-en", "translation/minilm-ny-en-vocab",
                                  "translation/opus-mt-ny-en",
                                  "translation/marian-parent-en-ny", "translation/marian-child-ny-en"])
def test_shipped_recipes_validate(name):
    from tl_core.recipe import load_recipe

    recipe = load_recipe(name)
    assert recipe.task == "translation" and recipe.train.metric == "chrf"


def test_the_hub_recipe_offline_names_the_model_and_the_way_out(tmp_path, monkeypatch, capsys):
    code, _, err = tl("run", "translation/opus-mt-ny-en", "--out", tmp_path / "r", "--set", "data.options.limit=8",
                      monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "(Helsinki-NLP/opus-mt-mul-en) is not in the local Hugging Face cache" in err


_INITIAL: dict[str, torch.Tensor] = {}


def initial_minilm_state() -> dict[str, torch.Tensor]:
    """The exact parameters a seed-0 minilm-ny-en run starts from: seeded random init, then MiniLM loaded over
    it. Tied weights appear once, under their first name (the output layer shares the decoder's embeddings)."""
    if not _INITIAL:
        from tl_core.weights import load_into
        from tl_translation.models import minilm_bert2bert

        torch.manual_seed(0)
        model = minilm_bert2bert()
        load_into(model, registry("backbone").get("minilm-bert2bert").weights_entry("minilm-en"))
        _INITIAL.update({k: v.detach().clone() for k, v in model.named_parameters()})
    return _INITIAL


@pytest.mark.parametrize("frozen", [["embeddings"], ["encoder"], ["decoder"], ["embeddings", "encoder"]])
def test_partial_freezing_keeps_exactly_the_named_groups(frozen, tmp_path):
    from tl_translation.models import group_of

    out = tmp_path / "run"
    run(out, "policy.name=freeze-groups", f"policy.frozen=[{', '.join(frozen)}]")
    final = {k.removeprefix("backbone."): v for k, v in
             torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"].items()}
    start = initial_minilm_state()
    moved = {g: [] for g in ("embeddings", "encoder", "decoder", "cross-attention")}
    for name, value in final.items():
        if name in start and value.is_floating_point() and not name.endswith("position_ids"):
            moved[group_of(name)].append(not torch.equal(value, start[name]))
    for group, changes in moved.items():
        if group in frozen:
            assert not any(changes), f"{group} is frozen but changed"
        else:
            assert sum(changes) > len(changes) / 2, f"{group} should have trained"


def test_lora_policy_trains_adapters_only_and_saves_adapter_and_merged_model(tmp_path):
    from tl_translation.adapters import load_with_adapters
    from tl_translation.models import minilm_bert2bert

    out = tmp_path / "lora"
    report = run(out, "policy.name=lora", "policy.r=4", "train.lr=0.01")
    final = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    start = initial_minilm_state()
    base = adapters = 0
    for key, value in final.items():
        name = key.removeprefix("backbone.base_model.model.")
        if "lora_" in name:
            adapters += 1
        elif name.replace(".base_layer", "") in start:
            assert torch.equal(value, start[name.replace(".base_layer", "")]), name  # the base stays as it was
            base += 1
    assert adapters > 0 and base > 200
    assert report["parameters"]["trainable"] < report["parameters"]["total"] / 50
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "model" / "config.json").is_file()
    sources = [s["source"] for s in report["samples"]]
    merged = reload_and_translate(out, sources, report["generation"])
    assert merged == [s["translation"] for s in report["samples"]]  # RUN/model: the adapters merged in
    fresh = minilm_bert2bert()
    fresh.load_state_dict(start, strict=False)  # the base the adapter was trained on
    from tl_translation.models import _configure

    adapted, tokenizer = load_with_adapters(fresh, out / "adapter")
    _configure(adapted.get_base_model(), tokenizer)
    enc = tokenizer(sources, padding=True, return_tensors="pt")
    with torch.no_grad():
        ids = adapted.generate(**enc, num_beams=1, max_new_tokens=report["generation"]["max_new_tokens"])
    again = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True,
                                                       clean_up_tokenization_spaces=True)]
    assert again == merged  # RUN/adapter on the base gives the same translations


def test_vocabulary_extension_in_a_run_keeps_old_rows_and_reloads_with_its_new_tokens(tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    out = tmp_path / "extended"
    report = run(out, "head.extend_vocab=300", "head.freeze_old_rows=true", "train.lr=0.001")
    ext = report["vocabulary"]["extension"]
    assert ext["added"] > 20 and ext["new_size"] == ext["old_size"] + ext["added"] == report["vocabulary"]["size"]
    assert ext["frozen_old_rows"] and ext["method"] == "added-tokens"
    tokenizer = AutoTokenizer.from_pretrained(str(out / "model"))
    word, pieces = next(iter(ext["examples"].items()))
    assert len(pieces) >= 2 and tokenizer.tokenize(word) == [word]  # was several WordPieces, now one token
    saved = load_file(str(out / "model" / "model.safetensors"))
    minilm = minilm_file()["embeddings.word_embeddings.weight"]
    for side in ("encoder.embeddings", "decoder.bert.embeddings"):
        rows = saved[f"{side}.word_embeddings.weight"]
        assert rows.shape[0] == ext["new_size"]
        assert torch.equal(rows[:ext["old_size"]], minilm)  # old rows: exactly MiniLM's, after training
    samples = report["samples"]
    assert reload_and_translate(out, [s["source"] for s in samples], report["generation"]) == \
        [s["translation"] for s in samples]
