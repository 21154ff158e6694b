"""The core trainer, on Hugging Face Accelerate (so ``accelerate launch`` runs it on many GPUs or nodes).

AdamW or SGD; cosine, one-cycle or constant learning rate; mixed precision and CUDA when available; gradient
accumulation; early stopping and best-checkpoint selection on a validation metric; ``--resume`` from the last
checkpoint; deterministic seeds (the shuffle and the augmentation of epoch *e* depend only on the seed and
*e*, so a resumed run sees the batches an uninterrupted run would have seen). Freeze policies act through
:mod:`tl_core.policies`: when a policy unfreezes a layer group, the group joins the optimizer as a new
parameter group.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core import components
from tl_core.compat import moved
from tl_core.errors import RunError, TLError
from tl_core.files import commit_file, write_atomic, write_json
from tl_core.plugins import hook
from tl_core.policies import FreezePolicy, GroupState, apply_plan, param_groups, set_train_mode
from tl_core.weights import load_run_state, read_checkpoint, savable

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from torch import nn

    from tl_core.components import LayerGroup, TaskSteps, TrainResult
    from tl_core.context import RunContext
    from tl_core.sections import TrainConfig

# 1.1 plugins found these here
__getattr__ = moved(__name__, {"TrainResult": "tl_core.components", "TaskSteps": "tl_core.components"})

CHECKPOINT = "last.pt"
BEST = "best.safetensors"


def resolve_device(device: str) -> str:
    """``auto`` picks CUDA when there is a GPU; asking for ``cuda`` without one is a user error."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise TLError("train.device is 'cuda' but no CUDA device is visible; set train.device: auto or cpu")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(amp: str, device: str) -> str:
    """Mixed precision for Accelerate: ``auto`` is bf16 (or fp16) on CUDA and none on CPU."""
    import torch

    if amp == "auto":
        if device != "cuda":
            return "no"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp != "no" and device != "cuda":
        raise TLError(f"train.amp: {amp} needs a CUDA device; set train.amp: auto or no on {device}")
    return amp


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.state import AcceleratorState, GradientState

    device = resolve_device(cfg.device)
    AcceleratorState._reset_state(reset_partial_state=False)  # one process may run several trainings
    GradientState._reset_state()
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision=resolve_precision(cfg.amp, device),
        gradient_accumulation_steps=cfg.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )


