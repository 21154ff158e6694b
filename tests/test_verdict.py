"""A fair scratch baseline (its own learning rate and batch size, searched on validation) and the verdict of every
run with a comparison: transfer helped, or negative transfer, and how sure that is."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_recipe

from tl_core.components import TrainResult
from tl_core.verdict import over_seeds, verdict


def _result(outputs: torch.Tensor, targets: torch.Tensor, accuracy: float) -> TrainResult:
    return TrainResult(model=None, history=[], metrics={"test": {"accuracy": accuracy}},
                       predictions={"test": (outputs, targets)})


def _scores(targets: torch.Tensor, right: torch.Tensor, classes: int = 2) -> torch.Tensor:
    """Class scores that are right exactly where ``right`` is true."""
    wrong = (targets + 1) % classes
    chosen = torch.where(right, targets, wrong)
    return torch.nn.functional.one_hot(chosen, classes).float()


@pytest.fixture
def targets() -> torch.Tensor:
    return torch.arange(100) % 2


def test_a_clear_gain_is_transfer_helped_with_high_confidence(targets):
    g = torch.Generator().manual_seed(0)
    transfer = _result(_scores(targets, torch.rand(100, generator=g) < 0.95), targets, 0.0)
    scratch = _result(_scores(targets, torch.rand(100, generator=g) < 0.55), targets, 0.0)
    transfer.metrics["test"]["accuracy"] = float((transfer.predictions["test"][0].argmax(1) == targets).float().mean())
    scratch.metrics["test"]["accuracy"] = float((scratch.predictions["test"][0].argmax(1) == targets).float().mean())
    judged = verdict("image-classification", "accuracy", transfer, scratch, ["a", "b"])
    assert judged["outcome"] == "transfer helped" and judged["confidence"] == "high"
    assert judged["interval"][0] > 0 and judged["interval"][0] <= judged["difference"] <= judged["interval"][1]
    assert judged["items"] == 100 and judged["transfer_better_share"] > 0.95
    assert judged["message"].startswith("transfer helped by +0.")


def test_scratch_winning_clearly_is_negative_transfer(targets):
    transfer = _result(_scores(targets, torch.arange(100) < 40), targets, 0.40)
    scratch = _result(_scores(targets, torch.arange(100) < 90), targets, 0.90)
    judged = verdict("image-classification", "accuracy", transfer, scratch, ["a", "b"])
    assert judged["outcome"] == "negative transfer" and judged["interval"][1] < 0
    assert "negative transfer: scratch won by 0.5000 accuracy on test" in judged["message"]


def test_a_small_difference_on_few_items_is_no_clear_winner():
    targets = torch.arange(10) % 2
    transfer = _result(_scores(targets, torch.arange(10) < 8), targets, 0.8)
    scratch = _result(_scores(targets, torch.arange(10) < 7), targets, 0.7)
    judged = verdict("image-classification", "accuracy", transfer, scratch, ["a", "b"])
    assert judged["confidence"] == "low" and judged["interval"][0] <= 0 < judged["interval"][1]
    assert "within the noise of 10 items" in judged["message"] and "no clear winner" in judged["message"]


def test_without_predictions_the_confidence_is_said_not_measured():
    transfer = TrainResult(model=None, history=[], metrics={"val": {"chrf": 41.0}})
    scratch = TrainResult(model=None, history=[], metrics={"val": {"chrf": 30.0}})
    judged = verdict("translation", "chrf", transfer, scratch, [])
    assert judged["split"] == "val" and judged["interval"] is None and judged["confidence"] == "not measured"
    assert "--seeds 3" in judged["message"]


def test_a_loss_is_better_lower():
    transfer = TrainResult(model=None, history=[], metrics={"test": {"loss": 0.2}})
    scratch = TrainResult(model=None, history=[], metrics={"test": {"loss": 0.5}})
    judged = verdict("x", "loss", transfer, scratch, [])
    assert judged["difference"] == pytest.approx(0.3) and judged["outcome"] == "transfer ahead"


def test_over_seeds_is_a_paired_t_interval():
    from scipy import stats

    transfer, scratch = [0.90, 0.85, 0.95], [0.80, 0.82, 0.70]
    judged = over_seeds("accuracy", "test", transfer, scratch)
    differences = [0.10, 0.03, 0.25]
    mean = sum(differences) / 3
    low, high = stats.t.interval(0.95, 2, loc=mean, scale=stats.sem(differences))
    assert judged["difference"] == pytest.approx(mean) and judged["interval"] == [round(low, 4), round(high, 4)]
    assert judged["transfer_won"] == 3 and "transfer won on 3 of 3 seeds" in judged["message"]


def test_scratch_gets_its_own_learning_rate_and_batch_size(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder, compare={"scratch": True}, train={"epochs": 3}))
    code, out, err = cli("run", recipe, "--out", tmp_path / "run")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    tuning = report["scratch"]["tuning"]
    # the grid: lr 0.01 and 0.03, batch 8 and 4 (8 / 4 = 2 is below the floor of 4); a third of the epochs each
    assert [(t["lr"], t["batch_size"]) for t in tuning["trials"]] == [(0.01, 8), (0.03, 8), (0.01, 4), (0.03, 4)]
    assert all(t["epochs"] == 1 and t["val_accuracy"] is not None for t in tuning["trials"])
    best = max(t["val_accuracy"] for t in tuning["trials"])
    chosen = next(t for t in tuning["trials"] if (t["lr"], t["batch_size"]) == (tuning["chosen"]["lr"],
                                                                                tuning["chosen"]["batch_size"]))
    assert chosen["val_accuracy"] == best
    changes = report["scratch"]["recipe_changes"]
    assert (changes["train.lr"], changes["train.batch_size"]) == (tuning["chosen"]["lr"],
                                                                 tuning["chosen"]["batch_size"])
    assert len(report["scratch"]["epochs"]) == 3  # the full budget for the chosen setting
    assert not (tmp_path / "run" / "scratch" / "search").exists()  # the trials' checkpoints are gone
    assert (tmp_path / "run" / "scratch" / "search.json").is_file()
    assert "scratch search: lr 0.03, batch 4" in err
    # every comparison ends in a verdict, printed and in the report
    judged = report["verdict"]
    assert judged["outcome"] and judged["confidence"] in ("high", "low") and judged["split"] == "val"
    assert "verdict: " in out and "scratch tuned on validation" in out
    code, out, _ = cli("report", tmp_path / "run")
    assert code == 0 and "verdict: " in out
    code, out, _ = cli("report", tmp_path / "run", "--json")
    assert json.loads(out)["verdict"]["message"] == judged["message"]


def test_the_search_can_be_switched_off(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder, compare={"scratch": True, "scratch_search": False},
                                      train={"epochs": 1}))
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["scratch"]["tuning"]["method"] == "none"
    assert "compare.scratch_search is false" in report["scratch"]["tuning"]["how"]
    assert report["scratch"]["recipe_changes"]["train.lr"] == 0.01


def test_a_run_without_a_comparison_says_it_has_no_verdict(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1}))
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["verdict"]["outcome"] == "not compared"
    code, out, _ = cli("report", tmp_path / "run")
    assert code == 0 and "not compared with training from scratch: set compare.scratch: true" in out
