"""A finished detection run rebuilt from its folder alone (:func:`rebuild`), and exported: ultralytics' own exporter
for YOLO runs, ONNX (torch's exporter) for torchvision detectors. ``tl export RUN --format onnx|torchscript`` (added
by this plugin).

The run's ``model.safetensors`` is read with the core's :func:`~tl_core.api.read_run_state` and
:func:`~tl_core.api.load_run_state`: a missing, truncated or tampered file, or one that does not fit the model of
the run's recipe, is one :class:`~tl_core.api.RunError` line. An export is written into a temporary folder inside
the run and moved into ``RUN/export/`` only when it succeeded, so a bad ``--format`` or a failing exporter leaves
nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tl_core.api import RunError, TLError

#: ``--format`` values per kind of run, and the suffix of the file each writes
FORMATS = {"yolo": {"onnx": "onnx", "torchscript": "torchscript"}, "torchvision": {"onnx": "onnx"}}


@dataclass
class Rebuilt:
    """A finished detection run's trained model, as its folder describes it."""

    kind: str  # "yolo" or "torchvision"
    model: Any  # YOLO: the ultralytics ``YOLO`` wrapper; torchvision: the DetectionModel
    classes: list[str]
    size: int
    recipe: Any


def _run(run_dir: Path) -> tuple[Any, list[str], int]:
    """The run's validated recipe, classes and image size, from its ``report.json``."""
    from tl_core.api import read_report
    from tl_core.api import validate_recipe as validate
    from tl_driving import models

    report = read_report(run_dir)
    recipe = validate(report["recipe"], f"{run_dir}/report.json")
    if recipe.task != models.TASK:
        raise TLError(f"{run_dir} is a {recipe.task!r} run; tl export exports object-detection runs")
    try:
        classes, size = report["data"]["classes"], int(report["preprocessing"]["size"])
    except (KeyError, TypeError, ValueError):
        classes, size = None, 0
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes) or size < 1:
        raise RunError(f"{run_dir}/report.json does not record the run's classes (data.classes) and image size "
                       "(preprocessing.size); the run folder is damaged: train again with tl run")
    return recipe, classes, size


def _kind(recipe: Any) -> str:
    from tl_driving import yolo_backbones

    return "yolo" if yolo_backbones.is_yolo(recipe.backbone.name) else "torchvision"


def rebuild_run(run_dir: Path) -> Rebuilt:
    """The trained model of a finished detection run, from its report and model file alone."""
    from tl_core.api import MODEL_FILE, load_run_state, read_run_state
    from tl_driving import yolo
    from tl_driving.build import build
    from tl_driving.options import DrivingOptions

    recipe, classes, size = _run(run_dir)
    path = run_dir / MODEL_FILE
    state = read_run_state(path)
    if _kind(recipe) == "yolo":
        from ultralytics import YOLO

        wrapper = YOLO(f"{recipe.backbone.name}.yaml", task="detect")  # its model carries what the exporter needs
        yolo.resize_classes(wrapper.model, classes, None, {})
        load_run_state(wrapper.model, path, state)
        return Rebuilt("yolo", wrapper, classes, size, recipe)
    data = SimpleNamespace(classes=classes, options=DrivingOptions(image_size=size))
    detector = build(recipe, data, weights="none")
    load_run_state(detector.model, path, state)
    return Rebuilt("torchvision", detector.model, classes, size, recipe)


def rebuild(run_dir: Path) -> tuple[Any, Any, list[str], int]:
    """``(kind, model, classes, size)`` of a finished detection run (:func:`rebuild_run`)."""
    built = rebuild_run(run_dir)
    return built.kind, built.model, built.classes, built.size


def export_run(run_dir: Path, fmt: str) -> Path:
    """Write ``RUN/export/model.<fmt>`` and ``RUN/export/classes.json`` (the name of each label id the exported
    model outputs) and return the model's path. Nothing is written unless the export succeeds."""
    recipe, _, _ = _run(run_dir)
    kind = _kind(recipe)
    if fmt not in FORMATS[kind]:
        known = " or ".join(FORMATS[kind])
        what = "YOLO runs" if kind == "yolo" else "torchvision detectors"
        raise TLError(f"--format {fmt}: {what} export to {known}; use --format {next(iter(FORMATS[kind]))}")
    if fmt == "onnx" and kind == "torchvision":
        from importlib.util import find_spec

        if find_spec("onnx") is None:
            raise TLError("ONNX export needs the onnx package; install it with pip install 'tl-driving[export]'")
    built = rebuild_run(run_dir)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=run_dir))
    try:
        written = _export(built, fmt, staging)
        final = run_dir / "export"
        final.mkdir(exist_ok=True)
        for name in ("classes.json", written.name):
            os.replace(staging / name, final / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / written.name


def _export(built: Rebuilt, fmt: str, out: Path) -> Path:
    """Export ``built`` into the folder ``out``: ``classes.json`` and ``model.<suffix>``; an exporter's failure is
    one TLError line."""
    import torch

    from tl_core.api import write_json
    from tl_driving import yolo

    # ultralytics numbers the classes from 0; torchvision detectors keep 0 for the background
    write_json(out / "classes.json", built.classes if built.kind == "yolo" else ["background", *built.classes])
    target = out / f"model.{FORMATS[built.kind][fmt]}"
    try:
        if built.kind == "yolo":
            built.model.model.pt_path = str(out / "model.pt")  # the exporter names its file after this
            with yolo.integrations(yolo.yolo_options(built.recipe).integrations):  # no analytics event
                written = Path(built.model.export(format=fmt, imgsz=built.size, device="cpu", verbose=False))
            if written != target:
                shutil.move(str(written), target)
            return target
        model = built.model.eval()

        class OneImage(torch.nn.Module):
            """One ``(3, H, W)`` image in, ``boxes, labels, scores`` out in this order (torchvision's detectors put
            their output keys in different orders)."""

            def __init__(self) -> None:
                super().__init__()
                self.detector = model.detector

            def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                found = self.detector([image])[0]
                return found["boxes"], found["labels"], found["scores"]

        size = built.size
        torch.onnx.export(OneImage().eval(), (torch.rand(3, size, size),), str(target), opset_version=17,
                          dynamo=False, input_names=["images"], output_names=["boxes", "labels", "scores"])
        return target
    except TLError:
        raise
    except Exception as exc:  # an exporter's own failure (a missing package, an unsupported layer)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise TLError(f"the {fmt} export failed ({type(exc).__name__}: {first}); nothing was written to "
                      "RUN/export. Try the other --format, or install the exporter's packages") from None


def add_commands(cli: Any) -> None:
    import typer

    @cli.command("export")
    def export(run_dir: Path = typer.Argument(..., help="A finished object-detection run (tl run --out)."),
               fmt: str = typer.Option("onnx", "--format", help="onnx, or torchscript for YOLO runs.")) -> None:
        """Export a trained detector (YOLO: ultralytics' exporter; torchvision: ONNX) into RUN/export/."""
        print(f"wrote {export_run(run_dir, fmt)}")
