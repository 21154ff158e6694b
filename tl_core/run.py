"""Executing a recipe: check everything, train (and train from scratch when asked), write the run folder.

The orchestrator of ``tl run`` (and of :func:`execute` in a plugin's tests): it reads the data, asks the plugins
for the model and its training, and writes the report. Everything it calls lives below it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from tl_core import context  # RunContext by its module: imported from here, it warns that it moved (compat)
from tl_core.card import write_card
from tl_core.compat import moved
from tl_core.errors import RunError, TLError
from tl_core.files import RunLock, check_writable, read_json, write_json
from tl_core.plugins import hook, registry
from tl_core.recipe import validate
from tl_core.report import build_report, write_run
from tl_core.sections import Recipe
from tl_core.task import check_wise_ft, make_policy
from tl_core.train import CHECKPOINT, checkpoint_exists, resolve_device, resolve_precision
from tl_core.verdict import verdict
from tl_core.weights import read_checkpoint

# 1.1 plugins found these here
__getattr__ = moved(__name__, {"RunContext": "tl_core.context", "write_atomic": "tl_core.files",
                               "write_json": "tl_core.files"})


# ------------------------------------------------------------------ executing a recipe

RESUMABLE = ("train.epochs", "train.patience")  # what may differ between a run and its --resume


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's recipe with the defaults of keys added since it was written (a run started by an older tl)."""
    try:
        return Recipe.model_validate(saved).resolved()
    except ValidationError:
        return saved  # compared as it is: the difference is reported


def check_out_dir(out: Path, recipe: Recipe, resume: bool, locked: bool = False) -> None:
    """Refuse an ``--out`` that cannot be written or that another run is writing to, a finished run (it is not
    overwritten), and resuming a different recipe or a run without a readable checkpoint. ``locked``: checked again
    under this run's own lock, which needs neither the lock probe nor another read of the checkpoint."""
    check_writable(out)
    if not locked and RunLock.busy(out):
        raise RunError(RunLock.IN_USE.format(out=out))
    if resume:
        if not checkpoint_exists(out):
            raise RunError(f"--resume: no checkpoint in {out}/checkpoints; start the run without --resume")
        if not locked:
            read_checkpoint(out / "checkpoints" / CHECKPOINT)  # truncated, tampered, a pickle: refused before work
        saved_file = out / "checkpoints" / "recipe.json"
        if saved_file.is_file():
            saved_recipe = read_json(saved_file, str(saved_file), RunError)
            if not isinstance(saved_recipe, dict):
                raise RunError(f"--resume: {saved_file} is not a recipe; the run folder is damaged: start again "
                               "without --resume")
            saved, now = _flat(_with_defaults(saved_recipe)), _flat(recipe.resolved())
            diff = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k) and k not in RESUMABLE]
            if diff:
                raise RunError(
                    f"--resume: the recipe differs from the one {out} was started with at {diff[0]!r} "
                    f"({saved.get(diff[0])!r} -> {now.get(diff[0])!r}); only {', '.join(RESUMABLE)} may change"
                )
    elif (out / "report.json").exists() or checkpoint_exists(out):
        raise RunError(
            f"{out} already holds a run; choose another --out, or continue it with --resume"
        )


def execute(recipe: Recipe, out: Path, resume: bool = False, quiet: bool = False,
            console: Console | None = None, prepare: Any = None) -> dict[str, Any]:
    """Run ``recipe`` into ``out``: check everything, train (and train from scratch when asked), write the run.

    Every user error surfaces before the first file is written: the recipe, the registries, ``--out``, the data,
    the weights (fetched and hash-checked while the model is built). Only then is ``--out`` made and locked
    (:class:`~tl_core.files.RunLock`), so that data read from a folder that holds ``--out`` does not see it, and a
    run refused on its data leaves nothing behind. ``prepare(data)``, when given, returns the data the run trains on
    in place of what the format read (``tl curve``: fewer training items).
    """
    from accelerate import PartialState

    console = console or Console(stderr=True)
    device = resolve_device(recipe.train.device)
    precision = resolve_precision(recipe.train.amp, device)  # fail before any work
    process = PartialState(cpu=device == "cpu")  # one process, or one of many under `accelerate launch`
    quiet = quiet or not process.is_main_process
    check_out_dir(out, recipe, resume)
    process.wait_for_everyone()  # every process has checked --out before any of them writes there
    started = time.perf_counter()
    fmt = registry("data format").get(recipe.data.format)
    data = fmt.read(recipe.data, recipe.train.seed)
    if prepare is not None:
        data = prepare(data)
    t_data = time.perf_counter()
    seed_everything(recipe.train.seed)  # the new head's initial weights come from the seed too
    model = hook().tl_build_model(recipe=recipe, data=data)
    if model is None:
        raise TLError(f"no installed plugin builds models for task {recipe.task!r}; install the plugin for it")
    t_model = time.perf_counter()
    if recipe.train.wise_ft:
        check_wise_ft(recipe, model, data)
    lock = _lock(out, recipe, resume, process)
    try:
        report = _train_and_write(recipe, out, resume, quiet, console, device, precision, process, data, model,
                                  {"data_seconds": t_data - started, "model_seconds": t_model - t_data}, started)
    except BaseException:
        lock.release(failed=True)  # an interrupted run keeps what it wrote (--resume); one that wrote nothing: gone
        raise
    lock.release()
    return report


