"""Checkpoint selection on a tiny validation set: a tie of the metric goes to the lower validation loss, then to the
later epoch, and the report says how many validation items the choice rests on."""

from __future__ import annotations

import json

from conftest import tiny_recipe


def expected_best(history: list[dict], metric: str) -> int:
    best = None
    for row in history:
        key = (row[f"val_{metric}"], -row["val_loss"], row["epoch"])
        if best is None or key > best:
            best = key
    return int(best[2])


def test_a_tie_of_the_metric_goes_to_the_lower_validation_loss(tiny_plugin, image_folder, write_recipe, cli,
                                                                tmp_path):
    recipe = tiny_recipe(image_folder, train={"epochs": 8, "lr": 0.05}, data={"val_fraction": 0.25})
    out = tmp_path / "run"
    code, _, stderr = cli("run", write_recipe(recipe), "--out", out, "--quiet")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    history = report["epochs"]
    accuracies = [row["val_accuracy"] for row in history]
    top = max(accuracies)
    assert accuracies.count(top) >= 2, accuracies  # the case this is about: 6 validation images tie
    assert report["best_epoch"] == expected_best(history, "accuracy")
    first = accuracies.index(top) + 1
    chosen = history[report["best_epoch"] - 1]
    assert chosen["val_loss"] <= history[first - 1]["val_loss"]  # never worse than the first epoch at the top
    assert report["selection"] == {"metric": "accuracy", "validation_items": 6,
                                   "ties": "lower validation loss, then the later epoch"}

    code, stdout, _ = cli("report", out)
    assert code == 0
    assert (f"best epoch {report['best_epoch']} of 8, by accuracy on 6 validation items (ties: lower validation "
            "loss, then the later epoch)") in " ".join(stdout.split())
