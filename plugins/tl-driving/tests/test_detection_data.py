"""Detection data for recipes: read(config, seed) with its splits, the registered formats, write_yolo, the torch
dataset (resizing, flips) and the synthetic street scenes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tl_core.errors import DataError
from tl_core.sections import DataConfig
from tl_driving.data import (
    DetectionData,
    DetectionDataset,
    DrivingOptions,
    collate,
    load_detection,
    random_split,
)
from tl_driving.formats import (
    Box,
    DetectionSample,
    DetectionSet,
    read_coco,
    read_kitti,
    read_voc,
    read_yolo,
    write_yolo,
)
from tl_driving.registrations import DATA_FORMATS
from tl_driving.synthetic import CLASS_MAPS, CLASSES, draw_scene, write_scenes

PLUGIN = Path(__file__).resolve().parents[1]


def config(path: Path | str, fmt: str = "yolo", **kw) -> DataConfig:
    return DataConfig(format=fmt, path=str(path), **kw)


# ---------------------------------------------------------------- the registered formats


def test_five_formats_for_the_object_detection_task():
    assert [f.name for f in DATA_FORMATS] == ["yolo", "coco", "voc", "kitti", "bdd100k"]
    for fmt in DATA_FORMATS:
        assert fmt.task == "object-detection"
        assert fmt.options is DrivingOptions and fmt.read_split is not None and fmt.description


def test_modules_import_neither_torch_nor_torchvision():
    code = (
        "import sys, tl_driving.formats, tl_driving.data, tl_driving.synthetic; "
        "bad = [m for m in ('torch', 'torchvision') if m in sys.modules]; assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_options_defaults_are_small_and_forbid_unknown_keys():
    opts = DrivingOptions()
    assert opts.model_dump() == {"classes": None, "class_map": {}, "missing_labels": "background",
                                 "voc_skip_difficult": False, "image_size": 320, "images": None}
    with pytest.raises(ValueError, match="Extra inputs"):
        DrivingOptions(size=3)


# ---------------------------------------------------------------- read(config, seed)


def test_every_format_reads_the_scenes_through_its_data_format(drv_scenes):
    for fmt in DATA_FORMATS:
        data = fmt.read(config(drv_scenes(fmt.name), fmt.name, options={"class_map": CLASS_MAPS[fmt.name]}), 0)
        assert isinstance(data, DetectionData)
        assert len(data.train) + len(data.val) == 8 and data.test is None
        assert data.val is not None and len(data.val) == 2  # val_fraction 0.2 of 8
        expected = list(CLASSES) if fmt.name == "yolo" else sorted(CLASSES)
        assert data.classes == (expected if fmt.name != "kitti" else ["bus", "car", "person", "truck"])
        json.dumps(data.summary())


def test_random_val_split_is_seeded_and_disjoint(drv_scenes):
    path = drv_scenes("coco")
    a = load_detection(config(path, "coco", val_fraction=0.25), 3, read_coco)
    b = load_detection(config(path, "coco", val_fraction=0.25), 3, read_coco)
    c = load_detection(config(path, "coco", val_fraction=0.25), 4, read_coco)
    names = lambda ds: [s.image.name for s in ds.samples]  # noqa: E731
    assert names(a.val) == names(b.val) and len(a.val) == 2
    assert set(names(a.val)).isdisjoint(names(a.train))
    assert names(c.val) != names(a.val) or names(c.train) != names(a.train)
    assert random_split(1, 0.5, 0) == ([0], [])
    assert load_detection(config(path, "coco", val_fraction=0.0), 0, read_coco).val is None


def test_a_yolo_yaml_val_split_is_used_instead_of_a_random_one(drv_yolo_val):
    data = load_detection(config(drv_yolo_val, val_fraction=0.5), 0, read_yolo)
    assert len(data.train) == 7 and len(data.val) == 3
    assert [s.image.name for s in data.val.samples] == ["scene_0007.jpg", "scene_0008.jpg", "scene_0009.jpg"]
    assert data.val.classes == data.classes == list(CLASSES)
    assert data.val.background == 1  # scene 9 is an empty street
    summary = data.summary()
    assert summary["background"] == {"train": 0, "val": 1}
    assert summary["boxes"]["val"] == data.val.boxes_per_class() and summary["skipped_total"] == 0
    assert summary["options"]["image_size"] == 320 and summary["unlabelled"] == 0


def test_test_path_is_read_with_the_training_classes(tmp_path: Path, drv_scenes):
    test = write_scenes(tmp_path / "test", 3, "kitti", seed=5)
    data = load_detection(
        config(drv_scenes("kitti"), "kitti", test_path=str(test),
               options={"class_map": {"Car": "car", "Misc": "bus", "Pedestrian": None}}),
        0, read_kitti,
    )
    assert data.classes == ["Truck", "bus", "car"]
    assert data.test.classes == data.classes and len(data.test) == 3
    assert data.dropped["class_map: None"] > 0 and data.dropped["DontCare"] > 0
    yaml_test = write_scenes(tmp_path / "yolo-test", 4, "yolo", seed=6, split_val=1)
    data = load_detection(config(drv_scenes("yolo"), test_path=str(yaml_test)), 0, read_yolo)
    assert len(data.test) == 3 and data.test.classes == list(CLASSES)  # a test YAML without 'test': its train


def test_a_voc_year_folders_split_lists_pick_train_val_and_test(drv_scenes, drv_copy):
    """As torchvision's VOCDetection(image_set=...) reads them: ImageSets/Main/train.txt trains, val.txt validates
    (no random split), test.txt tests; an image in no list is not read (a VOC2007 folder holds its test images)."""
    voc = drv_copy(drv_scenes("voc"))
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True)
    ids = [f"scene_{i:04d}" for i in range(8)]
    (main / "train.txt").write_text("\n".join(ids[:4]) + "\n")
    (main / "val.txt").write_text("\n".join(ids[4:6]) + "\n")
    (main / "trainval.txt").write_text("\n".join(ids[:6]) + "\n")
    (main / "test.txt").write_text(ids[6] + "\n")  # scene 7 is in no list
    data = load_detection(config(voc, "voc", val_fraction=0.5), 0, read_voc)
    names = {split: [s.image.stem for s in ds.samples] for split, ds in data.splits().items()}
    assert names == {"train": ids[:4], "val": ids[4:6], "test": [ids[6]]}
    assert data.val.classes == data.test.classes == data.classes
    (main / "train.txt").unlink()  # trainval alone: it trains, and val_fraction splits it
    data = load_detection(config(voc, "voc", val_fraction=0.5), 0, read_voc)
    assert len(data.train) == len(data.val) == 3
    assert sorted(s.image.stem for s in data.train.samples + data.val.samples) == ids[:6]
    (main / "val.txt").unlink()
    (main / "trainval.txt").unlink()
    (main / "test.txt").unlink()
    assert len(load_detection(config(voc, "voc", val_fraction=0.25), 0, read_voc).train) == 6  # no lists: all 8


def test_a_voc_test_path_and_tl_evaluate_read_its_test_list(drv_scenes, drv_copy):
    from tl_core.plugins import registry
    from tl_driving.formats import read_voc_new

    voc = drv_copy(drv_scenes("voc"))
    main = voc / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "val.txt").write_text("scene_0001\nscene_0002\n")
    assert [s.image.stem for s in read_voc_new(voc).samples] == ["scene_0001", "scene_0002"]
    (main / "test.txt").write_text("scene_0003\nscene_0099\n")
    ds = read_voc_new(voc)
    assert [s.image.stem for s in ds.samples] == ["scene_0003"]
    assert ds.skipped == [f"{main / 'test.txt'}: lists scene_0099, which has neither an XML in {voc / 'Annotations'} "
                          f"nor an image in {voc / 'JPEGImages'}"]
    assert registry("data format").get("voc").read_split is read_voc_new
    data = load_detection(config(drv_scenes("voc"), "voc", test_path=str(voc)), 0, read_voc)
    assert [s.image.stem for s in data.test.samples] == ["scene_0003"]


def test_image_size_and_options_reach_the_data(drv_scenes):
    data = load_detection(config(drv_scenes("yolo"), image_size=256, options={"classes": ["person", "car"]}), 0,
                          read_yolo)
    assert data.options.image_size == 256 and data.classes == ["person", "car"]
    assert data.dropped["filtered class"] > 0
    assert load_detection(config(drv_scenes("yolo")), 0, read_yolo).options.image_size == 320


def test_training_data_without_boxes_is_an_error(drv_scenes):
    with pytest.raises(DataError, match=r"no boxes in the training images \(every image is background; dropped: "
                                        r"\d+ DontCare, \d+ class_map: None\); check the labels"):
        load_detection(config(drv_scenes("kitti"), "kitti", options={
            "class_map": {"Car": None, "Truck": None, "Misc": None, "Pedestrian": None}}), 0, read_kitti)


def test_skipped_lines_of_every_split_are_collected(tmp_path: Path, drv_yolo_val, drv_copy):
    root = drv_copy(drv_yolo_val.parent)
    (root / "labels" / "val" / "scene_0007.txt").write_text("0 0.5 0.5 0.2\n")
    data = load_detection(config(root / "data.yaml"), 0, read_yolo)
    assert data.skipped == [f"{root / 'labels' / 'val' / 'scene_0007.txt'}:1: expected 'class cx cy w h' (or a "
                            f"polygon 'class x1 y1 x2 y2 ...'), found 4 values; the image "
                            f"{root / 'images' / 'val' / 'scene_0007.jpg'} is left out"]
    assert data.dropped == {} and [s.image.name for s in data.val.samples] == ["scene_0008.jpg", "scene_0009.jpg"]


def test_the_report_names_every_skipped_item(tmp_path: Path, drv_write_image):
    """report.json's data.skipped lists all of them (issue 12), not the first 100; skipped_total counts them."""
    root = tmp_path / "many"
    for n in range(130):
        drv_write_image(root / "images" / f"{n:03d}.png", 16, 16)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{n:03d}.txt").write_text("0 0.5 0.5 0.5 0.5\n" if n < 10 else "0 0.5 0.5 0.5 tall\n")
    (root / "classes.txt").write_text("car\n")
    data = load_detection(config(root, val_fraction=0.0), 0, read_yolo)
    summary = json.loads(json.dumps(data.summary()))
    assert summary["skipped_total"] == 120 and summary["skipped"] == data.skipped and len(summary["skipped"]) == 120
    assert summary["skipped"][-1] == f"{root / 'labels' / '129.txt'}:1: not a number: 'tall'; the image " \
                                     f"{root / 'images' / '129.png'} is left out"
    assert len(data.train) == 10


