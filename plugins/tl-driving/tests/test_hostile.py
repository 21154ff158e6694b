"""tl-driving's hostile-input corpus: files a careless or hostile user hands tl, each refused with one ``error:`` line
that names the problem and the fix (exit code 2, no traceback, ``--out`` untouched), skipped and named (in
``report.json``'s ``data.skipped``, ``tl evaluate``'s ``skipped`` or the reader's ``skipped``), or repaired as the
field's own libraries repair it.

Every refused ``tl run`` case fails while reading the data, before any model is built. One tiny YOLO run (one epoch
at 64 pixels, shared by the module) carries the cases that need a finished run: a bad label line's image left
out and named,
no ultralytics integration called, and ``tl evaluate`` / ``tl export`` on tampered model files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tl_core.api import DataError
from tl_core.testing import OFFLINE, assert_refused, snapshot
from tl_driving.formats import read_bdd100k, read_coco, read_kitti, read_voc, read_yolo

FRCNN = "driving/faster-rcnn"


def run_args(data: Path, fmt: str, out: Path, *sets: str) -> list[str]:
    """``tl run`` arguments: the Faster R-CNN recipe on ``data`` (refused cases never get as far as the model)."""
    args = ["run", FRCNN, "--out", out, "--set", f"data.path={data}", "--set", f"data.format={fmt}"]
    for s in sets:
        args += ["--set", s]
    return args


def coco_copy(drv_scenes, drv_copy) -> Path:
    return drv_copy(drv_scenes("coco").parent) / "train.json"


def edit_json(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------------------------- encodings and nesting: refused, one line


def test_a_data_yaml_that_is_not_utf8_is_refused(tl_cli, drv_scenes, drv_copy, tmp_path):
    data = drv_copy(drv_scenes("yolo").parent) / "data.yaml"
    data.write_bytes(b"# Stra\xdfenszenen (Latin-1)\n" + data.read_bytes())
    assert_refused(tl_cli(*run_args(data, "yolo", tmp_path / "run")),
                   r"data\.yaml is not UTF-8 text \(byte 0xdf on line 1\); save it as UTF-8", tmp_path / "run")


def test_a_data_yaml_nested_too_deep_is_refused(tl_cli, drv_scenes, drv_copy, tmp_path):
    data = drv_copy(drv_scenes("yolo").parent) / "data.yaml"
    data.write_text(data.read_text() + "extra: " + "[" * 5000 + "]" * 5000 + "\n")
    assert_refused(tl_cli(*run_args(data, "yolo", tmp_path / "run")),
                   r"data\.yaml: YAML nested too deeply to read; fix the file", tmp_path / "run")


def test_a_coco_json_nested_too_deep_is_refused(tl_cli, drv_scenes, drv_copy, tmp_path):
    data = coco_copy(drv_scenes, drv_copy)
    data.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert_refused(tl_cli(*run_args(data, "coco", tmp_path / "run")),
                   r"train\.json: JSON nested too deeply to read.*; fix the file, or set data\.path to a COCO JSON",
                   tmp_path / "run")


def test_a_coco_json_that_is_not_utf8_is_refused(tl_cli, drv_scenes, drv_copy, tmp_path):
    data = coco_copy(drv_scenes, drv_copy)
    edit_json(data, lambda d: d["categories"][0].update(name="Fu\u00dfg\u00e4nger"))
    data.write_bytes(data.read_text().encode().decode("unicode_escape").encode("latin-1"))
    assert_refused(tl_cli(*run_args(data, "coco", tmp_path / "run")),
                   r"train\.json is not UTF-8 text \(byte 0xdf on line 1\); save it as UTF-8", tmp_path / "run")


def test_a_classes_txt_that_is_not_utf8_is_refused(tl_cli, tmp_path, drv_write_image):
    folder = tmp_path / "drive"
    drv_write_image(folder / "images" / "a.jpg")
    (folder / "labels").mkdir()
    (folder / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (folder / "classes.txt").write_bytes(b"Stra\xdfenbahn\n")
    assert_refused(tl_cli(*run_args(folder, "yolo", tmp_path / "run")),
                   r"classes\.txt is not UTF-8 text \(byte 0xdf on line 1\); save it as UTF-8", tmp_path / "run")


def test_a_voc_split_list_that_is_not_utf8_is_refused(tl_cli, drv_scenes, drv_copy, tmp_path):
    voc = drv_copy(drv_scenes("voc"))
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_bytes(b"scene_0000\nsc\xe8ne_0001\n")
    assert_refused(tl_cli(*run_args(voc, "voc", tmp_path / "run")),
                   r"train\.txt is not UTF-8 text \(byte 0xe8 on line 2\); save it as UTF-8", tmp_path / "run")


# ---------------------------------------------------------------- one bad item: skipped and named (strict: refused)
# A label that does not parse leaves its whole image out, as ultralytics' verify_image_label does.


def test_a_coco_category_id_that_is_a_list_leaves_its_image_out_or_is_refused_when_strict(tl_cli, drv_scenes,
                                                                                        drv_copy, tmp_path):
    data = edit_json(coco_copy(drv_scenes, drv_copy), lambda d: d["annotations"][0].update(category_id=[3]))
    ds = read_coco(data)
    image = data.parent / "images" / "scene_0000.jpg"  # annotation 1's image (id 1), which has more boxes
    assert ds.skipped == [f"{data} (annotation id 1): category_id must be a number or a string (got [3]); the image "
                          f"{image} is left out"]
    assert ds.dropped == {} and len(ds) == 7 and image not in {s.image for s in ds.samples}
    assert_refused(tl_cli(*run_args(data, "coco", tmp_path / "run", "data.strict=true")),
                   r"\(annotation id 1\): category_id must be a number or a string \(got \[3\]\); fix or remove the "
                   r"label, or set data\.strict: false", tmp_path / "run")


def test_coco_ids_sizes_and_numbers_of_the_wrong_type_are_skipped_and_named(drv_scenes, drv_copy):
    def change(d):
        d["images"][0]["id"] = [1]  # its annotations then name an image_id that is not listed
        d["images"][1]["width"] = "wide"
        d["annotations"][-1]["image_id"] = {"id": 8}
        d["annotations"][-2]["bbox"] = [10**400, 0, 4, 4]  # too large for a float

    data = edit_json(coco_copy(drv_scenes, drv_copy), change)
    ds = read_coco(data)
    assert ds.skipped[:2] == [
        f"{data} (image #0): an image needs an 'id' (a number or a string) and a 'file_name' (got {{'id': [1], "
        "'file_name': 'scene_0000.jpg', 'width': 160, 'height': 96})",
        f"{data} (image id 2): width and height must be whole numbers of pixels (got 'wide' x 96)",
    ]
    assert any("image_id must be a number or a string (got {'id': 8})" in s for s in ds.skipped)
    assert any("bbox must be [x, y, width, height] in pixels (got [1000000" in s
               and s.endswith(f"the image {data.parent / 'images' / 'scene_0007.jpg'} is left out") for s in ds.skipped)
    assert len(ds) == 5  # the two bad images and the one with the bad bbox are out, the other five read


def test_inf_and_nan_in_a_voc_xml_leave_their_images_out_named(drv_scenes, drv_copy):
    voc = drv_copy(drv_scenes("voc"))
    xml = voc / "Annotations" / "scene_0000.xml"
    text = xml.read_text()
    first = text.index("<xmin>")
    text = text[:first] + "<xmin>inf</xmin>" + text[text.index("</xmin>", first) + 7:]
    text = text.replace("<width>160</width>", "<width>inf</width>")  # the declared size: ignored, not a crash
    xml.write_text(text)
    other = voc / "Annotations" / "scene_0001.xml"
    second = other.read_text()
    at = second.index("<ymax>")
    other.write_text(second[:at] + "<ymax>nan</ymax>" + second[second.index("</ymax>", at) + 7:])
    ds = read_voc(voc)
    assert len(ds.skipped) == 2
    assert ds.skipped[0].startswith(f"{xml}:") and "(<xmin> is not a finite number: 'inf'); the image " \
        f"{voc / 'JPEGImages' / 'scene_0000.jpg'} is left out" in ds.skipped[0]
    assert ds.skipped[1].startswith(f"{other}:") and ds.skipped[1].endswith(
        f"(<ymax> is not a finite number: 'nan'); the image {voc / 'JPEGImages' / 'scene_0001.jpg'} is left out")
    assert len(ds) == 6


def test_a_yolo_label_file_that_is_not_utf8_is_skipped_and_one_with_a_bom_is_read(drv_scenes, drv_copy):
    data = drv_copy(drv_scenes("yolo").parent) / "data.yaml"
    labels = data.parent / "labels" / "train"
    (labels / "scene_0000.txt").write_bytes(b"0 0.5 0.5 0.2 0.2 # gr\xfcn\n")
    bom = labels / "scene_0001.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
    ds = read_yolo(data)
    assert ds.skipped == [f"{labels / 'scene_0000.txt'}: not UTF-8 text (byte 0xfc on line 1)"]
    assert len(ds) == 7  # the image of the unreadable label file is out; the BOM file reads as it is
    assert {s.image.name for s in ds.samples if s.boxes} >= {"scene_0001.jpg"}


def test_a_kitti_line_with_nan_leaves_its_image_out_and_a_byte_order_mark_is_not_part_of_a_class(drv_scenes,
                                                                                                 drv_copy):
    kitti = drv_copy(drv_scenes("kitti"))
    label = kitti / "label_2" / "000000.txt"
    lines = label.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if not line.startswith("DontCare"))
    parts = lines[n].split()
    parts[6] = "nan"  # x2
    lines[n] = " ".join(parts)
    label.write_text("\n".join(lines) + "\n")
    bom = kitti / "label_2" / "000001.txt"  # written by a Windows editor
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
    ds = read_kitti(kitti)
    assert not any(c.startswith("\ufeff") for c in ds.classes)  # not '\ufeffDontCare' or '\ufeffCar'
    # DontCare is counted for the images read: every one but those of the image left out
    left_out = sum(line.startswith("DontCare") for line in lines)
    assert ds.dropped["DontCare"] == read_kitti(drv_scenes("kitti")).dropped["DontCare"] - left_out
    assert ds.skipped == [f"{label}:{n + 1}: not a finite number: 'nan'; the image {kitti / 'image_2' / '000000.png'} "
                          "is left out"]
    assert len(ds) == 7


def test_bdd100k_labels_of_the_wrong_type_leave_their_frames_out_named(drv_scenes, drv_copy):
    data = drv_copy(drv_scenes("bdd100k").parent) / "det_train.json"
    frames = json.loads(data.read_text())
    frames[0]["labels"] = {"category": "car"}
    frames[1]["labels"][0]["box2d"]["x1"] = 10**400
    data.write_text(json.dumps(frames))
    ds = read_bdd100k(data)
    images = data.parent / "images"
    assert ds.skipped[0] == f"{data} (frame {frames[0]['name']!r}): 'labels' must be a list of labels (got " \
                            f"{{'category': 'car'}}); the image {images / frames[0]['name']} is left out"
    assert "box2d needs numbers x1, y1, x2, y2" in ds.skipped[1]
    assert ds.skipped[1].endswith(f"; the image {images / frames[1]['name']} is left out")
    assert len(ds) == 6


# ---------------------------------------------------------------- data.yaml layouts the field accepts: repaired


def test_a_roboflow_data_yaml_reads_as_ultralytics_reads_it(drv_scenes, tmp_path):
    """Roboflow exports ``data.yaml`` beside ``train/`` and ``valid/`` but names them ``../train/images``;
    ultralytics' ``check_det_dataset`` reads a missing ``../x`` as ``x`` - and so does tl."""
    source = drv_scenes("yolo").parent
    export = tmp_path / "roboflow"
    for split in ("train", "valid"):
        shutil.copytree(source / "images" / "train", export / split / "images")
        shutil.copytree(source / "labels" / "train", export / split / "labels")
    (export / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 6\n"
                                      "names: ['car', 'truck', 'bus', 'person', 'traffic light', 'stop sign']\n")
    assert len(read_yolo(export / "data.yaml")) == 8
    assert read_yolo(export / "data.yaml", split="val").samples[0].image == export / "valid" / "images" / \
        "scene_0000.jpg"
    (export / "data.yaml").write_text("train: ../training/images\nnames: [car]\n")  # neither place exists
    with pytest.raises(DataError, match=r"'train' points at .*roboflow/\.\./training/images, which does not exist"):
        read_yolo(export / "data.yaml")


