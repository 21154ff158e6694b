"""Checkpoint selection on a tiny validation set: a tie of the metric goes to the lower validation loss, then to the
later epoch, and the report says how many validation items the choice rests on."""

from __future__ import annotations

import json

import pytest
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


def rows(train, val):
    return [{"epoch": i + 1, "train_loss": t, "val_loss": v} for i, (t, v) in enumerate(zip(train, val))]


def test_the_fit_watch_calls_a_rising_validation_loss_overfitting():
    from tl_core.train import fit_watch

    watched = fit_watch(rows([1.0, 0.6, 0.3, 0.1], [1.0, 0.7, 0.8, 0.9]), False, 4, None, "accuracy")
    assert watched["overfitting"] is True and watched["val_loss_lowest_epoch"] == 2
    assert watched["val_loss_rise_after"] == pytest.approx(0.9 / 0.7 - 1)
    assert watched["loss_gap"] == pytest.approx([0.0, 0.1, 0.5, 0.8])
    assert watched["stopped"] == "the budget of 4 epochs"


def test_the_fit_watch_does_not_call_noise_or_a_falling_loss_overfitting():
    from tl_core.train import fit_watch

    assert fit_watch(rows([1.0, 0.6, 0.3], [1.0, 0.7, 0.72]), False, 3, None, "accuracy")["overfitting"] is False
    assert fit_watch(rows([1.0, 0.6, 0.3], [1.0, 0.7, 0.5]), False, 3, None, "accuracy")["overfitting"] is False
    stopped = fit_watch(rows([1.0, 0.9], [1.0, 1.2]), True, 10, 1, "accuracy")
    assert stopped["stopped"] == "early stop: no better accuracy for 1 epochs" and stopped["epochs_run"] == 2


def test_a_run_reports_why_it_stopped_and_its_loss_gap(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = cli("run", write_recipe(tiny_recipe(image_folder, train={"epochs": 2})), "--out", out,
                          "--quiet")
    assert code == 0, stderr
    fit = json.loads((out / "report.json").read_text())["fit"]
    assert fit["stopped"] == "the budget of 2 epochs" and len(fit["loss_gap"]) == 2
    assert isinstance(fit["overfitting"], bool)


def test_tl_report_says_when_a_run_overfitted(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    out = tmp_path / "run"
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1}))
    code, _, stderr = cli("run", recipe, "--out", out, "--quiet")
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    report["fit"].update(overfitting=True, val_loss_rise_after=0.25, val_loss_lowest_epoch=3)
    (out / "report.json").write_text(json.dumps(report))
    code, stdout, _ = cli("report", out)
    text = " ".join(stdout.split())
    assert "stopped after 1 epochs: the budget of 1 epochs" in text
    assert ("overfitting: validation loss +25% since its lowest, at epoch 3, while the training loss kept falling"
            in text)
