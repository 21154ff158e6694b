"""The ultralytics YOLO path: frozen layers stay bit-identical, COCO rows warm-start, checkpoints load safely."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def yolo_scenes(tmp_path_factory):
    from tl_driving.synthetic import write_scenes

    return write_scenes(tmp_path_factory.mktemp("streets") / "yolo", 16, "yolo")


def build(recipe):
    from tl_core.data import ClassificationData  # noqa: F401  (import check: the core is there)
    from tl_core.plugins import pm, registry

    fmt = registry("data format").get(recipe.data.format)
    data = fmt.read(recipe.data, recipe.train.seed)
    return pm.hook.tl_build_model(recipe=recipe, data=data), data


def test_gradual_unfreezing_under_ultralytics_keeps_frozen_layers_bit_identical(yolo_scenes, tmp_path):
    from tl_core.context import RunContext
    from tl_core.recipe import load_recipe
    from tl_driving import yolo

    recipe = load_recipe("driving/yolo", [f"data.path={yolo_scenes}", "backbone.weights=none", "train.epochs=3",
                                          "data.options.image_size=64", "train.batch_size=8",
                                          "policy={name: gradual-unfreeze, every: 1}"])
    detector, data = build(recipe)
    before = {k: v.clone() for k, v in detector.model.state_dict().items()}
    result = yolo.train(recipe, detector, data, RunContext(recipe=recipe, out=tmp_path / "run", quiet=True))
    after = result.model.state_dict()
    # 6 body groups, one unfrozen per epoch from the top: after 3 epochs stem..stage4 (layers 0-7) are still frozen
    assert result.info["frozen_layers"] == list(range(8))
    for key, value in after.items():
        layer = int(key.split(".")[1])
        if layer <= 7 and not key.endswith("num_batches_tracked"):
            assert torch.equal(value, before[key]), key  # weights and BatchNorm statistics, EMA included
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("model.23."))  # the head trained
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert {"map_50", "map"} <= set(result.metrics["val"])


def test_coco_rows_of_overlapping_classes_are_kept():
    from tl_driving.yolo import resize_classes
    from tl_driving.yolo_backbones import build_model, coco_names

    COCO80 = coco_names()
    torch.manual_seed(0)
    model = build_model("yolo11n.yaml", nc=80)  # stands for a COCO-trained model
    source = {k: v.clone() for k, v in model.state_dict().items()}
    lines = resize_classes(model, ["car", "pedestrian", "cone"], list(COCO80), {"person": "pedestrian"})
    state = model.state_dict()
    key = "model.23.cv3.0.2.weight"
    assert state[key].shape[0] == 3 and model.model[-1].nc == 3
    assert torch.equal(state[key][0], source[key][COCO80.index("car")])
    assert torch.equal(state[key][1], source[key][COCO80.index("person")])  # renamed by the class map
    assert lines[0] == "model.23.cv3.0.2: class rows kept for car (was car), pedestrian (was person); 1 new"
    assert torch.equal(state["model.23.cv3.0.0.0.conv.weight"], source["model.23.cv3.0.0.0.conv.weight"])
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 3, 64, 64))
    assert out[0].shape[1] == 4 + 3  # boxes + 3 class scores


def test_the_coco_names_are_ultralytics_80_in_the_order_of_the_checkpoints_rows():
    """Each of the 80 names maps to its own row: the row ultralytics' coco.yaml and torchvision's COCO weights give
    it (torchvision numbers 91 ids with N/A gaps and a background; without those, the same 80 in the same order)."""
    import yaml
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights
    from ultralytics.utils import ROOT

    from tl_driving.yolo_backbones import coco_names

    names = coco_names()
    expected = yaml.safe_load((ROOT / "cfg" / "datasets" / "coco.yaml").read_text())["names"]
    assert names == tuple(expected[i] for i in range(80))
    torchvision = [c for c in FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
                   if c not in ("__background__", "N/A")]
    assert list(names) == torchvision
    assert names.index("traffic light") == 9 and names.index("stop sign") == 11
    assert names.index("dog") == 16 and names.index("toothbrush") == 79


def test_every_coco_class_warm_starts_from_its_own_row():
    from tl_driving.yolo import resize_classes
    from tl_driving.yolo_backbones import build_model, coco_names

    torch.manual_seed(0)
    model = build_model("yolo11n.yaml", nc=80)
    key = "model.23.cv3.0.2.weight"
    source = model.state_dict()[key].clone()
    targets = ["toothbrush", "traffic light", "dog", "stop sign", "car"]  # any order; all 80 in the next check
    lines = resize_classes(model, targets, list(coco_names()), {})
    rows = model.state_dict()[key]
    for j, name in enumerate(targets):
        assert torch.equal(rows[j], source[coco_names().index(name)]), name
    assert lines[0].endswith("dog (was dog), stop sign (was stop sign), car (was car); 0 new")
    model = build_model("yolo11n.yaml", nc=80)
    source = model.state_dict()[key].clone()
    resize_classes(model, list(reversed(coco_names())), list(coco_names()), {})
    assert torch.equal(model.state_dict()[key], source.flip(0))  # all 80, each from its own row


def test_ultralytics_checkpoints_load_through_the_restricted_loader(tmp_path):
    from tl_core.errors import WeightsError
    from tl_driving.yolo import read_checkpoint
    from tl_driving.yolo_backbones import build_model

    model = build_model("yolo11n.yaml", nc=80)
    path = tmp_path / "yolo11n.pt"
    torch.save({"model": model.half(), "epoch": -1}, path)  # the layout of ultralytics' released checkpoints
    state = read_checkpoint(path, "coco")
    assert state["model.0.conv.weight"].dtype == torch.float32 and len(state) == len(model.state_dict())

    class Payload:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload()}, evil)
    with pytest.raises(WeightsError, match="not an ultralytics checkpoint tl can read safely"):
        read_checkpoint(evil, "coco")
    assert not (tmp_path / "pwned").exists()


def test_yolo_coco_weights_fail_offline_with_a_hint():
    from tl_core.errors import WeightsError
    from tl_core.model import build_backbone
    from tl_core.plugins import registry

    with pytest.raises(WeightsError, match=r"cannot download https://github.com/ultralytics/assets/.*yolo11n.pt"):
        build_backbone(registry("backbone").get("yolo11n"), "coco")


# ---------------------------------------------------------------- train.max_grad_norm under ultralytics' trainer


def step_of_clipped_gradients(max_grad_norm):
    """One step of ultralytics' own ``optimizer_step`` (through tl's trainer class) on gradients of norm 100, plain SGD
    at lr 1: the norm of the weights' change is the norm the gradients were clipped to."""
    from torch import nn

    from tl_driving.yolo import trainer_class

    model = nn.Linear(4, 1)
    cls = trainer_class(model, max_grad_norm)
    trainer = cls.__new__(cls)  # ultralytics' __init__ reads a data set: only what optimizer_step uses is set
    trainer.model, trainer.device, trainer.ema = model, torch.device("cpu"), None
    trainer.optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=False)
    for p in model.parameters():
        p.grad = torch.full_like(p, 50.0)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer.optimizer_step()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_yolo_applies_train_max_grad_norm_instead_of_ultralytics_10():
    import torch.nn.utils

    original = torch.nn.utils.clip_grad_norm_
    assert step_of_clipped_gradients(0.5) == pytest.approx(0.5, rel=1e-4)
    assert step_of_clipped_gradients(None) == pytest.approx(10.0, rel=1e-4)  # unset: ultralytics' own 10.0
    assert torch.nn.utils.clip_grad_norm_ is original  # put back after each step


