"""Aligned parallel text: one representation (:class:`PairSet` of :class:`Pair`) and readers for three formats.

=======  ===============================================================================================================
tsv      one pair per line, ``source<TAB>target``; an optional first line ``source<TAB>target`` (or the two language
         codes, e.g. ``ny<TAB>en``) is a header and ignored
moses    two files with one sentence per line, aligned by line number: ``{prefix}.{source_lang}`` and
         ``{prefix}.{target_lang}`` (``corpus.ny`` + ``corpus.en``); ``path`` is the prefix or either of the two files
jsonl    one JSON object per line: ``{"source": ..., "target": ...}`` or, as Hugging Face ``datasets`` writes
         translation data, ``{"translation": {"<source_lang>": ..., "<target_lang>": ...}}``
=======  ===============================================================================================================

Checks, shared by all readers:

* Text is read as UTF-8 (a byte-order mark is dropped); a file that does not decode is a
  :class:`~tl_core.api.DataError` naming the file and the line. Each side is stripped of surrounding whitespace.
* A line that does not parse (a TSV line without exactly two tab-separated fields, a JSONL line that is not JSON,
  is nested too deeply to read, or is not an object with the keys and string values) is ``malformed``; a pair
  with an empty (or whitespace-only) side is ``empty``. Both are reported in ``PairSet.skipped`` as
  ``"file:line: reason; skipped"``, counted per reason in ``PairSet.counts``, and left out. With
  ``strict`` the first of them is a DataError instead: one line, naming the place and the fix.
* Over-long pairs (``max_words``: more whitespace-separated words on either side) are a chosen policy, not a problem:
  ``long="truncate"`` cuts each side to ``max_words`` words (counted as ``truncated``), ``long="drop"`` leaves the
  pair out (counted as ``dropped_long``); neither is reported line by line, and ``strict`` does not change them.
* Moses files of different line counts are a DataError even without ``strict``: the alignment is lost.
* A missing file, and a file without a single usable pair, are DataErrors.
* Blank lines at the end of a file are ignored (an editor's trailing newlines); elsewhere a blank line is ``empty``.

Nothing here imports torch or transformers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tl_core.api import DataError, did_you_mean, read_text

FORMATS = ("tsv", "moses", "jsonl")
LONG_POLICIES = ("truncate", "drop")
COUNT_KEYS = ("empty", "malformed", "truncated", "dropped_long")
_Raw = tuple[str, str, str, str | None]  # (where, source, target, where the target is when another file)
_FIX = "fix or remove the line, or set data.strict: false to skip such lines"
_EXPECTED = {
    "tsv": "a UTF-8 text file of source<TAB>target lines",
    "moses": "two aligned UTF-8 text files {prefix}.{source_lang} and {prefix}.{target_lang}, one sentence a line",
    "jsonl": 'a UTF-8 file of JSON objects, one a line: {"source": ..., "target": ...} or {"translation": {...}}',
}


@dataclass(frozen=True)
class Pair:
    """One aligned sentence pair and where it came from: ``"file:line"``, or a verse reference (``"JHN 3:16"``)."""

    source: str
    target: str
    origin: str


@dataclass
class PairSet:
    """Usable pairs, and what reading left out or changed: ``skipped`` (``"file:line: reason; skipped"`` for every
    malformed or empty line) and ``counts`` (per reason: ``empty``, ``malformed``, ``truncated``, ``dropped_long``)."""

    pairs: list[Pair]
    skipped: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def summary(self) -> dict[str, Any]:
        """JSON-able counts: pairs kept, per-reason counts and the first few skipped lines."""
        return {"pairs": len(self.pairs), **self.counts, "skipped_first": self.skipped[:5]}


class _Report:
    """Collects reported problems; with ``strict`` the first one raises."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.skipped: list[str] = []
        self.counts = dict.fromkeys(COUNT_KEYS, 0)

    def problem(self, where: str, reason: str, count_as: str) -> None:
        if self.strict:
            raise DataError(f"{where}: {reason}; {_FIX}")
        self.skipped.append(f"{where}: {reason}; skipped")
        self.counts[count_as] += 1


