"""Export of trained detectors: `tl export RUN` (a command this plugin adds through tl_add_commands)."""

from __future__ import annotations

import json
import sys

import pytest
import torch


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from tl_driving.synthetic import write_scenes

    return write_scenes(tmp_path_factory.mktemp("streets") / "coco", 10, "coco")


def run(recipe_name, sets, out):
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    execute(load_recipe(recipe_name, sets), out, quiet=True)
    return out


def tl(*args, monkeypatch, capsys):
    from tl_core import cli

    monkeypatch.setattr(sys, "argv", ["tl", *map(str, args)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr()


def test_yolo_run_exports_torchscript_that_runs(scenes, tmp_path, monkeypatch, capsys):
    out = run("driving/yolo", [f"data.path={scenes}", "data.format=coco", "backbone.weights=none", "train.epochs=1",
                               "data.options.image_size=64", "train.batch_size=4"], tmp_path / "run")
    code, captured = tl("export", out, "--format", "torchscript", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, captured.err
    path = out / "export" / "model.torchscript"
    assert path.is_file() and str(path) in captured.out
    classes = json.loads((out / "report.json").read_text())["data"]["classes"]
    assert json.loads((out / "export" / "classes.json").read_text()) == classes
    scripted = torch.jit.load(str(path))
    with torch.no_grad():
        prediction = scripted(torch.rand(1, 3, 64, 64))
    prediction = prediction[0] if isinstance(prediction, (tuple, list)) else prediction
    assert prediction.shape[1] == 4 + 6  # boxes + the 6 street classes


def test_torchvision_run_exports_onnx_that_predicts_what_torch_predicts(scenes, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    ort = pytest.importorskip("onnxruntime", reason="running the exported model needs onnxruntime")
    out = run("driving/faster-rcnn", [f"data.path={scenes}", "head.name=fcos", "train.epochs=1",
                                      "data.options.image_size=64", "compare.scratch=false",
                                      "head.score_threshold=0.001"], tmp_path / "run")
    code, captured = tl("export", out, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, captured.err
    classes = json.loads((out / "report.json").read_text())["data"]["classes"]
    assert json.loads((out / "export" / "classes.json").read_text()) == ["background", *classes]
    import onnx

    path = out / "export" / "model.onnx"
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["boxes", "labels", "scores"]

    from tl_driving.export import rebuild

    _, model, _, _ = rebuild(out)
    model.eval()
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model([image])[0]
    boxes, labels, scores = ort.InferenceSession(str(path)).run(None, {"images": image.numpy()})
    assert len(scores) == len(expected["scores"]) > 0
    assert torch.allclose(torch.from_numpy(scores), expected["scores"], atol=1e-4)
    assert torch.allclose(torch.from_numpy(boxes), expected["boxes"], atol=1e-2)
    assert torch.equal(torch.from_numpy(labels), expected["labels"])  # torchvision's ids: classes.json[id]

    # tl evaluate rebuilds the same detector and scores new data with the run's metrics
    code, captured = tl("evaluate", out, "--data", scenes, "--json", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, captured.err
    answer = json.loads(captured.out)
    assert answer["images"] == 10 and answer["skipped"] == []
    assert {"map_50", "map", "mar_100"} <= set(answer["metrics"]) and 0 <= answer["metrics"]["map_50"] <= 1


def test_export_of_a_classification_run_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import json

    (tmp_path / "report.json").write_text(json.dumps({"recipe": {
        "task": "image-classification", "backbone": {"name": "mobilenet_v2"}, "data": {"path": "x"}},
        "data": {"classes": ["cat", "dog"]}, "metrics": {}}))  # what read_report asks of a report
    code, captured = tl("export", tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "tl export exports object-detection runs" in captured.err