# ---------------------------------------------------------------- write_yolo


def test_write_yolo_round_trips_the_boxes(tmp_path: Path, drv_scenes):
    source = read_kitti(drv_scenes("kitti"), options={"class_map": CLASS_MAPS["kitti"]})
    data = load_detection(config(drv_scenes("kitti"), "kitti", options={"class_map": CLASS_MAPS["kitti"]}), 0,
                          read_kitti)
    yaml_path = write_yolo(data.train, tmp_path / "ultra", {"val": data.val})
    assert yaml_path == tmp_path / "ultra" / "data.yaml"
    import yaml

    written = yaml.safe_load(yaml_path.read_text())
    assert written == {"path": str((tmp_path / "ultra").resolve()), "train": "images/train", "val": "images/val",
                       "names": {0: "bus", 1: "car", 2: "person", 3: "truck"}}
    for split, original in (("train", data.train), ("val", data.val)):
        back = read_yolo(yaml_path, split=split)
        assert back.classes == original.classes and len(back) == len(original)
        for a, b in zip(original.samples, back.samples):
            assert a.image.stem == b.image.stem and (a.width, a.height) == (b.width, b.height)
            assert [x.label for x in a.boxes] == [y.label for y in b.boxes]
            for x, y in zip(a.boxes, b.boxes):
                assert max(abs(x.x1 - y.x1), abs(x.y1 - y.y1), abs(x.x2 - y.x2), abs(x.y2 - y.y2)) < 1e-3
            assert b.image.read_bytes() == a.image.read_bytes()
    assert len(data.train) + len(data.val) == len(source)
    # written again over its own output: replaced, not mixed
    write_yolo(data.val, tmp_path / "ultra")
    assert len(read_yolo(yaml_path)) == len(data.val)
    assert not (tmp_path / "ultra" / "images" / "val").exists()
    assert yaml.safe_load(yaml_path.read_text())["val"] == "images/train"


