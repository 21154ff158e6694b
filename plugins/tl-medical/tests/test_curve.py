"""``tl curve`` on medical data: MedicalData is the core's ClassificationData, so classification is cut per class
(a shot is one image per class) and segmentation, whose images have masks rather than one class each, by items
(a shot is one image and its mask). Val stays whole; a shot beyond a class's (or the split's) size is capped and
said. The recipes' ImageNet MobileNetV2 (offline) against its scratch twin on the tiny synthetic sets, one epoch
per side and point."""

from __future__ import annotations

import json

PNG = b"\x89PNG\r\n\x1a\n"


def curve(tl_cli, recipe, out, shots, *sets):
    code, printed, err = tl_cli("curve", recipe, "--shots", shots, "--out", out,
                                *[x for s in [*sets, "train.epochs=1", "compare.scratch_search=false"]
                                  for x in ("--set", s)], "--quiet")
    assert code == 0, err
    return json.loads((out / "curve.json").read_text()), " ".join(printed.split())


def check_points(out, points, metric, val):
    for p in points:
        report = json.loads((out / p["run"] / "report.json").read_text())
        assert report["data"]["train"] == p["train_items"] and report["data"]["val"] == val  # val stays whole
        assert report["data"]["options"]["size"] == 32  # still MedicalData, with its options, after the cut
        assert report["metrics"]["val"][metric] == p["transfer"]
        assert report["scratch"]["metrics"]["val"][metric] == p["scratch"]
        assert isinstance(p["transfer"], float) and isinstance(p["scratch"], float) and p["verdict"]
    assert (out / "curve.png").read_bytes()[:8] == PNG


def test_tl_curve_on_2d_classification_cuts_per_class(tl_cli, med_png_folder, tmp_path):
    out = tmp_path / "curve"  # 4 PNGs per class, lesion and normal; val_fraction 0.2: 3 train + 1 val per class
    summary, printed = curve(tl_cli, "medical/xray-2d", out, "50,2,all", f"data.path={med_png_folder}",
                             "data.options.size=32", "train.batch_size=4", "policy.probe_epochs=1")
    assert summary["unit"] == "per class" and summary["metric"] == "auc" and summary["split"] == "val"
    points = summary["points"]
    assert [p["shots"] for p in points] == [2, 50, None]
    assert [p["train_items"] for p in points] == [4, 6, 6]  # 2 per class; then every one of the 3 per class
    assert points[1]["capped"] == ["lesion (3)", "normal (3)"] and not points[0]["capped"]
    assert "shots-50: lesion (3), normal (3)" in printed
    check_points(out, points, "auc", 2)


def test_tl_curve_on_2d_segmentation_counts_items(tl_cli, med_seg_folder, tmp_path):
    out = tmp_path / "curve"  # 5 image-mask pairs; val_fraction 0.2: 4 train + 1 val
    summary, printed = curve(tl_cli, "medical/seg-2d", out, "2,50,all", f"data.path={med_seg_folder}",
                             "data.options.size=32", "train.batch_size=2")
    assert summary["unit"] == "items" and summary["metric"] == "dice"
    points = summary["points"]
    assert [p["shots"] for p in points] == [2, 50, None]
    assert [p["train_items"] for p in points] == [2, 4, 4]
    assert points[1]["capped"] == ["all items (4)"] and not points[0]["capped"]
    check_points(out, points, "dice", 1)