def test_a_validation_key_is_read_as_val_as_ultralytics_does(drv_scenes, drv_copy):
    data = drv_copy(drv_scenes("yolo").parent) / "data.yaml"
    data.write_text(data.read_text() + "validation: images/train\n")
    assert len(read_yolo(data, split="val")) == 8


# ---------------------------------------------------------------- one tiny YOLO run: skipped lines, integrations


@pytest.fixture(scope="module")
def yolo_run(tmp_path_factory, drv_scenes):
    """A finished one-epoch YOLO run (64 pixels) on the 8 YOLO scenes, one of whose label lines is malformed (and
    one label file starts with a UTF-8 byte-order mark), with
    spies in place of ultralytics' analytics, Platform and MLflow callbacks (MLflow turned on in ultralytics'
    settings, in memory): ``(run folder, data.yaml, names of the spies that were called, settings file bytes
    before and after)``."""
    home = tmp_path_factory.getbasetemp() / "tl-home"  # tl_core.testing.tl_env's, for a module-scoped fixture
    with pytest.MonkeyPatch.context() as mp:
        for var, value in OFFLINE.items():
            mp.setenv(var, value)
        mp.setenv("YOLO_CONFIG_DIR", str(home / "yolo"))
        mp.setenv("TL_CACHE_DIR", str(tmp_path_factory.mktemp("tl-cache")))
        mp.delenv("TL_PLUGINS", raising=False)
        mp.delenv("TL_DISABLE_PLUGINS", raising=False)
        import ultralytics.utils.callbacks.mlflow as mlflow_callbacks
        import ultralytics.utils.callbacks.platform as platform_callbacks
        import ultralytics.utils.events as events
        from ultralytics.utils import SETTINGS

        from tl_core.recipe import load_recipe
        from tl_core.run import execute

        data = tmp_path_factory.mktemp("hostile-yolo") / "data"
        shutil.copytree(drv_scenes("yolo").parent, data)
        label = data / "labels" / "train" / "scene_0002.txt"
        label.write_text(label.read_text() + "3 0.5 0.5 wide 0.1\n")
        bom = data / "labels" / "train" / "scene_0003.txt"  # written by a Windows editor: a byte-order mark
        bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
        called: list[str] = []

        def spies(name, module):
            return {event: (lambda *args, name=name: called.append(name)) for event in module.callbacks}

        mp.setattr(events, "callbacks", spies("analytics", events))
        mp.setattr(platform_callbacks, "callbacks", spies("platform", platform_callbacks))
        mp.setattr(mlflow_callbacks, "callbacks", {"on_pretrain_routine_end": lambda t: called.append("mlflow"),
                                                   "on_train_end": lambda t: called.append("mlflow")})
        settings_before = SETTINGS.file.read_bytes()
        was = SETTINGS["mlflow"]
        dict.__setitem__(SETTINGS, "mlflow", True)  # as a user with mlflow installed has it (the default)
        try:
            recipe = load_recipe("driving/yolo", [f"data.path={data / 'data.yaml'}", "backbone.weights=none",
                                                  "train.epochs=1", "data.options.image_size=64",
                                                  "train.batch_size=4", "data.val_fraction=0.25"])
            out = tmp_path_factory.mktemp("hostile-run") / "run"
            execute(recipe, out, quiet=True)
        finally:
            dict.__setitem__(SETTINGS, "mlflow", was)
        yield out, data / "data.yaml", called, (settings_before, SETTINGS.file.read_bytes())