def test_write_yolo_keeps_background_images_and_names_apart(tmp_path: Path, drv_write_image):
    a = drv_write_image(tmp_path / "one" / "x.jpg")
    b = drv_write_image(tmp_path / "two" / "x.jpg", colour=(1, 2, 3))
    ds = DetectionSet([DetectionSample(a, 96, 64, [Box(0, 10, 10, 20, 30)]), DetectionSample(b, 96, 64, [])], ["car"])
    yaml_path = write_yolo(ds, tmp_path / "out", {"test": ds})
    back = read_yolo(yaml_path)
    assert [s.image.name for s in back.samples] == ["x.jpg", "x_1.jpg"]
    assert back.background == 1 and back.unlabelled == 0
    assert (tmp_path / "out" / "labels" / "train" / "x_1.txt").read_text() == ""
    assert read_yolo(yaml_path, split="test").num_boxes == 1
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"foreign is not empty and was not written by write_yolo"):
        write_yolo(ds, tmp_path / "foreign")


# ---------------------------------------------------------------- the torch dataset


def _one(tmp_path: Path, image, boxes: list[Box], size: tuple[int, int] = (96, 64)) -> DetectionSet:
    path = image(tmp_path / "img.png", *size)
    return DetectionSet([DetectionSample(path, size[0], size[1], boxes)], ["car", "person"])


