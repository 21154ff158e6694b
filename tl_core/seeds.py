"""``tl run --seeds N``: the same recipe under N seeds, each a complete run in ``OUT/seed-<s>/``, and
``OUT/seeds.json``: every metric's mean and standard deviation over the seeds, for transfer and for scratch, and
the paired comparison of the two over the seeds (:func:`tl_core.verdict.over_seeds`).

One seed's verdict rests on the evaluation items; over seeds it rests on the spread that a different
initialisation, data order and augmentation give - the noise a practitioner meets when they train again.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.console import Console

from tl_core.errors import RunError
from tl_core.files import read_json, write_json
from tl_core.recipe import validate
from tl_core.report import read_report
from tl_core.run import execute
from tl_core.sections import Recipe
from tl_core.train import checkpoint_exists
from tl_core.verdict import over_seeds

SUMMARY = "seeds.json"


def seed_recipe(recipe: Recipe, seed: int) -> Recipe:
    data = recipe.resolved()
    data["train"]["seed"] = seed
    return validate(data, f"seed {seed}")


def check_seeds_dir(out: Path, seeds: int, resume: bool) -> None:
    """A folder that already holds a run or a finished set of seeds is not written over (``--resume`` continues
    it); a single run's folder is not a seeds folder."""
    if seeds < 2:
        raise RunError(f"--seeds {seeds}: give at least 2 seeds to compare over (or leave --seeds out)")
    if (out / "report.json").exists() or (out / "checkpoints").is_dir():
        raise RunError(f"{out} holds a single run; choose another --out for --seeds")
    if not resume and ((out / SUMMARY).exists() or any(out.glob("seed-*"))):
        raise RunError(f"{out} already holds seeded runs; choose another --out, or continue them with --resume")


def execute_seeds(recipe: Recipe, out: Path, seeds: int, resume: bool = False, quiet: bool = False,
                  console: Console | None = None) -> dict[str, Any]:
    """Run ``recipe`` under seeds ``train.seed``, ``train.seed + 1``, ...; a seed whose run finished is not run
    again under ``--resume``, one that was interrupted continues from its checkpoint."""
    console = console or Console(stderr=True)
    check_seeds_dir(out, seeds, resume)
    reports = []
    for seed in range(recipe.train.seed, recipe.train.seed + seeds):
        folder = out / f"seed-{seed}"
        if (folder / "report.json").is_file():
            reports.append(read_report(folder))
            continue
        if not quiet:
            console.print(f"[bold]seed {seed}[/] ({seed - recipe.train.seed + 1} of {seeds}) -> {folder}",
                          highlight=False)
        again = resume and checkpoint_exists(folder)
        reports.append(execute(seed_recipe(recipe, seed), folder, resume=again, quiet=quiet, console=console))
    summary = summarise(reports, recipe.train.metric)
    write_json(out / SUMMARY, summary)
    return summary


def _spread(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values)}


def summarise(reports: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Mean and standard deviation (n - 1) of every metric of every split over the seeds, transfer and scratch, and
    the paired comparison on the selection metric."""
    def table(blocks: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for split in blocks[0]:
            for name in blocks[0][split]:
                values = [b.get(split, {}).get(name) for b in blocks]
                if all(isinstance(v, (int, float)) for v in values):
                    out.setdefault(split, {})[name] = _spread([float(v) for v in values])
        return out

    seeds = [r["seed"] for r in reports]
    summary: dict[str, Any] = {"seeds": seeds, "runs": [f"seed-{s}" for s in seeds], "metric": metric,
                               "recipe": reports[0]["recipe"], "metrics": table([r["metrics"] for r in reports])}
    scratch = [r.get("scratch") for r in reports]
    if all(scratch):
        summary["scratch"] = {"metrics": table([s["metrics"] for s in scratch])}  # type: ignore[index]
        split = next((s for s in ("test", "val") if metric in summary["metrics"].get(s, {})
                      and metric in summary["scratch"]["metrics"].get(s, {})), None)
        if split is not None:
            transfer_values = [r["metrics"][split][metric] for r in reports]
            scratch_values = [s["metrics"][split][metric] for s in scratch]  # type: ignore[index]
            if metric == "loss":  # lower wins: compare negated losses
                transfer_values = [-v for v in transfer_values]
                scratch_values = [-v for v in scratch_values]
            summary["verdict"] = over_seeds(metric, split, transfer_values, scratch_values)
    return summary


def read_seeds(out: Path) -> dict[str, Any] | None:
    """``OUT/seeds.json`` when ``out`` holds seeded runs, else ``None``."""
    path = out / SUMMARY
    if not path.is_file():
        return None
    summary = read_json(path, str(path), RunError)
    if not isinstance(summary, dict) or not isinstance(summary.get("metrics"), dict):
        raise RunError(f"{path} is not a tl seeds summary; the folder is damaged: run again with --seeds and --resume")
    return summary


def seeds_table(summary: dict[str, Any]) -> Any:
    """Mean ± std per split and metric over the seeds, transfer against scratch, and the verdict under it."""
    from rich.table import Table

    recipe = summary["recipe"]
    table = Table(title=f"{recipe['backbone']['name']} ({recipe['backbone']['weights']}) + {recipe['head']['name']}, "
                        f"{recipe['policy']['name']}: {len(summary['seeds'])} seeds")
    scratch = (summary.get("scratch") or {}).get("metrics")
    for column in ("split", "metric", "transfer", *(["scratch"] if scratch else [])):
        table.add_column(column, justify="right" if column in ("transfer", "scratch") else "left")
    for split, metrics in summary["metrics"].items():
        for name, spread in metrics.items():
            row = [split, name, f"{spread['mean']:.4f} ± {spread['std']:.4f}"]
            if scratch:
                other = scratch.get(split, {}).get(name)
                row.append("-" if other is None else f"{other['mean']:.4f} ± {other['std']:.4f}")
            table.add_row(*row)
    return table


def seeds_notes(summary: dict[str, Any]) -> list[str]:
    judged = summary.get("verdict")
    return [f"verdict: {judged['message']} (confidence: {judged['confidence']})"] if judged else []
