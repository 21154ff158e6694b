"""torchvision's COCO detectors, whole (``torchvision:<model>``): registered as data equal to torchvision's weights
enums, their layer groups covering every parameter, the COCO rows of the data's classes kept, trained, evaluated,
diagnosed and exported end to end.

The COCO files cannot be downloaded here. A random-init detector's state_dict, saved under another name
(``coco-like.pth``), stands in for them: given as ``backbone.weights``, tl maps it like the COCO entry, so the rows
it keeps must equal that file's rows. Users online get the real files (``weights: COCO_V1``).
"""

from __future__ import annotations

import json
import re
import shutil
from types import SimpleNamespace

import pytest
import torch

from tl_core.testing import assert_refused, snapshot

SMALL = "torchvision:fasterrcnn_mobilenet_v3_large_fpn"
RECIPE = "driving/faster-rcnn-coco"
COCO_FILE = "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"  # the real COCO_V1 file's name
CAR, PERSON = 3, 1  # COCO category ids: the rows of torchvision's 91-way heads


def coco_models():
    from tl_driving.coco_backbones import COCO_MODELS

    return COCO_MODELS


@pytest.fixture(scope="module")
def coco_like(tmp_path_factory):
    """``(path, state)``: a random-init Faster R-CNN MobileNetV3-Large FPN with its 91 COCO rows, saved as a plain
    state_dict under a name that is not the COCO file's (seeded apart from the runs' own random init)."""
    from tl_driving.coco_backbones import build_detector

    torch.manual_seed(1)
    state = build_detector(SMALL.split(":")[1]).state_dict()
    path = tmp_path_factory.mktemp("weights") / "coco-like.pth"
    torch.save(state, path)
    return path, state


def recipe(backbone: str, head: str, weights: str = "none", options: dict | None = None, bn: str = "freeze"):
    return SimpleNamespace(backbone=SimpleNamespace(name=backbone, weights=weights),
                           head=SimpleNamespace(name=head, options=options or {}),
                           policy=SimpleNamespace(name="freeze-first", options={"groups": 3, "bn": bn}),
                           data=SimpleNamespace(image_size=None))


def data(classes, class_map=None):
    return SimpleNamespace(classes=list(classes), options=SimpleNamespace(image_size=64, class_map=class_map or {}))


IMAGES = [torch.rand(3, 48, 64), torch.rand(3, 64, 64)]
TARGETS = [{"boxes": torch.tensor([[10.0, 20, 50, 40]]), "labels": torch.tensor([0])},
           {"boxes": torch.tensor([[30.0, 10, 60, 60], [5, 5, 20, 40]]), "labels": torch.tensor([2, 1])}]


def test_the_registered_data_equals_torchvision_weights_enums():
    """URLs, sha256 prefixes, entry names (COCO_V1 and its alias DEFAULT), the 91 categories and the published
    metrics, as the installed torchvision's enums give them: the hardcoded table cannot drift from them."""
    from torchvision.models import detection, get_model_weights, list_models

    from tl_core.plugins import registry
    from tl_driving.coco_backbones import COCO_CATEGORIES, PREFIX

    backbones = registry("backbone")
    assert {m.name for m in coco_models()} <= set(list_models(module=detection))
    for model in coco_models():
        enum = get_model_weights(model.name)
        spec = backbones.get(PREFIX + model.name)
        assert backbones.owner(spec.name) == "driving" and spec.tasks == ("object-detection",)
        assert enum.__name__ == model.enum
        assert [e.name for e in spec.weights] == list(enum.__members__) == ["COCO_V1", "DEFAULT"]
        for entry in spec.weights:
            weights = enum[entry.name]
            assert entry.location == weights.url and entry.source == "url"
            assert entry.sha256 == re.search(r"-([0-9a-f]+)\.pth$", weights.url).group(1) and len(entry.sha256) >= 8
            assert len(weights.meta["categories"]) == COCO_CATEGORIES
            assert weights.meta["_metrics"]["COCO-val2017"]["box_map"] == model.box_map
            assert weights.meta["num_params"] == model.num_params
            assert entry.licence.startswith("BSD-3-Clause") and str(model.box_map) in entry.description
        assert enum["DEFAULT"] is enum["COCO_V1"]


