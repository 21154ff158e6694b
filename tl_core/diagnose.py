"""``tl diagnose``: before any training, how well each candidate backbone's frozen features suit the user's data,
whether they beat the same architecture at random init, how far the data sits from the weights' own domain, and
which backbone and policy to start with - with how sure that is.

Each candidate costs one forward pass per item (``tl_extract_features``), twice: pre-trained, then random-init (the
floor - pre-trained features worse than random ones predict negative transfer). The scores are
:mod:`tl_core.transferability`'s. Everything rests on the labelled items a run trains and validates on; the test
split is never looked at. The rules that turn scores into a recommendation are stated in ``RULES`` and printed with
it; docs/user_guide.md ("Should I transfer?") says when not to trust them.

Which scores decide was measured (``benchmarks/bench_diagnose.py``, docs/benchmarks.md): on tl's 7 tasks the
frozen-feature accuracies (k-NN, linear probe) ranked the fine-tuned results worst - random-init features probe as
well as ImageNet's on low-resolution digits and synthetic scans, yet fine-tune far worse - while LogME and the
weights' published accuracy ranked them best, together better than the prior alone. So LogME and the prior rank,
LogME's gain over the random-init twin judges transfer, and the accuracies say how a head on frozen features does.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

from tl_core import transferability
from tl_core.errors import TLError
from tl_core.plugins import hook, registry
from tl_core.recipe import validate
from tl_core.run import seed_everything
from tl_core.sections import Recipe

KNN_K = 5  # neighbours of the k-NN probe (fewer when a class is smaller)
LOGME_RESAMPLES = 100  # subsamples of the items for LogME (each recomputes it per candidate and twin)
SUBSAMPLE = 0.8  # the share of the items in each of them
RESAMPLES = 500  # bootstrap resamples of the items for the accuracies' intervals
CHANCE_PRIOR = 0.1  # the prior of random init: chance on ImageNet-1k (1 in 1000), in percent
SHIFT_P = 0.01  # a permutation p-value below this is a detected domain shift
SMALL = 100  # at most this many labelled items in the median class is small data: feature extraction first
RULES = [
    "scores: LogME and the H-score of the frozen features; leave-one-out 5-NN and 5-fold linear-probe accuracy "
    "(how a head on the frozen features does)",
    "rank: the mean of a candidate's ranks by LogME and, when every candidate has one, by the weights' published "
    f"accuracy (random init counting as chance, {CHANCE_PRIOR}%); its uncertainty: the share of {LOGME_RESAMPLES} "
    f"subsamples of {SUBSAMPLE:.0%} of the items (without replacement) in which it ranks first",
    "transfer gain: LogME pre-trained minus LogME of the same architecture at random init, with a 95% interval from "
    "the same subsamples (paired; delete-d jackknife); the frozen-feature accuracies' gain, with a bootstrap "
    "interval, is given beside it",
    f"domain shift: MMD between the data's features and the weights' reference sample, detected at p < {SHIFT_P}",
    "policy: scratch when the best candidate has no weights, or its gain interval lies below 0 (its features worse "
    "than random ones); else probe-then-fine-tune (LP-FT) when the shift is detected, feature-extraction when the "
    f"median class has at most {SMALL} items, fine-tune otherwise",
    "confidence: high when the best candidate ranks first in at least 80% of resamples and its gain interval "
    "excludes 0; medium at 50%; low otherwise",
]


def candidate_recipe(recipe: Recipe, backbone: str, random_init: bool = False) -> Recipe:
    """``recipe`` with ``backbone`` (its default weights, or the recipe's own when it is the recipe's backbone), or
    that backbone at random init."""
    data = recipe.resolved()
    if backbone != recipe.backbone.name:
        has_weights = bool(registry("backbone").get(backbone).weights)  # one built from config only: random init
        data["backbone"] = {**data["backbone"], "name": backbone, "weights": "default" if has_weights else "none"}
    if random_init:
        data["backbone"]["weights"] = "none"
    data["backbone"]["adabn"] = False
    return validate(data, f"tl diagnose candidate {backbone}")


def features_of(recipe: Recipe, data: Any, progress: Callable[[int], None]) -> tuple[Any, Any]:
    """The model ``recipe`` builds and its ``tl_extract_features`` answer, checked."""
    seed_everything(recipe.train.seed)  # a random-init twin is the same random init every time
    model = hook().tl_build_model(recipe=recipe, data=data)
    if model is None:
        raise TLError(f"no installed plugin builds models for task {recipe.task!r}; install the plugin for it")
    answer = hook().tl_extract_features(recipe=recipe, model=model, data=data, progress=progress)
    if answer is None:
        raise TLError(f"backbone {recipe.backbone.name!r} cannot give features for task {recipe.task!r}: no installed "
                      f"plugin answers tl_extract_features for its model ({type(model).__name__}); choose another "
                      "backbone, or install the plugin of its domain")
    return model, answer  # its shapes checked by the contract (tl_core.contract.extract_features)


# ---------------------------------------------------------------- scoring


def class_counts(labels: Any) -> list[int]:
    import torch

    return [int(c) for c in torch.bincount(labels) if int(c) > 0]


def score(answer: Any, seed: int) -> dict[str, Any]:
    """Every score the answer allows, with per-item correctness kept for the bootstrap (``_correct``) and, for a
    score that cannot be computed here, the reason in ``notes`` instead of a NaN."""
    import torch

    t = transferability
    f = answer.features.double()
    out: dict[str, Any] = {"notes": []}
    if not bool(torch.isfinite(f).all()):
        out["notes"].append("the features hold NaN or infinite values: nothing can be scored")
        return out
    if answer.labels is None:
        out["logme"] = t.logme_regression(f, answer.targets.double())
        return out
    y = answer.labels.long()
    counts = class_counts(y)
    if len(counts) < 2:
        out["notes"].append("fewer than two classes have items: no score separates classes")
        return out
    if len(f) > f.shape[1]:
        out["h_score"] = t.h_score(f, y)
    else:  # a covariance of rank below its size: the pseudo-inverse explains everything, every H-score is classes - 1
        out["notes"].append(f"H-score not given: the features are wider ({f.shape[1]}) than the items ({len(f)}), "
                            "where it always equals the number of classes less one")
    out["logme"] = t.logme(f, y)
    if min(counts) < 2:
        out["notes"].append(f"a class has {min(counts)} item: k-NN and the linear probe need at least 2 per class")
        return out
    # at most the rarest class's size less one neighbours: with 3 items per class, 5 neighbours of an item always
    # hold more of the other class than of its own, and every vote would be lost whatever the features
    k = max(1, min(KNN_K, min(counts) - 1))
    knn = t.knn_correct(f, y, k)
    out["knn_accuracy"] = float(knn.double().mean())
    out["knn_k"] = k
    probe = t.linear_probe_accuracy(f, y, seed=seed)
    out.update({"probe_accuracy": probe.mean, "probe_std": probe.std, "probe_folds": probe.folds})
    out["_correct"] = torch.stack([knn.double(), torch.tensor(probe.correct, dtype=torch.float64)])
    return out


def _bootstrap(n: int, seed: int) -> Any:
    import torch

    return torch.randint(0, n, (RESAMPLES, n), generator=torch.Generator().manual_seed(seed))


def _subsamples(n: int, seed: int) -> Any:
    """``LOGME_RESAMPLES`` subsamples of 80% of the items, without replacement (a delete-d jackknife): LogME is not
    resampled with replacement, because a duplicated item is fitted by a linear model as if it were two agreeing
    ones, which inflates the evidence (an interval from such resamples missed its own point estimate)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    size = max(2, round(SUBSAMPLE * n))
    return torch.stack([torch.randperm(n, generator=generator)[:size] for _ in range(LOGME_RESAMPLES)])


