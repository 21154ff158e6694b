"""The verdict of a run with a from-scratch comparison: did transfer help, by how much, and how sure is that.

With one seed, the sureness comes from the items: a paired bootstrap over the evaluation split resamples the same
items for both models and recomputes the selection metric (what the trainer kept in ``TrainResult.predictions``;
a task whose own trainer keeps none gets the difference without an interval). Over several seeds (``tl run
--seeds N``), :func:`over_seeds` compares the per-seed differences instead.
"""

from __future__ import annotations

import math
from typing import Any

from tl_core.train import evaluate_outputs

RESAMPLES = 200


def _words(metric: str, split: str, value: float, interval: list[float] | None, items: int | None
           ) -> tuple[str, str, str]:
    """(outcome, confidence, sentence)."""
    spread = f" (95% interval {interval[0]:+.4f} to {interval[1]:+.4f})" if interval else ""
    if interval is not None and interval[0] > 0:
        return "transfer helped", "high", f"transfer helped by {value:+.4f} {metric} on {split}{spread}"
    if interval is not None and interval[1] < 0:
        return ("negative transfer", "high",
                f"negative transfer: scratch won by {-value:.4f} {metric} on {split}{spread}")
    if interval is None:
        lead = "transfer ahead" if value > 0 else "scratch ahead" if value < 0 else "a tie"
        return (lead, "not measured", f"{lead} by {abs(value):.4f} {metric} on {split}; how sure is not measured "
                f"(this task's trainer keeps no per-item predictions): run with --seeds 3 for a paired comparison")
    lead = "transfer ahead" if value > 0 else "scratch ahead" if value < 0 else "a tie"
    return (lead, "low", f"{lead} by {abs(value):.4f} {metric} on {split}, within the noise of {items} items{spread}: "
            "no clear winner")


def verdict(task: str, metric: str, transfer: Any, scratch: Any, classes: list[str],
            options: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any] | None:
    """Transfer against scratch on the test split (else validation) by the selection metric."""
    split = next((s for s in ("test", "val") if metric in transfer.metrics.get(s, {})
                  and metric in scratch.metrics.get(s, {})), None)
    if split is None:
        return None
    sign = -1.0 if metric == "loss" else 1.0  # every other selection metric: higher wins
    value = sign * (transfer.metrics[split][metric] - scratch.metrics[split][metric])
    interval, better, items = None, None, None
    mine, theirs = transfer.predictions.get(split), scratch.predictions.get(split)
    if _resamplable(mine, theirs) and metric != "loss":  # the loss is not a tl_evaluate metric to recompute
        resampled = _paired_bootstrap(task, metric, mine, theirs, classes, options, seed, sign)
        if resampled is not None:
            interval, better, items = resampled
    outcome, confidence, sentence = _words(metric, split, value, interval, items)
    return {"outcome": outcome, "metric": metric, "split": split, "difference": value, "interval": interval,
            "transfer_better_share": better, "items": items, "confidence": confidence, "message": sentence,
            "method": f"paired bootstrap over the {split} items ({RESAMPLES} resamples)" if interval else
            "the difference of one seed"}


def _resamplable(mine: Any, theirs: Any) -> bool:
    import torch

    if mine is None or theirs is None:
        return False
    (a, ta), (b, tb) = mine, theirs
    return (all(isinstance(t, torch.Tensor) for t in (a, ta, b, tb)) and len(a) == len(b) > 1
            and bool(torch.equal(ta, tb)))


def _paired_bootstrap(task: str, metric: str, mine: Any, theirs: Any, classes: list[str],
                      options: dict[str, Any] | None, seed: int, sign: float
                      ) -> tuple[list[float], float, int] | None:
    import torch

    (a, targets), (b, _) = mine, theirs
    n = len(targets)
    generator = torch.Generator().manual_seed(seed)
    differences = []
    for _ in range(RESAMPLES):
        index = torch.randint(0, n, (n,), generator=generator)
        try:
            ours = evaluate_outputs(task, a[index], targets[index], classes, options).get(metric)
            other = evaluate_outputs(task, b[index], targets[index], classes, options).get(metric)
        except (ValueError, RuntimeError):  # a resample a metric cannot score (one class only, for an AUC)
            continue
        if ours is not None and other is not None and math.isfinite(ours - other):
            differences.append(sign * (ours - other))
    if len(differences) < RESAMPLES // 2:  # too few resamples scored to say how sure
        return None
    ordered = sorted(differences)
    low = ordered[int(0.025 * (len(ordered) - 1))]
    high = ordered[int(math.ceil(0.975 * (len(ordered) - 1)))]
    better = sum(d > 0 for d in differences) / len(differences)
    return [round(low, 4), round(high, 4)], round(better, 3), n


def over_seeds(metric: str, split: str, transfer: list[float], scratch: list[float]) -> dict[str, Any]:
    """The paired comparison over seeds: the mean difference, its standard deviation, a 95% interval from
    Student's t (n - 1 degrees of freedom), and on how many seeds transfer won."""
    from scipy import stats

    differences = [t - s for t, s in zip(transfer, scratch)]
    n = len(differences)
    mean = sum(differences) / n
    std = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1)) if n > 1 else 0.0
    interval = None
    if n > 1:
        half = stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)
        interval = [round(mean - half, 4), round(mean + half, 4)] if std > 0 else [round(mean, 4)] * 2
    outcome, confidence, sentence = _words(metric, split, mean, interval, n)
    if interval is not None and interval[0] <= 0 <= interval[1]:
        sentence = sentence.replace(f"within the noise of {n} items", f"within the spread of {n} seeds")
    wins = sum(d > 0 for d in differences)
    return {"outcome": outcome, "metric": metric, "split": split, "difference": mean, "std": std,
            "interval": interval, "seeds": n, "transfer_won": wins, "confidence": confidence,
            "message": f"{sentence}; transfer won on {wins} of {n} seeds",
            "method": f"paired over {n} seeds: mean difference, Student's t 95% interval"}