def test_registering_them_imports_neither_torch_nor_torchvision():
    import os
    import subprocess
    import sys

    code = ("import sys, json; from tl_core.plugins import registry; spec = registry('backbone').get("
            f"{SMALL!r}); assert spec.weights;"
            "print(json.dumps(sorted(m for m in ('torch', 'torchvision') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("model", coco_models(), ids=lambda m: m.name)
def test_layer_groups_cover_every_parameter_and_policies_act_on_body_and_pyramid(model):
    """The spec's groups (body stages stem first, the pyramid, the heads) cover every parameter of torchvision's
    model; the detector tl builds shows the policies the same groups without the heads, on ``model.backbone``, and
    every other parameter is the head's. It trains a step at 64 px and predicts the data's classes."""
    from tl_core.policies import group_parameters
    from tl_driving.build import build
    from tl_driving.coco_backbones import PREFIX
    from tl_driving.train import predict_step, train_step

    det = build(recipe(PREFIX + model.name, model.kind), data(["car", "person", "cone"]))
    detector = det.model.detector
    spec = det.backbone.spec
    split = group_parameters(detector, spec.layer_groups)
    assert all(split) and spec.layer_groups[-1].name == "heads"
    assert spec.layer_groups[0].name == "stem" and spec.layer_groups[-2].name in ("fpn", "extra")
    assert [g.name for g in det.groups] == [g.name for g in spec.layer_groups[:-1]]
    body = {id(p) for group in group_parameters(det.model.backbone, det.groups) for p in group}
    head = {id(p) for p in det.model.head.parameters()}
    assert not body & head and body | head == {id(p) for p in det.model.parameters()}
    assert body == {id(p) for g in split[:-1] for p in g}
    assert list(detector.transform.image_mean) == list(model.mean)
    det.model.train()
    loss = train_step(det.model, IMAGES, TARGETS)
    assert torch.isfinite(loss)
    loss.backward()
    with torch.no_grad():
        predictions = predict_step(det.model.eval(), IMAGES)
    assert all(p["labels"].numel() == 0 or int(p["labels"].max()) < 3 for p in predictions)


def test_the_kept_coco_rows_equal_the_files_rows(coco_like):
    """car and pedestrian (COCO's person, by the synonym) keep rows 3 and 1 of the file's classifier and their box
    regression rows; the background keeps row 0; cone is new. Everything else is the file's, and the load report
    names the rows kept, as the YOLO path's does."""
    from tl_driving.build import build

    path, state = coco_like
    det = build(recipe(SMALL, "faster-rcnn", str(path)), data(["car", "pedestrian", "cone"]))
    model = det.model.detector.state_dict()
    cls_w, box_w = "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.weight"
    assert model[cls_w].shape[0] == 4 and model[box_w].shape[0] == 16
    for row, coco in ((0, 0), (1, CAR), (2, PERSON)):
        assert torch.equal(model[cls_w][row], state[cls_w][coco])
        assert torch.equal(model["roi_heads.box_predictor.cls_score.bias"][row],
                           state["roi_heads.box_predictor.cls_score.bias"][coco])
        assert torch.equal(model[box_w][4 * row:4 * row + 4], state[box_w][4 * coco:4 * coco + 4])
    assert not any(torch.equal(model[cls_w][3], state[cls_w][k]) for k in range(91))  # cone: a fresh row
    same = [k for k in model if not k.startswith("roi_heads.box_predictor.")]
    assert same and all(torch.equal(model[k], state[k]) for k in same)
    report = det.backbone.report
    assert report.file == str(path) and not report.missing and not report.reinitialised
    assert report.reshaped == ["roi_heads.box_predictor (cls_score, bbox_pred): class rows kept for background, car "
                               "(was car), pedestrian (was person); 1 new"]


def test_a_file_whose_predictor_has_other_classes_keeps_no_row_and_says_so(tmp_path):
    from torchvision.models import get_model

    from tl_driving.build import build

    path = tmp_path / "three-classes.pth"
    torch.save(get_model(SMALL.split(":")[1], weights=None, weights_backbone=None, num_classes=4).state_dict(), path)
    det = build(recipe(SMALL, "faster-rcnn", str(path)), data(["car", "person"]))
    report = det.backbone.report
    assert sorted(r.split(":")[0] for r in report.reinitialised) == [
        "roi_heads.box_predictor.bbox_pred.bias", "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.bias", "roi_heads.box_predictor.cls_score.weight"]
    assert report.reshaped == ["roi_heads.box_predictor: the file's class rows do not fit COCO's 91; all 2 class "
                               "rows new"]


def test_the_older_files_batchnorm_eps_is_0_when_the_recipe_names_weights():
    """torchvision loads fasterrcnn_resnet50_fpn's and retinanet_resnet50_fpn's COCO_V1 with the body's frozen
    BatchNorm eps at 0 (they were trained so); tl does the same where the policy keeps BatchNorm's statistics,
    deciding by the recipe, so that a finished run rebuilt without weights (tl evaluate, tl export) computes what it
    trained. BatchNorm on batch statistics keeps eps: a channel constant over a batch would divide by zero."""
    from tl_driving.build import build

    name = "torchvision:retinanet_resnet50_fpn"

    def eps(det):
        return {m.eps for m in det.model.backbone.body.modules() if isinstance(m, torch.nn.BatchNorm2d)}

    assert eps(build(recipe(name, "retinanet", "COCO_V1"), data(["car"]), weights="none")) == {0.0}
    assert eps(build(recipe(name, "retinanet", "none"), data(["car"]))) == {1e-5}
    assert eps(build(recipe(name, "retinanet", "COCO_V1", bn="train"), data(["car"]), weights="none")) == {1e-5}


@pytest.mark.parametrize("name, layers", [
    ("retinanet_resnet50_fpn_v2", ["head.classification_head.cls_logits"]),
    ("fcos_resnet50_fpn", ["head.classification_head.cls_logits"]),
    ("ssdlite320_mobilenet_v3_large", [f"head.classification_head.module_list.{i}.1" for i in range(6)]),
])
def test_one_stage_heads_keep_the_coco_rows_of_every_anchor(name, layers):
    from torchvision.models import get_model_weights

    from tl_driving.coco_backbones import build_detector, coco_model
    from tl_driving.coco_detectors import resize_classes

    kind = coco_model(f"torchvision:{name}").kind
    categories = get_model_weights(name)["COCO_V1"].meta["categories"]
    detector = build_detector(name)
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    lines = resize_classes(detector, kind, ["walker", "car"], categories, {"person": "walker"})
    after = detector.state_dict()
    for layer in layers:
        old, new = before[f"{layer}.weight"], after[f"{layer}.weight"]
        anchors = old.shape[0] // 91
        assert new.shape[0] == anchors * 3
        for a in range(anchors):
            for row, coco in ((0, 0), (1, PERSON), (2, CAR)):
                assert torch.equal(new[a * 3 + row], old[a * 91 + coco])
    assert lines == [f"{layer}: class rows kept for background, walker (was person), car (was car); 0 new"
                     for layer in layers]
    with torch.no_grad():
        out = detector.eval()([torch.rand(3, 64, 64)])[0]
    assert out["labels"].numel() == 0 or int(out["labels"].max()) <= 2


def test_class_rows_by_name_class_map_and_synonyms_and_nothing_looser():
    from torchvision.models import get_model_weights

    from tl_driving.class_rows import source_rows

    categories = get_model_weights("ssdlite320_mobilenet_v3_large")["COCO_V1"].meta["categories"]
    classes = ["Car", "pedestrian", "walker", "person", "traffic sign", "motorbike", "N/A", "__background__"]
    rows = source_rows(classes, categories, {"human": "walker", "pedestrian": "person"})
    assert {classes[j]: categories[k] for j, k in rows.items()} == {
        "Car": "car", "pedestrian": "person", "person": "person", "motorbike": "motorcycle"}
    # a BDD100K reading (class_map {pedestrian: person}) keeps COCO's person row for its person class, and a
    # KITTI one ({person: pedestrian}) for its pedestrian class
    assert source_rows(["person"], categories, {"pedestrian": "person"}) == {0: PERSON}
    assert source_rows(["walker"], categories, {"person": "walker"}) == {0: PERSON}


def test_policies_freeze_body_and_pyramid_and_always_train_the_heads():
    """feature-extraction: the COCO RPN and RoI heads train on a frozen body and pyramid; fine-tune's layer_decay
    runs from the pyramid (the top group) down to the stem; freeze-first 3 freezes what torchvision's default
    trainable_backbone_layers=3 freezes (stem, stage1, stage2)."""
    from tl_core.policies import FeatureExtraction, FineTune, FreezeFirst, apply_plan, group_parameters, param_groups
    from tl_driving.build import build

    det = build(recipe(SMALL, "faster-rcnn"), data(["car"]))
    model, groups = det.model, det.groups
    names = [g.name for g in groups]
    assert names == ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "fpn"]

    apply_plan(model, groups, FeatureExtraction().plan(len(groups), 0, 1))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert sum(p.numel() for p in model.head.parameters()) > 1_000_000  # the RPN and box heads, not a probe

    apply_plan(model, groups, FreezeFirst(groups=3).plan(len(groups), 0, 1))
    split = group_parameters(model.backbone, groups)
    assert [any(p.requires_grad for p in g) for g in split] == [False] * 3 + [True] * 4

    policy = FineTune(backbone_lr_mult=1.0, layer_decay=0.5)
    states = policy.plan(len(groups), 0, 1)
    apply_plan(model, groups, states)
    lrs = {g["name"]: g["lr"] for g in param_groups(model, groups, states, 1.0)}
    assert lrs == {"head": 1.0, **{name: 0.5 ** (len(names) - 1 - i) for i, name in enumerate(names)}}


