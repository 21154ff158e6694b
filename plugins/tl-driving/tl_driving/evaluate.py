"""``tl evaluate RUN --data PATH`` for object-detection runs: the run's detector rebuilt from its folder alone
(:func:`tl_driving.export.rebuild_run`), ``PATH`` read as the run read its own data (its format, classes,
``data.strict`` and ``data.options``), scored with the run's metrics (COCO mAP by torchmetrics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_run(run_dir: Path, report: Any, data_path: str) -> dict[str, Any]:
    import torch

    from tl_core.api import evaluate_outputs, read_new, registry, resolve_device
    from tl_driving import yolo
    from tl_driving.export import rebuild_run

    built = rebuild_run(run_dir)
    recipe = built.recipe
    fmt = registry("data format").get(recipe.data.format)
    dataset = read_new(fmt, data_path, recipe.data, built.classes)
    device = resolve_device(recipe.train.device)
    if built.kind == "yolo":
        with yolo.integrations(yolo.yolo_options(recipe).integrations):
            outputs, targets = yolo.predict(built.model.model, f"{recipe.backbone.name}.yaml", dataset, built.size,
                                            device)
    else:
        from tl_driving.data import DetectionDataset
        from tl_driving.train import predict_step

        model = built.model.to(device).eval()
        images = DetectionDataset(dataset, built.size)
        outputs, targets = [], []
        with torch.inference_mode():
            for i in range(len(images)):
                image, target = images[i]
                outputs.extend({k: v.cpu() for k, v in p.items()} for p in predict_step(model, [image.to(device)]))
                targets.append(target)
    metrics = evaluate_outputs(recipe.task, outputs, targets, built.classes, recipe.data.options)
    return {"items": len(dataset), "unit": "images", "images": len(dataset), "skipped": list(dataset.skipped),
            "metrics": metrics}
