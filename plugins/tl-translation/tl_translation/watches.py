"""The degenerate-output watch: a translation model whose outputs hardly depend on its input is flagged whatever its
chrF says. tl's own translation benchmark found every model producing the same fluent Bible sentence whatever its
input, at a chrF that looked like progress; this watch measures the spread of the outputs across different inputs.

The rule (:func:`degenerate_output`), on the translations the run scored last (the test split, else val), one per
different source sentence, compared side by side with the references of the same sentences:

- ``distinct``: the share of distinct translations (lower-cased, whitespace collapsed) among the different inputs,
  and the same share of their references;
- ``similarity``: the mean sentence chrF between the translations of two different inputs (identical strings count
  100), over every pair or a seeded sample of :data:`PAIRS` pairs, and the same mean between their references.

The watch fires when the share of distinct translations is at most :data:`DISTINCT_RATIO` of the references' share,
or when the translations' mean pairwise chrF lies at least :data:`SIMILARITY_GAP` points above the references':
translations much more alike than the sentences they should render are what a model that ignores its input
writes. Fewer than :data:`MIN_INPUTS` different inputs are not measured. Rules of thumb, said as such in the report.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

DISTINCT_RATIO = 0.5  # flagged: distinct translations at most half as common as distinct references
SIMILARITY_GAP = 25.0  # flagged: translations this many chrF points more alike (pairwise) than their references
MIN_INPUTS = 3  # fewer different source sentences than this: not measured
PAIRS = 2000  # at most this many pairs of inputs are compared (a seeded sample beyond)
NAME = "degenerate-output"
RULE = (f"flagged when the share of distinct translations among different inputs is at most {DISTINCT_RATIO:g} of "
        f"their references' share, or when translations of different inputs are at least {SIMILARITY_GAP:g} chrF "
        "points more alike (mean pairwise sentence chrF) than their references are")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _pairs(n: int, seed: int = 0) -> list[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``, of ``n`` items, or a seeded sample of :data:`PAIRS` of them."""
    total = n * (n - 1) // 2
    if total <= PAIRS:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    while len(seen) < PAIRS:
        i, j = rng.sample(range(n), 2)
        seen.add((min(i, j), max(i, j)))
    return sorted(seen)


def mean_pairwise_chrf(texts: list[str], pairs: list[tuple[int, int]]) -> float:
    """The mean sentence chrF (sacrebleu's default chrF) between the texts of each pair; identical texts count 100
    (sacrebleu gives two empty strings 0)."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    scores = [100.0 if texts[i] == texts[j] else chrf.sentence_score(texts[i], [texts[j]]).score for i, j in pairs]
    return sum(scores) / len(scores)


def output_spread(sources: list[str], outputs: list[str], references: list[str]) -> dict[str, Any]:
    """The spread of ``outputs`` across different inputs, beside the spread of their ``references``: the
    measurements of the watch (one item per different source sentence, the first of each)."""
    first: dict[str, int] = {}
    for i, source in enumerate(sources):
        first.setdefault(_norm(source), i)
    keep = sorted(first.values())
    outs = [_norm(outputs[i]) for i in keep]
    refs = [_norm(references[i]) for i in keep]
    n = len(keep)
    spread: dict[str, Any] = {"inputs": n}
    if n < MIN_INPUTS:
        return spread
    pairs = _pairs(n)
    top, count = Counter(outs).most_common(1)[0]
    spread.update({
        "distinct_outputs": len(set(outs)),
        "distinct_references": len(set(refs)),
        "distinct_output_share": round(len(set(outs)) / n, 4),
        "distinct_reference_share": round(len(set(refs)) / n, 4),
        "output_similarity": round(mean_pairwise_chrf(outs, pairs), 2),
        "reference_similarity": round(mean_pairwise_chrf(refs, pairs), 2),
        "pairs": len(pairs),
        "most_common_output": top,
        "most_common_count": count,
    })
    return spread


def degenerate_output(sources: list[str], outputs: list[str], references: list[str], split: str) -> dict[str, Any]:
    """The watch ``{"name", "flagged", "message", "rule", ...measurements}`` for the translations ``outputs`` of
    ``sources`` in ``split`` (``references``: what they should have been)."""
    spread = output_spread(sources, outputs, references)
    watch: dict[str, Any] = {"name": NAME, "flagged": False, "split": split, "rule": RULE, **spread}
    n = spread["inputs"]
    if n < MIN_INPUTS:
        watch["message"] = (f"degenerate output not measured: {n} different {split} sentence{'s' * (n != 1)}, "
                            f"at least {MIN_INPUTS} needed")
        return watch
    few = spread["distinct_outputs"] <= DISTINCT_RATIO * spread["distinct_references"]  # same n: shares as counts
    alike = spread["output_similarity"] - spread["reference_similarity"] >= SIMILARITY_GAP
    watch["flagged"] = bool(few or alike)
    top = spread["most_common_output"]
    shown = top if len(top) <= 60 else top[:57] + "..."
    facts = (f"{spread['distinct_outputs']} distinct translations of {n} different {split} sentences, "
             f"{spread['distinct_references']} distinct references; mean pairwise chrF "
             f"between translations {spread['output_similarity']:.1f} against {spread['reference_similarity']:.1f} "
             "between references")
    if watch["flagged"]:
        watch["message"] = (f"degenerate output: the translations hardly depend on the input ({facts}; most common: "
                            f"\"{shown}\" x{spread['most_common_count']}), so the {split} chrF does not show "
                            "translation")
    else:
        watch["message"] = f"outputs vary with the input: {facts}"
    return watch


def add_watch(info: dict[str, Any], watch: dict[str, Any]) -> None:
    """Append ``watch`` to ``info["watches"]`` (made when there is none)."""
    watches = info.get("watches")
    if not isinstance(watches, list):
        watches = info["watches"] = []
    watches.append(watch)