def _jackknife_interval(point: float, values: Any) -> list[float]:
    """A 95% interval around ``point`` from its values on the subsamples: the delete-d jackknife's variance (Shao and
    Wu 1989), ``(n - d) / d`` times the subsamples' variance for ``d`` items left out of each, under a normal
    approximation. (LogME per item depends on how many items there are, so the subsamples' own percentiles sit off
    the full data's value; their spread does not.)"""
    import torch

    spread = math.sqrt(SUBSAMPLE / (1 - SUBSAMPLE) * float(torch.as_tensor(values, dtype=torch.float64).var()))
    return [round(point - 1.96 * spread, 4), round(point + 1.96 * spread, 4)]


def _interval(values: Any) -> list[float]:
    import torch

    low, high = torch.quantile(values.double(), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return [round(low, 4), round(high, 4)]


def _ranks(values: list[float]) -> list[float]:
    """Rank 1 for the largest value; ties share their mean rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank(candidates: list[dict[str, Any]]) -> None:
    """Fill each scored candidate's ``rank`` (1 = best), ``mean_rank`` and ``first_probability``: ranks by LogME and,
    when every candidate has one, by the prior, on the items and on each bootstrap resample of them (LogME
    recomputed; ``_logme_draws``)."""
    scored = [c for c in candidates if "logme" in c["scores"]]
    if not scored:
        return
    priors = [c["prior"]["source_accuracy"] if c["prior"] else (CHANCE_PRIOR if c["weights"] == "none" else None)
              for c in scored]
    fixed = [[float(p) for p in priors]] if all(p is not None for p in priors) and len(set(priors)) > 1 else []

    def combined(logme: list[float]) -> list[float]:
        rows = [_ranks(v) for v in [logme, *fixed]]
        return [sum(r[i] for r in rows) / len(rows) for i in range(len(scored))]

    point = combined([c["scores"]["logme"] for c in scored])
    draws = [c["scores"].get("_logme_draws") for c in scored]
    first = None
    if all(d is not None and len(d) == len(draws[0]) for d in draws) and draws[0]:
        wins = [0.0] * len(scored)
        used = 0
        for b in range(len(draws[0])):
            logme = [d[b] for d in draws]  # type: ignore[index]
            if not all(math.isfinite(v) for v in logme):  # a resample of one class: no LogME to rank by
                continue
            used += 1
            values = combined(logme)
            winners = [i for i, v in enumerate(values) if v == min(values)]
            for i in winners:
                wins[i] += 1 / len(winners)
        first = [w / used for w in wins] if used else None
    order = sorted(range(len(scored)), key=lambda i: (point[i], -scored[i]["scores"]["logme"]))
    for place, i in enumerate(order, 1):
        scored[i]["rank"] = place
        scored[i]["mean_rank"] = round(point[i], 3)
        scored[i]["first_probability"] = round(first[i], 3) if first is not None else None


def logme_draws(answer: Any, draws: Any) -> list[float] | None:
    """LogME of ``answer`` on each resample of the items (``draws``: ``(resamples, n)`` indices); ``None`` when the
    features cannot be scored (non-finite, or a resample with one class only is NaN and left to the caller)."""
    import torch

    f = answer.features.double()
    if not bool(torch.isfinite(f).all()):
        return None
    out = []
    for index in draws:
        if answer.labels is None:
            out.append(transferability.logme_regression(f[index], answer.targets.double()[index]))
            continue
        labels = answer.labels.long()[index]
        out.append(transferability.logme(f[index], labels) if len(torch.unique(labels)) > 1 else math.nan)
    return out


def transfer_gain(pre: dict[str, Any], random: dict[str, Any], seed: int) -> dict[str, Any] | None:
    """Pre-trained against random-init features of the same architecture: LogME's difference with a 95% interval
    over the same subsamples of the items for both, and beside it the frozen-feature accuracies' difference (the
    mean of k-NN and probe) with its own."""
    import torch

    if "logme" not in pre or "logme" not in random:
        return None
    value = pre["logme"] - random["logme"]
    interval = None
    mine, theirs = pre.get("_logme_draws"), random.get("_logme_draws")
    if mine is not None and theirs is not None:
        differences = torch.tensor(mine, dtype=torch.float64) - torch.tensor(theirs, dtype=torch.float64)
        differences = differences[torch.isfinite(differences)]
        interval = _jackknife_interval(value, differences) if len(differences) >= 10 else None
    gain: dict[str, Any] = {"measure": "LogME", "value": round(value, 4), "interval": interval,
                            "helps": interval[0] > 0 if interval else value > 0,
                            "worse": interval[1] < 0 if interval else False}
    if "_correct" in pre and "_correct" in random:
        difference = (pre["_correct"] - random["_correct"]).mean(0)  # per item: (knn + probe) / 2, pre - random
        draws = _bootstrap(len(difference), seed + 1)
        gain["frozen_accuracy"] = {"value": round(float(difference.mean()), 4),
                                   "interval": _interval(difference[draws].mean(-1))}
    return gain


def shift(answer: Any, seed: int) -> dict[str, Any] | None:
    """The data's shift from the weights' reference sample, in numbers and in words."""
    if answer.reference is None or len(answer.reference) < 2:
        return None
    result = transferability.mmd_test(answer.features, answer.reference, seed=seed)
    detected = result.p_value < SHIFT_P
    words = (f"your data's features differ from {answer.reference_name} (MMD^2 {result.mmd2:.3f}, permutation "
             f"p = {result.p_value:.3f}): a domain shift" if detected else
             f"no shift from {answer.reference_name} is detected (MMD^2 {result.mmd2:.3f}, p = {result.p_value:.3f})")
    return {"mmd2": round(result.mmd2, 5), "p_value": round(result.p_value, 4), "permutations": result.permutations,
            "reference": answer.reference_name, "reference_items": result.reference, "detected": detected,
            "plain": words}


def recommend(candidates: list[dict[str, Any]], per_class_median: float | None) -> dict[str, Any]:
    """The backbone and policy to start with, why, and how sure, by ``RULES``."""
    ranked = sorted((c for c in candidates if c.get("rank")), key=lambda c: c["rank"])
    if not ranked:
        return {"backbone": None, "policy": None, "confidence": "none",
                "why": ["no candidate could be scored (see each candidate's notes)"], "set": []}
    best = ranked[0]
    gain = best.get("transfer_gain")
    why = []
    if len(ranked) > 1:
        share = best.get("first_probability")
        why.append(f"{best['backbone']} ranks first of {len(ranked)}" +
                   (f" (first in {share:.0%} of resamples)" if share is not None else ""))
    if best["weights"] == "none":  # a candidate without weights scored best: random features beat every other
        policy = "scratch"
        why.append(f"{best['backbone']} has no pre-trained weights, and its random-init features scored above every "
                   "pre-trained candidate's: transfer is unlikely to help; train from scratch, and check with "
                   "compare.scratch")
        sets = [f"backbone.name={best['backbone']}", "backbone.weights=none", "policy.name=fine-tune"]
    elif gain is not None and gain["worse"]:
        policy = "scratch"
        why.append(f"its pre-trained features are worse than random-init ones (LogME {gain['value']:+.3f}, 95% "
                   f"interval {gain['interval'][0]:+.3f} to {gain['interval'][1]:+.3f}): negative transfer is likely; "
                   "train from scratch, and check with compare.scratch")
        sets = [f"backbone.name={best['backbone']}", "backbone.weights=none", "policy.name=fine-tune"]
    else:
        if gain is not None:
            interval = (f" (95% interval {gain['interval'][0]:+.3f} to {gain['interval'][1]:+.3f})"
                        if gain["interval"] else "")
            if gain["helps"]:
                why.append(f"its pre-trained features beat random-init ones by {gain['value']:+.3f} LogME{interval}")
            else:
                why.append(f"its pre-trained features are not measurably better than random-init ones "
                           f"({gain['value']:+.3f} LogME{interval}), nor worse: on small data transfer is the better "
                           "bet, but check with compare.scratch")
        moved = best.get("shift") or {}
        if moved.get("detected"):
            policy = "probe-then-fine-tune"
            why.append("the data is shifted from the weights' domain: LP-FT (Kumar et al. 2022) adapts the features "
                       "without first distorting them with a random head")
        elif per_class_median is not None and per_class_median <= SMALL:
            policy = "feature-extraction"
            why.append(f"small data ({per_class_median:g} items in the median class)" +
                       (" and no shift detected" if moved else "") + ": a head on the frozen features overfits least")
        else:
            policy = "fine-tune"
            why.append("enough data to adapt the whole backbone" if per_class_median else
                       "the task trains the whole model")
        sets = [f"backbone.name={best['backbone']}", f"policy.name={policy}"]
    share = best.get("first_probability")
    decisive = best["weights"] == "none" or (  # random init on top: how surely it ranks first decides
        gain is not None and gain["interval"] is not None  # an unmeasured gain is never sure
        and (gain["interval"][0] > 0 or gain["interval"][1] < 0))
    if (share is None or share >= 0.8) and decisive:
        confidence = "high"
    elif (share is None or share >= 0.5) and decisive:
        confidence = "medium"
    else:
        confidence = "low"
    return {"backbone": best["backbone"], "policy": policy, "confidence": confidence, "why": why, "set": sets}


# ---------------------------------------------------------------- the command


def diagnose(recipe: Recipe, backbones: list[str] | None = None, progress: Any = None) -> dict[str, Any]:
    """Score ``backbones`` (default: the recipe's) on the recipe's data; the result is what ``tl diagnose --json``
    prints (its shape: docs/user_guide.md, "Should I transfer?"). ``progress(label, total)`` is called before each
    forward pass over the data (``total``: the items of the train and val splits, where the data has them) and
    returns the callback that pass advances with each batch."""
    names = list(dict.fromkeys(backbones or [recipe.backbone.name]))
    known = registry("backbone")
    for name in names:
        known.get(name)  # an unknown name: one line with the nearest
    fmt = registry("data format").get(recipe.data.format)
    data = fmt.read(recipe.data, recipe.train.seed)
    seed = recipe.train.seed
    candidates: list[dict[str, Any]] = []
    reporter = progress or (lambda label, total: (lambda n: None))
    total = sum(len(getattr(data, split, None) or []) for split in ("train", "val")) or None
    unit, items, counts = "items", 0, None
    draws = None  # the same bootstrap resamples of the items for every candidate and twin
    for name in names:
        pre_recipe = candidate_recipe(recipe, name)
        first = "random-init" if pre_recipe.backbone.random_init else "pre-trained"
        model, answer = features_of(pre_recipe, data, reporter(f"{name} {first}", total))
        if pre_recipe.backbone.random_init:
            twin = answer  # no weights: the candidate is its own random-init twin (same seed, same features)
        else:
            _, twin = features_of(candidate_recipe(recipe, name, random_init=True), data,
                                  reporter(f"{name} random-init", total))
        unit, items = answer.unit, len(answer.features)
        if answer.labels is not None:
            counts = class_counts(answer.labels.long())
        entry = getattr(getattr(model, "backbone", None), "entry", None)
        pre_scores = score(answer, seed)
        twin_scores = pre_scores if twin is answer else score(twin, seed)
        if draws is None:
            draws = _subsamples(items, seed + 3)
        for scores, features in ((pre_scores, answer), (twin_scores, twin)):
            if "logme" in scores and "_logme_draws" not in scores:
                scores["_logme_draws"] = logme_draws(features, draws)
        candidate = {
            "backbone": name,
            "weights": pre_recipe.backbone.weights if entry is None else entry.name,
            "feature_dim": int(answer.features.shape[1]),
            "how": answer.how,
            "scores": pre_scores,
            "random_init": {"scores": dict(twin_scores) if twin is answer else twin_scores},
            "transfer_gain": transfer_gain(pre_scores, twin_scores, seed),
            "prior": ({"source_accuracy": entry.source_accuracy, "on": entry.training_data}
                      if entry is not None and entry.source_accuracy is not None else None),
            "shift": shift(answer, seed),
            "skipped": list(answer.skipped),
            "rank": None,
        }
        if entry is None:
            candidate["scores"]["notes"].append("no pre-trained weights: the candidate is its own random-init twin")
        candidates.append(candidate)
    rank(candidates)
    for c in candidates:
        for scores in (c["scores"], c["random_init"]["scores"]):
            scores.pop("_logme_draws", None)
            correct = scores.pop("_correct", None)
            if correct is not None:
                draws = _bootstrap(correct.shape[1], seed + 2)
                scores["knn_interval"] = _interval(correct[0][draws].mean(-1))
                scores["probe_interval"] = _interval(correct[1][draws].mean(-1))
            for key, value in list(scores.items()):
                if isinstance(value, float):
                    scores[key] = round(value, 4) if math.isfinite(value) else None
    median = statistics.median(counts) if counts else None
    result = {
        "recipe": recipe.description or "",
        "task": recipe.task,
        "unit": unit,
        "items": items,
        "classes": len(counts) if counts else None,
        "per_class": {"min": min(counts), "median": median, "max": max(counts)} if counts else None,
        "chance": round(max(counts) / sum(counts), 4) if counts else None,
        "candidates": sorted(candidates, key=lambda c: (c["rank"] is None, c["rank"] or 0)),
        "recommendation": recommend(candidates, median),
        "rules": RULES,
    }
    return result
