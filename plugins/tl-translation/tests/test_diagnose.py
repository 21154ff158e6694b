"""``tl diagnose`` for translation: the plugin's ``tl_extract_features`` gives mean encoder states of the training
and validation source sentences (never test) and a model-independent hashed bag of each target sentence's words,
which the core scores with LogME's regression form, pre-trained against random init. Kept fast: the real MiniLM
recipe on 30 verse pairs, and a tiny decoder-only model built from its config."""

from __future__ import annotations

import json
import zlib
from types import SimpleNamespace

import pytest
import torch

from tl_core import hookimpl

TINY = ["data.options.limit=24", "data.options.test_limit=6", "data.options.max_source_tokens=40",
        "data.options.max_target_tokens=40", "train.batch_size=8"]


def no_nan(text: str) -> dict:
    """JSON as a strict parser reads it: NaN or Infinity anywhere is an error."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in tl diagnose --json")

    return json.loads(text, parse_constant=refuse)


def test_tl_diagnose_scores_minilm_and_its_random_twin_on_the_train_and_val_pairs(tl_cli, tl_plugin):
    answers: list[tuple[str, object]] = []

    class Spy:  # sees each FeatureSet the plugin answers, as the core receives it
        @hookimpl(wrapper=True)
        def tl_extract_features(self, recipe, model, data, progress):
            answer = yield
            answers.append((recipe.backbone.weights, answer))
            return answer

    tl_plugin(Spy(), "spy")
    code, out, err = tl_cli("diagnose", "translation/minilm-ny-en", *[x for s in TINY for x in ("--set", s)],
                            "--json")
    assert code == 0, err
    result = no_nan(out)
    assert result["task"] == "translation" and result["unit"] == "sentence pairs"
    assert result["items"] == 24 + 6  # train + val pairs; the 6 test pairs are never looked at
    assert result["classes"] is None
    [candidate] = result["candidates"]
    assert candidate["backbone"] == "minilm-bert2bert" and candidate["weights"] == "minilm-en"
    assert candidate["feature_dim"] == 384 and "encoder" in candidate["how"] and "64 buckets" in candidate["how"]
    assert isinstance(candidate["scores"]["logme"], float)
    assert isinstance(candidate["random_init"]["scores"]["logme"], float)
    assert candidate["transfer_gain"]["measure"] == "LogME"
    assert candidate["shift"] is None  # no reference sample of MiniLM's own training text ships offline
    advice = result["recommendation"]
    assert advice["backbone"] == "minilm-bert2bert" and advice["policy"] and advice["why"]

    assert [weights for weights, _ in answers] == ["minilm-en", "none"]  # pre-trained, then its random-init twin
    (_, pre), (_, twin) = answers
    for answer in (pre, twin):
        assert answer.unit == "sentence pairs" and answer.labels is None and answer.reference is None
        assert tuple(answer.features.shape) == (30, 384) and tuple(answer.targets.shape) == (30, 64)
        assert bool(torch.isfinite(answer.features).all())
    assert torch.equal(pre.targets, twin.targets)  # the same targets for every candidate: their scores compare
    assert not torch.allclose(pre.features, twin.features)  # MiniLM's weights, not the random init, made them


def test_targets_are_hashed_bags_of_lowercased_words():
    from tl_translation.features import BUCKETS, target_bags

    bags = target_bags(["The LORD said", "the lord said!", "lord lord", ""])
    assert bags.shape == (4, BUCKETS)
    assert torch.equal(bags[0], bags[1])  # case and punctuation do not count
    assert torch.allclose(bags[:3].norm(dim=1), torch.ones(3))
    assert bags[2, zlib.crc32(b"lord") % BUCKETS] == pytest.approx(1.0)  # a stable hash, not Python's salted one
    assert not bags[3].any()  # no words: zeros, not NaN


def test_a_model_without_an_encoder_gives_its_own_last_states_and_says_so():
    """A decoder-only model (a tiny GPT-2 from config) in a Translator: the closest honest features, said in how."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from tl_core.api import BuiltBackbone
    from tl_core.plugins import hook, registry
    from tl_translation.data import TranslationOptions
    from tl_translation.formats import Pair
    from tl_translation.models import Translator, wrap
    from tl_translation.vocab import train_tokenizer

    ny = ["Moni, muli bwanji?", "Zikomo kwambiri.", "Mwana wanga ali kusukulu.", "Tikupita kumsika mawa.",
          "Dzina langa ndine Chikondi."]
    en = ["Hello, how are you?", "Thank you very much.", "My child is at school.", "We are going to the market.",
          "My name is Chikondi."]
    tokenizer = train_tokenizer(ny + en, 100, "ny", "en")
    torch.manual_seed(0)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=64))
    bundle = Translator(wrap(gpt), BuiltBackbone(gpt, registry("backbone").get("marian-small"), None, None),
                        tokenizer)
    pairs = [Pair(s, t, "") for s, t in zip(ny, en)]
    data = SimpleNamespace(train=pairs[:3], val=pairs[3:], test=[Pair("x", "y", "")],
                           options=TranslationOptions(max_source_tokens=16))
    recipe = SimpleNamespace(task="translation", train=SimpleNamespace(device="cpu", batch_size=2))
    seen: list[int] = []
    answer = hook().tl_extract_features(recipe=recipe, model=bundle, data=data, progress=seen.append)
    assert seen == [2, 2, 1]  # every batch reported
    assert tuple(answer.features.shape) == (5, 16) and tuple(answer.targets.shape) == (5, 64)
    assert answer.how.startswith("no encoder (decoder-only model)")
