"""``tl curve`` on detection: a shot is one training image (an image holds boxes of several classes, so it is not
cut per class), a seeded choice; val and test stay whole, a shot beyond the training split is capped and said.
``driving/faster-rcnn`` (ImageNet MobileNetV2, offline) against its scratch twin on 8 synthetic scenes at 96 pixels,
one epoch per side and point."""

from __future__ import annotations

import json
from pathlib import Path

from tl_driving.data import DetectionData
from tl_driving.formats import Box, DetectionSample, DetectionSet


def test_tl_curve_cuts_the_training_images_and_keeps_val(tl_cli, drv_scenes, tmp_path):
    scenes = drv_scenes("coco")  # 8 scenes, every one with boxes: 6 train, 2 val
    sets = [f"data.path={scenes}", "data.val_fraction=0.25", "data.options.image_size=96", "data.augment=false",
            "train.epochs=1", "train.batch_size=2", "compare.scratch_search=false"]
    out = tmp_path / "curve"
    code, printed, err = tl_cli("curve", "driving/faster-rcnn", "--shots", "50,2,all", "--out", out,
                                *[x for s in sets for x in ("--set", s)], "--quiet")
    assert code == 0, err
    summary = json.loads((out / "curve.json").read_text())
    assert summary["unit"] == "images" and summary["metric"] == "map_50" and summary["split"] == "val"
    points = summary["points"]
    assert [p["shots"] for p in points] == [2, 50, None]
    assert [p["train_items"] for p in points] == [2, 6, 6]
    assert [p["unit"] for p in points] == ["images", "images", "all"]
    assert points[1]["capped"] == ["the training images (6)"] and not points[0]["capped"]
    assert "shots-50: the training images (6)" in " ".join(printed.split())
    boxes = []
    for p in points:
        report = json.loads((out / p["run"] / "report.json").read_text())
        assert report["data"]["train"] == p["train_items"] and report["data"]["val"] == 2  # val whole
        boxes.append(sum(report["data"]["boxes"]["train"].values()))
        assert report["data"]["boxes"]["val"] == json.loads((out / "shots-all" / "report.json").read_text()
                                                            )["data"]["boxes"]["val"]
        assert report["metrics"]["val"]["map_50"] == p["transfer"]
        assert report["scratch"]["metrics"]["val"]["map_50"] == p["scratch"]
        assert isinstance(p["transfer"], float) and isinstance(p["scratch"], float) and p["verdict"]
    assert 0 < boxes[0] < boxes[2] == boxes[1]  # the 2 images' boxes, fewer than the 6 images' boxes
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _data(boxed: list[bool]) -> DetectionData:
    samples = [DetectionSample(Path(f"{i}.png"), 10, 10, [Box(0, 1, 1, 5, 5)] if b else [])
               for i, b in enumerate(boxed)]
    val = DetectionSet(samples[:1], ["car"])
    return DetectionData(DetectionSet(samples, ["car"]), val, None, ["car"], ["x.txt: bad; skipped"],
                         dropped={"tiny": 2})


def test_with_shots_is_a_seeded_choice_of_images_with_at_least_one_box():
    data = _data([True] * 10)
    cut, info = data.with_shots(4, seed=3)
    assert info == {"unit": "images", "items": 4, "capped": []}
    names = [s.image.name for s in cut.train.samples]
    assert names == sorted(names, key=lambda n: int(n.split(".")[0]))  # in the order read
    assert cut.train.samples == data.with_shots(4, seed=3)[0].train.samples  # seeded
    assert cut.train.samples != data.with_shots(4, seed=4)[0].train.samples
    assert all(s in cut.train.samples for s in data.with_shots(2, seed=3)[0].train.samples)  # nested
    assert (cut.val, cut.test, cut.classes, cut.skipped, cut.dropped) == \
        (data.val, data.test, data.classes, data.skipped, data.dropped)
    assert len(data.train) == 10 and cut.summary()["train"] == 4 and cut.summary()["val"] == 1
    whole, info = data.with_shots(12, seed=3)
    assert len(whole.train) == 10 and info["capped"] == ["the training images (10)"] and info["items"] == 10
    one_box = _data([False] * 9 + [True])  # a cut of background images alone trains nothing to detect
    for seed in range(5):
        assert any(s.boxes for s in one_box.with_shots(1, seed)[0].train.samples)