@pytest.fixture
def run_copy(yolo_run, tmp_path):
    """A private copy of the finished YOLO run, to tamper with."""
    target = tmp_path / "run"
    shutil.copytree(yolo_run[0], target, ignore=shutil.ignore_patterns("ultralytics", "yolo-data"))
    return target


def test_a_malformed_yolo_label_line_leaves_its_image_out_named_in_the_report_and_the_rest_trains(yolo_run):
    out, data, _, _ = yolo_run
    report = json.loads((out / "report.json").read_text())
    label = data.parent / "labels" / "train" / "scene_0002.txt"
    lines = len(label.read_text().splitlines())
    image = data.parent / "images" / "train" / "scene_0002.jpg"
    # only the bad line's image: the label file with a byte-order mark reads whole (it was "not a number: '\ufeff3'")
    assert report["data"]["skipped"] == [f"{label}:{lines}: not a number: 'wide'; the image {image} is left out"]
    assert report["data"]["train"] + report["data"]["val"] == 7 and (out / "model.safetensors").is_file()


def test_a_yolo_run_calls_no_ultralytics_integration_and_leaves_its_settings_alone(yolo_run):
    out, _, called, (before, after) = yolo_run
    assert called == []  # not analytics, not Ultralytics Platform, not MLflow (on in the settings)
    assert after == before
    assert json.loads((out / "report.json").read_text())["integrations"] == []


