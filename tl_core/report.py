"""What a run leaves behind: ``report.json``, ``metrics.csv``, ``curves.png``, the model; and reading it back."""

from __future__ import annotations

import csv
import io
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tl_core.components import TrainResult
from tl_core.errors import RunError
from tl_core.files import commit_file, read_json, write_atomic, write_json
from tl_core.plugins import plugins
from tl_core.sections import Recipe
from tl_core.weights import savable

if TYPE_CHECKING:
    from rich.table import Table

MODEL_FILE = "model.safetensors"


CORE_LIBRARIES = ("tl-core", "torch", "torchvision", "accelerate", "timm", "pydantic", "pluggy")


def versions() -> dict[str, Any]:
    """Python, the core's libraries and every library each loaded plugin's distribution requires (MONAI, pydicom,
    ultralytics, transformers, peft, sentencepiece, sacrebleu, ...: whatever its metadata names and is installed,
    its test-only extras left out), and every plugin with its distribution version."""
    import re
    from importlib.metadata import PackageNotFoundError, requires, version

    names = list(CORE_LIBRARIES)
    seen = plugins()
    for info in seen:
        if info.distribution is None or info.status != "loaded":
            continue
        try:
            wanted = requires(info.distribution) or []
        except PackageNotFoundError:
            continue
        for requirement in wanted:
            if re.search(r"extra\s*==\s*['\"]test['\"]", requirement):
                continue
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
            if match and match.group(0) not in names:
                names.append(match.group(0))
    libs: dict[str, str | None] = {}
    for name in names:
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            if name in CORE_LIBRARIES:
                libs[name] = None  # an optional extra of a plugin that is not installed is not worth a line
    return {
        "python": platform.python_version(),
        "packages": libs,
        "plugins": {p.name: {"version": p.version, "status": p.status} for p in seen},
    }


def parameter_counts(result: TrainResult) -> dict[str, int]:
    try:
        params = list(result.model.parameters())
    except AttributeError:
        return {}
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return {"total": total, "trainable": trainable, "frozen": total - trainable}


def build_report(
    recipe: Recipe, model: Any, data: Any, result: TrainResult, scratch: TrainResult | None, timings: dict[str, float]
) -> dict[str, Any]:
    """The content of ``report.json``."""
    backbone = getattr(model, "backbone", None)
    entry = getattr(backbone, "entry", None)
    load = getattr(backbone, "report", None)
    report: dict[str, Any] = {
        "recipe": recipe.resolved(),
        "versions": versions(),
        "seed": recipe.train.seed,
        "weights": None if entry is None else {**entry.as_dict(), "sha256_actual": load.sha256 if load else None},
        "load_report": None if load is None else load.as_dict(),
        "data": data.summary() if hasattr(data, "summary") else {},
        "parameters": parameter_counts(result),
        "epochs": result.history,
        "best_epoch": result.best_epoch,
        "selection_metric": result.metric,
        "stopped_early": result.stopped_early,
        "metrics": result.metrics,
        "timings": timings,
        **result.info,
    }
    if scratch is not None:
        report["scratch"] = {
            "metrics": scratch.metrics,
            "epochs": scratch.history,
            "best_epoch": scratch.best_epoch,
            "train_seconds": scratch.seconds,
            **scratch.info,
        }
    return report


