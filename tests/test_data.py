"""Data: image folders, CSV manifests, stratified splits, undecodable files skipped and named."""

from __future__ import annotations

import json

import pytest
from conftest import make_image_folder, tiny_recipe

from tl_core.api import read_image_csv, read_image_folder, stratified_split
from tl_core.errors import DataError


def test_image_folder_reads_classes_in_order(image_folder):
    samples = read_image_folder(str(image_folder))
    assert samples.classes == ["class_0", "class_1", "class_2"]
    assert len(samples) == 24 and samples.labels.count(2) == 8 and not samples.skipped


def test_csv_manifest_with_relative_paths(image_folder, tmp_path):
    rows = ["path,label"] + [f"images/class_{c}/img_{i:03d}.png,label{c}" for c in range(3) for i in range(4)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    samples = read_image_csv(str(tmp_path / "train.csv"))
    assert samples.classes == ["label0", "label1", "label2"] and len(samples) == 12


def test_csv_row_naming_a_missing_file_is_skipped_and_named(image_folder, tmp_path):
    rows = ["path,label", "images/class_0/img_000.png,a", "images/class_1/img_000.png,b", "images/nope.png,a"]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    samples = read_image_csv(str(tmp_path / "train.csv"))
    assert len(samples) == 2 and samples.skipped == [f"{tmp_path}/images/nope.png: file does not exist"]
    with pytest.raises(DataError, match="nope.png: file does not exist.*data.strict: false"):
        read_image_csv(str(tmp_path / "train.csv"), strict=True)


def test_csv_without_the_right_header(tmp_path):
    (tmp_path / "bad.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DataError, match="must name the columns 'path' and 'label'"):
        read_image_csv(str(tmp_path / "bad.csv"))


def test_stratified_split_keeps_class_proportions():
    labels = [0] * 50 + [1] * 10 + [2] * 1
    train, val = stratified_split(labels, 0.2, seed=0)
    val_labels = [labels[i] for i in val]
    assert (val_labels.count(0), val_labels.count(1), val_labels.count(2)) == (10, 2, 0)  # a class of one stays
    assert sorted(train + val) == list(range(61))
    assert stratified_split(labels, 0.2, seed=0) == (train, val)
    assert stratified_split(labels, 0.2, seed=1) != (train, val)


def test_undecodable_files_are_skipped_counted_and_named_in_the_report(tiny_plugin, image_folder, write_recipe, cli,
                                                                       tmp_path):
    png = (image_folder / "class_0" / "img_000.png").read_bytes()
    (image_folder / "class_0" / "truncated.png").write_bytes(png[:60])
    (image_folder / "class_1" / "notes.txt").write_text("not an image")
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1}))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run")
    assert code == 0, stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    skipped = report["data"]["skipped"]
    assert len(skipped) == 2
    assert any("truncated.png: cannot be decoded" in s for s in skipped)
    assert any("notes.txt: not an image PIL can read" in s for s in skipped)
    assert report["data"]["train"] + report["data"]["val"] == 24
    assert "skipped" in stderr


def test_strict_makes_an_undecodable_file_an_error(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    (image_folder / "class_0" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    recipe = write_recipe(tiny_recipe(image_folder, data={"strict": True}))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run")
    assert code == 2 and "broken.jpg" in stderr and not (tmp_path / "run").exists()


def test_test_set_with_a_class_unseen_in_training(tmp_path):
    train = read_image_folder(str(make_image_folder(tmp_path / "train", classes=2)))
    make_image_folder(tmp_path / "test", classes=3)
    with pytest.raises(DataError, match=r"classes \['class_2'\] were not in the training data"):
        read_image_folder(str(tmp_path / "test"), classes=train.classes)


def test_a_folder_of_images_without_class_folders(tmp_path):
    make_image_folder(tmp_path / "x", classes=1)
    flat = tmp_path / "x" / "class_0"
    with pytest.raises(DataError, match="no class sub-folders"):
        read_image_folder(str(flat))


def test_a_single_class_is_not_a_classification_task(tmp_path):
    with pytest.raises(DataError, match="only one class"):
        read_image_folder(str(make_image_folder(tmp_path / "one", classes=1)))
