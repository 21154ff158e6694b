"""``tl run --seeds N``: one complete run per seed, mean ± std of every metric, and a paired comparison of transfer
and scratch over the seeds."""

from __future__ import annotations

import json
import shutil

from conftest import tiny_recipe


def test_seeds_report_mean_std_and_a_paired_verdict(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder, compare={"scratch": True, "scratch_search": False},
                                      train={"epochs": 1}))
    out = tmp_path / "seeds"
    code, stdout, err = cli("run", recipe, "--out", out, "--seeds", "2", "--quiet")
    assert code == 0, err
    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["runs"] == ["seed-0", "seed-1"]
    runs = [json.loads((out / f"seed-{s}" / "report.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in runs] == [0, 1]
    values = [r["metrics"]["val"]["accuracy"] for r in runs]
    spread = summary["metrics"]["val"]["accuracy"]
    assert spread["n"] == 2 and abs(spread["mean"] - sum(values) / 2) < 1e-12
    assert abs(spread["std"] - abs(values[0] - values[1]) / 2 ** 0.5) < 1e-12  # n - 1 in the denominator
    judged = summary["verdict"]
    differences = [r["metrics"]["val"]["accuracy"] - r["scratch"]["metrics"]["val"]["accuracy"] for r in runs]
    assert abs(judged["difference"] - sum(differences) / 2) < 1e-12 and judged["seeds"] == 2
    assert judged["transfer_won"] == sum(d > 0 for d in differences)
    assert "2 seeds" in stdout and "±" in stdout and "verdict:" in stdout
    code, stdout, _ = cli("report", out)
    assert code == 0 and "2 seeds" in stdout and "verdict:" in stdout
    code, stdout, _ = cli("report", out, "--json")
    assert json.loads(stdout)["verdict"]["message"] == judged["message"]


def test_seeds_resume_runs_only_what_is_missing(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1}))
    out = tmp_path / "seeds"
    assert cli("run", recipe, "--out", out, "--seeds", "2", "--quiet")[0] == 0
    first = (out / "seed-0" / "report.json").read_bytes()
    shutil.rmtree(out / "seed-1")  # as if interrupted before the second seed finished
    (out / "seeds.json").unlink()
    code, _, err = cli("run", recipe, "--out", out, "--seeds", "2")
    assert code == 2 and "already holds seeded runs" in err and "--resume" in err
    code, _, err = cli("run", recipe, "--out", out, "--seeds", "2", "--resume")
    assert code == 0, err
    assert "seed 1 (2 of 2)" in err and "seed 0 (1 of 2)" not in err  # the finished seed is read, not run again
    assert (out / "seed-0" / "report.json").read_bytes() == first
    assert json.loads((out / "seeds.json").read_text())["seeds"] == [0, 1]
    assert "verdict" not in json.loads((out / "seeds.json").read_text())  # no scratch: nothing to compare


def test_one_seed_is_not_a_comparison(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    recipe = write_recipe(tiny_recipe(image_folder))
    code, _, err = cli("run", recipe, "--out", tmp_path / "one", "--seeds", "1")
    assert code == 2 and "--seeds 1: give at least 2 seeds" in err and "Traceback" not in err
    assert not (tmp_path / "one").exists()