def test_dataset_resizes_the_longer_side_and_scales_the_boxes(tmp_path: Path, drv_write_image):
    import torch

    ds = DetectionDataset(_one(tmp_path, drv_write_image, [Box(1, 12, 8, 36, 40), Box(0, 0, 0, 96, 64)]), 48)
    image, target = ds[0]
    assert image.shape == (3, 32, 48) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert target["boxes"].tolist() == [[6.0, 4.0, 18.0, 20.0], [0.0, 0.0, 48.0, 32.0]]
    assert target["labels"].tolist() == [1, 0]
    # the left third of the test image is red
    assert image[0, :, :10].mean() > 0.7 and image[2, :, :10].mean() < 0.3
    again, _ = ds[0]
    assert torch.equal(image, again)


def test_a_background_image_has_empty_targets(tmp_path: Path, drv_write_image):
    _, target = DetectionDataset(_one(tmp_path, drv_write_image, []), 64)[0]
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_flip_moves_a_left_box_to_the_right(tmp_path: Path, drv_write_image):
    import torch

    ds = DetectionDataset(_one(tmp_path, drv_write_image, [Box(0, 4, 10, 20, 30)]), 96, augment=True)
    plain, _ = DetectionDataset(ds.dataset, 96)[0]
    flipped = kept = 0
    torch.manual_seed(0)
    for _ in range(16):
        image, target = ds[0]
        box = target["boxes"][0].tolist()
        assert image.shape == (3, 64, 96)
        if box == [76.0, 10.0, 92.0, 30.0]:
            flipped += 1
            assert image[0, :, -10:].mean() > image[0, :, :10].mean()  # the red third is now on the right
        else:
            assert box == [4.0, 10.0, 20.0, 30.0]
            kept += 1
            assert image[0, :, :10].mean() > image[0, :, -10:].mean()
    assert flipped and kept
    torch.manual_seed(1)
    a = ds[0]
    torch.manual_seed(1)
    b = ds[0]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    assert not torch.equal(a[0], plain) or not torch.equal(b[0], plain)


def test_collate_keeps_lists(tmp_path: Path, drv_scenes):
    ds = DetectionDataset(read_yolo(drv_scenes("yolo")), 80)
    images, targets = collate([ds[0], ds[1]])
    assert [tuple(i.shape) for i in images] == [(3, 48, 80), (3, 48, 80)]
    assert all(set(t) == {"boxes", "labels"} for t in targets)
    assert ds.scaled_size(0) == (80, 48)


def test_a_changed_image_is_an_error(tmp_path: Path, drv_write_image):
    ds = _one(tmp_path, drv_write_image, [])
    drv_write_image(ds.samples[0].image, 50, 50)
    with pytest.raises(DataError, match=r"img\.png: the image is 50x50 but was 96x64"):
        DetectionDataset(ds, 64)[0]


# ---------------------------------------------------------------- synthetic scenes


def test_scenes_are_deterministic_and_boxes_lie_inside(tmp_path: Path):
    a, objs_a = draw_scene(3, seed=7)
    b, objs_b = draw_scene(3, seed=7)
    assert a.tobytes() == b.tobytes() and objs_a == objs_b
    c, _ = draw_scene(3, seed=8)
    assert c.tobytes() != a.tobytes()
    assert draw_scene(9)[1] == []  # every tenth scene is an empty street
    for i in range(20):
        _, objects = draw_scene(i, 128, 64, seed=2)
        for o in objects:
            assert 0 <= o.x1 < o.x2 <= 128 and 0 <= o.y1 < o.y2 <= 64 and o.name in CLASSES


def test_scene_writer_layouts(tmp_path: Path):
    assert write_scenes(tmp_path / "c", 4, "coco", split_val=1) == tmp_path / "c" / "train.json"
    assert len(read_coco(tmp_path / "c" / "val.json")) == 1
    assert write_scenes(tmp_path / "k", 3, "kitti", split_val=1, width=96, height=64) == tmp_path / "k"
    assert len(read_kitti(tmp_path / "k")) == 2 and len(read_kitti(tmp_path / "k" / "val")) == 1
    with pytest.raises(ValueError, match="not empty"):
        write_scenes(tmp_path / "k", 3, "kitti")
    with pytest.raises(ValueError, match="format must be one of"):
        write_scenes(tmp_path / "x", 3, "csv")  # type: ignore[arg-type]


def test_scene_cli_writes_and_refuses_a_non_empty_folder(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "tl_driving.synthetic", str(tmp_path / "out"), "--n", "2", "--format", "voc",
           "--width", "96", "--height", "64"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert f"data.path: {tmp_path / 'out'}" in first.stdout
    assert len(read_voc(tmp_path / "out")) == 2
    second = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert second.returncode == 2 and "is not empty; choose a new folder" in second.stderr