def scenes(drv_scenes):
    return drv_scenes("kitti")  # Car, Truck, Pedestrian, Misc (buses): three COCO classes and one new


def run_sets(data_path, weights, *more):
    sets = [f"data.path={data_path}", "data.format=kitti", f"backbone.weights={weights}",
            "data.options.image_size=96", "train.epochs=1", "compare.scratch=false", "data.val_fraction=0.25", *more]
    return [x for s in sets for x in ("--set", s)]


def test_tl_run_trains_evaluates_and_exports_a_coco_detector(tl_cli, drv_scenes, coco_like, tmp_path):
    """One epoch through ``tl run`` on KITTI street scenes, the coco-like file mapped like COCO_V1: Car, Pedestrian
    and Truck keep COCO's rows, Misc is new; the frozen stages stay the file's; ``tl evaluate`` scores the run with
    mAP; ``tl export`` writes an ONNX model that predicts what the trained torch model predicts."""
    from safetensors.torch import load_file

    path, state = coco_like
    data_path, out = scenes(drv_scenes), tmp_path / "run"
    code, _, err = tl_cli("run", RECIPE, "--out", out, "--quiet", *run_sets(data_path, path,
                                                                           "head.score_threshold=0.001"))
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["recipe"]["backbone"]["name"] == SMALL and report["data"]["classes"] == [
        "Car", "Misc", "Pedestrian", "Truck"]
    assert report["load_report"]["reshaped"] == [
        "roi_heads.box_predictor (cls_score, bbox_pred): class rows kept for background, Car (was car), Pedestrian "
        "(was person), Truck (was truck); 1 new"]
    assert report["weights"]["description"] == "local file, mapped like COCO_V1"
    assert {"map_50", "map", "mar_100", "ap_Car"} <= set(report["metrics"]["val"])
    assert 0 < report["parameters"]["frozen"] < report["parameters"]["total"]
    trained = load_file(str(out / "model.safetensors"))
    frozen = [k for k in state if k.startswith(tuple(f"backbone.body.{i}." for i in range(7)))]  # freeze-first 3
    assert frozen and all(torch.equal(trained[f"detector.{k}"], state[k]) for k in frozen)
    assert not torch.equal(trained["detector.rpn.head.conv.0.0.weight"], state["rpn.head.conv.0.0.weight"])

    code, stdout, err = tl_cli("evaluate", out, "--data", data_path, "--json")
    assert code == 0, err
    answer = json.loads(stdout)
    assert answer["images"] == 8 and {"map_50", "map", "ap_Misc"} <= set(answer["metrics"])
    assert 0 <= answer["metrics"]["map_50"] <= 1

    pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    ort = pytest.importorskip("onnxruntime", reason="running the exported model needs onnxruntime")
    code, _, err = tl_cli("export", out)
    assert code == 0, err
    assert json.loads((out / "export" / "classes.json").read_text()) == ["background", *report["data"]["classes"]]
    from tl_driving.export import rebuild

    _, model, _, _ = rebuild(out)
    image = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()([image])[0]
    session = ort.InferenceSession(str(out / "export" / "model.onnx"))
    boxes, labels, scores = session.run(None, {"images": image.numpy()})
    assert len(scores) == len(expected["scores"]) > 0
    # the same detections; those of equal scores (a barely trained model has many) may come in another order
    near = ((torch.from_numpy(boxes)[:, None] - expected["boxes"][None]).abs().amax(-1) < 1e-2) \
        & ((torch.from_numpy(scores)[:, None] - expected["scores"][None]).abs() < 1e-4) \
        & (torch.from_numpy(labels)[:, None] == expected["labels"][None])
    assert near.any(1).all() and near.any(0).all()