def lr_factor(schedule: str, step: int, total: int) -> float:
    """The learning-rate multiplier at optimizer ``step`` of ``total``."""
    t = min(step / max(total, 1), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "one-cycle":  # 30% linear warm-up from 4%, then cosine down to ~0
        if t < 0.3:
            return 0.04 + 0.96 * t / 0.3
        return 0.5 * (1 + math.cos(math.pi * (t - 0.3) / 0.7))
    return 1.0


def evaluate_outputs(task: str, outputs: torch.Tensor, targets: torch.Tensor, classes: list[str],
                     options: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Merge every plugin's ``tl_evaluate`` answer (the first plugin to name a metric keeps it). ``options`` is
    the run's ``data.options``."""
    merged: dict[str, float] = {}
    given = hook().tl_evaluate(task=task, outputs=outputs, targets=targets, class_names=classes,
                               options=dict(options or {}))
    for answer in reversed(given):  # pluggy calls the last registered first: registration order puts the core first
        for key, value in answer.items():
            merged.setdefault(key, float(value))
    return merged


class Trainer:
    """Trains ``model`` (``model.backbone`` + ``model.head``) under a freeze policy, writing checkpoints."""

    def __init__(
        self,
        model: nn.Module,
        groups: tuple[LayerGroup, ...],
        policy: FreezePolicy,
        cfg: TrainConfig,
        ctx: RunContext,
        task: str,
        classes: list[str],
        num_workers: int = 0,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        metric_names: set[str] | None = None,
        task_steps: TaskSteps | None = None,
    ) -> None:
        self.model = model
        self.num_workers = num_workers
        self.loss = loss or self._cross_entropy
        self.metric_names = metric_names
        self.steps = task_steps
        self.groups = groups
        self.policy = policy
        self.cfg = cfg
        self.ctx = ctx
        self.task = task
        self.classes = classes
        n = len(groups)
        policy.bind([g.name for g in groups])
        self.plans = [policy.plan(n, e, cfg.epochs) for e in range(cfg.epochs)]
        self._check_metric()
        self.accelerator = make_accelerator(cfg)

    # -------------------------------------------------------------- pieces

    def _cross_entropy(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.nn.functional.cross_entropy(out, y, label_smoothing=self.cfg.label_smoothing)

    def _check_metric(self) -> None:
        """Fail before the first epoch, not after it, when ``train.metric`` is not a metric of the task."""
        import torch

        if self.metric_names is None:  # classification: ask the metric plugins with a perfect toy prediction
            n = max(len(self.classes), 2)
            self.metric_names = set(evaluate_outputs(self.task, torch.eye(n), torch.arange(n), self.classes,
                                                     self.ctx.recipe.data.options))
        known = self.metric_names | ({"loss"} if self.steps is None else set())  # own-loss tasks: no val loss
        if self.cfg.metric not in known:
            raise TLError(
                f"train.metric {self.cfg.metric!r} is not computed for task {self.task!r}; "
                f"choose one of: {', '.join(sorted(known))}"
            )

    def _optimizer(self, states: list[GroupState]) -> torch.optim.Optimizer:
        import torch

        groups = param_groups(self.model, self.groups, states, self.cfg.lr, self.cfg.weight_decay)
        if self.cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.cfg.lr, momentum=self.cfg.momentum,
                                   weight_decay=self.cfg.weight_decay)
        params = [p for g in groups for p in g["params"]]
        # torch's fused AdamW kernel (CPU and CUDA, float parameters) is what the HF Trainer uses by default;
        # the default per-tensor loop was 7% slower on a small seq2seq model (docs/benchmarks.md)
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        return torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=fused or None)

    def _loader(self, dataset: Any, shuffle: bool) -> Any:
        import torch
        from torch.utils.data import DataLoader

        generator = torch.Generator().manual_seed(self.cfg.seed)
        collate = self.steps.collate if self.steps else None
        return DataLoader(dataset, batch_size=self.cfg.batch_size, shuffle=shuffle, generator=generator,
                          num_workers=self.num_workers, drop_last=False, collate_fn=collate)

    def _save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch

        if self.accelerator.is_main_process:
            write_json(self.ctx.checkpoints / "recipe.json", self.ctx.recipe.resolved())
            buffer = io.BytesIO()
            torch.save(state, buffer)
            write_atomic(self.ctx.checkpoints / CHECKPOINT, buffer.getvalue())

    def _scaler_state(self) -> dict[str, Any]:
        """fp16's loss scale (``GradScaler``), for the checkpoint: without it a resumed run starts again from 65536
        and skips steps until the scale has come down to where it was."""
        scaler = getattr(self.accelerator, "scaler", None)
        return {} if scaler is None else {"scaler": scaler.state_dict()}

    def _restore_scaler(self, checkpoint: dict[str, Any]) -> None:
        scaler = getattr(self.accelerator, "scaler", None)
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])

    def _save_best(self) -> None:
        from safetensors.torch import save_file

        if self.accelerator.is_main_process:
            self.ctx.checkpoints.mkdir(parents=True, exist_ok=True)
            state = self.accelerator.unwrap_model(self.model).state_dict()
            tmp = self.ctx.checkpoints / f".{BEST}.tmp"
            save_file(savable(state), str(tmp))
            commit_file(tmp, self.ctx.checkpoints / BEST)

    def predict(self, loader: Any) -> tuple[Any, Any, float | None]:
        """Outputs, targets and mean loss of the (prepared) model over a (prepared) loader.

        Tensors are concatenated; a task with its own steps (detection: lists of dicts) gets lists, and no loss.
        """
        import torch

        self.model.eval()
        outs: list[Any] = []
        tgts: list[Any] = []
        with torch.no_grad():
            for x, y in loader:
                if self.steps is not None:
                    out = self.steps.predict(self.model, x)
                    outs.extend(self.accelerator.gather_for_metrics(out, use_gather_object=True))
                    tgts.extend(self.accelerator.gather_for_metrics(y, use_gather_object=True))
                    continue
                out = self.model(x)
                out, y = self.accelerator.gather_for_metrics((out, y))
                outs.append(out.float().cpu())
                tgts.append(y.cpu())
        if self.steps is not None:
            return outs, tgts, None
        outputs, targets = torch.cat(outs), torch.cat(tgts)
        with torch.no_grad():
            loss = self.loss(outputs, targets).item()
        return outputs, targets, loss

    def score(self, loader: Any, keep: dict[str, Any] | None = None, split: str = "") -> dict[str, float]:
        """The task's metrics (and loss) over ``loader``; ``keep[split]`` gets the outputs and targets."""
        outputs, targets, loss = self.predict(loader)
        if keep is not None:
            keep[split] = (outputs, targets)
        metrics = evaluate_outputs(self.task, outputs, targets, self.classes, self.ctx.recipe.data.options)
        if loss is not None:
            metrics["loss"] = loss
        return metrics

    # -------------------------------------------------------------- the loop

    def fit(self, train_set: Any, val_set: Any | None, resume: bool = False) -> TrainResult:
        import torch
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        cfg, acc = self.cfg, self.accelerator
        start_time = time.perf_counter()
        history: list[dict[str, float]] = []
        best: float | None = None
        best_epoch: int | None = None
        best_loss: float | None = None  # the validation loss of the best epoch: what breaks a tie of the metric
        bad_epochs = 0
        start = 0
        checkpoint: dict[str, Any] | None = None
        # a policy's loss term sees the weights as built (before a checkpoint's) and where they will train: its
        # anchors (L2-SP's pre-trained weights) must sit on the device the model trains on
        self.model.to(acc.device)
        penalty_of = self.policy.loss_term(self.model)
        if resume:
            path = self.ctx.checkpoints / CHECKPOINT
            if not path.is_file():
                raise RunError(f"--resume: no checkpoint at {path}; start the run without --resume")
            checkpoint = read_checkpoint(path)
            start = int(checkpoint["epoch"])
            history, best, best_epoch = checkpoint["history"], checkpoint["best"], checkpoint["best_epoch"]
            best_loss = checkpoint.get("best_loss")  # a checkpoint of tl 0.2 has none
            bad_epochs = int(checkpoint["bad_epochs"])
            load_run_state(self.model, path, checkpoint["model"], "the checkpoint's model")

        torch.manual_seed(cfg.seed)
        states = self.plans[min(max(start - 1, 0), cfg.epochs - 1)]
        apply_plan(self.model, self.groups, states)
        optimizer = self._optimizer(states)
        if checkpoint is not None:
            try:
                optimizer.load_state_dict(checkpoint["optimizer"])
            except (ValueError, KeyError) as exc:
                raise RunError(f"--resume: the checkpoint's optimizer does not fit this run's ({exc}): the checkpoint "
                               "was changed, or written by a tl before 0.3 (whose weight decay did not spare biases "
                               "and norms); finish it with that tl, or start again without --resume") from None
        train_loader = self._loader(train_set, shuffle=True)
        val_loader = self._loader(val_set, shuffle=False) if val_set is not None else None
        self.model, optimizer, train_loader = acc.prepare(self.model, optimizer, train_loader)
        if checkpoint is not None:
            self._restore_scaler(checkpoint)
        if val_loader is not None:
            val_loader = acc.prepare(val_loader)
        steps_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum)
        total_steps = steps_per_epoch * cfg.epochs
        stopped_early = start < cfg.epochs and checkpoint is not None and checkpoint.get("stopped_early", False)
        if stopped_early:
            start = cfg.epochs

        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=self.ctx.console, disable=self.ctx.quiet or not acc.is_main_process, transient=True,
        )
        with progress:
            epochs_task = progress.add_task(f"{self.ctx.name} epochs", total=cfg.epochs, completed=start)
            for epoch in range(start, cfg.epochs):
                epoch_start = time.perf_counter()
                new_states = self.plans[epoch]
                if new_states != states:
                    apply_plan(acc.unwrap_model(self.model), self.groups, new_states)
                    present = {g["name"] for g in optimizer.param_groups}
                    for group in param_groups(acc.unwrap_model(self.model), self.groups, new_states, cfg.lr,
                                              cfg.weight_decay):
                        if group["name"] not in present:
                            optimizer.add_param_group(group)
                            self.ctx.log(f"epoch {epoch + 1}: unfroze layer group {group['name']!r} "
                                         f"(lr {group['lr']:.2e})")
                    states = new_states
                    if acc.num_processes > 1:
                        # DDP averages only the gradients of parameters that trained when it was built:
                        # wrap again so that the groups just unfrozen are averaged across processes too
                        self.model = acc.prepare(acc.unwrap_model(self.model))
                set_train_mode(acc.unwrap_model(self.model), self.groups, states)
                torch.manual_seed(cfg.seed * 100_003 + epoch)  # augmentation of this epoch
                train_loader.set_epoch(epoch)
                batches = progress.add_task(f"epoch {epoch + 1}", total=len(train_loader))
                total_loss, total_penalty, seen, correct = 0.0, 0.0, 0, 0
                for i, (x, y) in enumerate(train_loader):
                    step = epoch * steps_per_epoch + i // cfg.grad_accum
                    for group in optimizer.param_groups:
                        group["lr"] = group["base_lr"] * lr_factor(cfg.schedule, step, total_steps)
                    with acc.accumulate(self.model):
                        if self.steps is not None:
                            out, loss = None, self.steps.train(self.model, x, y)
                        else:
                            out = self.model(x)
                            loss = self.loss(out, y)
                        penalty = None if penalty_of is None else torch.as_tensor(
                            penalty_of(acc.unwrap_model(self.model)), device=loss.device)
                        acc.backward(loss if penalty is None else loss + penalty)
                        if cfg.max_grad_norm is not None and acc.sync_gradients:
                            acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)  # unscales fp16 first
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                        if self.steps is not None and self.steps.after_step is not None:
                            self.steps.after_step(acc.unwrap_model(self.model))
                    value = loss.detach().item()
                    if penalty is not None and not math.isfinite(penalty.detach().item()):
                        value = penalty.detach().item()  # a loss term that diverged is a diverged run too
                    if not math.isfinite(value):
                        raise RunError(
                            f"{self.ctx.name}: the training loss is {value} at epoch {epoch + 1}, batch {i + 1} "
                            f"(precision {acc.mixed_precision}, lr {cfg.lr:g}): the model diverged; lower train.lr"
                            f"{' or set train.amp: no' if acc.mixed_precision != 'no' else ''} and run again"
                        )
                    total_loss += value * len(y)
                    if penalty is not None:
                        total_penalty += penalty.detach().item() * len(y)
                    if out is not None and out.ndim == 2 and y.ndim == 1:  # classification: training accuracy
                        correct += (out.detach().argmax(1) == y).sum().item()
                    seen += len(y)
                    progress.advance(batches)
                progress.remove_task(batches)
                row: dict[str, float] = {
                    "epoch": epoch + 1,
                    "train_loss": total_loss / max(seen, 1),
                    **({"train_accuracy": correct / max(seen, 1)} if out is not None and out.ndim == 2 else {}),
                    **({"train_penalty": total_penalty / max(seen, 1)} if penalty_of is not None else {}),
                    "lr": optimizer.param_groups[0]["lr"],
                    "trainable_params": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
                }
                if val_loader is not None:
                    val = self.score(val_loader)
                    row.update({f"val_{k}": v for k, v in val.items()})
                    current = val[cfg.metric] if cfg.metric != "loss" else -val["loss"]
                else:
                    current = -row["train_loss"]
                row["seconds"] = time.perf_counter() - epoch_start
                history.append(row)
                # a tiny validation set ties often (accuracy 1.0 from epoch 6 on): a tie goes to the lower validation
                # loss, and - loss equal too, or none - to the later epoch, which does not count as progress for
                # early stopping
                loss = val.get("loss") if val_loader is not None and cfg.metric != "loss" else None
                tied = best is not None and current == best
                better = best is None or current > best or (
                    tied and loss is not None and best_loss is not None and loss < best_loss)
                if better or (tied and (loss is None or best_loss is None or loss == best_loss)):
                    best, best_epoch, best_loss = current, epoch + 1, loss
                    self._save_best()
                bad_epochs = 0 if better else bad_epochs + 1
                stop = cfg.patience is not None and bad_epochs >= cfg.patience
                self._save_checkpoint({
                    "epoch": epoch + 1, "model": acc.unwrap_model(self.model).state_dict(),
                    "optimizer": optimizer.state_dict(), "history": history, "best": best, "best_loss": best_loss,
                    "best_epoch": best_epoch, "bad_epochs": bad_epochs, "stopped_early": stop,
                    **self._scaler_state(),
                })
                self.ctx.log(_epoch_line(row, cfg.epochs, self.ctx.name))
                self.ctx.epoch_end(epoch + 1, row)
                progress.advance(epochs_task)
                if stop:
                    stopped_early = True
                    self.ctx.log(f"early stop: no better {cfg.metric} for {cfg.patience} epochs")
                    break

        model = acc.unwrap_model(self.model)
        best_file = self.ctx.checkpoints / BEST
        if best_file.is_file():
            load_run_state(model, best_file, what="the best epoch's model")
        self.model = model
        selection = {
            "metric": cfg.metric if val_set is not None else "train_loss",
            "validation_items": len(val_set) if val_set is not None else 0,
            "ties": "lower validation loss, then the later epoch" if val_set is not None and cfg.metric != "loss"
            and self.steps is None else "the later epoch",
        }
        return components.TrainResult(
            model=model, history=history, metrics={}, best_epoch=best_epoch,
            metric=cfg.metric, stopped_early=stopped_early, seconds=time.perf_counter() - start_time,
            info={"selection": selection, "fit": fit_watch(history, stopped_early, cfg.epochs, cfg.patience,
                                                          cfg.metric)},
        )


