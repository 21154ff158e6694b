"""Clinical metrics, from torchmetrics and MONAI (none written by hand).

Classification: accuracy, balanced accuracy, ROC AUC, and sensitivity and specificity at a decision threshold
on the positive class's probability. The positive class is ``data.options.positive_class`` (that class against
the rest, however many classes there are), else with two classes the last one; several classes without a
positive class: one-vs-rest, macro. The threshold and the positive class are per-run settings
(``data.options``), which ``tl_evaluate`` receives with the options.
Segmentation: mean Dice and the 95th-percentile Hausdorff distance (in voxels) of the foreground classes.
"""

from __future__ import annotations

import warnings
from typing import Any

THRESHOLD = 0.5  # data.options.threshold when the options do not say


def positive_index(class_names: list[str], positive_class: str | None) -> int | None:
    """The index of the positive class: ``positive_class`` (which must be one of ``class_names``), else the last of
    two classes, else ``None`` (several classes: one-vs-rest, macro)."""
    if positive_class is not None:
        if positive_class not in class_names:
            raise ValueError(f"positive class {positive_class!r} is not one of {class_names}")
        return class_names.index(positive_class)
    return 1 if len(class_names) == 2 else None


def classification(outputs: Any, targets: Any, class_names: list[str], threshold: float = THRESHOLD,
                   positive_class: str | None = None) -> dict[str, float]:
    import torch
    from torchmetrics.functional import classification as C

    n = len(class_names)
    probs = torch.softmax(outputs.float(), dim=1)
    preds = probs.argmax(1)
    out = {
        "accuracy": C.multiclass_accuracy(preds, targets, num_classes=n, average="micro").item(),
        "balanced_accuracy": C.multiclass_accuracy(preds, targets, num_classes=n, average="macro").item(),
    }
    index = positive_index(class_names, positive_class)
    if index is not None:
        positive, truth = probs[:, index], (targets == index).long()
        out["auc"] = C.binary_auroc(positive, truth).item() if truth.unique().numel() == 2 else float("nan")
        out["sensitivity"] = C.binary_recall(positive, truth, threshold=threshold).item()
        out["specificity"] = C.binary_specificity(positive, truth, threshold=threshold).item()
    else:
        out["auc"] = C.multiclass_auroc(probs, targets, num_classes=n, average="macro").item()
        out["sensitivity"] = C.multiclass_recall(preds, targets, num_classes=n, average="macro").item()
        out["specificity"] = C.multiclass_specificity(preds, targets, num_classes=n, average="macro").item()
    return out


def segmentation(outputs: Any, targets: Any, class_names: list[str]) -> dict[str, float]:
    import torch
    from monai.metrics import DiceMetric, HausdorffDistanceMetric
    from monai.networks.utils import one_hot

    n = len(class_names)
    preds = one_hot(outputs.argmax(1, keepdim=True), n)
    truth = one_hot(targets.unsqueeze(1).long(), n)
    dice = DiceMetric(include_background=False, reduction="mean", ignore_empty=True)(preds, truth)
    with warnings.catch_warnings():
        # MONAI warns about its own deprecated internals, and about an empty prediction (whose distance is
        # infinite, and left out of the mean: the Dice of that image is 0 and says it)
        warnings.simplefilter("ignore", (FutureWarning, UserWarning))
        hd = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="mean")(preds, truth)
    hd = hd.float()
    finite = hd[torch.isfinite(hd)]
    return {"dice": torch.nanmean(dice).item(), "hausdorff95": finite.mean().item() if finite.numel() else float("nan")}