def read_pairs(
    path: str | Path,
    fmt: str,
    *,
    source_lang: str | None = None,
    target_lang: str | None = None,
    max_words: int | None = None,
    long: str = "truncate",
    strict: bool = False,
) -> PairSet:
    """Read aligned sentence pairs from ``path`` in format ``fmt`` (``tsv``, ``moses`` or ``jsonl``).

    ``source_lang``/``target_lang`` (e.g. ``"ny"``, ``"en"``) are needed by ``moses`` (the file suffixes) and by
    ``jsonl`` files in Hugging Face ``translation`` style; for ``tsv`` they only name an optional header line.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown parallel-text format {fmt!r}{did_you_mean(str(fmt), FORMATS)}; "
                        f"use one of {', '.join(FORMATS)}")
    if long not in LONG_POLICIES:
        raise DataError(f"unknown over-long policy {long!r}; use one of {', '.join(LONG_POLICIES)}")
    if max_words is not None and (isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1):
        raise DataError(f"max_words must be a positive whole number of words (got {max_words!r})")
    report = _Report(strict)
    if fmt == "moses":
        origin, raw = _read_moses(Path(path), source_lang, target_lang, report)
    else:
        path = Path(path)
        lines = _read_lines(path, fmt)
        origin = str(path)
        if fmt == "tsv":
            raw = _parse_tsv(path, lines, source_lang, target_lang, report)
        else:
            raw = _parse_jsonl(path, lines, source_lang, target_lang, report)
    pairs: list[Pair] = []
    for where, source, target, target_where in raw:
        source, target = source.strip(), target.strip()
        if not source or not target:
            if not source and not target:
                report.problem(where, "empty line" if target_where is None else "empty source and target", "empty")
            elif not source:
                report.problem(where, "empty source", "empty")
            else:
                report.problem(target_where or where, "empty target", "empty")
            continue
        kept = fit_length(Pair(source, target, where), max_words, long, report.counts)
        if kept is not None:
            pairs.append(kept)
    if not pairs:
        first = f", e.g. {report.skipped[0]}" if report.skipped else ""
        left = f" ({len(report.skipped)} lines skipped{first})" if report.skipped else ""
        dropped = report.counts["dropped_long"]
        long_note = f" ({dropped} pairs over max_words={max_words} dropped)" if dropped else ""
        raise DataError(f"no sentence pairs in {origin}{left}{long_note}; expected {_EXPECTED[fmt]}")
    return PairSet(pairs, report.skipped, report.counts)


def fit_length(pair: Pair, max_words: int | None, long: str, counts: dict[str, int]) -> Pair | None:
    """The over-long rule: a pair with more than ``max_words`` words on a side is cut to ``max_words`` words a
    side (``long="truncate"``, counted as ``truncated``) or left out (``"drop"``, ``None``, counted as
    ``dropped_long``); any other pair comes back as it is."""
    if max_words is None:
        return pair
    src_words, tgt_words = pair.source.split(), pair.target.split()
    if len(src_words) <= max_words and len(tgt_words) <= max_words:
        return pair
    if long == "drop":
        counts["dropped_long"] = counts.get("dropped_long", 0) + 1
        return None
    counts["truncated"] = counts.get("truncated", 0) + 1
    return Pair(" ".join(src_words[:max_words]), " ".join(tgt_words[:max_words]), pair.origin)


def write_tsv(pairs: Iterable[Pair], path: str | Path) -> Path:
    """Write ``pairs`` as a ``source<TAB>target`` file with a ``source<TAB>target`` header line (which
    :func:`read_pairs` ignores). Tabs and line breaks inside a sentence become spaces. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        out.write("source\ttarget\n")
        for pair in pairs:
            out.write(f"{_one_line(pair.source)}\t{_one_line(pair.target)}\n")
    return path


# ---------------------------------------------------------------- readers


def _one_line(text: str) -> str:
    return " ".join(text.split()) if any(c in text for c in "\t\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029") else text


def _read_lines(path: Path, fmt: str, trim: bool = True) -> list[str]:
    """The file's lines without line ends (with ``trim``, trailing blank lines dropped; else only the empty string
    after a final newline): a DataError when the file is missing or not UTF-8."""
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"data path {path} {what}; expected {_EXPECTED[fmt]}")
    text = read_text(path)  # not UTF-8: one line naming the file, the line and the byte
    # split on \n only: str.splitlines() would also split on characters such as U+2028 inside a sentence
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if not trim:
        return lines[:-1] if lines and lines[-1] == "" else lines
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def _is_header(fields: list[str], source_lang: str | None, target_lang: str | None) -> bool:
    names = [f.strip().lower() for f in fields]
    if names == ["source", "target"]:
        return True
    return source_lang is not None and target_lang is not None and names == [source_lang.lower(), target_lang.lower()]


def _parse_tsv(
    path: Path, lines: list[str], source_lang: str | None, target_lang: str | None, report: _Report,
) -> Iterator[_Raw]:
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        fields = line.split("\t")
        if lineno == 1 and _is_header(fields, source_lang, target_lang):
            continue
        if len(fields) != 2:
            if not line.strip():
                yield where, "", "", None  # a blank line: reported as empty
                continue
            report.problem(where, f"{len(fields)} tab-separated fields, expected 2 (source<TAB>target)", "malformed")
            continue
        yield where, fields[0], fields[1], None