def _lock(out: Path, recipe: Recipe, resume: bool, process: Any) -> RunLock:
    """The main process locks ``out`` and checks it again under the lock (a run that finished meanwhile is not
    overwritten); every process learns whether it may go on."""
    lock = RunLock(out)
    refused: str | None = None
    if process.is_main_process:
        try:
            lock.acquire()
            check_out_dir(out, recipe, resume, locked=True)
        except RunError as exc:
            lock.release(failed=True)
            refused = str(exc)
    if process.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        refused = broadcast_object_list([refused])[0]
    if refused is not None:
        raise RunError(refused)
    return lock


def _train_and_write(recipe: Recipe, out: Path, resume: bool, quiet: bool, console: Console, device: str,
                     precision: str, process: Any, data: Any, model: Any, timings: dict[str, float],
                     started: float) -> dict[str, Any]:
    ctx = context.RunContext(recipe=recipe, out=out, resume=resume, console=console, quiet=quiet,
                             main_process=process.is_main_process)
    load_report = getattr(getattr(model, "backbone", None), "report", None)
    if load_report is not None:
        ctx.log(load_report.summary())
        entry = getattr(model.backbone, "entry", None)
        if entry is not None and not entry.sha256 and load_report.sha256:  # a hub file nobody has pinned yet
            ctx.log(f"weights file sha256 {load_report.sha256} (recorded in report.json; pin it with "
                    f"--set backbone.sha256={load_report.sha256})")
    for line in getattr(data, "skipped", [])[:5]:
        ctx.log(f"[yellow]skipped[/] {line}")
    if ctx.main_process:
        hook().tl_on_run_start(ctx=ctx)
    result = hook().tl_train(recipe=recipe, model=model, data=data, ctx=ctx)
    if result is None:
        raise TLError(f"no installed plugin trains task {recipe.task!r}")
    scratch = None
    if recipe.compare.scratch:
        scratch = train_scratch(recipe, data, out / "scratch", resume, quiet, console)
    timings = {**timings, "train_seconds": result.seconds, "total_seconds": time.perf_counter() - started}
    report = build_report(recipe, model, data, result, scratch, timings)
    if scratch is not None:
        report["verdict"] = verdict(recipe.task, recipe.train.metric, result, scratch,
                                    list(getattr(data, "classes", []) or []), recipe.data.options, recipe.train.seed)
    else:
        report["verdict"] = {"outcome": "not compared", "confidence": "none",
                             "message": "not compared with training from scratch: set compare.scratch: true (or run "
                                        "tl diagnose first) to learn whether transfer pays here"}
    report["processes"] = process.num_processes
    report["device"] = {"type": device, "name": device_name(device),
                        "precision": ctx.info.pop("precision", precision)}  # a task's own trainer may say otherwise
    report.update({k: v for k, v in ctx.info.items() if k not in report})
    if ctx.main_process:
        write_run(out, report, result.model)
        try:  # the card is made from the finished report; tl card remakes it
            write_card(out / "README.md", report)
        except Exception as exc:  # noqa: BLE001 - a card that cannot be made must not undo a finished run
            ctx.log(f"[yellow]model card not written[/] ({type(exc).__name__}: {str(exc)[:120]}); tl card {out} "
                    "writes it")
        hook().tl_on_run_end(ctx=ctx, report=report)
    process.wait_for_everyone()
    return report


