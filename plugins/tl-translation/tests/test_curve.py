"""``tl curve`` on translation: a shot is one sentence pair (no classes), a seeded choice of the training pairs;
val and test stay whole, a shot beyond the training split is capped and said. The child recipe on the tiny
Marian of test_hostile (transfer) against a marian-small from config whose sentencepiece vocabulary is trained on
the cut pairs alone (scratch), one epoch per side and point."""

from __future__ import annotations

import json

from test_hostile import EN, NY, lines, tiny  # noqa: F401  (tiny: test_hostile's tiny Marian model folder fixture)

from tl_translation.data import TranslationData, TranslationOptions
from tl_translation.formats import Pair

CHILD = "translation/marian-child-ny-en"


def test_tl_curve_cuts_the_training_pairs_and_keeps_val_and_test(tl_cli, tiny, tmp_path):  # noqa: F811
    train = lines(tmp_path / "train.tsv", [f"{s}\t{t}" for s, t in zip(NY * 2, EN * 2)])  # 12 pairs: 9 train, 3 val
    test = lines(tmp_path / "test.tsv", [f"{s}\t{t}" for s, t in zip(NY, EN)])
    sets = ["data.format=tsv", f"data.path={train}", f"data.test_path={test}", "data.val_fraction=0.25",
            f"backbone.weights={tiny}", "train.epochs=1", "train.batch_size=4", "head.num_beams=1",
            "head.max_new_tokens=8", "data.options.max_source_tokens=16", "data.options.max_target_tokens=16",
            "data.options.vocab_size=100", "compare.scratch_search=false"]
    out = tmp_path / "curve"
    code, printed, err = tl_cli("curve", CHILD, "--shots", "50,2,all", "--out", out,
                                *[x for s in sets for x in ("--set", s)], "--quiet")
    assert code == 0, err
    summary = json.loads((out / "curve.json").read_text())
    assert summary["unit"] == "pairs" and summary["metric"] == "chrf" and summary["split"] == "test"
    points = summary["points"]
    assert [p["shots"] for p in points] == [2, 50, None]
    assert [p["train_items"] for p in points] == [2, 9, 9]
    assert [p["unit"] for p in points] == ["pairs", "pairs", "all"]
    assert points[1]["capped"] == ["the training pairs (9)"] and not points[0]["capped"]
    assert "shots-50: the training pairs (9)" in " ".join(printed.split())
    trained = []
    for p in points:
        report = json.loads((out / p["run"] / "report.json").read_text())
        assert report["data"]["pairs"] == {"train": p["train_items"], "val": 3, "test": 6}  # val and test whole
        assert report["metrics"]["test"]["chrf"] == p["transfer"]
        assert report["scratch"]["metrics"]["test"]["chrf"] == p["scratch"]
        assert isinstance(p["transfer"], float) and isinstance(p["scratch"], float) and p["verdict"]
        assert report["shots"]["items"] == p["train_items"]
        trained.append(report["scratch"]["vocabulary"]["size"])
    assert trained[0] < trained[2]  # scratch's own vocabulary comes from the 2 pairs it trains on, not all 9
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_shots_is_a_seeded_choice_of_pairs_that_leaves_the_rest_alone():
    pairs = [Pair(f"s{i}", f"t{i}", f"f:{i}") for i in range(10)]
    data = TranslationData(pairs, pairs[:2], pairs[2:4], TranslationOptions(source_lang="ny", target_lang="en"),
                           skipped=["f:11: empty; skipped"], counts={"truncated": 1}, source="f")
    cut, info = data.with_shots(4, seed=3)
    assert info == {"unit": "pairs", "items": 4, "capped": []}
    assert len(cut.train) == 4 and set(cut.train) <= set(pairs)
    assert [pairs.index(p) for p in cut.train] == sorted(pairs.index(p) for p in cut.train)  # order as read
    assert cut.train == data.with_shots(4, seed=3)[0].train and cut.train != data.with_shots(4, seed=4)[0].train
    assert set(data.with_shots(2, seed=3)[0].train) <= set(cut.train)  # a smaller cut lies inside a larger one
    assert (cut.val, cut.test, cut.options, cut.skipped, cut.counts, cut.source) == \
        (data.val, data.test, data.options, data.skipped, data.counts, data.source)
    assert len(data.train) == 10 and cut.skipped is not data.skipped  # the data read is not changed
    assert cut.summary()["pairs"] == {"train": 4, "val": 2, "test": 2}
    whole, info = data.with_shots(11, seed=3)
    assert whole.train == pairs and info == {"unit": "pairs", "items": 10, "capped": ["the training pairs (10)"]}