def test_tl_diagnose_scores_the_coco_pyramid_per_box(tl_cli, drv_scenes, coco_like):
    path, _ = coco_like
    code, stdout, err = tl_cli("diagnose", RECIPE, *run_sets(scenes(drv_scenes), path), "--json")
    assert code == 0, err
    result = json.loads(stdout)
    (candidate,) = result["candidates"]
    assert result["unit"] == "boxes" and result["items"] > 0 and candidate["weights"] == "coco-like.pth"
    assert "COCO-trained feature pyramid at strides 32, 32" in candidate["how"]  # MobileNetV3's FPN reads stride 32
    assert candidate["feature_dim"] == 2 * 256
    assert candidate["scores"]["logme"] != candidate["random_init"]["scores"]["logme"]  # the file is not the twin


def test_a_file_named_like_the_coco_file_is_held_to_its_sha256(tl_cli, drv_scenes, coco_like, tmp_path):
    fake = tmp_path / COCO_FILE
    shutil.copy(coco_like[0], fake)
    out = tmp_path / "run"
    result = tl_cli("run", RECIPE, "--out", out, *run_sets(scenes(drv_scenes), fake))
    assert_refused(result, rf"{re.escape(str(fake))} has sha256 [0-9a-f]{{16}}\.\.\., expected fb6a3cc7", out)


