"""The ultralytics YOLO path: models from their YAML (offline) or COCO checkpoints by URL (online), trained by
ultralytics' own trainer (its augmentations, its DDP), driven by the tl recipe.

Freeze policies are applied for real. Ultralytics sets ``requires_grad=True`` on every layer outside its own
``freeze`` list when training starts, so tl hands it the policy's frozen layers as that list (which also keeps
their BatchNorm in eval mode), moves layers out of it when a policy unfreezes them (gradual unfreezing, at the
start of an epoch), and copies the frozen layers into the EMA model after every step: the EMA update
``d * w + (1 - d) * w`` would otherwise change frozen weights in their last bits. The last layer group
(``detect``) is the task head and always trains.

Ultralytics' ``optimizer_step`` always clips the gradients' total norm at 10.0. A recipe's ``train.max_grad_norm``
replaces that number for the run (:func:`clip_norm`, around ultralytics' own ``optimizer_step``); unset, ultralytics'
10.0 stays. The norm applied is ``max_grad_norm`` in the report.

Ultralytics' ``.pt`` checkpoints are pickles; they are read with ultralytics' own restricted loader
(``weights_only=True`` and an allow-list of its layer classes), never with arbitrary unpickling.

Ultralytics attaches its integrations (MLflow, ClearML, Comet, DVC, W&B, Neptune, Ray Tune, TensorBoard - each when
installed and on in its settings, most of them on by default - and Ultralytics Platform uploads) to every trainer,
and its anonymous usage events to every trainer, validator, predictor and exporter. Under tl none is attached
unless the recipe's ``head.integrations`` names it (:func:`integrations`); ultralytics' settings file is neither
read for this nor written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tl_core.api import TLError, WeightsError
from tl_driving.class_rows import kept_line, source_rows
from tl_driving.models import Detector
from tl_driving.options import INTEGRATIONS, YoloOptions
from tl_driving.yolo_backbones import coco_names

if TYPE_CHECKING:
    from tl_core.api import Recipe, RunContext


def yolo_options(recipe: Any) -> YoloOptions:
    """The recipe's ``yolo`` head options (the defaults for a YOLO backbone under another head's name)."""
    return YoloOptions.model_validate(recipe.head.options) if recipe.head.name == "yolo" else YoloOptions()


@contextmanager
def integrations(names: Sequence[str] = (), log: Callable[[str], None] | None = None) -> Iterator[None]:
    """While inside, every ultralytics trainer, validator, predictor and exporter gets the callbacks of the
    integrations in ``names`` only (``head.integrations``; see :data:`tl_driving.options.INTEGRATIONS`), instead of
    those ultralytics' settings turn on. Ultralytics adds them through ``ultralytics.utils.callbacks.
    add_integration_callbacks``, looked up when each object is made; that one function is swapped for the run and
    put back after, so ``SETTINGS`` and its file stay as they are. An integration whose package is not installed
    attaches nothing (``log`` says so)."""
    from importlib import import_module

    from ultralytics.utils import callbacks as package

    chosen: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            found = import_module(INTEGRATIONS[name]).callbacks
        except ImportError:
            import ultralytics

            raise TLError(f"head.integrations: ultralytics {ultralytics.__version__} has no {name} integration; "
                          "remove it from the list") from None
        if not found and log is not None:
            log(f"ultralytics integration {name} is not active: its package is not installed (or ultralytics turns "
                "it off here)")
        chosen[name] = found

    def add(instance: Any) -> None:
        trainer = "Trainer" in type(instance).__name__  # ultralytics' own test: only trainers log experiments
        for name, found in chosen.items():
            if name == "analytics" or trainer:
                for event, fn in found.items():
                    if fn not in instance.callbacks[event]:
                        instance.callbacks[event].append(fn)

    original = package.add_integration_callbacks
    package.add_integration_callbacks = add
    try:
        yield
    finally:
        package.add_integration_callbacks = original


ULTRALYTICS_MAX_GRAD_NORM = 10.0  # what ultralytics' BaseTrainer.optimizer_step clips at, always


@contextmanager
def clip_norm(max_norm: float) -> Iterator[list[float]]:
    """While inside, ``torch.nn.utils.clip_grad_norm_`` clips at ``max_norm`` whatever its caller asks for: how
    ``train.max_grad_norm`` replaces the 10.0 that ultralytics' ``optimizer_step`` passes it, without copying that
    method (its unscaling, its NPU branch, its EMA update stay ultralytics'). Yields the list of the norms callers
    asked for, one per call (empty: nothing clipped through it)."""
    import torch

    asked: list[float] = []
    original = torch.nn.utils.clip_grad_norm_

    def clip(parameters: Any, *args: Any, **kwargs: Any) -> Any:
        if args:
            asked.append(float(args[0]))
            args = (max_norm, *args[1:])
        else:
            asked.append(float(kwargs.get("max_norm", float("nan"))))
            kwargs["max_norm"] = max_norm
        return original(parameters, *args, **kwargs)

    torch.nn.utils.clip_grad_norm_ = clip
    try:
        yield asked
    finally:
        torch.nn.utils.clip_grad_norm_ = original


def trainer_class(model: Any, max_grad_norm: float | None) -> type:
    """Ultralytics' detection trainer on tl's model (not rebuilt from the YAML, which would resize the class branches
    for the new class count and drop the warm-started rows), clipping at ``max_grad_norm`` (``None``: ultralytics'
    own 10.0)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class Trainer(DetectionTrainer):
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> Any:
            return model

        def optimizer_step(self) -> None:
            if max_grad_norm is None:
                return super().optimizer_step()
            with clip_norm(max_grad_norm) as asked:
                super().optimizer_step()
            if not asked:  # an ultralytics that clips another way: refuse rather than ignore the recipe
                import ultralytics

                raise TLError(f"train.max_grad_norm: ultralytics {ultralytics.__version__} no longer clips through "
                              "torch.nn.utils.clip_grad_norm_, so tl cannot apply it; remove train.max_grad_norm "
                              "from the YOLO recipe, or use a torchvision detector head (faster-rcnn, retinanet, "
                              "fcos, ssdlite)")
            return None

    return Trainer


def read_checkpoint(path: Any, what: str) -> dict[str, Any]:
    """A state_dict from an ultralytics checkpoint, through ultralytics' restricted ``weights_only`` loader."""
    try:
        from ultralytics.nn.tasks import torch_safe_load

        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    except Exception as exc:  # a refused global, a damaged file
        raise WeightsError(f"weights {what}: {path} is not an ultralytics checkpoint tl can read safely "
                           f"({type(exc).__name__}: {str(exc)[:160]})") from None
    model = ckpt.get("ema") or ckpt.get("model")
    if model is None:
        raise WeightsError(f"weights {what}: {path} holds no 'model' or 'ema'")
    return {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def resize_classes(model: Any, classes: list[str], source_names: list[str] | None,
                   class_map: dict[str, str | None]) -> list[str]:
    """Give the Detect head one output row per target class. Rows of classes the source model knew (by name, after
    ``class_map``, as :func:`tl_driving.class_rows.source_rows` matches them) keep their pre-trained weights; the
    others start fresh, with ultralytics' own bias prior. Returns report lines naming what was kept.

    Only the last convolution of each class branch changes: its hidden width stays the source's, which is why
    tl hands ultralytics this very model instead of letting it rebuild one from the YAML for the new class count.
    """
    import math

    import torch
    from torch import nn

    detect = model.model[-1]
    nc = len(classes)
    rows = source_rows(classes, source_names, class_map) if source_names is not None else {}
    lines = []
    for i, branch in enumerate(detect.cv3):
        old = branch[-1]
        new = nn.Conv2d(old.in_channels, nc, 1)
        with torch.no_grad():
            new.bias.fill_(math.log(5 / nc / (640 / float(detect.stride[i])) ** 2) if detect.stride[i] else 0.0)
            for j, k in rows.items():
                new.weight[j].copy_(old.weight[k])
                new.bias[j].copy_(old.bias[k])
        branch[-1] = new
        if source_names is not None:
            lines.append(kept_line(f"model.{len(model.model) - 1}.cv3.{i}.{len(branch) - 1}", classes, source_names,
                                   rows))
    detect.nc = nc
    detect.no = nc + detect.reg_max * 4
    model.nc = nc
    model.yaml["nc"] = nc
    model.names = dict(enumerate(classes))
    return lines


@dataclass
class YoloDetector(Detector):
    """What ``tl_build_model`` returns for the YOLO path: a Detector and the model's YAML."""

    cfg: str = ""


def build(recipe: Recipe, data: Any, weights: str | None = None) -> YoloDetector:
    from tl_core.api import backbone_for

    built = backbone_for(recipe, weights=weights)
    spec = built.spec
    classes = list(data.classes)
    model = built.module  # nc=80, the layout of the COCO checkpoints (with or without their weights)
    lines = resize_classes(model, classes, list(coco_names()) if built.report is not None else None,
                           data.options.class_map)
    if built.report is not None:
        built.report.reshaped.extend(lines)
    size = recipe.data.image_size or data.options.image_size
    return YoloDetector(model, built, classes, size, f"{spec.name}.yaml")


def _frozen_layers(groups: Any, states: list[Any]) -> list[int]:
    return sorted(int(p.split(".")[1]) for g, s in zip(groups, states) if not s.trainable for p in g.prefixes)


def predict(model: Any, cfg: str, dataset: Any, size: int, device: str) -> tuple[list[Any], list[Any]]:
    """Predictions (score threshold 0.001, as mAP wants) and targets, in original image pixels."""
    import torch
    from ultralytics import YOLO

    yolo = YOLO(cfg, task="detect")
    yolo.model = model.eval()
    outputs, targets = [], []
    for sample in dataset.samples:
        result = yolo.predict(str(sample.image), imgsz=size, conf=0.001, device=device, verbose=False)[0]
        boxes = result.boxes
        outputs.append({"boxes": boxes.xyxy.cpu(), "scores": boxes.conf.cpu(), "labels": boxes.cls.long().cpu()})
        targets.append({"boxes": torch.tensor([[b.x1, b.y1, b.x2, b.y2] for b in sample.boxes]).reshape(-1, 4),
                        "labels": torch.tensor([b.label for b in sample.boxes], dtype=torch.long)})
    return outputs, targets


def train(recipe: Recipe, det: YoloDetector, data: Any, ctx: RunContext) -> Any:
    import logging
    import time

    import torch
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    from tl_core.api import FreezePolicy, TrainResult, evaluate_outputs, make_policy, resolve_device
    from tl_driving.formats import write_yolo

    policy = make_policy(recipe)
    if type(policy).loss_term is not FreezePolicy.loss_term:
        raise TLError(f"policy {policy.name!r} adds a loss term, which ultralytics' own trainer cannot add; use a "
                      "torchvision detector head (faster-rcnn, retinanet, fcos, ssdlite) with this policy")
    groups = det.groups
    n, epochs = len(groups) - 1, recipe.train.epochs  # the last group, detect, is the head
    policy.bind([g.name for g in groups[:n]])
    plans = [[*policy.plan(n, e, epochs), _HEAD] for e in range(epochs)]
    device = resolve_device(recipe.train.device)
    splits = {"val": data.val} if data.val else {}
    if data.test:
        splits["test"] = data.test
    yaml_path = write_yolo(data.train, ctx.out / "yolo-data", splits)
    initial = {k: v.clone() for k, v in det.model.state_dict().items()}
    history: list[dict[str, float]] = []
    state: dict[str, Any] = {"frozen": _frozen_layers(groups, plans[0]), "start": time.perf_counter()}

    def on_train_epoch_start(trainer: Any) -> None:
        frozen = _frozen_layers(groups, plans[min(trainer.epoch, epochs - 1)])
        opened = sorted(set(state["frozen"]) - set(frozen))
        if opened:
            for name, p in trainer.model.named_parameters():
                if int(name.split(".")[1]) in opened:
                    p.requires_grad_(True)
            ctx.log(f"epoch {trainer.epoch + 1}: unfroze layers {opened}")
        trainer.freeze_layer_names = [f"model.{i}." for i in frozen] + [".dfl"]
        state["frozen"] = frozen
        state["epoch_start"] = time.perf_counter()
        live = trainer.model.state_dict()  # (EMA tensor, model tensor) pairs of the frozen layers, once an epoch
        ema = trainer.ema.ema.state_dict() if trainer.ema is not None else {}
        state["pairs"] = [(v, live[k]) for k, v in ema.items()
                          if k.startswith("model.") and int(k.split(".")[1]) in frozen and v.is_floating_point()]

    def on_train_batch_end(trainer: Any) -> None:
        pairs = state.get("pairs")
        if pairs:
            with torch.no_grad():
                torch._foreach_copy_([e for e, _ in pairs], [m for _, m in pairs])

    def on_fit_epoch_end(trainer: Any) -> None:
        if trainer.epoch + 1 > epochs or (history and history[-1]["epoch"] >= trainer.epoch + 1):
            return  # ultralytics' final validation of best.pt fires this event once more
        metrics = trainer.metrics or {}
        row = {
            "epoch": trainer.epoch + 1,
            "train_loss": _total(trainer.tloss),
            "lr": float(trainer.optimizer.param_groups[0]["lr"]),
            "val_map_50": float(metrics.get("metrics/mAP50(B)", float("nan"))),
            "val_map": float(metrics.get("metrics/mAP50-95(B)", float("nan"))),
            "seconds": time.perf_counter() - state.get("epoch_start", state["start"]),
        }
        history.append(row)
        ctx.log(f"[bold]{ctx.name}[/] epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  "
                f"val_map_50 {row['val_map_50']:.4f}  {row['seconds']:.1f}s")
        ctx.epoch_end(row["epoch"], row)

    max_grad_norm = recipe.train.max_grad_norm
    trainer_cls = trainer_class(det.model, max_grad_norm)
    yolo = YOLO(det.cfg, task="detect")
    yolo.model = det.model
    for event, fn in (("on_train_epoch_start", on_train_epoch_start), ("on_train_batch_end", on_train_batch_end),
                      ("on_fit_epoch_end", on_fit_epoch_end)):
        yolo.add_callback(event, fn)

    with integrations(yolo_options(recipe).integrations, ctx.log):  # none unless the recipe asks
        level = LOGGER.level
        if ctx.quiet:
            LOGGER.setLevel(logging.WARNING)
        try:
            _fit(yolo, recipe, det, data, ctx, yaml_path, device, state, trainer_cls)
        finally:
            LOGGER.setLevel(level)
        trainer = yolo.trainer
        final = (trainer.ema.ema if trainer.ema is not None else trainer.model).float().eval()
        frozen_now = state["frozen"]
        for name, p in final.named_parameters():  # as the policy left them, for the report's parameter counts
            p.requires_grad_(int(name.split(".")[1]) not in frozen_now)
        drift = [k for k, v in final.state_dict().items() if k.startswith("model.") and
                 int(k.split(".")[1]) in frozen_now and not torch.equal(v, initial[k])]
        metrics = {}
        for split, dataset in splits.items():
            outputs, targets = predict(final, det.cfg, dataset, det.size, device)
            metrics[split] = evaluate_outputs(recipe.task, outputs, targets, det.classes, recipe.data.options)
    det.model = final
    return TrainResult(
        model=final, history=history, metrics=metrics, best_epoch=len(history), metric="map_50",
        seconds=time.perf_counter() - state["start"],
        info={"trainer": "ultralytics", "frozen_layers": frozen_now, "frozen_layers_changed": drift,
              "integrations": list(yolo_options(recipe).integrations),
              "max_grad_norm": ULTRALYTICS_MAX_GRAD_NORM if max_grad_norm is None else max_grad_norm,
              "feature_cache": {"used": False, "reason": "ultralytics trains on augmented whole images"},
              "preprocessing": {"size": det.size}},
    )


def _total(loss: Any) -> float:
    if loss is None:
        return float("nan")
    if isinstance(loss, dict):
        return float(sum(float(v) for v in loss.values()))
    return float(loss.sum())


NO_AUGMENTATION = {"mosaic": 0.0, "fliplr": 0.0, "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "translate": 0.0,
                   "scale": 0.0, "erasing": 0.0}


def _fit(yolo: Any, recipe: Any, det: Any, data: Any, ctx: Any, yaml_path: Any, device: str, state: Any,
         trainer: Any) -> None:
    from tl_core.api import resolve_precision

    amp = resolve_precision(recipe.train.amp, device) != "no"
    ctx.info["precision"] = "fp16" if amp else "no"  # ultralytics' AMP is fp16 autocast, whatever train.amp names
    yolo.train(
        trainer=trainer, data=str(yaml_path), epochs=recipe.train.epochs, imgsz=det.size, batch=recipe.train.batch_size,
        device="cpu" if device == "cpu" else 0, workers=recipe.data.num_workers, project=str(ctx.out),
        name="ultralytics", exist_ok=True, seed=recipe.train.seed, deterministic=True, lr0=recipe.train.lr,
        optimizer="SGD" if recipe.train.optimizer == "sgd" else "AdamW", momentum=recipe.train.momentum,
        weight_decay=recipe.train.weight_decay, cos_lr=recipe.train.schedule == "cosine",
        patience=recipe.train.patience or recipe.train.epochs, plots=False, amp=amp, verbose=False,
        freeze=state["frozen"] or None, val=bool(data.val),
        # ultralytics' training augmentations are on by default; data.augment: false turns them off. (Its own
        # `augment` argument is test-time augmentation of predictions, which tl does not use.)
        **({} if recipe.data.augment else NO_AUGMENTATION),
    )


class _Head:
    """The Detect layer's state in every plan: it always trains."""

    trainable = True


_HEAD = _Head()