def device_name(device: str) -> str:
    """The GPU's name (CUDA), or the CPU's."""
    import platform

    if device == "cuda":
        import torch

        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) through Accelerate."""
    from accelerate.utils import set_seed

    set_seed(seed)


def scratch_recipe(recipe: Recipe, lr: float | None = None, batch_size: int | None = None,
                   epochs: int | None = None) -> Recipe:
    """The same architecture and budget from random init, under the policy's train-everything variant
    (:meth:`FreezePolicy.scratch`: by default every layer trains, BatchNorm in train mode), at the recipe's learning
    rate and batch size or the given ones (``epochs``: a search trial's shorter budget)."""
    data = recipe.resolved()
    data["backbone"]["weights"] = "none"
    data["backbone"]["adabn"] = False  # no source statistics to replace
    data["train"]["wise_ft"] = False  # no pre-trained weights to mix with
    data["policy"] = make_policy(recipe).scratch()
    data["compare"]["scratch"] = False
    if lr is not None:
        data["train"]["lr"] = lr
    if batch_size is not None:
        data["train"]["batch_size"] = batch_size
    if epochs is not None:
        data["train"]["epochs"] = epochs
        data["train"]["patience"] = None
    return validate(data, "scratch comparison")


#: the scratch search's grid: learning rate times these, batch size divided by these (a model from random init
#: usually wants larger and more steps than fine-tuning: the recipe's batch of 32 gave a 72-image task 60 steps)
LR_FACTORS = (1.0, 3.0)
BATCH_DIVISORS = (1, 4)
SEARCH = "search.json"


def search_grid(recipe: Recipe) -> list[tuple[float, int]]:
    """(learning rate, batch size) pairs to try: the recipe's first, no batch below 4 (or the recipe's own)."""
    pairs: list[tuple[float, int]] = []
    for divisor in BATCH_DIVISORS:
        batch = max(min(4, recipe.train.batch_size), recipe.train.batch_size // divisor)
        for factor in LR_FACTORS:
            pair = (recipe.train.lr * factor, batch)
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def search_scratch(recipe: Recipe, data: Any, out: Path, console: Console) -> dict[str, Any]:
    """Short runs of the grid (a third of the epochs each) from random init, scored on validation; the best
    setting (by the selection metric, ties to the lower validation loss, then the recipe's own) and every trial.
    Written to ``out/search.json`` so that ``--resume`` does not search again; the trials' folders are removed."""
    import shutil

    from accelerate import PartialState

    main = PartialState().is_main_process
    epochs = max(1, math.ceil(recipe.train.epochs / 3))
    metric = recipe.train.metric
    trials: list[dict[str, Any]] = []
    root = out / "search"
    for i, (lr, batch) in enumerate(search_grid(recipe)):
        trial = scratch_recipe(recipe, lr, batch, epochs)
        seed_everything(trial.train.seed)
        model = hook().tl_build_model(recipe=trial, data=data)
        ctx = context.RunContext(recipe=trial, out=root / f"trial-{i}", console=console, quiet=True,
                                 name=f"scratch search {i + 1}", main_process=main)
        result = hook().tl_train(recipe=trial, model=model, data=data, ctx=ctx)
        val = result.metrics.get("val", {})
        trials.append({"lr": lr, "batch_size": batch, "epochs": epochs, f"val_{metric}": val.get(metric),
                       "val_loss": val.get("loss")})
        if main and not console.quiet:
            score = val.get(metric)
            console.print(f"scratch search: lr {lr:g}, batch {batch}: val {metric} "
                          f"{'-' if score is None else f'{score:.4f}'}", highlight=False)
    scored = [t for t in trials if t[f"val_{metric}"] is not None]
    if not scored:
        chosen, how = trials[0], "no trial was scored on validation: the recipe's own setting"
    else:
        chosen = max(scored, key=lambda t: (t[f"val_{metric}"], -(t["val_loss"] if t["val_loss"] is not None
                                                                   else 0.0), -trials.index(t)))
        how = (f"the best val {metric} of {len(trials)} short runs ({epochs} of {recipe.train.epochs} epochs each), "
               "ties to the lower validation loss")
    search = {"method": "grid on validation", "grid": {"lr_factors": list(LR_FACTORS),
                                                       "batch_divisors": list(BATCH_DIVISORS)},
              "trials": trials, "chosen": {"lr": chosen["lr"], "batch_size": chosen["batch_size"]}, "how": how}
    PartialState().wait_for_everyone()
    if main:
        shutil.rmtree(root, ignore_errors=True)
        write_json(out / SEARCH, search)
    return search


def train_scratch(recipe: Recipe, data: Any, out: Path, resume: bool, quiet: bool, console: Console) -> Any:
    """The from-scratch comparison, with its own learning rate and batch size when ``compare.scratch_search`` and
    there is a validation split to choose them on (else the recipe's, said in the report)."""
    from accelerate import PartialState

    main = PartialState().is_main_process
    search = None
    has_val = bool(getattr(data, "val", None))
    if recipe.compare.scratch_search and has_val:
        saved = out / SEARCH
        if resume and saved.is_file():
            search = read_json(saved, str(saved), RunError)
        else:
            if main and not quiet:
                console.print("[bold]from-scratch comparison[/]: searching its own learning rate and batch size",
                              highlight=False)
            search = search_scratch(recipe, data, out, console if not quiet else Console(quiet=True))
    if search is not None:
        srecipe = scratch_recipe(recipe, search["chosen"]["lr"], search["chosen"]["batch_size"])
        tuned = search
    else:
        srecipe = scratch_recipe(recipe)
        why = "compare.scratch_search is false" if not recipe.compare.scratch_search else "there is no validation split"
        tuned = {"method": "none", "how": f"{why}: the recipe's learning rate and batch size"}
    seed_everything(srecipe.train.seed)
    model = hook().tl_build_model(recipe=srecipe, data=data)
    ctx = context.RunContext(recipe=srecipe, out=out, resume=resume and (out / "checkpoints").is_dir(),
                             console=console, quiet=quiet or not main, name="scratch", main_process=main)
    ctx.log(f"[bold]from-scratch comparison[/]: same architecture and epochs, random init, every layer trains, lr "
            f"{srecipe.train.lr:g}, batch {srecipe.train.batch_size}")
    result = hook().tl_train(recipe=srecipe, model=model, data=data, ctx=ctx)
    result.info["recipe_changes"] = {"backbone.weights": "none", "policy": srecipe.policy.model_dump(),
                                     "train.lr": srecipe.train.lr, "train.batch_size": srecipe.train.batch_size}
    result.info["tuning"] = tuned
    return result