def test_integrations_named_by_the_recipe_are_the_only_ones_attached(monkeypatch):
    from collections import defaultdict

    import ultralytics.utils.callbacks.mlflow as mlflow_callbacks
    from ultralytics.utils import SETTINGS, callbacks

    from tl_core.recipe import load_recipe
    from tl_driving.yolo import integrations, yolo_options

    spy = {"on_train_end": lambda trainer: None}
    monkeypatch.setattr(mlflow_callbacks, "callbacks", spy)

    class FakeTrainer:
        def __init__(self):
            self.callbacks = defaultdict(list)

    recipe = load_recipe("driving/yolo", ["head.integrations=[mlflow]"])
    assert yolo_options(recipe).integrations == ["mlflow"]
    messages = []
    with integrations(yolo_options(recipe).integrations, messages.append):
        trainer = FakeTrainer()
        callbacks.add_integration_callbacks(trainer)
    assert trainer.callbacks["on_train_end"] == [spy["on_train_end"]] and messages == []
    assert dict(SETTINGS).get("mlflow") is not None  # the settings were not touched to get there
    with integrations(["tensorboard"], messages.append):  # ultralytics turns it off under pytest: said so
        callbacks.add_integration_callbacks(FakeTrainer())
    assert messages == ["ultralytics integration tensorboard is not active: its package is not installed (or "
                        "ultralytics turns it off here)"]


