"""``tl evaluate`` for image classification: rebuild a finished run's model from ``report.json`` and
``model.safetensors`` alone, read new data in the run's format with the run's own data options, score it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_core.builtin.classification.images import ImageDataset
from tl_core.builtin.classification.model import build_classifier
from tl_core.builtin.classification.training import transform_for
from tl_core.components import InputSpec
from tl_core.data import read_new
from tl_core.errors import RunError
from tl_core.plugins import registry
from tl_core.recipe import validate
from tl_core.report import MODEL_FILE
from tl_core.train import evaluate_outputs
from tl_core.weights import load_run_state


def evaluate_run(run_dir: Path, report: dict[str, Any], data_path: str, batch_size: int | None = None
                 ) -> dict[str, Any]:
    """Score the run on ``data_path``. The original weights are not needed: the trained ones are in the run."""
    import torch
    from torch.utils.data import DataLoader

    recipe = validate(report["recipe"], f"{run_dir}/report.json")
    model_file = run_dir / MODEL_FILE
    if not model_file.is_file():
        raise RunError(f"{run_dir} has no {MODEL_FILE}; the run did not finish writing its model")
    pre = report.get("preprocessing")
    if not pre:
        raise RunError(f"{run_dir}/report.json does not record the preprocessing its model was trained with; the run "
                       "folder is damaged: restore it, or train again with tl run")
    classes = report["data"]["classes"]
    fmt = registry("data format").get(recipe.data.format)
    samples = read_new(fmt, data_path, recipe.data, classes)
    clf = build_classifier(recipe, len(classes), weights="none")
    load_run_state(clf.model, model_file)
    clf.model.eval()
    # a run of tl 0.2 or older recorded no resize: it was bilinear at 0.875
    spec = InputSpec(3, pre["size"], tuple(pre["mean"]), tuple(pre["std"]), 2, pre.get("crop_pct", 0.875),
                     pre.get("interpolation", "bilinear"))
    dataset = ImageDataset(samples, transform_for(fmt, spec, pre["size"], False))
    outs, tgts = [], []
    with torch.inference_mode():
        for x, y in DataLoader(dataset, batch_size=batch_size or recipe.train.batch_size):
            outs.append(clf.model(x))
            tgts.append(y)
    outputs, targets = torch.cat(outs), torch.cat(tgts)
    metrics = evaluate_outputs(recipe.task, outputs, targets, classes, recipe.data.options)
    metrics["loss"] = torch.nn.functional.cross_entropy(outputs, targets).item()
    return {"items": len(samples), "unit": "images", "images": len(samples), "skipped": samples.skipped,
            "metrics": metrics}
