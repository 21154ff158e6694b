"""The five label readers: a hand-written, real-looking sample of each read back to exact boxes; the synthetic scenes
read alike in every format; and bad input - reported with file and line and skipped (a label that does not parse:
its whole image; a box of no size or outside the image: that box), or a DataError when strict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tl_core.errors import DataError
from tl_driving.formats import (
    READERS,
    Box,
    DetectionSet,
    read_bdd100k,
    read_coco,
    read_kitti,
    read_voc,
    read_yolo,
    yolo_label_path,
    yolo_splits,
)
from tl_driving.synthetic import CLASS_MAPS, CLASSES


def boxes(ds: DetectionSet) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """``image name -> [(class, x1, y1, x2, y2), ...]`` (sorted) for exact comparisons."""
    return {
        s.image.name: sorted((ds.classes[b.label], b.x1, b.y1, b.x2, b.y2) for b in s.boxes) for s in ds.samples
    }


# ---------------------------------------------------------------- hand-written samples, one per format (96x64)


def write_yolo_sample(root: Path, image) -> Path:
    """An ultralytics data set: three train images (one a background image with an empty label file), one val."""
    for split, name in (("train", "a"), ("train", "b"), ("train", "c"), ("val", "d")):
        image(root / "images" / split / f"{name}.jpg")
    labels = {
        "train/a": "0 0.5 0.5 0.25 0.5\n1 0.125 0.75 0.0625 0.25\n",
        "train/b": "2 0.875 0.25 0.0625 0.25\n0 0.25 0.625 0.375 0.25\n",
        "train/c": "",
        "val/d": "1 0.5 0.5 0.125 0.5\n",
    }
    for stem, text in labels.items():
        (root / "labels" / f"{stem}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{stem}.txt").write_text(text)
    (root / "drive.yaml").write_text(
        "# a tiny driving data set in ultralytics' layout\n"
        "path: .  # dataset root (relative to this file)\n"
        "train: images/train\n"
        "val: images/val\n"
        "\n"
        "names:\n"
        "  0: car\n"
        "  1: person\n"
        "  2: traffic light\n"
    )
    return root / "drive.yaml"


def test_yolo_sample_reads_exact_boxes(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    ds = read_yolo(data)
    assert ds.classes == ["car", "person", "traffic light"]
    assert boxes(ds) == {
        "a.jpg": [("car", 36.0, 16.0, 60.0, 48.0), ("person", 9.0, 40.0, 15.0, 56.0)],
        "b.jpg": [("car", 6.0, 32.0, 42.0, 48.0), ("traffic light", 81.0, 8.0, 87.0, 24.0)],
        "c.jpg": [],
    }
    assert ds.samples[0].width == 96 and ds.samples[0].height == 64
    assert ds.background == 1 and ds.unlabelled == 0 and ds.skipped == [] and ds.dropped == {}
    val = read_yolo(data, split="val")
    assert boxes(val) == {"d.jpg": [("person", 42.0, 16.0, 54.0, 48.0)]}
    assert yolo_splits(data) == ["val"]


def test_yolo_folder_with_classes_txt_and_the_label_rule(tmp_path: Path, drv_write_image):
    root = tmp_path / "flat"
    drv_write_image(root / "images" / "x.png")
    (root / "labels").mkdir()
    (root / "labels" / "x.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    (root / "classes.txt").write_text("car\nperson\n")
    ds = read_yolo(root)
    assert ds.classes == ["car", "person"]
    assert boxes(ds) == {"x.png": [("person", 36.0, 16.0, 60.0, 48.0)]}
    assert yolo_label_path(Path("/d/images/train/sub/x.jpg")) == Path("/d/labels/train/sub/x.txt")
    assert yolo_label_path(Path("/d/images/images/x.v2.jpg")) == Path("/d/images/labels/x.v2.txt")


def test_yolo_names_as_a_list_and_a_txt_split_and_polygon_lines(tmp_path: Path, drv_write_image):
    root = tmp_path / "d"
    drv_write_image(root / "images" / "a.jpg")
    (root / "labels").mkdir()
    # a segment line: its bounding box is the box
    (root / "labels" / "a.txt").write_text("0 0.25 0.25 0.5 0.25 0.5 0.75 0.25 0.75\n")
    (root / "train.txt").write_text("./images/a.jpg\n")
    (root / "data.yaml").write_text("train: train.txt\nnames: [car, person]\n")
    ds = read_yolo(root / "data.yaml")
    assert boxes(ds) == {"a.jpg": [("car", 24.0, 16.0, 48.0, 48.0)]}


def write_coco_sample(root: Path, image) -> Path:
    for name in ("000000000139.jpg", "000000000285.jpg", "000000000632.jpg"):
        image(root / "images" / name)
    data = {
        "info": {"description": "drive sample", "version": "1.0", "year": 2024},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"}],
        "images": [
            {"id": 139, "file_name": "000000000139.jpg", "width": 96, "height": 64, "license": 1},
            {"id": 285, "file_name": "000000000285.jpg", "width": 96, "height": 64, "license": 1},
            {"id": 632, "file_name": "000000000632.jpg", "width": 96, "height": 64, "license": 1},
        ],
        "annotations": [
            {"id": 1, "image_id": 139, "category_id": 3, "bbox": [36.0, 16.0, 24.0, 32.0], "area": 768.0,
             "iscrowd": 0, "segmentation": [[36.0, 16.0, 60.0, 16.0, 60.0, 48.0, 36.0, 48.0]]},
            {"id": 2, "image_id": 139, "category_id": 1, "bbox": [9.5, 40.25, 6.0, 16.0], "area": 96.0,
             "iscrowd": 0, "segmentation": []},
            {"id": 3, "image_id": 285, "category_id": 10, "bbox": [81.0, 8.0, 6.0, 16.0], "area": 96.0,
             "iscrowd": 0, "segmentation": []},
            {"id": 4, "image_id": 285, "category_id": 1, "bbox": [0.0, 30.0, 30.0, 20.0], "area": 600.0,
             "iscrowd": 1, "segmentation": {"counts": [0, 600], "size": [64, 96]}},
        ],
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person"},
            {"id": 3, "name": "car", "supercategory": "vehicle"},
            {"id": 10, "name": "traffic light", "supercategory": "outdoor"},
        ],
    }
    (root / "annotations.json").write_text(json.dumps(data, indent=2))
    return root / "annotations.json"


def test_coco_sample_reads_exact_boxes_and_counts_crowds(tmp_path: Path, drv_write_image):
    ds = read_coco(write_coco_sample(tmp_path / "coco", drv_write_image))
    assert ds.classes == ["car", "person", "traffic light"]
    assert boxes(ds) == {
        "000000000139.jpg": [("car", 36.0, 16.0, 60.0, 48.0), ("person", 9.5, 40.25, 15.5, 56.25)],
        "000000000285.jpg": [("traffic light", 81.0, 8.0, 87.0, 24.0)],
        "000000000632.jpg": [],
    }
    assert ds.dropped == {"crowd": 1} and ds.background == 1 and ds.skipped == []


def test_coco_images_beside_the_json_or_in_options_images(tmp_path: Path, drv_write_image):
    file = write_coco_sample(tmp_path / "coco", drv_write_image)
    (tmp_path / "coco" / "images").rename(tmp_path / "coco" / "val2017")
    with pytest.raises(DataError, match=r"annotations\.json: no images \(3 skipped, e\.g\. .*000000000139\.jpg "
                                        r"not found in .*coco or .*images\).*data\.options\.images"):
        read_coco(file)
    assert len(read_coco(file, options={"images": "val2017"})) == 3
    for p in (tmp_path / "coco" / "val2017").iterdir():
        p.rename(tmp_path / "coco" / p.name)  # beside the JSON
    assert len(read_coco(file)) == 3


def write_voc_sample(root: Path, image) -> Path:
    for name in ("2008_000008", "2008_000015", "2008_000019"):
        image(root / "JPEGImages" / f"{name}.jpg")
    (root / "Annotations").mkdir(parents=True)
    header = (
        "<annotation>\n"
        "\t<folder>VOC2012</folder>\n"
        "\t<filename>{name}.jpg</filename>\n"
        "\t<source>\n"
        "\t\t<database>The VOC2008 Database</database>\n"
        "\t\t<annotation>PASCAL VOC2008</annotation>\n"
        "\t\t<image>flickr</image>\n"
        "\t</source>\n"
        "\t<size>\n"
        "\t\t<width>96</width>\n"
        "\t\t<height>64</height>\n"
        "\t\t<depth>3</depth>\n"
        "\t</size>\n"
        "\t<segmented>0</segmented>\n"
    )

    def obj(name: str, box: tuple[int, int, int, int], difficult: int = 0) -> str:
        xmin, ymin, xmax, ymax = box
        return (
            "\t<object>\n"
            f"\t\t<name>{name}</name>\n"
            "\t\t<pose>Frontal</pose>\n"
            "\t\t<truncated>0</truncated>\n"
            "\t\t<occluded>0</occluded>\n"
            "\t\t<bndbox>\n"
            f"\t\t\t<xmin>{xmin}</xmin>\n"
            f"\t\t\t<ymin>{ymin}</ymin>\n"
            f"\t\t\t<xmax>{xmax}</xmax>\n"
            f"\t\t\t<ymax>{ymax}</ymax>\n"
            "\t\t</bndbox>\n"
            f"\t\t<difficult>{difficult}</difficult>\n"
            "\t</object>\n"
        )

    objects = {
        "2008_000008": obj("car", (37, 17, 60, 48)) + obj("person", (10, 41, 15, 56)),
        "2008_000015": obj("bus", (1, 1, 40, 30)) + obj("person", (70, 30, 75, 44), difficult=1),
        "2008_000019": "",
    }
    for name, text in objects.items():
        (root / "Annotations" / f"{name}.xml").write_text(header.format(name=name) + text + "</annotation>\n")
    return root


def test_voc_sample_reads_exact_boxes_one_based(tmp_path: Path, drv_write_image):
    ds = read_voc(write_voc_sample(tmp_path / "VOC2012", drv_write_image))
    assert ds.classes == ["bus", "car", "person"]
    assert boxes(ds) == {
        "2008_000008.jpg": [("car", 36.0, 16.0, 60.0, 48.0), ("person", 9.0, 40.0, 15.0, 56.0)],
        "2008_000015.jpg": [("bus", 0.0, 0.0, 40.0, 30.0), ("person", 69.0, 29.0, 75.0, 44.0)],
        "2008_000019.jpg": [],
    }
    skipping = read_voc(tmp_path / "VOC2012", options={"voc_skip_difficult": True})
    assert skipping.dropped == {"difficult": 1}
    assert boxes(skipping)["2008_000015.jpg"] == [("bus", 0.0, 0.0, 40.0, 30.0)]


def test_voc_bad_xml_and_bad_objects_are_named_with_their_line(tmp_path: Path, drv_write_image):
    root = write_voc_sample(tmp_path / "VOC2012", drv_write_image)
    (root / "Annotations" / "2008_000019.xml").write_text("<annotation>\n<filename>2008_000019.jpg\n</annotation>\n")
    xml = root / "Annotations" / "2008_000008.xml"
    xml.write_text(xml.read_text().replace("<xmin>37</xmin>", "<xmin>left</xmin>"))
    ds = read_voc(root)
    assert ds.skipped[0] == (f"{xml}:15: object 'car': <bndbox> needs numbers xmin, ymin, xmax, ymax (<xmin> is not "
                             f"a number: 'left'); the image {root / 'JPEGImages' / '2008_000008.jpg'} is left out")
    assert ds.skipped[1] == f"{root / 'Annotations' / '2008_000019.xml'}:3: not valid XML (mismatched tag)"
    assert ds.dropped == {}
    # the image of the bad object is left out whole, that of the broken XML is skipped (neither is background)
    assert list(boxes(ds)) == ["2008_000015.jpg"] and ds.unlabelled == 0
    with pytest.raises(DataError, match=r"2008_000008\.xml:15: object 'car'.*data\.strict: false"):
        read_voc(root, strict=True)


def write_kitti_sample(root: Path, image) -> Path:
    for n in range(3):
        image(root / "image_2" / f"{n:06d}.png")
    (root / "label_2").mkdir(parents=True)
    (root / "label_2" / "000000.txt").write_text(
        "Car 0.00 0 -1.58 36.00 16.00 60.00 48.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
        "Pedestrian 0.00 0 0.21 9.00 40.00 15.00 56.00 1.89 0.48 1.20 1.84 1.47 8.41 0.01\n"
    )
    (root / "label_2" / "000001.txt").write_text(
        "Truck 0.00 1 -1.57 6.00 20.50 42.00 48.00 3.20 2.50 8.10 -4.20 1.80 22.40 -1.74\n"
        "Cyclist 0.31 2 1.62 80.12 30.00 95.50 52.75 1.72 0.50 1.95 10.03 1.68 9.49 2.42\n"
        "DontCare -1 -1 -10 60.00 10.00 70.00 20.00 -1 -1 -1 -1000 -1000 -1000 -10\n"
    )
    (root / "label_2" / "000002.txt").write_text(
        "DontCare -1 -1 -10 1.00 1.00 20.00 10.00 -1 -1 -1 -1000 -1000 -1000 -10\n"
    )
    return root


def test_kitti_sample_reads_exact_boxes_and_drops_dontcare(tmp_path: Path, drv_write_image):
    ds = read_kitti(write_kitti_sample(tmp_path / "training", drv_write_image))
    assert ds.classes == ["Car", "Cyclist", "Pedestrian", "Truck"]
    assert boxes(ds) == {
        "000000.png": [("Car", 36.0, 16.0, 60.0, 48.0), ("Pedestrian", 9.0, 40.0, 15.0, 56.0)],
        "000001.png": [("Cyclist", 80.12, 30.0, 95.5, 52.75), ("Truck", 6.0, 20.5, 42.0, 48.0)],
        "000002.png": [],
    }
    assert ds.dropped == {"DontCare": 2} and ds.background == 1
    assert len(read_kitti(tmp_path)) == 3  # the parent of training/ is accepted too


def write_bdd_sample(root: Path, image) -> Path:
    names = ["b1c66a42-6f7d68ca.jpg", "b1c81faa-3df17267.jpg", "b1ca2e5d-84cf9134.jpg"]
    for name in names:
        image(root / "images" / name)

    def label(i: int, category: str, box: tuple[float, float, float, float], **attributes) -> dict:
        x1, y1, x2, y2 = box
        return {"id": str(i), "category": category,
                "attributes": {"occluded": False, "truncated": False, "trafficLightColor": "none", **attributes},
                "manualShape": True, "manualAttributes": True, "box2d": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}}

    lane = {"id": "9", "category": "lane",
            "attributes": {"laneDirection": "parallel", "laneStyle": "solid", "laneType": "road curb"},
            "manualShape": True, "manualAttributes": True,
            "poly2d": [{"vertices": [[0.0, 60.0], [40.0, 30.0]], "types": "LL", "closed": False}]}
    frames = [
        {"name": names[0], "attributes": {"weather": "clear", "scene": "city street", "timeofday": "daytime"},
         "timestamp": 10000,
         "labels": [label(0, "car", (36.0, 16.0, 59.0, 47.0)), label(1, "pedestrian", (9.0, 40.0, 14.0, 55.0)),
                    lane]},
        {"name": names[1], "attributes": {"weather": "overcast", "scene": "highway", "timeofday": "night"},
         "timestamp": 10000,
         "labels": [label(0, "traffic light", (81.25, 8.0, 86.5, 23.0), trafficLightColor="green")]},
        {"name": names[2], "attributes": {"weather": "rainy", "scene": "residential", "timeofday": "dawn/dusk"},
         "timestamp": 10000, "labels": None},
    ]
    (root / "det_val.json").write_text(json.dumps(frames, indent=2))
    return root / "det_val.json"


def test_bdd100k_sample_reads_exact_boxes_with_inclusive_corners(tmp_path: Path, drv_write_image):
    ds = read_bdd100k(write_bdd_sample(tmp_path / "bdd100k", drv_write_image))
    assert ds.classes == ["car", "pedestrian", "traffic light"]
    assert boxes(ds) == {
        "b1c66a42-6f7d68ca.jpg": [("car", 36.0, 16.0, 60.0, 48.0), ("pedestrian", 9.0, 40.0, 15.0, 56.0)],
        "b1c81faa-3df17267.jpg": [("traffic light", 81.25, 8.0, 87.5, 24.0)],
        "b1ca2e5d-84cf9134.jpg": [],
    }
    assert ds.skipped == [] and ds.dropped == {} and ds.background == 1  # the lane (poly2d) is not a box


def test_every_reader_is_registered_by_name():
    assert READERS == {"yolo": read_yolo, "coco": read_coco, "voc": read_voc, "kitti": read_kitti,
                       "bdd100k": read_bdd100k}


# ---------------------------------------------------------------- the synthetic scenes, read in every format


def test_scenes_read_alike_in_every_format(drv_scenes):
    reference = read_yolo(drv_scenes("yolo"))
    assert reference.classes == list(CLASSES)
    ref_boxes = [sorted((reference.classes[b.label], b.x1, b.y1, b.x2, b.y2) for b in s.boxes)
                 for s in reference.samples]
    counts = reference.boxes_per_class()
    assert all(counts[c] > 0 for c in CLASSES), counts
    for fmt in ("coco", "voc", "kitti", "bdd100k"):
        ds = READERS[fmt](drv_scenes(fmt), options={"class_map": CLASS_MAPS[fmt]})
        assert len(ds) == len(reference) and ds.skipped == []
        if fmt == "kitti":  # KITTI labels no traffic lights or signs: they are DontCare regions
            dontcare = counts["traffic light"] + counts["stop sign"]
            assert ds.dropped == {"DontCare": dontcare}
            assert ds.boxes_per_class() == {c: n for c, n in sorted(counts.items()) if c in ("bus", "car", "person",
                                                                                            "truck")}
            continue
        assert ds.boxes_per_class() == dict(sorted(counts.items())), fmt
        assert ds.dropped == {}
        got = [sorted((ds.classes[b.label], b.x1, b.y1, b.x2, b.y2) for b in s.boxes) for s in ds.samples]
        for mine, theirs in zip(got, ref_boxes):
            assert [m[0] for m in mine] == [t[0] for t in theirs]
            assert all(abs(a - b) < 1e-3 for m, t in zip(mine, theirs) for a, b in zip(m[1:], t[1:])), fmt


def test_kitti_and_bdd100k_names_without_a_class_map(drv_scenes):
    assert read_kitti(drv_scenes("kitti")).classes == ["Car", "Misc", "Pedestrian", "Truck"]
    assert read_bdd100k(drv_scenes("bdd100k")).classes == ["bus", "car", "pedestrian", "traffic light", "traffic sign",
                                                           "truck"]


# ---------------------------------------------------------------- class remapping and filtering


def test_class_map_renames_and_none_drops(tmp_path: Path, drv_write_image):
    root = write_kitti_sample(tmp_path / "kitti", drv_write_image)
    ds = read_kitti(root, options={"class_map": {"Car": "car", "Truck": "car", "Pedestrian": None}})
    assert ds.classes == ["Cyclist", "car"]
    assert ds.boxes_per_class() == {"Cyclist": 1, "car": 2}
    assert ds.dropped == {"class_map: None": 1, "DontCare": 2}


def test_classes_keep_only_those_in_that_order_and_count_the_rest(tmp_path: Path, drv_write_image):
    file = write_coco_sample(tmp_path / "coco", drv_write_image)
    ds = read_coco(file, options={"classes": ["person", "car"]})
    assert ds.classes == ["person", "car"]
    assert [[(b.label, b.x1) for b in s.boxes] for s in ds.samples] == [[(1, 36.0), (0, 9.5)], [], []]
    assert ds.dropped == {"crowd": 1, "filtered class": 1} and ds.background == 2
    # the classes argument (a finished run's classes) wins over options.classes
    assert read_coco(file, classes=["traffic light"], options={"classes": ["car"]}).boxes_per_class() == {
        "traffic light": 1}


def test_yolo_classes_follow_names_through_the_class_map(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    ds = read_yolo(data, options={"class_map": {"traffic light": None, "person": "pedestrian"}})
    assert ds.classes == ["car", "pedestrian"]
    assert ds.boxes_per_class() == {"car": 2, "pedestrian": 1} and ds.dropped == {"class_map: None": 1}


# ---------------------------------------------------------------- bad input: reported with file and line


def test_unparsable_yolo_lines_leave_their_image_out_named_with_file_and_line(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    labels, images = tmp_path / "drive" / "labels" / "train", tmp_path / "drive" / "images" / "train"
    (labels / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n0 0.5 0.5 0.25\n\nx 0.1 0.1 0.1 0.1\n")
    (labels / "b.txt").write_text("0 0.5 0.5 0.25 0.5\n\n1.5 0.1 0.1 0.1 0.1\n")
    (labels / "c.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.5 nan 0.1 0.1\n")
    drv_write_image(images / "e.jpg")
    (labels / "e.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    ds = read_yolo(data)
    assert boxes(ds) == {"e.jpg": [("car", 36.0, 16.0, 60.0, 48.0)]}
    assert ds.skipped == [  # the first bad line of each image names it; the others are not read
        f"{labels / 'a.txt'}:2: expected 'class cx cy w h' (or a polygon 'class x1 y1 x2 y2 ...'), found 4 values; "
        f"the image {images / 'a.jpg'} is left out",
        f"{labels / 'b.txt'}:3: class id '1.5' is not a whole number; the image {images / 'b.jpg'} is left out",
        f"{labels / 'c.txt'}:2: not a finite number: 'nan'; the image {images / 'c.jpg'} is left out",
    ]
    assert ds.dropped == {}
    (labels / "c.txt").write_text("x 0.1 0.1 0.1 0.1\n")
    assert read_yolo(data).skipped[-1] == f"{labels / 'c.txt'}:1: not a number: 'x'; the image {images / 'c.jpg'} is " \
                                          "left out"
    with pytest.raises(DataError, match=r"a\.txt:2: expected 'class cx cy w h'.*; fix or remove the label, or set "
                                        r"data\.strict: false to leave out the images with such labels$"):
        read_yolo(data, strict=True)


def test_yolo_class_id_out_of_range(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    label = tmp_path / "drive" / "labels" / "train" / "b.txt"
    label.write_text("0 0.5 0.5 0.25 0.5\n7 0.5 0.5 0.25 0.5\n")
    ds = read_yolo(data)
    # ultralytics: "Label class 7 exceeds dataset class count 3" - a corrupt label file, the image left out
    image = tmp_path / "drive" / "images" / "train" / "b.jpg"
    assert ds.skipped == [f"{label}:2: class id 7 out of range (3 names: ids 0..2); the image {image} is left out"]
    assert ds.dropped == {} and "b.jpg" not in boxes(ds)
    with pytest.raises(DataError, match=r"b\.txt:2: class id 7 out of range \(3 names"):
        read_yolo(data, strict=True)


def test_yolo_pixel_coordinates_are_not_normalised(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    label = tmp_path / "drive" / "labels" / "train" / "b.txt"
    label.write_text("0 0.5 0.5 0.25 0.5\n0 48 32 24 32\n")
    ds = read_yolo(data)
    image = tmp_path / "drive" / "images" / "train" / "b.jpg"  # out, as ultralytics has it ("non-normalized")
    assert ds.skipped == [f"{label}:2: coordinates not normalised (48 32 24 32); YOLO labels hold fractions of the "
                          f"image size in [0, 1]; the image {image} is left out"]
    assert "b.jpg" not in boxes(ds)


def test_boxes_outside_the_image_or_without_size_are_reported_and_dropped(tmp_path: Path, drv_write_image):
    root = write_kitti_sample(tmp_path / "kitti", drv_write_image)
    label = root / "label_2" / "000002.txt"
    label.write_text(
        "Car 0.00 0 -1.58 200.00 10.00 260.00 40.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"  # right of the image
        "Car 0.00 0 -1.58 80.00 10.00 130.00 40.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"  # mostly outside
        "Car 0.00 0 -1.58 30.00 10.00 30.00 40.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"  # zero width
        "Car 0.00 0 -1.58 30.00 40.00 50.00 10.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"  # negative height
        "Car 0.00 0 -1.58 -0.50 0.00 20.00 64.80 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"  # rounding: clipped
        "Car 0.00 0 -1.58 70.00 0.00 106.00 30.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"  # 10 px out: clipped
    )
    ds = read_kitti(root)
    assert ds.skipped == [  # each box alone: the image is kept with the others
        f"{label}:1: box outside the image (200, 10, 260, 40) in 96x64",
        f"{label}:2: box outside the image (80, 10, 130, 40) in 96x64",
        f"{label}:3: box of zero or negative size (30, 10, 30, 40)",
        f"{label}:4: box of zero or negative size (30, 40, 50, 10)",
    ]
    assert ds.dropped == {"outside image": 2, "zero size": 2, "DontCare": 1}
    assert boxes(ds)["000002.png"] == [("Car", 0.0, 0.0, 20.0, 64.0), ("Car", 70.0, 0.0, 96.0, 30.0)]
    assert ds.clipped == 1
    label.write_text("Car 0.00 0 -1.58 200.00 10.00 260.00 40.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n")
    with pytest.raises(DataError, match=r"000002\.txt:1: box outside the image \(200, 10, 260, 40\) in 96x64; fix"):
        read_kitti(root, strict=True)
    label.write_text("Car 0.00 0 -1.58 30.00 10.00 30.00 40.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n")
    with pytest.raises(DataError, match=r"000002\.txt:1: box of zero or negative size"):
        read_kitti(root, strict=True)


def test_coco_unknown_category_and_bad_bbox_leave_their_image_out(tmp_path: Path, drv_write_image):
    file = write_coco_sample(tmp_path / "coco", drv_write_image)
    data = json.loads(file.read_text())
    data["annotations"] += [
        {"id": 5, "image_id": 632, "category_id": 99, "bbox": [1, 1, 5, 5], "iscrowd": 0},
        {"id": 6, "image_id": 139, "category_id": 3, "bbox": [1, 1, 5], "iscrowd": 0},
        {"id": 7, "image_id": 777, "category_id": 3, "bbox": [1, 1, 5, 5], "iscrowd": 0},
        {"id": 8, "image_id": 632, "category_id": 3, "bbox": [1, 1], "iscrowd": 0},  # its image is already out
        [1, 2, 3],
    ]
    file.write_text(json.dumps(data))
    ds = read_coco(file)
    images = tmp_path / "coco" / "images"
    assert ds.skipped == [
        # a category the file does not define: the image out, as ultralytics has a class id >= nc
        f"{file} (annotation id 5): unknown class: category_id 99 is not in 'categories' (ids 1, 3, 10); the image "
        f"{images / '000000000632.jpg'} is left out",
        f"{file} (annotation id 6): bbox must be [x, y, width, height] in pixels (got [1, 1, 5]); the image "
        f"{images / '000000000139.jpg'} is left out",
        f"{file} (annotation id 7): image_id 777 is not in 'images'",  # no image to leave out: named alone
        f"{file} (annotation #8): an annotation must be a mapping (got [1, 2, 3])",
    ]
    assert list(boxes(ds)) == ["000000000285.jpg"] and ds.dropped == {"crowd": 1, "unparsable": 2}
    with pytest.raises(DataError, match=r"\(annotation id 5\): unknown class: category_id 99"):
        read_coco(file, strict=True)


# ---------------------------------------------------------------- one label that does not parse: its image left out
# As ultralytics' verify_image_label does ("ignoring corrupt image/label"): keeping the image with its other boxes
# would teach the detector that the object of the bad label is background. A box of zero size is a geometric problem
# of a well-formed label: that box alone is dropped and its image keeps its other boxes.


def test_yolo_an_unparsable_line_leaves_its_image_out_a_zero_size_box_only_itself(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    labels, images = tmp_path / "drive" / "labels" / "train", tmp_path / "drive" / "images" / "train"
    (labels / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.5 0.5 wide 0.25\n")  # a good car, a bad person
    (labels / "b.txt").write_text("2 0.875 0.25 0.0625 0.25\n0 0.5 0.5 0 0.25\n")  # a good light, a zero-size car
    ds = read_yolo(data)
    assert ds.skipped == [
        f"{labels / 'a.txt'}:2: not a number: 'wide'; the image {images / 'a.jpg'} is left out",
        f"{labels / 'b.txt'}:2: box of zero or negative size (48, 24, 48, 40)",
    ]
    assert boxes(ds) == {"b.jpg": [("traffic light", 81.0, 8.0, 87.0, 24.0)], "c.jpg": []}
    assert ds.dropped == {"zero size": 1}
    with pytest.raises(DataError, match=r"a\.txt:2: not a number: 'wide'; fix or remove the label, or set "
                                        r"data\.strict: false to leave out the images with such labels"):
        read_yolo(data, strict=True)


def test_coco_an_unparsable_annotation_leaves_its_image_out_a_zero_size_box_only_itself(tmp_path: Path,
                                                                                        drv_write_image):
    file = write_coco_sample(tmp_path / "coco", drv_write_image)
    data = json.loads(file.read_text())
    data["annotations"] += [
        {"id": 5, "image_id": 139, "category_id": [3], "bbox": [1, 1, 5, 5], "iscrowd": 0},  # 139 also has 2 good
        {"id": 6, "image_id": 285, "category_id": 3, "bbox": [10, 10, 0, 5], "iscrowd": 0},  # zero width
    ]
    file.write_text(json.dumps(data))
    ds = read_coco(file)
    assert ds.skipped == [
        f"{file} (annotation id 5): category_id must be a number or a string (got [3]); the image "
        f"{tmp_path / 'coco' / 'images' / '000000000139.jpg'} is left out",
        f"{file} (annotation id 6): box of zero or negative size (10, 10, 10, 15)",
    ]
    assert boxes(ds) == {"000000000285.jpg": [("traffic light", 81.0, 8.0, 87.0, 24.0)], "000000000632.jpg": []}
    assert ds.dropped == {"crowd": 1, "zero size": 1}
    with pytest.raises(DataError, match=r"\(annotation id 5\): category_id must be a number or a string \(got \[3\]\); "
                                        r"fix or remove the label, or set data\.strict: false to leave out"):
        read_coco(file, strict=True)


def test_voc_an_unparsable_object_leaves_its_image_out_a_zero_size_box_only_itself(tmp_path: Path,
                                                                                   drv_write_image):
    root = write_voc_sample(tmp_path / "VOC2012", drv_write_image)

    def obj(xmin: str, xmax: str) -> str:
        return (f"\t<object>\n\t\t<name>car</name>\n\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>5</ymin>\n"
                f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>20</ymax>\n\t\t</bndbox>\n\t</object>\n")

    first, second = root / "Annotations" / "2008_000008.xml", root / "Annotations" / "2008_000015.xml"
    # a car beside two good objects: xmax 'inf' (does not parse); xmin 6, xmax 5: (5, 4, 5, 20), of zero width
    first.write_text(first.read_text().replace("</annotation>", obj("5", "inf") + "</annotation>"))
    second.write_text(second.read_text().replace("</annotation>", obj("6", "5") + "</annotation>"))
    ds = read_voc(root)
    line, other = (len(f.read_text().splitlines()) - 9 for f in (first, second))  # the added <object> lines
    assert ds.skipped == [
        f"{first}:{line}: object 'car': <bndbox> needs numbers xmin, ymin, xmax, ymax (<xmax> is not a finite number: "
        f"'inf'); the image {root / 'JPEGImages' / '2008_000008.jpg'} is left out",
        f"{second}:{other}: box of zero or negative size (5, 4, 5, 20)",
    ]
    assert boxes(ds) == {
        "2008_000015.jpg": [("bus", 0.0, 0.0, 40.0, 30.0), ("person", 69.0, 29.0, 75.0, 44.0)],
        "2008_000019.jpg": [],
    }
    assert ds.dropped == {"zero size": 1}
    with pytest.raises(DataError, match=rf"2008_000008\.xml:{line}: object 'car': .*'inf'\); fix or remove the label"):
        read_voc(root, strict=True)


def test_kitti_an_unparsable_line_leaves_its_image_out_a_zero_size_box_only_itself(tmp_path: Path, drv_write_image):
    root = write_kitti_sample(tmp_path / "training", drv_write_image)
    first, second = root / "label_2" / "000000.txt", root / "label_2" / "000001.txt"
    car = "Car 0.00 0 -1.58 {} 10.00 {} 40.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
    first.write_text(first.read_text() + car.format("50.00", "nan"))  # x2 nan, beside a good car and pedestrian
    second.write_text(second.read_text() + car.format("30.00", "30.00"))  # zero width, beside a truck and cyclist
    ds = read_kitti(root)
    assert ds.skipped == [
        f"{first}:3: not a finite number: 'nan'; the image {root / 'image_2' / '000000.png'} is left out",
        f"{second}:4: box of zero or negative size (30, 10, 30, 40)",
    ]
    assert boxes(ds) == {
        "000001.png": [("Cyclist", 80.12, 30.0, 95.5, 52.75), ("Truck", 6.0, 20.5, 42.0, 48.0)],
        "000002.png": [],
    }
    assert ds.dropped == {"zero size": 1, "DontCare": 2}
    first.write_text("Car 0.00 0 -1.58 36.00 16.00 60.00 48.00 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
                     "Car 0.00 0 -1.58 1.00 2.00 3.00\n")
    assert read_kitti(root).skipped[0] == (
        f"{first}:2: expected 15 values (type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry) and an optional "
        f"score, found 7; the image {root / 'image_2' / '000000.png'} is left out")
    with pytest.raises(DataError, match=r"000000\.txt:2: expected 15 values .*; fix or remove the label"):
        read_kitti(root, strict=True)


def test_bdd100k_an_unparsable_label_leaves_its_frame_out_a_zero_size_box_only_itself(tmp_path: Path,
                                                                                      drv_write_image):
    file = write_bdd_sample(tmp_path / "bdd", drv_write_image)
    frames = json.loads(file.read_text())
    frames[0]["labels"].append("car")  # a label that is not a mapping, beside a good car and pedestrian
    frames[1]["labels"].append({"id": "5", "category": "car", "box2d": {"x1": 10, "y1": 10, "x2": 9, "y2": 20}})
    file.write_text(json.dumps(frames))
    ds = read_bdd100k(file)
    images = tmp_path / "bdd" / "images"
    assert ds.skipped == [
        f"{file} (frame 'b1c66a42-6f7d68ca.jpg', label #3): a label must be a mapping (got 'car'); the image "
        f"{images / 'b1c66a42-6f7d68ca.jpg'} is left out",
        f"{file} (frame 'b1c81faa-3df17267.jpg', label 5): box of zero or negative size (10, 10, 10, 21)",
    ]
    assert boxes(ds) == {"b1c81faa-3df17267.jpg": [("traffic light", 81.25, 8.0, 87.5, 24.0)],
                         "b1ca2e5d-84cf9134.jpg": []}
    assert ds.dropped == {"zero size": 1}
    with pytest.raises(DataError, match=r"label #3\): a label must be a mapping \(got 'car'\); fix or remove"):
        read_bdd100k(file, strict=True)


def test_a_declared_size_that_differs_from_the_image_skips_it(tmp_path: Path, drv_write_image):
    file = write_coco_sample(tmp_path / "coco", drv_write_image)
    data = json.loads(file.read_text())
    data["images"][1]["width"] = 1280
    file.write_text(json.dumps(data))
    ds = read_coco(file)
    assert len(ds) == 2
    image = tmp_path / "coco" / "images" / "000000000285.jpg"
    assert ds.skipped == [f"{file} (image id 285): gives the image size as 1280x64 but {image} is 96x64 (its boxes "
                          "would be misplaced)"]


def test_undecodable_images_are_skipped_and_named_or_an_error_when_strict(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    broken = tmp_path / "drive" / "images" / "train" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "drive" / "labels" / "train" / "broken.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    ds = read_yolo(data)
    assert len(ds) == 3
    assert len(ds.skipped) == 1 and ds.skipped[0].startswith(f"{broken}: ")
    with pytest.raises(DataError, match=r"broken\.jpg: .*; fix or remove it, or set data\.strict: false"):
        read_yolo(data, strict=True)


def test_an_image_without_a_label_file_is_background_or_an_error(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    (tmp_path / "drive" / "labels" / "train" / "b.txt").unlink()
    ds = read_yolo(data)
    assert len(ds) == 3 and ds.unlabelled == 1 and ds.background == 2
    assert ds.summary()["unlabelled"] == 1
    with pytest.raises(DataError, match=r"b\.jpg: no label file \(.*labels/train/b\.txt\); add one \(an empty file "
                                        r"for an image without objects\), or set data\.options\.missing_labels: "
                                        r"background"):
        read_yolo(data, options={"missing_labels": "error"})


def test_kitti_and_voc_images_without_labels_follow_missing_labels(tmp_path: Path, drv_write_image):
    kitti = write_kitti_sample(tmp_path / "kitti", drv_write_image)
    drv_write_image(kitti / "image_2" / "000003.png")
    assert read_kitti(kitti).unlabelled == 1
    with pytest.raises(DataError, match=r"000003\.png: no label file"):
        read_kitti(kitti, options={"missing_labels": "error"})
    voc = write_voc_sample(tmp_path / "voc", drv_write_image)
    drv_write_image(voc / "JPEGImages" / "2008_000023.jpg")
    assert read_voc(voc).unlabelled == 1
    with pytest.raises(DataError, match=r"2008_000023\.jpg: no label file \(.*2008_000023\.xml\)"):
        read_voc(voc, options={"missing_labels": "error"})


def test_an_empty_split_is_an_error_naming_it(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    (tmp_path / "drive" / "images" / "val" / "d.jpg").unlink()
    with pytest.raises(DataError, match=r"drive\.yaml: split 'val' \(images/val\) has no images"):
        read_yolo(data, split="val")


def test_a_data_yaml_pointing_at_a_missing_folder_names_the_key(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    data.write_text(data.read_text().replace("val: images/val", "val: images/validation"))
    assert len(read_yolo(data)) == 3  # the train split is fine
    with pytest.raises(DataError, match=r"drive\.yaml: 'val' points at .*images/validation, which does not exist; "
                                        r"fix 'val'"):
        read_yolo(data, split="val")
    data.write_text(data.read_text().replace("path: .", "path: ../elsewhere"))
    with pytest.raises(DataError, match=r"drive\.yaml: 'path' points at .*elsewhere, which is not a folder"):
        read_yolo(data)


def test_bad_data_yamls_and_folders(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    text = data.read_text()
    data.write_text(text.replace("train: images/train\n", ""))
    with pytest.raises(DataError, match=r"no 'train' key"):
        read_yolo(data)
    data.write_text(text.replace("  0: car\n", "  5: car\n"))
    with pytest.raises(DataError, match=r"'names' must list the class names"):
        read_yolo(data)
    data.write_text(text + "nc: 4\n")
    with pytest.raises(DataError, match=r"'nc' is 4 but 'names' lists 3 classes"):
        read_yolo(data)
    data.write_text("train: [unclosed\n")
    with pytest.raises(DataError, match=r"drive\.yaml: not valid YAML at line 2: .*; fix the file"):
        read_yolo(data)
    with pytest.raises(DataError, match=r"data path .*nowhere does not exist"):
        read_yolo(tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"a YOLO folder holds images/ and labels/"):
        read_yolo(tmp_path)
    with pytest.raises(DataError, match=r"a KITTI folder holds image_2/"):
        read_kitti(tmp_path)
    with pytest.raises(DataError, match=r"a Pascal VOC folder holds Annotations/"):
        read_voc(tmp_path)
    (tmp_path / "bad.json").write_text('{"images": [\n}')
    with pytest.raises(DataError, match=r"bad\.json: not valid JSON at line 2 .*; fix the file"):
        read_coco(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text('{"frames": 3}')
    with pytest.raises(DataError, match=r"a BDD100K label file is a list of frames"):
        read_bdd100k(tmp_path / "bad.json")


def test_no_images_is_an_error(tmp_path: Path, drv_write_image):
    root = write_kitti_sample(tmp_path / "kitti", drv_write_image)
    for image in (root / "image_2").iterdir():
        image.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"kitti: no images \(3 skipped, e\.g\. .*000000\.png: not an image PIL can "
                                        r"read\)"):
        read_kitti(root)


def test_bdd100k_bad_labels_are_named_by_frame_and_label(tmp_path: Path, drv_write_image):
    file = write_bdd_sample(tmp_path / "bdd", drv_write_image)
    frames = json.loads(file.read_text())
    frames[1]["labels"].append({"id": "7", "category": "car", "box2d": {"x1": 3, "y1": "top", "x2": 9, "y2": 9}})
    frames.append({"name": "missing.jpg", "labels": []})
    file.write_text(json.dumps(frames))
    ds = read_bdd100k(file)
    image = tmp_path / "bdd" / "images" / "b1c81faa-3df17267.jpg"
    assert ds.skipped[0] == (f"{file} (frame 'b1c81faa-3df17267.jpg', label 7): box2d needs numbers x1, y1, x2, y2 "
                             f"(got {{'x1': 3, 'y1': 'top', 'x2': 9, 'y2': 9}}); the image {image} is left out")
    assert "b1c81faa-3df17267.jpg" not in boxes(ds)
    assert ds.skipped[1].startswith(f"{file} (frame 'missing.jpg'): image missing.jpg not found in ")
    with pytest.raises(DataError, match=r"label 7\): box2d needs numbers"):
        read_bdd100k(file, strict=True)


def test_options_are_validated_with_one_clear_line(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    with pytest.raises(DataError, match=r"data\.options\.clases: Extra inputs are not permitted"):
        read_yolo(data, options={"clases": ["car"]})
    with pytest.raises(DataError, match=r"data\.options\.missing_labels: Input should be 'background' or 'error'"):
        read_yolo(data, options={"missing_labels": "skip"})
    with pytest.raises(DataError, match=r"data\.options: .*class_map maps to \['auto'\], which classes \(car\) would "
                                        r"filter out"):
        read_yolo(data, options={"classes": ["car"], "class_map": {"car": "auto"}})


def test_fingerprint_follows_labels_and_images(tmp_path: Path, drv_write_image):
    data = write_yolo_sample(tmp_path / "drive", drv_write_image)
    first = read_yolo(data).fingerprint()
    assert read_yolo(data).fingerprint() == first
    (tmp_path / "drive" / "labels" / "train" / "c.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    second = read_yolo(data).fingerprint()
    assert second != first
    drv_write_image(tmp_path / "drive" / "images" / "train" / "c.jpg", colour=(10, 200, 10))
    assert read_yolo(data).fingerprint() != second


def test_subset_and_summary(tmp_path: Path, drv_write_image):
    ds = read_coco(write_coco_sample(tmp_path / "coco", drv_write_image))
    part = ds.subset([0, 2])
    assert [s.image.name for s in part.samples] == ["000000000139.jpg", "000000000632.jpg"]
    assert part.classes == ds.classes and part.dropped == {}
    summary = ds.summary()
    assert summary == {
        "images": 3, "boxes": 3, "boxes_per_class": {"car": 1, "person": 1, "traffic light": 1}, "background": 1,
        "unlabelled": 0, "skipped": 0, "skipped_first": [], "dropped": {"crowd": 1}, "clipped": 0,
    }
    json.dumps(summary)
    assert isinstance(ds.samples[0].boxes[0], Box)