def test_an_unknown_integration_is_refused_naming_the_known_ones(tl_cli, tmp_path):
    assert_refused(tl_cli("run", "driving/yolo", "--out", tmp_path / "run", "--set", "head.integrations=[mlfow]"),
                   r"head\.integrations\.0: Input should be 'analytics', 'platform', .*'mlflow'", tmp_path / "run")


def test_tl_evaluate_scores_a_yolo_run_and_names_what_it_skipped(yolo_run, run_copy, tl_cli):
    _, data, _, _ = yolo_run
    code, stdout, stderr = tl_cli("evaluate", run_copy, "--data", data, "--json")
    assert code == 0, stderr
    answer = json.loads(stdout)
    assert answer["images"] == 7 and "map_50" in answer["metrics"]
    label = data.parent / "labels" / "train" / "scene_0002.txt"
    image = data.parent / "images" / "train" / "scene_0002.jpg"
    assert answer["skipped"] == [f"{label}:{len(label.read_text().splitlines())}: not a number: 'wide'; the image "
                                 f"{image} is left out"]
    assert (run_copy / "evaluations" / "data.yaml.json").is_file()


# ---------------------------------------------------------------- tampered model files, export leftovers: refused


def test_tl_evaluate_on_a_truncated_model_file_is_refused(yolo_run, run_copy, tl_cli):
    model = run_copy / "model.safetensors"
    model.write_bytes(model.read_bytes()[:1000])
    before = snapshot(run_copy)
    assert_refused(tl_cli("evaluate", run_copy, "--data", yolo_run[1]),
                   r"model\.safetensors is damaged or is not a file tl wrote .*; restore it, or train again with "
                   r"tl run", run_copy, before)


