"""Detection metrics from torchmetrics (COCO evaluation through pycocotools), not written by hand:
mAP@0.5, mAP@0.5:0.95, per-class AP@0.5:0.95, and recall at 100 detections per image."""

from __future__ import annotations

from typing import Any


def detection(outputs: list[dict[str, Any]], targets: list[dict[str, Any]], class_names: list[str]) -> dict[str, float]:
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, backend="pycocotools")
    metric.update(
        [{k: v.detach().cpu() for k, v in o.items() if k in ("boxes", "scores", "labels")} for o in outputs],
        [{"boxes": t["boxes"].cpu(), "labels": t["labels"].cpu()} for t in targets],
    )
    result = metric.compute()
    out = {"map_50": result["map_50"].item(), "map": result["map"].item(), "mar_100": result["mar_100"].item()}
    per_class = result["map_per_class"]
    ids = result["classes"]
    if per_class.ndim == 0:
        per_class, ids = per_class.unsqueeze(0), torch.atleast_1d(ids)
    for cls, ap in zip(ids.tolist(), per_class.tolist()):
        if 0 <= cls < len(class_names):
            out[f"ap_{class_names[cls].replace(' ', '_')}"] = ap
    return out
