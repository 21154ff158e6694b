"""Executing a recipe: check everything, train (and train from scratch when asked), write the run folder.

The orchestrator of ``tl run`` (and of :func:`execute` in a plugin's tests): it reads the data, asks the plugins
for the model and its training, and writes the report. Everything it calls lives below it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from tl_core import context  # RunContext by its module: imported from here, it warns that it moved (compat)
from tl_core.compat import moved
from tl_core.errors import RunError, TLError
from tl_core.files import RunLock, check_writable, read_json
from tl_core.plugins import hook, registry
from tl_core.recipe import validate
from tl_core.report import build_report, write_run
from tl_core.sections import Recipe
from tl_core.task import make_policy
from tl_core.train import CHECKPOINT, checkpoint_exists, resolve_device, resolve_precision
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
            console: Console | None = None) -> dict[str, Any]:
    """Run ``recipe`` into ``out``: check everything, train (and train from scratch when asked), write the run.

    Every user error surfaces before the first file is written: the recipe, the registries, ``--out``, the data,
    the weights (fetched and hash-checked while the model is built). Only then is ``--out`` made and locked
    (:class:`~tl_core.files.RunLock`), so that data read from a folder that holds ``--out`` does not see it, and a
    run refused on its data leaves nothing behind.
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
    t_data = time.perf_counter()
    seed_everything(recipe.train.seed)  # the new head's initial weights come from the seed too
    model = hook().tl_build_model(recipe=recipe, data=data)
    if model is None:
        raise TLError(f"no installed plugin builds models for task {recipe.task!r}; install the plugin for it")
    t_model = time.perf_counter()
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
    report["processes"] = process.num_processes
    report["device"] = {"type": device, "name": device_name(device),
                        "precision": ctx.info.pop("precision", precision)}  # a task's own trainer may say otherwise
    report.update({k: v for k, v in ctx.info.items() if k not in report})
    if ctx.main_process:
        write_run(out, report, result.model)
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


def scratch_recipe(recipe: Recipe) -> Recipe:
    """The same architecture and budget from random init, under the policy's train-everything variant
    (:meth:`FreezePolicy.scratch`: by default every layer trains, at the recipe's learning rate)."""
    data = recipe.resolved()
    data["backbone"]["weights"] = "none"
    data["policy"] = make_policy(recipe).scratch()
    data["compare"]["scratch"] = False
    return validate(data, "scratch comparison")


def train_scratch(recipe: Recipe, data: Any, out: Path, resume: bool, quiet: bool, console: Console) -> Any:
    srecipe = scratch_recipe(recipe)
    seed_everything(srecipe.train.seed)
    model = hook().tl_build_model(recipe=srecipe, data=data)
    from accelerate import PartialState

    main = PartialState().is_main_process
    ctx = context.RunContext(recipe=srecipe, out=out, resume=resume and (out / "checkpoints").is_dir(),
                             console=console, quiet=quiet or not main, name="scratch", main_process=main)
    ctx.log("[bold]from-scratch comparison[/]: same architecture and budget, random init, every layer trains")
    result = hook().tl_train(recipe=srecipe, model=model, data=data, ctx=ctx)
    result.info["recipe_changes"] = {"backbone.weights": "none", "policy": srecipe.policy.model_dump()}
    return result
