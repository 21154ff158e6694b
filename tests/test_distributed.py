"""Scale: the core trainer under `accelerate launch`, simulated with two CPU processes (gloo backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import tiny_recipe

SCRIPT = Path(__file__).parent / "distributed" / "run_tiny.py"


def launch(recipe: Path, weights: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes on two cores: no OpenMP spin-wait
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         str(SCRIPT), str(recipe), str(weights), str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def ranks(tmp_path: Path) -> list[dict]:
    """What each process wrote at its end: the number of processes it saw, a checksum of each model it trained."""
    return [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1)]


def test_two_cpu_processes_train_one_run(tiny_weights_file, image_folder, write_recipe, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 2}, compare={"scratch": True}))
    out = tmp_path / "run"
    launch(recipe, tiny_weights_file, out)
    first, second = ranks(tmp_path)
    assert first["processes"] == second["processes"] == 2
    # the transfer model, the scratch search's four short trials, the scratch model
    assert len(first["models"]) == 6
    assert first["models"] == second["models"]  # gradients were averaged: both processes hold the same models
    report = json.loads((out / "report.json").read_text())
    assert report["processes"] == 2
    assert [row["epoch"] for row in report["epochs"]] == [1, 2]
    assert set(report["metrics"]) == {"val"} and set(report["scratch"]["metrics"]) == {"val"}
    # each process saw half of the 18 training images per epoch; validation was gathered from both
    assert report["data"]["train"] == 18 and report["data"]["val"] == 6


def test_gradual_unfreezing_stays_in_sync_across_processes(tiny_weights_file, image_folder, write_recipe, tmp_path):
    """A group unfrozen mid-run must join gradient averaging too, or the processes drift apart silently."""
    recipe = write_recipe(tiny_recipe(image_folder, policy={"name": "gradual-unfreeze"}, train={"epochs": 3}))
    launch(recipe, tiny_weights_file, tmp_path / "run")
    first, second = ranks(tmp_path)
    assert first["models"] == second["models"]