def write_metrics_csv(path: Path, report: dict[str, Any]) -> None:
    rows = [{"run": "transfer", **row} for row in report["epochs"]]
    rows += [{"run": "scratch", **row} for row in (report.get("scratch") or {}).get("epochs", [])]
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def write_curves(path: Path, report: dict[str, Any]) -> None:
    """Loss and validation metric per epoch, transfer against scratch when there is a comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = f"val_{report['selection_metric']}"
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    runs = [("transfer", report["epochs"])]
    if report.get("scratch"):
        runs.append(("scratch", report["scratch"]["epochs"]))
    for name, rows in runs:
        epochs = [r["epoch"] for r in rows]
        if rows and "train_loss" in rows[0]:
            ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker=".", label=f"{name} train")
        if rows and "val_loss" in rows[0]:
            ax_loss.plot(epochs, [r["val_loss"] for r in rows], marker=".", linestyle="--", label=f"{name} val")
        if rows and metric in rows[0]:
            ax_metric.plot(epochs, [r[metric] for r in rows], marker=".", label=name)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_metric.set(xlabel="epoch", ylabel=metric, title=metric)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def write_run(out: Path, report: dict[str, Any], model: Any) -> None:
    """Write the model, ``metrics.csv``, ``curves.png`` and - last, so it marks a finished run - ``report.json``."""
    from safetensors.torch import save_file
    from torch import nn

    out.mkdir(parents=True, exist_ok=True)
    net = model if isinstance(model, nn.Module) else getattr(model, "model", model)  # a module, or a bundle of one
    if callable(getattr(model, "save_to", None)):  # a bundle that saves in its own ecosystem's format
        model.save_to(out)
    elif hasattr(net, "state_dict"):
        tmp = out / f".{MODEL_FILE}.tmp"
        save_file(savable(net.state_dict()), str(tmp))
        commit_file(tmp, out / MODEL_FILE)
    write_metrics_csv(out / "metrics.csv", report)
    write_curves(out / "curves.png", report)
    write_json(out / "report.json", report)


def read_report(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "report.json"
    if not path.is_file():
        raise RunError(f"{run_dir} holds no finished run (no report.json); run 'tl run RECIPE --out {run_dir}' first")
    report = read_json(path, str(path), RunError)
    damaged = f"{path} is not a tl report ({{}}); the run folder is damaged: restore it, or train again with tl run"
    if not isinstance(report, dict):
        raise RunError(damaged.format(f"a JSON {type(report).__name__}, not an object"))
    try:
        Recipe.model_validate(report.get("recipe"))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "recipe"
        raise RunError(damaged.format(f"its recipe: {where}: {err['msg']}")) from None
    if not isinstance(report.get("data"), dict):
        raise RunError(damaged.format("no 'data' in it"))
    for block, metrics in (("metrics", report.get("metrics")),
                           ("scratch.metrics", (report.get("scratch") or {}).get("metrics", {}))):
        if not isinstance(metrics, dict) or not all(
                isinstance(split, dict) and all(isinstance(v, (int, float)) for v in split.values())
                for split in metrics.values()):
            raise RunError(damaged.format(f"'{block}' is not metrics by split"))
    return report


def summary_notes(report: dict[str, Any]) -> list[str]:
    """What a practitioner reads under the table, one sentence a line: what the best checkpoint rests on, why
    training stopped and whether it overfitted, how scratch was tuned, the verdict, and every flagged watch."""
    lines = []
    selection = report.get("selection")
    if selection and report.get("best_epoch"):
        lines.append(f"best epoch {report['best_epoch']} of {len(report.get('epochs') or [])}, by "
                     f"{selection['metric']} on {selection['validation_items']} validation items "
                     f"(ties: {selection['ties']})")
    fit = report.get("fit")
    if fit:
        lines.append(f"stopped after {fit['epochs_run']} epochs: {fit['stopped']}")
        if fit.get("overfitting"):
            lines.append(f"overfitting: validation loss {fit['val_loss_rise_after']:+.0%} since its lowest, at epoch "
                         f"{fit['val_loss_lowest_epoch']}, while the training loss kept falling")
    tuning = (report.get("scratch") or {}).get("tuning") or {}
    if tuning.get("chosen"):
        lines.append(f"scratch tuned on validation: lr {tuning['chosen']['lr']:g}, batch "
                     f"{tuning['chosen']['batch_size']} (best of {len(tuning['trials'])} short runs)")
    elif tuning:
        lines.append(f"scratch not tuned: {tuning['how']}")
    judged = report.get("verdict")
    if judged:
        lines.append(f"verdict: {judged['message']} (confidence: {judged['confidence']})")
    lines += [f"watch: {w['message']}" for w in report.get("watches") or []
              if isinstance(w, dict) and w.get("flagged")]
    return lines


def summary_table(report: dict[str, Any]) -> Table:
    """Metrics per split, transfer against scratch when the run has a comparison (the sentences that go with it:
    :func:`summary_notes`)."""
    from rich.table import Table

    recipe = report["recipe"]
    backbone, head, policy = recipe["backbone"], recipe["head"]["name"], recipe["policy"]["name"]
    title = f"{backbone['name']} ({backbone['weights']}) + {head}, {policy}"
    table = Table(title=title)
    table.add_column("split")
    table.add_column("metric")
    table.add_column("transfer", justify="right")
    scratch = report.get("scratch")
    if scratch:
        table.add_column("scratch", justify="right")
        table.add_column("difference", justify="right")
    for split, metrics in report["metrics"].items():
        for name, value in metrics.items():
            row = [split, name, f"{value:.4f}"]
            if scratch:
                other = scratch["metrics"].get(split, {}).get(name)
                row += ["-", "-"] if other is None else [f"{other:.4f}", f"{value - other:+.4f}"]
            table.add_row(*row)
    return table