def test_tl_export_on_a_garbage_model_file_is_refused(run_copy, tl_cli):
    (run_copy / "model.safetensors").write_bytes(b"\x00garbage" * 100)
    before = snapshot(run_copy)
    assert_refused(tl_cli("export", run_copy, "--format", "torchscript"),
                   r"model\.safetensors is damaged or is not a file tl wrote .*; restore it, or train again",
                   run_copy, before)


def test_tl_export_on_a_model_file_of_the_wrong_shape_is_refused(run_copy, tl_cli):
    from safetensors.torch import load_file, save_file

    state = load_file(str(run_copy / "model.safetensors"))
    key = next(k for k in state if k.endswith("cv3.0.2.weight"))  # a class branch: 6 classes -> 5
    state[key] = state[key][:5].contiguous()
    save_file(state, str(run_copy / "model.safetensors"))
    before = snapshot(run_copy)
    assert_refused(tl_cli("export", run_copy, "--format", "torchscript"),
                   r"model\.safetensors does not fit the model of the run's recipe .*; it was changed or belongs to "
                   r"another run: restore it, or train again with tl run", run_copy, before)


def test_tl_export_with_a_bad_format_leaves_nothing_behind(run_copy, tl_cli):
    before = snapshot(run_copy)
    assert_refused(tl_cli("export", run_copy, "--format", "tflite"),
                   r"--format tflite: YOLO runs export to onnx or torchscript; use --format onnx", run_copy, before)
    assert not (run_copy / "export").exists()


def test_a_failing_export_leaves_nothing_behind(run_copy, tl_cli, monkeypatch):
    from ultralytics.engine.model import Model

    def fail(self, **kwargs):
        (Path(self.model.pt_path).parent / "model.torchscript").write_bytes(b"half a file")
        raise RuntimeError("the exporter ran out of disk")

    monkeypatch.setattr(Model, "export", fail)
    before = snapshot(run_copy)
    assert_refused(tl_cli("export", run_copy, "--format", "torchscript"),
                   r"the torchscript export failed \(RuntimeError: the exporter ran out of disk\); nothing was "
                   r"written", run_copy, before)
    assert sorted(p.name for p in run_copy.iterdir() if p.name.startswith(".export")) == []


def test_tl_export_on_a_report_without_classes_is_refused(run_copy, tl_cli):
    report = json.loads((run_copy / "report.json").read_text())
    del report["preprocessing"]
    (run_copy / "report.json").write_text(json.dumps(report))
    before = snapshot(run_copy)
    assert_refused(tl_cli("export", run_copy),
                   r"report\.json does not record the run's classes .* and image size .*; the run folder is "
                   r"damaged: train again with tl run", run_copy, before)
