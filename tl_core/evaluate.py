"""Scoring a finished run on new data (``tl evaluate RUN --data PATH``) and inspecting a recipe's plan."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tl_core.errors import RunError, TLError
from tl_core.files import write_json
from tl_core.recipe import validate
from tl_core.report import MODEL_FILE, read_report
from tl_core.sections import Recipe


def evaluate_run(run_dir: Path, data_path: str, batch_size: int | None = None) -> dict[str, Any]:
    """Rebuild the run's model from ``report.json`` + ``model.safetensors``, score it on ``data_path``, and write
    ``RUN/evaluations/<name>.json``. The original weights are not needed: the trained ones are in the run."""
    import torch
    from safetensors.torch import load_file
    from torch.utils.data import DataLoader

    from tl_core.classifier import build_classifier
    from tl_core.components import InputSpec
    from tl_core.data import ImageDataset, transforms
    from tl_core.plugins import registry
    from tl_core.train import evaluate_outputs

    report = read_report(run_dir)
    recipe: Recipe = validate(report["recipe"], f"{run_dir}/report.json")
    if recipe.task != "image-classification":
        from tl_core.plugins import first_answer

        answer = first_answer("tl_evaluate_run", run_dir=run_dir, report=report, data=data_path)
        if answer is None:
            raise TLError(f"{run_dir} is a {recipe.task!r} run and no installed plugin scores such runs; install "
                          "the plugin of that task")
        result = {"data": str(Path(data_path).resolve()), **answer}
        _write(run_dir, data_path, result)
        return result
    model_file = run_dir / MODEL_FILE
    if not model_file.is_file():
        raise RunError(f"{run_dir} has no {MODEL_FILE}; the run did not finish writing its model")
    classes = report["data"]["classes"]
    fmt = registry("data format").get(recipe.data.format)
    samples = fmt.read_split(data_path, strict=recipe.data.strict, classes=classes)
    clf = build_classifier(recipe, len(classes), weights="none")
    clf.model.load_state_dict(load_file(str(model_file)))
    clf.model.eval()
    pre = report.get("preprocessing")
    if not pre:
        raise RunError(f"{run_dir}/report.json does not record the preprocessing its model was trained with")
    spec = InputSpec(3, pre["size"], tuple(pre["mean"]), tuple(pre["std"]))
    loader = DataLoader(ImageDataset(samples, transforms(spec, pre["size"], augment=False)),
                        batch_size=batch_size or recipe.train.batch_size)
    outs, tgts = [], []
    with torch.inference_mode():
        for x, y in loader:
            outs.append(clf.model(x))
            tgts.append(y)
    outputs, targets = torch.cat(outs), torch.cat(tgts)
    metrics = evaluate_outputs(recipe.task, outputs, targets, classes)
    metrics["loss"] = torch.nn.functional.cross_entropy(outputs, targets).item()
    result = {"data": str(Path(data_path).resolve()), "items": len(samples), "unit": "images",
              "images": len(samples), "skipped": samples.skipped, "metrics": metrics}
    _write(run_dir, data_path, result)
    return result


def _write(run_dir: Path, data_path: str, result: dict[str, Any]) -> None:
    name = re.sub(r"[^\w.-]+", "_", Path(data_path).resolve().name) or "data"
    write_json(run_dir / "evaluations" / f"{name}.json", result)