def test_an_unknown_weights_tag_lists_the_tags(tl_cli, drv_scenes, tmp_path):
    out = tmp_path / "run"
    result = tl_cli("run", RECIPE, "--out", out, *run_sets(scenes(drv_scenes), "COCO_V2"))
    assert_refused(result, r"has no weights entry 'COCO_V2'.*known: COCO_V1, DEFAULT", out)


def test_offline_the_download_names_the_file_and_the_fix(tl_cli, drv_scenes, tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    out = tmp_path / "run"
    result = tl_cli("run", RECIPE, "--out", out, *run_sets(scenes(drv_scenes), "DEFAULT"))
    line = assert_refused(result, rf"cannot download https://download\.pytorch\.org/models/{re.escape(COCO_FILE)}", out)
    assert f"set backbone.weights to the local file (e.g. --set backbone.weights=/path/to/{COCO_FILE})" in line


@pytest.mark.parametrize("sets, pattern", [
    (["head.name=retinanet"], r"head 'retinanet' does not fit backbone 'torchvision:fasterrcnn_mobilenet_v3_large_fpn'"
                              r", a whole COCO faster-rcnn detector with its own heads: set head.name to faster-rcnn"),
    (["head.name=yolo"], r"head 'yolo' does not fit backbone .*: set head.name to faster-rcnn"),
    (["head.anchor_sizes=[8,16,32,64]"], r"head.anchor_sizes: torchvision:fasterrcnn_mobilenet_v3_large_fpn keeps the "
                                         r"anchors its COCO heads were trained with"),
])
def test_a_head_that_does_not_fit_the_detector_is_one_error_line(tl_cli, drv_scenes, tmp_path, sets, pattern):
    out = tmp_path / "run"
    before = snapshot(out)
    result = tl_cli("run", RECIPE, "--out", out, *run_sets(scenes(drv_scenes), "none", *sets))
    assert_refused(result, pattern, out, before)


def test_tl_inspect_shows_the_detectors_groups_as_the_run_freezes_them(tl_cli, drv_scenes):
    """tl inspect builds the detector as tl run does (its data read, from config): the shipped recipe's
    freeze-first 3 freezes the body's stem and first two stages, the pyramid and the heads train."""
    import json

    code, out, err = tl_cli("inspect", RECIPE, *run_sets(scenes(drv_scenes), "none"), "--json")
    assert code == 0, err
    rows = {r["group"]: r for r in json.loads(out)}
    names = list(rows)
    assert names[:3] == ["stem", "stage1", "stage2"] and names[-2:] == ["fpn", "head"]  # head: RPN and RoI heads
    assert [rows[n]["trainable"] for n in names[:4]] == [False, False, False, True]
    assert rows["fpn"]["trainable"] and rows["head"]["trainable_parameters"] == rows["head"]["parameters"] > 0


@pytest.mark.parametrize("name", ["driving/faster-rcnn", "driving/yolo"])
def test_tl_inspect_on_the_other_detection_recipes_shows_groups_or_says_why_not(name, tl_cli, drv_scenes):
    """A registry backbone under a new pyramid shows its groups, the pyramid and heads as the head row; YOLO, which
    ultralytics' trainer trains whole, is one line."""
    import json

    sets = [f"data.path={drv_scenes('yolo')}", "data.format=yolo", "backbone.weights=none"]
    result = tl_cli("inspect", name, *[x for s in sets for x in ("--set", s)], "--json")
    code, out, err = result
    if name == "driving/yolo":  # one error line (ultralytics may first announce the settings file it creates)
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("error: tl inspect shows a model as a backbone and a head")
        return
    assert code == 0, err
    rows = json.loads(out)
    assert rows[-1]["group"] == "head" and rows[-1]["parameters"] > 0 and len(rows) > 2