def test_yolo_refuses_max_grad_norm_when_ultralytics_stops_clipping_through_torch(monkeypatch):
    from ultralytics.engine.trainer import BaseTrainer

    from tl_core.api import TLError

    monkeypatch.setattr(BaseTrainer, "optimizer_step", lambda self: self.optimizer.step())
    with pytest.raises(TLError, match=r"train\.max_grad_norm: ultralytics .* no longer clips.*remove "
                                      r"train\.max_grad_norm from the YOLO recipe"):
        step_of_clipped_gradients(0.5)


def test_a_yolo_run_clips_at_the_recipes_max_grad_norm(yolo_scenes, tmp_path, monkeypatch):
    import torch.nn.utils

    from tl_core.context import RunContext
    from tl_core.recipe import load_recipe
    from tl_driving import yolo

    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        norms.append(max_norm)
        return clip(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    recipe = load_recipe("driving/yolo", [f"data.path={yolo_scenes}", "backbone.weights=none", "train.epochs=1",
                                          "data.options.image_size=64", "train.batch_size=8",
                                          "train.max_grad_norm=0.25"])
    detector, data = build(recipe)
    result = yolo.train(recipe, detector, data, RunContext(recipe=recipe, out=tmp_path / "run", quiet=True))
    assert norms and set(norms) == {0.25}  # every step of ultralytics' trainer, none at its 10.0
    assert result.info["max_grad_norm"] == 0.25
