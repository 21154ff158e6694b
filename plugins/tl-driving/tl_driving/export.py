"""Exporting a trained detector from a finished run: ultralytics' own exporter for YOLO runs, ONNX (torch's
exporter) for torchvision detectors. ``tl export RUN --format onnx|torchscript`` (added by this plugin)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from tl_core.api import TLError


def rebuild(run_dir: Path) -> tuple[Any, Any, list[str], int]:
    """``(kind, model, classes, size)`` of a finished detection run, from its report and model file alone."""
    from safetensors.torch import load_file

    from tl_core.api import MODEL_FILE, read_report
    from tl_core.api import validate_recipe as validate
    from tl_driving import models, yolo, yolo_backbones
    from tl_driving.options import DrivingOptions

    report = read_report(run_dir)
    recipe = validate(report["recipe"], f"{run_dir}/report.json")
    if recipe.task != models.TASK:
        raise TLError(f"{run_dir} is a {recipe.task!r} run; tl export exports object-detection runs")
    classes = report["data"]["classes"]
    size = int(report["preprocessing"]["size"])
    state = load_file(str(run_dir / MODEL_FILE))
    if yolo_backbones.is_yolo(recipe.backbone.name):
        from ultralytics import YOLO

        wrapper = YOLO(f"{recipe.backbone.name}.yaml", task="detect")  # its model carries what the exporter needs
        yolo.resize_classes(wrapper.model, classes, None, {})
        wrapper.model.load_state_dict(state)
        return "yolo", wrapper, classes, size
    data = SimpleNamespace(classes=classes, options=DrivingOptions(image_size=size))
    detector = models.build(recipe, data, weights="none")
    detector.model.load_state_dict(state)
    return "torchvision", detector.model, classes, size


def export_run(run_dir: Path, fmt: str) -> Path:
    """Write ``RUN/export/model.<fmt>`` and ``RUN/export/classes.json`` (the name of each label id the exported
    model outputs) and return the model's path."""
    import json

    import torch

    kind, model, classes, size = rebuild(run_dir)
    out = run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    # ultralytics numbers the classes from 0; torchvision detectors keep 0 for the background
    names = classes if kind == "yolo" else ["background", *classes]
    (out / "classes.json").write_text(json.dumps(names, indent=1) + "\n")
    if kind == "yolo":
        model.model.pt_path = str(out / "model.pt")  # the exporter names its file after this
        written = Path(model.export(format=fmt, imgsz=size, device="cpu", verbose=False))
        target = out / f"model.{'onnx' if fmt == 'onnx' else 'torchscript'}"
        shutil.move(str(written), target)
        return target
    model.eval()
    if fmt != "onnx":
        raise TLError("torchvision detectors export to onnx; use --format onnx")
    target = out / "model.onnx"

    class OneImage(torch.nn.Module):
        """One ``(3, H, W)`` image in, ``boxes, labels, scores`` out in this order (torchvision's detectors put
        their output keys in different orders)."""

        def __init__(self) -> None:
            super().__init__()
            self.detector = model.detector

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            found = self.detector([image])[0]
            return found["boxes"], found["labels"], found["scores"]

    torch.onnx.export(OneImage().eval(), (torch.rand(3, size, size),), str(target), opset_version=17,
                      dynamo=False, input_names=["images"], output_names=["boxes", "labels", "scores"])
    return target


def add_commands(cli: Any) -> None:
    import typer

    @cli.command("export")
    def export(run_dir: Path = typer.Argument(..., help="A finished object-detection run (tl run --out)."),
               fmt: str = typer.Option("onnx", "--format", help="onnx, or torchscript for YOLO runs.")) -> None:
        """Export a trained detector (YOLO: ultralytics' exporter; torchvision: ONNX) into RUN/export/."""
        print(f"wrote {export_run(run_dir, fmt)}")
