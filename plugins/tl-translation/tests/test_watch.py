"""The degenerate-output watch: a model whose translations hardly depend on their input is flagged in report.json
and under ``tl report``'s table whatever its chrF; one whose translations vary with the input is not. The runs are
the tiny Marian of test_hostile on six sentence pairs, its generation replaced by a model that writes one fluent
sentence whatever the input, or by one that echoes its input; the rule itself is tested on hand-made lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_hostile import EN, NY, lines, tiny  # noqa: F401  (tiny: test_hostile's tiny Marian model folder fixture)

from tl_translation.watches import SIMILARITY_GAP, add_watch, degenerate_output, output_spread

CHILD = "translation/marian-child-ny-en"
SAME = "And the LORD spake unto Moses, saying,"


def run_args(folder: Path, model: Path, out: Path) -> list[str]:
    train = lines(folder / "train.tsv", [f"{s}\t{t}" for s, t in zip(NY * 2, EN * 2)])
    test = lines(folder / "test.tsv", [f"{s}\t{t}" for s, t in zip(NY, EN)])
    sets = ["data.format=tsv", f"data.path={train}", f"data.test_path={test}", f"backbone.weights={model}",
            "train.epochs=1", "train.batch_size=4", "head.num_beams=1", "head.max_new_tokens=8",
            "compare.scratch=false", "data.val_fraction=0.25"]
    return ["run", CHILD, "--out", str(out), *[x for s in sets for x in ("--set", s)]]


def flat(text: str) -> str:
    """Console text with rich's line wrapping undone."""
    return " ".join(text.split())


def test_one_sentence_whatever_the_input_is_flagged(tl_cli, tiny, tmp_path, monkeypatch):  # noqa: F811
    import tl_translation.train as train

    monkeypatch.setattr(train, "translate", lambda hf, tokenizer, inputs, generation:
                        [SAME] * len(inputs["input_ids"]))
    out = tmp_path / "run"
    code, printed, err = tl_cli(*run_args(tmp_path, tiny, out))
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    [watch] = [w for w in report["watches"] if w["name"] == "degenerate-output"]
    assert watch["flagged"] is True and watch["split"] == "test" and watch["inputs"] == 6
    assert watch["distinct_outputs"] == 1 and watch["distinct_references"] == 6
    assert watch["output_similarity"] == 100.0 and watch["reference_similarity"] < 40
    assert watch["most_common_output"] == SAME.lower() and watch["most_common_count"] == 6
    assert f"watch: {watch['message']}" in flat(printed)  # tl run prints it under its table
    code, shown, _ = tl_cli("report", out)
    assert code == 0
    assert f"watch: {watch['message']}" in flat(shown)
    assert "hardly depend on the input" in watch["message"] and "1 distinct translations of 6" in watch["message"]


def test_a_model_whose_outputs_follow_the_input_is_not_flagged(tl_cli, tiny, tmp_path, monkeypatch):  # noqa: F811
    import tl_translation.train as train

    def echo(hf, tokenizer, inputs, generation):  # copies its input: wrong language, but it depends on the input
        return [t.strip() for t in tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True)]

    monkeypatch.setattr(train, "translate", echo)
    out = tmp_path / "run"
    code, printed, err = tl_cli(*run_args(tmp_path, tiny, out))
    assert code == 0, err
    assert "watch:" not in printed
    [watch] = json.loads((out / "report.json").read_text())["watches"]
    assert watch["flagged"] is False and watch["distinct_outputs"] == 6
    assert "outputs vary with the input" in watch["message"]
    code, shown, _ = tl_cli("report", out)
    assert code == 0 and "watch:" not in shown


REFS = ["In the beginning God created the heavens and the earth.", "Jesus wept.",
        "The Lord is my shepherd; I shall not want.", "Blessed are the meek, for they shall inherit the earth.",
        "Love is patient and kind.", "Ruth said, Where you go, I will go."]