RISE = 0.10  # validation loss this far above its minimum, while training loss fell, is called overfitting


def fit_watch(history: list[dict[str, float]], stopped_early: bool, epochs: int, patience: int | None,
              metric: str) -> dict[str, Any]:
    """Why training stopped, and an overfitting watch over the epochs: the gap between validation and training loss
    at each epoch, the epoch of the lowest validation loss, and how far it rose after it. ``overfitting`` is true
    when the last validation loss lies more than 10% above its minimum while the training loss went on falling
    - a rule of thumb, said as such in the report."""
    done = len(history)
    out: dict[str, Any] = {
        "epochs_run": done,
        "stopped": (f"early stop: no better {metric} for {patience} epochs" if stopped_early
                    else f"the budget of {epochs} epochs"),
    }
    rows = [r for r in history if "val_loss" in r and "train_loss" in r]
    if not rows:
        return out
    gaps = [r["val_loss"] - r["train_loss"] for r in rows]
    lowest = min(rows, key=lambda r: r["val_loss"])
    last = rows[-1]
    rise = (last["val_loss"] - lowest["val_loss"]) / max(abs(lowest["val_loss"]), 1e-12)
    still_learning = last["train_loss"] < lowest["train_loss"]
    out.update({
        "loss_gap": gaps,
        "val_loss_lowest_epoch": int(lowest["epoch"]),
        "val_loss_rise_after": rise,
        "overfitting": bool(rise > RISE and still_learning),
        "rule": f"validation loss over {RISE:.0%} above its lowest while the training loss kept falling",
    })
    return out