def _parse_jsonl(
    path: Path, lines: list[str], source_lang: str | None, target_lang: str | None, report: _Report,
) -> Iterator[_Raw]:
    for lineno, line in enumerate(lines, 1):
        where = f"{path}:{lineno}"
        if not line.strip():
            yield where, "", "", None
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            report.problem(where, f"not valid JSON ({exc.msg} at column {exc.colno})", "malformed")
            continue
        except RecursionError:
            report.problem(where, "JSON nested too deeply to read", "malformed")
            continue
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            report.problem(where, f"not valid JSON ({str(exc).splitlines()[0][:80]})", "malformed")
            continue
        if not isinstance(obj, dict):
            report.problem(where, f"a JSON {json_type(obj)}, expected an object", "malformed")
            continue
        if "translation" in obj and not ("source" in obj and "target" in obj):
            pair = _hf_pair(path, obj["translation"], source_lang, target_lang)
        else:
            pair = _keyed_pair(obj, ("source", "target"))
        if isinstance(pair, str):
            report.problem(where, pair, "malformed")
            continue
        yield where, pair[0], pair[1], None


def json_type(value: Any) -> str:
    """JSON's own name of a parsed value's type: ``object``, ``array``, ``number``, ``boolean``, ``string``."""
    names = {dict: "object", list: "array", bool: "boolean", int: "number", float: "number", str: "string"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _hf_pair(
    path: Path, translation: Any, source_lang: str | None, target_lang: str | None,
) -> tuple[str, str] | str:
    if source_lang is None or target_lang is None:
        raise DataError(f"{path}: Hugging Face style 'translation' objects need source_lang and target_lang "
                        "(the keys inside them, e.g. source_lang='ny', target_lang='en')")
    if not isinstance(translation, dict):
        return f"'translation' is a JSON {json_type(translation)}, expected an object of language codes"
    return _keyed_pair(translation, (source_lang, target_lang), "'translation' ")


def _keyed_pair(obj: dict[str, Any], keys: tuple[str, str], inside: str = "") -> tuple[str, str] | str:
    """The two string values, or the reason they cannot be had."""
    missing = [k for k in keys if k not in obj]
    if missing:
        has = ", ".join(repr(k)[:40] for k in list(obj)[:5]) + (", ..." if len(obj) > 5 else "") or "nothing"
        return f"{inside}has no {' or '.join(repr(k) for k in missing)} key (has {has})"
    bad = [k for k in keys if obj[k] is not None and not isinstance(obj[k], str)]
    if bad:
        return f"{inside}{bad[0]!r} is a JSON {json_type(obj[bad[0]])}, expected a string"
    return obj[keys[0]] or "", obj[keys[1]] or ""


def _read_moses(
    path: Path, source_lang: str | None, target_lang: str | None, report: _Report,
) -> tuple[str, Iterable[_Raw]]:
    if not source_lang or not target_lang:
        raise DataError(f"{path}: the moses format needs source_lang and target_lang (the file suffixes, e.g. "
                        "source_lang='ny', target_lang='en' for corpus.ny + corpus.en)")
    prefix = path
    for lang in (source_lang, target_lang):
        if path.name.endswith(f".{lang}") and path.is_file():
            prefix = path.with_name(path.name[: -len(lang) - 1])
            break
    src_file = prefix.with_name(f"{prefix.name}.{source_lang}")
    tgt_file = prefix.with_name(f"{prefix.name}.{target_lang}")
    missing = [str(f) for f in (src_file, tgt_file) if not f.is_file()]
    if missing:
        raise DataError(f"moses files {' and '.join(missing)} not found; expected {_EXPECTED['moses']} "
                        f"(here {src_file} and {tgt_file})")
    src_lines = _read_lines(src_file, "moses", trim=False)
    tgt_lines = _read_lines(tgt_file, "moses", trim=False)
    while src_lines and tgt_lines and not src_lines[-1].strip() and not tgt_lines[-1].strip():
        src_lines.pop()
        tgt_lines.pop()
    if len(src_lines) != len(tgt_lines):
        raise DataError(f"moses files are not aligned: {src_file} has {len(src_lines)} lines but {tgt_file} has "
                        f"{len(tgt_lines)}; they need one sentence a line, the same number of lines")
    raw = [(f"{src_file}:{n}", s, t, f"{tgt_file}:{n}") for n, (s, t) in enumerate(zip(src_lines, tgt_lines), 1)]
    return f"{src_file} + {tgt_file}", raw
