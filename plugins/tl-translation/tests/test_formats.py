"""Parallel-text readers: TSV, Moses and JSONL files written here, with the problems users' files have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tl_core.errors import DataError
from tl_translation.formats import Pair, read_pairs, write_tsv

NY = [
    "Moni, muli bwanji?",
    "Ndili bwino, zikomo kwambiri.",
    "Dzina langa ndine Chikondi.",
    "Kodi mumalankhula Chingerezi?",
]
EN = [
    "Hello, how are you?",
    "I am fine, thank you very much.",
    "My name is Chikondi.",
    "Do you speak English?",
]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the three formats


def test_tsv_reads_pairs_with_origins_and_skips_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", ["source\ttarget"] + [f"{s}\t{t}" for s, t in zip(NY, EN)])
    got = read_pairs(path, "tsv")
    assert [(p.source, p.target) for p in got.pairs] == list(zip(NY, EN))
    assert got.pairs[0].origin == f"{path}:2"  # line 1 is the header
    assert got.skipped == [] and sum(got.counts.values()) == 0


def test_tsv_header_of_language_codes_is_ignored_and_sides_are_stripped(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", ["ny\ten", f"  {NY[0]} \t {EN[0]}  ", f"{NY[1]}\t{EN[1]}\r"])
    got = read_pairs(path, "tsv", source_lang="ny", target_lang="en")
    assert [(p.source, p.target) for p in got.pairs] == list(zip(NY[:2], EN[:2]))
    # without the codes, "ny<TAB>en" is an ordinary pair
    assert len(read_pairs(path, "tsv")) == 3


def test_moses_pairs_aligned_files_from_prefix_or_either_file(tmp_path: Path) -> None:
    write(tmp_path / "corpus.ny", NY)
    write(tmp_path / "corpus.en", EN)
    for given in ("corpus", "corpus.ny", "corpus.en"):
        got = read_pairs(tmp_path / given, "moses", source_lang="ny", target_lang="en")
        assert [(p.source, p.target) for p in got.pairs] == list(zip(NY, EN)), given
        assert got.pairs[2].origin == f"{tmp_path / 'corpus.ny'}:3"


def test_moses_files_of_different_lengths_are_an_error_naming_both(tmp_path: Path) -> None:
    write(tmp_path / "corpus.ny", NY)
    write(tmp_path / "corpus.en", EN[:3])
    with pytest.raises(DataError) as err:
        read_pairs(tmp_path / "corpus", "moses", source_lang="ny", target_lang="en")  # not strict: still an error
    message = str(err.value)
    assert "corpus.ny has 4 lines" in message and "corpus.en has 3" in message
    assert "\n" not in message


def test_moses_empty_target_is_reported_at_the_target_file(tmp_path: Path) -> None:
    write(tmp_path / "corpus.ny", NY)
    write(tmp_path / "corpus.en", [EN[0], "   ", EN[2], EN[3]])
    got = read_pairs(tmp_path / "corpus", "moses", source_lang="ny", target_lang="en")
    assert len(got) == 3
    assert got.skipped == [f"{tmp_path / 'corpus.en'}:2: empty target; skipped"]


def test_moses_needs_the_languages_and_both_files(tmp_path: Path) -> None:
    write(tmp_path / "corpus.ny", NY)
    with pytest.raises(DataError, match="source_lang and target_lang"):
        read_pairs(tmp_path / "corpus", "moses")
    with pytest.raises(DataError, match=r"corpus\.en not found"):
        read_pairs(tmp_path / "corpus", "moses", source_lang="ny", target_lang="en")


def test_jsonl_source_target_objects(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", [json.dumps({"source": s, "target": t}) for s, t in zip(NY, EN)])
    got = read_pairs(path, "jsonl")
    assert [(p.source, p.target) for p in got.pairs] == list(zip(NY, EN))
    assert got.pairs[-1].origin == f"{path}:4"


def test_jsonl_hugging_face_translation_objects_use_the_language_codes(tmp_path: Path) -> None:
    lines = [json.dumps({"id": str(i), "translation": {"en": t, "ny": s}}, ensure_ascii=False)
             for i, (s, t) in enumerate(zip(NY, EN))]
    path = write(tmp_path / "hf.jsonl", lines)
    got = read_pairs(path, "jsonl", source_lang="ny", target_lang="en")
    assert [(p.source, p.target) for p in got.pairs] == list(zip(NY, EN))
    reverse = read_pairs(path, "jsonl", source_lang="en", target_lang="ny")
    assert reverse.pairs[0] == Pair(EN[0], NY[0], f"{path}:1")
    with pytest.raises(DataError, match="need source_lang and target_lang"):
        read_pairs(path, "jsonl")


def test_jsonl_with_a_language_the_objects_lack_reports_every_line(tmp_path: Path) -> None:
    path = write(tmp_path / "hf.jsonl", [json.dumps({"translation": {"en": t, "ny": s}}) for s, t in zip(NY, EN)])
    with pytest.raises(DataError) as err:
        read_pairs(path, "jsonl", source_lang="ny", target_lang="fr")
    assert "no sentence pairs" in str(err.value) and "4 lines skipped" in str(err.value)
    assert f"{path}:1: 'translation' has no 'fr' key (has 'en', 'ny')" in str(err.value)


# ---------------------------------------------------------------- problems: malformed, empty, strict


def test_malformed_tsv_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", [
        f"{NY[0]}\t{EN[0]}",
        f"{NY[1]} {EN[1]}",  # the tab became a space
        f"{NY[2]}\t{EN[2]}\textra",
        f"{NY[3]}\t{EN[3]}",
    ])
    got = read_pairs(path, "tsv")
    assert [p.source for p in got.pairs] == [NY[0], NY[3]]
    assert got.counts["malformed"] == 2
    assert got.skipped == [
        f"{path}:2: 1 tab-separated fields, expected 2 (source<TAB>target); skipped",
        f"{path}:3: 3 tab-separated fields, expected 2 (source<TAB>target); skipped",
    ]


def test_malformed_jsonl_lines_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "train.jsonl", [
        json.dumps({"source": NY[0], "target": EN[0]}),
        '{"source": "Moni", "target": ',  # cut short
        json.dumps({"source": NY[2]}),
        json.dumps([NY[3], EN[3]]),
        json.dumps({"source": NY[1], "target": 7}),
    ])
    got = read_pairs(path, "jsonl")
    assert len(got) == 1 and got.counts["malformed"] == 4
    assert got.skipped[0].startswith(f"{path}:2: not valid JSON")
    assert got.skipped[1] == f"{path}:3: has no 'target' key (has 'source'); skipped"
    assert got.skipped[2] == f"{path}:4: a JSON array, expected an object; skipped"
    assert got.skipped[3] == f"{path}:5: 'target' is a JSON number, expected a string; skipped"


def test_empty_sides_are_skipped_counted_and_named(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", [
        f"{NY[0]}\t{EN[0]}",
        f"{NY[1]}\t   ",
        f"\t{EN[2]}",
        "",
        f"{NY[3]}\t{EN[3]}",
        "",  # trailing blank lines are an editor's, not a problem
    ])
    got = read_pairs(path, "tsv")
    assert [p.source for p in got.pairs] == [NY[0], NY[3]]
    assert got.counts["empty"] == 3
    assert got.skipped == [
        f"{path}:2: empty target; skipped",
        f"{path}:3: empty source; skipped",
        f"{path}:4: empty line; skipped",
    ]


def test_strict_raises_on_the_first_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", [f"{NY[0]}\t{EN[0]}", f"{NY[1]}\t", f"{NY[2]}"])
    with pytest.raises(DataError) as err:
        read_pairs(path, "tsv", strict=True)
    assert str(err.value).startswith(f"{path}:2: empty target;")
    assert "set data.strict: false" in str(err.value)
    lenient = read_pairs(path, "tsv")
    assert len(lenient) == 1 and lenient.counts == {"empty": 1, "malformed": 1, "truncated": 0, "dropped_long": 0}


# ---------------------------------------------------------------- over-long pairs


def test_truncate_shortens_long_sides_and_drop_leaves_them_out(tmp_path: Path) -> None:
    long_ny = "Pachiyambi Mulungu adalenga kumwamba ndi dziko lapansi."  # 8 words
    long_en = "In the beginning God created the heavens and the earth."  # 10 words
    path = write(tmp_path / "train.tsv", [f"{NY[2]}\t{EN[2]}", f"{long_ny}\t{long_en}", f"{NY[0]}\t{EN[0]}"])

    truncated = read_pairs(path, "tsv", max_words=4, long="truncate")
    assert len(truncated) == 3 and truncated.counts["truncated"] == 1  # a pair, counted once for both sides
    cut = truncated.pairs[1]
    assert cut.source == "Pachiyambi Mulungu adalenga kumwamba" and cut.target == "In the beginning God"
    assert truncated.pairs[0].target == EN[2] and truncated.pairs[2].target == EN[0]  # 4 words: kept whole
    assert truncated.skipped == []

    dropped = read_pairs(path, "tsv", max_words=4, long="drop")
    assert [p.source for p in dropped.pairs] == [NY[2], NY[0]]
    assert dropped.counts["dropped_long"] == 1 and dropped.counts["truncated"] == 0

    # a chosen policy, not a problem: strict does not raise
    assert len(read_pairs(path, "tsv", max_words=4, long="drop", strict=True)) == 2
    # every pair over the limit: nothing left is an error that says why
    with pytest.raises(DataError, match=r"3 pairs over max_words=2 dropped"):
        read_pairs(path, "tsv", max_words=2, long="drop")


def test_bad_options_are_one_line_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", [f"{NY[0]}\t{EN[0]}"])
    with pytest.raises(DataError, match="did you mean 'tsv'"):
        read_pairs(path, "tvs")
    with pytest.raises(DataError, match="over-long policy 'cut'"):
        read_pairs(path, "tsv", long="cut")
    with pytest.raises(DataError, match="max_words"):
        read_pairs(path, "tsv", max_words=0)


# ---------------------------------------------------------------- files that cannot be used


def test_missing_file_names_the_path_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        read_pairs(tmp_path / "nope.tsv", "tsv")
    assert str(err.value) == (f"data path {tmp_path / 'nope.tsv'} does not exist; "
                              "expected a UTF-8 text file of source<TAB>target lines")


def test_a_file_without_usable_pairs_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "train.tsv", ["source\ttarget", f"{NY[0]}\t", "just one column"])
    with pytest.raises(DataError, match=r"no sentence pairs in .*train\.tsv \(2 lines skipped"):
        read_pairs(path, "tsv")


def test_not_utf8_is_a_one_line_error_naming_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.tsv"
    path.write_bytes("Moni\tHello\nMoni, muli bwanji?\tCaf\u00e9 ol\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError) as err:
        read_pairs(path, "tsv")
    assert str(err.value) == f"{path} is not UTF-8 text (byte 0xe9 on line 2); save it as UTF-8"


def test_utf8_bom_and_non_ascii_text_read_as_is(tmp_path: Path) -> None:
    path = tmp_path / "bom.tsv"
    path.write_text("\ufeffsource\ttarget\nmʼmunda “wabwino”\tthe “good” field\n", encoding="utf-8")
    got = read_pairs(path, "tsv")
    assert got.pairs == [Pair("mʼmunda “wabwino”", "the “good” field", f"{path}:2")]


# ---------------------------------------------------------------- writing


def test_write_tsv_round_trips_through_read_pairs(tmp_path: Path) -> None:
    pairs = [Pair(s, t, f"JHN 1:{i}") for i, (s, t) in enumerate(zip(NY, EN), 1)]
    pairs.append(Pair("ndi\ttabu", "with a\nline break", "JHN 1:5"))  # would break the format if written raw
    path = write_tsv(pairs, tmp_path / "out" / "pairs.tsv")
    got = read_pairs(path, "tsv", strict=True)
    assert [(p.source, p.target) for p in got.pairs] == [(p.source, p.target) for p in pairs[:4]] + [
        ("ndi tabu", "with a line break")]
    assert path.read_text(encoding="utf-8").startswith("source\ttarget\n")