def _epoch_line(row: dict[str, float], epochs: int, name: str) -> str:
    parts = [f"[bold]{name}[/] epoch {int(row['epoch'])}/{epochs}", f"loss {row['train_loss']:.4f}"]
    parts += [f"{k} {v:.4f}" for k, v in row.items() if k.startswith("val_")]
    parts.append(f"{row['seconds']:.1f}s")
    return "  ".join(parts)


def run_trainer(
    model: nn.Module,
    groups: tuple[LayerGroup, ...],
    policy: FreezePolicy,
    cfg: TrainConfig,
    ctx: RunContext,
    task: str,
    classes: list[str],
    train_set: Any,
    val_set: Any | None,
    test_set: Any | None,
    num_workers: int = 0,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    metric_names: set[str] | None = None,
    task_steps: TaskSteps | None = None,
) -> TrainResult:
    """Fit, then score the best model on val and test. ``loss`` defaults to cross-entropy; a task whose
    outputs are not class scores passes its own, and the names of the metrics its ``tl_evaluate`` gives."""
    trainer = Trainer(model, groups, policy, cfg, ctx, task, classes, num_workers, loss, metric_names, task_steps)
    anchor = None
    if cfg.wise_ft:  # the backbone as built: its pre-trained weights, before a checkpoint's or training's
        anchor = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    result = trainer.fit(train_set, val_set, resume=ctx.resume)
    trainer.model = trainer.accelerator.prepare(result.model)
    if anchor is not None and val_set is not None:
        result.info["wise_ft"] = wise_ft(trainer, anchor, trainer._loader(val_set, False))
    for split, dataset in (("val", val_set), ("test", test_set)):
        if dataset is not None:
            result.metrics[split] = trainer.score(trainer.accelerator.prepare(trainer._loader(dataset, False)),
                                                  keep=result.predictions, split=split)
    result.model = trainer.accelerator.unwrap_model(trainer.model)
    return result


