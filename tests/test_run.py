"""End to end: tl run writes a complete run; tl report and tl evaluate read it back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from conftest import make_image_folder, tiny_recipe


def test_run_writes_report_metrics_curves_and_model(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    test_dir = make_image_folder(tmp_path / "test", per_class=4, seed=1)
    recipe = write_recipe(tiny_recipe(image_folder, data={"test_path": str(test_dir)}, compare={"scratch": True}))
    out = tmp_path / "run"
    code, stdout, stderr = cli("run", recipe, "--out", out, "--quiet")
    assert code == 0, stderr
    for name in ("report.json", "metrics.csv", "curves.png", "model.safetensors"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["backbone"]["name"] == "tiny"
    assert report["seed"] == 0
    assert report["weights"]["name"] == "pretrained" and len(report["weights"]["sha256_actual"]) == 64
    assert report["load_report"]["dropped"] == ["fc.weight", "fc.bias"]
    assert report["load_report"]["missing"] == []
    assert report["parameters"]["trainable"] > 0
    assert [row["epoch"] for row in report["epochs"]] == [1, 2]
    assert set(report["metrics"]) == {"val", "test"}
    assert 0.0 <= report["metrics"]["test"]["accuracy"] <= 1.0
    assert set(report["scratch"]["metrics"]) == {"val", "test"}
    assert report["scratch"]["recipe_changes"]["backbone.weights"] == "none"
    assert {"data_seconds", "train_seconds", "total_seconds"} <= set(report["timings"])
    assert "torch" in report["versions"]["packages"]
    assert report["device"]["type"] == "cpu" and report["device"]["precision"] == "no" and report["device"]["name"]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["run"] for r in rows] == ["transfer", "transfer", "scratch", "scratch"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "scratch" in stdout and "test" in stdout

    code, stdout, _ = cli("report", out)
    assert code == 0 and "accuracy" in stdout and "scratch" in stdout

    code, stdout, stderr = cli("evaluate", out, "--data", test_dir, "--json")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["images"] == 12
    # the finished model scores the test folder exactly as the run itself did
    assert abs(result["metrics"]["accuracy"] - report["metrics"]["test"]["accuracy"]) < 1e-6
    assert (out / "evaluations" / "test.json").is_file()


def test_linear_probe_learns_a_separable_task(tiny_plugin, tmp_path, write_recipe, cli):
    data = make_image_folder(tmp_path / "images", classes=3, per_class=12)
    recipe = write_recipe(tiny_recipe(
        data, policy={"name": "feature-extraction"}, head={"name": "mlp", "hidden": 32},
        train={"epochs": 30, "lr": 0.03, "batch_size": 16},
    ))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["feature_cache"]["used"] is True
    assert report["metrics"]["val"]["accuracy"] >= 0.8  # colours are easy; chance is 0.33


def test_existing_run_is_not_overwritten(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1}))
    out = tmp_path / "run"
    assert cli("run", recipe, "--out", out, "--quiet")[0] == 0
    before = (out / "report.json").read_bytes()
    code, _, stderr = cli("run", recipe, "--out", out, "--quiet")
    assert code == 2 and "already holds a run" in stderr
    assert (out / "report.json").read_bytes() == before


def test_report_of_a_folder_without_run(cli, tmp_path: Path):
    code, _, stderr = cli("report", tmp_path)
    assert code == 2 and "no finished run" in stderr


def test_shipped_recipes_run_on_any_image_folder_with_real_weights(image_folder, cli, tmp_path):
    for name in ("vision/linear-probe", "vision/fine-tune"):
        out = tmp_path / name.replace("/", "-")
        code, stdout, stderr = cli("run", name, "--out", out, "--quiet", "--set", f"data.path={image_folder}",
                                   "--set", "data.image_size=32", "--set", "train.epochs=1")
        assert code == 0, stderr
        report = json.loads((out / "report.json").read_text())
        assert report["load_report"]["loaded"] and not report["load_report"]["missing"]
        assert report["weights"]["source"] == "package"  # real ImageNet weights, offline
        assert report["data"]["classes"] == ["class_0", "class_1", "class_2"]
