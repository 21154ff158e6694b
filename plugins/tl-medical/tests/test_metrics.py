"""Clinical metrics through the tl_evaluate hook: values checked by hand on small cases."""

from __future__ import annotations

import math

import pytest
import torch

from tl_core.api import evaluate_outputs


def logits(probabilities: list[float]) -> torch.Tensor:
    p = torch.tensor(probabilities)
    return torch.stack([torch.log(1 - p), torch.log(p)], dim=1)


def test_binary_auc_sensitivity_specificity_at_the_threshold():
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    outputs = logits([0.1, 0.4, 0.6, 0.3, 0.7, 0.9])  # one false positive, one false negative at 0.5
    m = evaluate_outputs("medical-classification", outputs, targets, ["normal", "lesion"])
    assert m["auc"] == pytest.approx(7 / 9)  # 7 of the 9 (positive, negative) pairs are ranked right
    assert m["sensitivity"] == pytest.approx(2 / 3) and m["specificity"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(4 / 6)
    # a screening threshold (data.options.threshold, which tl_evaluate receives): more sensitive, less specific
    low = evaluate_outputs("medical-classification", outputs, targets, ["normal", "lesion"], {"threshold": 0.25})
    assert low["sensitivity"] == 1.0 and low["specificity"] == pytest.approx(1 / 3)
    assert low["auc"] == m["auc"]


def test_multiclass_metrics_are_macro_averaged():
    targets = torch.tensor([0, 1, 2, 2])
    outputs = torch.eye(3)[[0, 1, 2, 0]] * 5
    m = evaluate_outputs("medical-classification", outputs, targets, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.75) and m["sensitivity"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_dice_and_hausdorff_on_known_masks():
    truth = torch.zeros(1, 16, 16, dtype=torch.long)
    truth[0, 4:8, 4:8] = 1  # a 4x4 square
    pred = torch.zeros(1, 16, 16, dtype=torch.long)
    pred[0, 4:8, 4:10] = 1  # the same square, 2 pixels wider
    outputs = torch.nn.functional.one_hot(pred, 2).permute(0, 3, 1, 2).float()
    m = evaluate_outputs("medical-segmentation", outputs, truth, ["background", "lesion"])
    assert m["dice"] == pytest.approx(2 * 16 / (16 + 24))
    assert m["hausdorff95"] == pytest.approx(2.0)
    perfect = evaluate_outputs("medical-segmentation", torch.nn.functional.one_hot(truth, 2).permute(0, 3, 1, 2)
                               .float(), truth, ["background", "lesion"])
    assert perfect["dice"] == 1.0 and perfect["hausdorff95"] == 0.0 and not math.isnan(perfect["dice"])