WISE_ALPHAS = tuple(i / 10 for i in range(11))


def wise_ft(trainer: Trainer, anchor: dict[str, Any], val_loader: Any) -> dict[str, Any]:
    """WiSE-FT (Wortsman et al. 2022) for a new head: the backbone's weights become ``(1 - alpha) w0 + alpha w`` (``w0``
    pre-trained, ``w`` fine-tuned; BatchNorm's running statistics too, its step counters kept) for each alpha of
    0, 0.1, ..., 1, the head staying as trained (the pre-trained model has no head for this task to mix with). The
    alpha with the best validation metric is kept - ties to the lower validation loss, then the larger alpha (the
    trained model) - and the curve is returned for the report."""
    import torch

    model = trainer.accelerator.unwrap_model(trainer.model)
    backbone = model.backbone
    tuned = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    metric = trainer.cfg.metric
    loader = trainer.accelerator.prepare(val_loader)

    def mix(alpha: float) -> dict[str, Any]:
        return {k: torch.lerp(anchor[k].to(v.device, v.dtype), v, alpha) if v.is_floating_point() else v
                for k, v in tuned.items()}

    curve = []
    for alpha in WISE_ALPHAS:
        backbone.load_state_dict(mix(alpha))
        scores = trainer.score(loader)
        curve.append({"alpha": alpha, f"val_{metric}": scores.get(metric), "val_loss": scores.get("loss")})
    key = f"val_{metric}"

    def rank(point: dict[str, Any]) -> tuple[float, float, float]:
        value = point[key] if metric != "loss" else -(point["val_loss"] or 0.0)
        return (value if value is not None else -math.inf, -(point["val_loss"] or 0.0), point["alpha"])

    best = max(curve, key=rank)
    backbone.load_state_dict(mix(best["alpha"]))
    return {"alpha": best["alpha"], "curve": curve, "metric": metric,
            "rule": "the best validation metric over alpha = 0, 0.1, ..., 1 (backbone (1 - alpha) w0 + alpha w, "
                    "head as trained); ties to the lower validation loss, then the larger alpha"}


def checkpoint_exists(out: Path) -> bool:
    return (out / "checkpoints" / CHECKPOINT).is_file()

