"""``tl curve``: transfer and scratch on growing numbers of labelled examples per class, the same epochs per point,
written to curve.json and curve.png; a request beyond a class's size is capped and said."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

from conftest import make_image_folder, tiny_recipe

from tl_core import hookimpl
from tl_core.testing import assert_refused


def _recipe(tmp_path, write_recipe):
    images = make_image_folder(tmp_path / "images", classes=3, per_class=8)  # 6 train + 2 val per class
    return write_recipe(tiny_recipe(images, train={"epochs": 1}, compare={"scratch_search": False}))


def test_curve_trains_each_point_and_draws_it(tiny_plugin, write_recipe, cli, tmp_path):
    recipe = _recipe(tmp_path, write_recipe)
    out = tmp_path / "curve"
    code, stdout, err = cli("curve", recipe, "--shots", "2,1,50,all", "--out", out, "--quiet")
    assert code == 0, err
    summary = json.loads((out / "curve.json").read_text())
    points = summary["points"]
    assert [p["shots"] for p in points] == [1, 2, 50, None]  # in increasing order, "all" last
    assert [p["train_items"] for p in points] == [3, 6, 18, 18]
    assert points[2]["capped"] == ["class_0 (6)", "class_1 (6)", "class_2 (6)"] and not points[1]["capped"]
    for p in points:
        report = json.loads((out / p["run"] / "report.json").read_text())
        assert report["data"]["train"] == p["train_items"] and report["data"]["val"] == 6  # val stays whole
        assert report["metrics"]["val"]["accuracy"] == p["transfer"]
        assert report["scratch"]["metrics"]["val"]["accuracy"] == p["scratch"]
        assert p["verdict"]  # every point is a comparison with its verdict
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "capped (fewer than asked): shots-50: class_0 (6)" in stdout
    assert "training examples" in stdout and "curve.json" in stdout


def test_curve_resume_trains_only_the_missing_points(tiny_plugin, write_recipe, cli, tmp_path):
    recipe = _recipe(tmp_path, write_recipe)
    out = tmp_path / "curve"
    assert cli("curve", recipe, "--shots", "1,all", "--out", out, "--quiet")[0] == 0
    first = (out / "shots-1" / "report.json").read_bytes()
    shutil.rmtree(out / "shots-all")
    code, _, err = cli("curve", recipe, "--shots", "1,all", "--out", out)
    assert code == 2 and "already holds a curve" in err
    code, _, err = cli("curve", recipe, "--shots", "1,all", "--out", out, "--resume")
    assert code == 0, err
    assert "shots-all: transfer and scratch" in err and "shots-1: transfer" not in err
    assert (out / "shots-1" / "report.json").read_bytes() == first
    assert [p["train_items"] for p in json.loads((out / "curve.json").read_text())["points"]] == [3, 18]


def test_bad_shots_are_one_line(tiny_plugin, write_recipe, cli, tmp_path):
    recipe = _recipe(tmp_path, write_recipe)
    for shots, says in (("0,5", "--shots: 0 is below 1"), ("two", "'two' is not a whole number"), (",", "empty")):
        assert_refused(cli("curve", recipe, "--shots", shots, "--out", tmp_path / "c"), says, tmp_path / "c")


def test_data_that_cannot_be_cut_is_named(tiny_plugin, plugin, write_recipe, cli, tmp_path):
    from tl_core.builtin.classification.images import read_image_folder
    from tl_core.components import DataFormat

    def read(config, seed):
        full = read_image_folder(config.path)
        return SimpleNamespace(train=full, val=None, test=None, classes=full.classes, skipped=[])

    class Uncut:
        @hookimpl
        def tl_register_datasets(self, register):
            register(DataFormat("uncut", "image-classification", read=read))

    plugin(Uncut(), "uncut")
    images = make_image_folder(tmp_path / "images", per_class=4)
    recipe = write_recipe(tiny_recipe(images, data={"format": "uncut"}))
    assert_refused(cli("curve", recipe, "--out", tmp_path / "c"), "cannot be cut into fewer examples.*with_shots",
                   tmp_path / "c")
