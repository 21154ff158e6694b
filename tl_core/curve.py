"""``tl curve``: transfer and scratch trained on growing numbers of labelled examples, at the same budget of epochs
per point - the "needs less data" promise of transfer learning, measured on the user's own data.

Each point is a complete run (``OUT/shots-<k>/``, transfer with its from-scratch comparison) on a seeded subset of
the training split; validation and test stay whole, so every point is scored on the same items. The task's data
object says how it is cut (``with_shots(k, seed)``: per class for classification; a plugin's data may count pairs
or images). ``OUT/curve.json`` holds the points, ``OUT/curve.png`` draws them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console

from tl_core.errors import RunError, TLError
from tl_core.files import read_json, write_atomic, write_json
from tl_core.plugins import registry
from tl_core.recipe import validate
from tl_core.report import read_report
from tl_core.run import execute
from tl_core.sections import Recipe
from tl_core.train import checkpoint_exists

SUMMARY = "curve.json"


def parse_shots(text: str) -> list[int | None]:
    """``"1,2,5,10,all"`` as ``[1, 2, 5, 10, None]`` (``None``: the whole training split), in increasing order."""
    shots: list[int | None] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.lower() == "all":
            shots.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            raise TLError(f"--shots: {part!r} is not a whole number or 'all'; write it like --shots 1,2,5,10,all") \
                from None
        if value < 1:
            raise TLError(f"--shots: {value} is below 1; every point needs at least one training example")
        shots.append(value)
    if not shots:
        raise TLError("--shots is empty; write it like --shots 1,2,5,10,all")
    numbers = sorted({s for s in shots if s is not None})
    return [*numbers, *([None] if None in shots else [])]


def curve_recipe(recipe: Recipe) -> Recipe:
    data = recipe.resolved()
    data["compare"]["scratch"] = True
    return validate(data, "tl curve")


def execute_curve(recipe: Recipe, out: Path, shots: list[int | None], resume: bool = False, quiet: bool = False,
                  console: Console | None = None) -> dict[str, Any]:
    """Train every point (a point whose run finished is read, not trained again, under ``--resume``), then write
    ``curve.json`` and ``curve.png``."""
    console = console or Console(stderr=True)
    if (out / "report.json").exists() or (out / "checkpoints").is_dir():
        raise RunError(f"{out} holds a single run; choose another --out for tl curve")
    if not resume and ((out / SUMMARY).exists() or any(out.glob("shots-*"))):
        raise RunError(f"{out} already holds a curve; choose another --out, or continue it with --resume")
    recipe = curve_recipe(recipe)
    fmt = registry("data format").get(recipe.data.format)
    probe = fmt.read(recipe.data, recipe.train.seed)  # every user error about the data, before the first point
    if not callable(getattr(probe, "with_shots", None)):
        raise TLError(f"tl curve: the data of task {recipe.task!r} (format {recipe.data.format!r}) cannot be cut into "
                      "fewer examples: its plugin's data gives no with_shots(k, seed); ask its authors, or cut the "
                      "data by hand and run each size with tl run")
    points: list[dict[str, Any]] = []
    for k in shots:
        name = f"shots-{'all' if k is None else k}"
        folder = out / name
        cut: dict[str, Any] = {}

        def prepare(data: Any, k: int | None = k, cut: dict[str, Any] = cut) -> Any:
            if k is None:
                cut.update({"unit": "all", "items": len(getattr(data, "train", []) or []), "capped": []})
                return data
            subset, info = data.with_shots(k, recipe.train.seed)
            cut.update(info)
            return subset

        if (folder / "report.json").is_file():
            report = read_report(folder)
            cut.update(report.get("shots") or {})
        else:
            if not quiet:
                console.print(f"[bold]{name}[/]: transfer and scratch -> {folder}", highlight=False)
            report = execute(recipe, folder, resume=resume and checkpoint_exists(folder), quiet=quiet,
                             console=console, prepare=prepare)
            if cut.get("capped") and not quiet:
                console.print(f"{name}: capped at the size of {', '.join(cut['capped'])}", highlight=False)
            _record_cut(folder, cut)
        points.append(_point(k, name, report, cut, recipe.train.metric))
    summary = {"metric": recipe.train.metric, "split": points[0]["split"] if points else None,
               "unit": next((p["unit"] for p in points if p["unit"] != "all"), "all"),
               "epochs": recipe.train.epochs, "points": points, "recipe": recipe.resolved()}
    write_json(out / SUMMARY, summary)
    write_atomic(out / "curve.png", plot(summary))
    return summary


def _record_cut(folder: Path, cut: dict[str, Any]) -> None:
    """The point's cut, kept in its own report (what ``--resume`` reads back)."""
    path = folder / "report.json"
    report = read_json(path, str(path), RunError)
    report["shots"] = cut
    write_json(path, report)


def _point(k: int | None, name: str, report: dict[str, Any], cut: dict[str, Any], metric: str) -> dict[str, Any]:
    split = next((s for s in ("test", "val") if metric in report["metrics"].get(s, {})), None)
    scratch = (report.get("scratch") or {}).get("metrics", {})
    return {"shots": k, "run": name, "unit": cut.get("unit"), "train_items": cut.get("items"),
            "capped": cut.get("capped", []), "split": split,
            "transfer": report["metrics"].get(split, {}).get(metric) if split else None,
            "scratch": scratch.get(split, {}).get(metric) if split else None,
            "verdict": (report.get("verdict") or {}).get("message")}


def plot(summary: dict[str, Any]) -> bytes:
    """Transfer and scratch against the number of training examples (log scale), as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in summary["points"] if p["train_items"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    for side, style in (("transfer", "o-"), ("scratch", "s--")):
        xs = [p["train_items"] for p in points if p[side] is not None]
        ys = [p[side] for p in points if p[side] is not None]
        ax.plot(xs, ys, style, label=side)
    ax.set_xscale("log")
    ax.set(xlabel="training examples", ylabel=f"{summary['split']} {summary['metric']}",
           title=f"transfer vs scratch, {summary['epochs']} epochs per point")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()