SRC = [f"source {i}" for i in range(len(REFS))]


def test_the_rule_on_hand_made_outputs():
    honest = ["In the beginning God made heaven and earth.", "Jesus cried.", "The Lord is my shepherd.",
              "Happy are the gentle, they will have the land.", "Love is patient.", "Ruth said: where you go I go."]
    fine = degenerate_output(SRC, honest, REFS, "test")
    assert fine["flagged"] is False
    assert abs(fine["output_similarity"] - fine["reference_similarity"]) < 10

    same = degenerate_output(SRC, ["And the LORD said unto Moses."] * 6, REFS, "test")
    assert same["flagged"] is True and same["distinct_outputs"] == 1 and same["output_similarity"] == 100.0

    # all different, but one template: caught by the pairwise chrF, not by the count of distinct outputs
    template = [f"And the LORD said unto {name}." for name in ("Moses", "Aaron", "Joshua", "Samuel", "David",
                                                               "Elijah")]
    near = degenerate_output(SRC, template, REFS, "val")
    assert near["distinct_outputs"] == 6 and near["flagged"] is True
    assert near["output_similarity"] - near["reference_similarity"] >= SIMILARITY_GAP

    # references that are themselves one sentence: outputs as alike as they are is not degenerate
    assert degenerate_output(SRC, ["Amen."] * 6, ["Amen."] * 6, "test")["flagged"] is False


def test_repeated_inputs_count_once_and_too_few_are_not_measured():
    spread = output_spread(["a", "A ", "b", "c"], ["x", "x", "y", "z"], ["p", "p", "q", "r"])
    assert spread["inputs"] == 3 and spread["distinct_outputs"] == 3  # "a" and "A " are one input
    few = degenerate_output(["a", "b"], ["x", "x"], ["p", "q"], "val")
    assert few["flagged"] is False and "not measured" in few["message"]
    info = {"watches": [{"name": "other", "flagged": False, "message": ""}]}
    add_watch(info, few)
    assert [w["name"] for w in info["watches"]] == ["other", "degenerate-output"]


def test_many_inputs_are_compared_on_a_seeded_sample_of_pairs():
    from tl_translation.watches import PAIRS

    sources = [f"s{i}" for i in range(100)]  # 4,950 pairs
    first = output_spread(sources, [f"output {i}" for i in range(100)], [f"ref {i}" for i in range(100)])
    again = output_spread(sources, [f"output {i}" for i in range(100)], [f"ref {i}" for i in range(100)])
    assert first["pairs"] == PAIRS and first == again


@pytest.mark.parametrize("outputs", [["", "", ""], [" ", "\t", ""]])
def test_empty_translations_are_one_output(outputs):
    watch = degenerate_output(["a", "b", "c"], outputs, ["p q", "r s", "t u"], "test")
    assert watch["flagged"] is True and watch["distinct_outputs"] == 1


def test_the_watch_reads_the_translations_the_trainer_scored_and_generates_only_what_is_missing(monkeypatch):
    from types import SimpleNamespace

    import tl_translation.train as train
    from tl_translation.formats import Pair

    pairs = [Pair(s, t, "") for s, t in zip(NY, EN)]
    data = SimpleNamespace(test=pairs, val=pairs[:2])
    again: list[list[str]] = []

    def translate_texts(hf, tokenizer, generation, sources, batch_size=16):
        again.append(sources)
        return list(EN)  # a perfect model

    monkeypatch.setattr(train, "translate_texts", translate_texts)
    bundle = SimpleNamespace(hf_model=None, tokenizer=None, generation=None)
    assert train.degenerate_output_watch(bundle, data, pairs, [SAME] * 6)["flagged"] is True
    assert again == []  # the trainer's last six translations are the test split's: nothing generated again
    assert train.degenerate_output_watch(bundle, data, pairs, [SAME] * 2)["flagged"] is False
    assert again == [NY]  # too few kept (another process had the rest): the split translated whole
