"""``tl diagnose`` on detection recipes: one feature vector per ground-truth box of the training and validation images
(never the test split), RoIAligned from the backbone, scored pre-trained and at random init."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCORES = ("knn_accuracy", "probe_accuracy", "logme")


def strict_json(text: str) -> dict:
    """JSON as a strict parser reads it: NaN or Infinity anywhere is an error."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in tl diagnose --json")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def yolo_scenes(tmp_path_factory) -> tuple[Path, Path]:
    """12 YOLO scenes, the last 3 the data YAML's val split, and 4 other scenes to be the test split."""
    from tl_driving.synthetic import write_scenes

    root = tmp_path_factory.mktemp("diagnose-yolo")
    return (write_scenes(root / "data", 12, "yolo", split_val=3),
            write_scenes(root / "test", 4, "yolo", seed=5))


@pytest.fixture(scope="module")
def coco_scenes(tmp_path_factory) -> Path:
    from tl_driving.synthetic import write_scenes

    return write_scenes(tmp_path_factory.mktemp("diagnose-coco") / "data", 12, "coco")


def yolo_label_lines(data_yaml: Path, splits: tuple[str, ...] = ("train", "val")) -> int:
    """The ground-truth boxes of ``splits``, counted from the label files themselves."""
    return sum(1 for split in splits for f in (data_yaml.parent / "labels" / split).glob("*.txt")
               for line in f.read_text().splitlines() if line.strip())


def assert_scored(candidate: dict) -> None:
    for scores in (candidate["scores"], candidate["random_init"]["scores"]):
        for key in SCORES:
            assert isinstance(scores[key], float), (key, scores)
        # per-box features are wider than the boxes: the H-score would be classes - 1 whatever they hold
        assert "h_score" not in scores and any("H-score not given" in n for n in scores["notes"])
        for key in ("knn", "probe"):
            low, high = scores[f"{key}_interval"]
            assert 0 <= low <= scores[f"{key}_accuracy"] <= high <= 1


def test_yolo_recipe_scores_every_train_and_val_box_and_names_the_skipped(tl_cli, yolo_scenes):
    """At image size 32 (a fifth of the scenes' width) the smallest boxes are under a pixel: skipped, each named.
    The test split's boxes are never looked at. Offline the YOLO model has no weights: it is its own random-init
    twin (the same seed, the same features), so it cannot show a gain."""
    data, test = yolo_scenes
    code, out, err = tl_cli("diagnose", "driving/yolo", "--set", f"data.path={data}", "--set", f"data.test_path={test}",
                            "--set", "backbone.weights=none", "--set", "data.options.image_size=32", "--json")
    assert code == 0, err
    result = strict_json(out)
    assert result["task"] == "object-detection" and result["unit"] == "boxes"
    (candidate,) = result["candidates"]
    skipped = candidate["skipped"]
    assert skipped and all("smaller than a pixel, not pooled" in line and ".jpg: box #" in line for line in skipped)
    assert result["items"] + len(skipped) == yolo_label_lines(data)  # train + val, not the 4 test scenes
    assert candidate["feature_dim"] == 128 + 128 + 256  # yolo11n's P3, P4, P5 (layers 4, 6, 10)
    assert "RoIAlign" in candidate["how"] and "strides 8, 16, 32" in candidate["how"]
    assert_scored(candidate)
    assert candidate["scores"]["knn_accuracy"] == candidate["random_init"]["scores"]["knn_accuracy"]
    assert candidate["transfer_gain"]["value"] == 0 and candidate["shift"] is None
    advice = result["recommendation"]
    assert advice["backbone"] == "yolo11n" and advice["policy"] == "scratch" and advice["why"]


def test_faster_rcnn_recipe_scores_imagenet_features_against_random_init(tl_cli, coco_scenes):
    code, out, err = tl_cli("diagnose", "driving/faster-rcnn", "--set", f"data.path={coco_scenes}",
                            "--set", "data.options.image_size=64", "--json")
    assert code == 0, err
    result = strict_json(out)
    boxes = len(json.loads(coco_scenes.read_text())["annotations"])
    assert result["unit"] == "boxes" and result["items"] == boxes and result["classes"] == 6
    (candidate,) = result["candidates"]
    assert candidate["skipped"] == [] and candidate["weights"] == "imagenet"
    assert candidate["feature_dim"] == 32 + 96 + 1280  # MobileNetV2's features.6, .13, .18
    assert_scored(candidate)
    assert candidate["scores"]["logme"] != candidate["random_init"]["scores"]["logme"]  # two different models
    assert candidate["transfer_gain"]["interval"] is not None and candidate["shift"] is None
    advice = result["recommendation"]
    assert advice["backbone"] == "mobilenet_v2" and advice["policy"] and advice["set"]


def test_ssdlite_features_and_progress_count_every_image(coco_scenes):
    """SSDlite reads strides 16 and 32 only (its own transform: a square); only the boxes of the classes kept
    count; progress advances by the images of each batch, all of train and val, in both passes."""
    from tl_core.diagnose import diagnose
    from tl_core.recipe import load_recipe

    passes: list[tuple[str, int | None, list[int]]] = []

    def reporter(label: str, total: int | None):
        seen: list[int] = []
        passes.append((label, total, seen))
        return seen.append

    recipe = load_recipe("driving/faster-rcnn", [f"data.path={coco_scenes}", "data.options.image_size=64",
                                                 "head.name=ssdlite", "train.batch_size=5",
                                                 "data.options.classes=[car, person]"])  # two classes: a quick probe
    result = diagnose(recipe, None, reporter)
    assert [label for label, _, _ in passes] == ["mobilenet_v2 pre-trained", "mobilenet_v2 random-init"]
    for _, total, seen in passes:
        assert total == 12 and sum(seen) == 12 and max(seen) <= 5
    (candidate,) = result["candidates"]
    assert candidate["feature_dim"] == 96 + 1280 and "strides 16, 32" in candidate["how"]
    coco = json.loads(coco_scenes.read_text())
    kept = {c["id"] for c in coco["categories"] if c["name"] in ("car", "person")}
    assert result["items"] == sum(1 for a in coco["annotations"] if a["category_id"] in kept)
    assert result["classes"] == 2
    json.dumps(result, allow_nan=False)


def test_the_hook_leaves_other_models_alone():
    from tl_driving import plugin

    assert plugin.tl_extract_features(recipe=None, model=object(), data=None, progress=print) is None
