"""Where tl follows what its field's libraries do: each weights entry's own resize, interpolation and crop
(torchvision's ``weights.transforms()``, timm's pretrained config); weight decay that spares biases and norms (timm,
the Hugging Face Trainer); gradient clipping; the fp16 loss scale in checkpoints; durable writes; the versions of
every library a run used; a terminal of 80 columns; an install without setuptools' licence warning."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from conftest import tiny_factory, tiny_recipe

from tl_core.components import LayerGroup

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- preprocessing per weights entry


def core_entries():
    from tl_core.builtin.classification.backbones import BACKBONES

    return [(spec, entry) for spec in BACKBONES for entry in spec.weights]


def torchvision_weights_for(url: str):
    """The torchvision weights enum member published at ``url``."""
    from torchvision.models import get_model_weights, list_models

    for name in list_models():
        try:
            members = list(get_model_weights(name))
        except (KeyError, ValueError):
            continue
        for member in members:
            if member.url == url:
                return member
    return None


@pytest.mark.parametrize("spec,entry", [pytest.param(s, e, id=f"{s.name}:{e.name}") for s, e in core_entries()
                                        if e.source == "url" and "download.pytorch.org" in e.location])
def test_a_torchvision_entry_preprocesses_as_its_weights_transforms(spec, entry):
    weights = torchvision_weights_for(entry.location)
    assert weights is not None, entry.location
    tv = weights.transforms()
    assert entry.input_size == tv.crop_size[0]
    assert round(entry.input_size / entry.crop_pct) == tv.resize_size[0]
    assert entry.interpolation == tv.interpolation.value
    assert tuple(entry.mean) == tuple(tv.mean) and tuple(entry.std) == tuple(tv.std)


def test_the_timm_entry_preprocesses_as_its_pretrained_config():
    import timm

    (entry,) = [e for _, e in core_entries() if e.location.startswith("timm/")]
    tag = entry.location.split("/")[1]  # timm/<architecture>.<tag>/model.safetensors
    cfg = timm.create_model(tag, pretrained=False).pretrained_cfg
    assert (entry.crop_pct, entry.interpolation) == (cfg["crop_pct"], cfg["interpolation"])
    assert tuple(entry.mean) == tuple(cfg["mean"]) and entry.input_size == cfg["input_size"][-1]


@pytest.mark.parametrize("backbone,resize,mode", [("efficientnet_b0", 256, "bicubic"),
                                                  ("convnext_tiny", 236, "bilinear"),
                                                  ("resnet50", 232, "bilinear")])
def test_the_evaluation_transform_is_the_entrys(backbone, resize, mode):
    """What a run really feeds the model: efficientnet_b0 was bilinear 256 before, convnext_tiny 256."""
    from torchvision.transforms import v2

    from tl_core.builtin.classification.backbones import core_backbone
    from tl_core.builtin.classification.images import transforms
    from tl_core.model import BuiltBackbone

    spec = core_backbone(backbone)
    built = BuiltBackbone(spec=spec, module=None, entry=spec.weights[-1], report=None)
    pipeline = transforms(built.input, 224, augment=False)
    (step,) = [t for t in pipeline.transforms if isinstance(t, v2.Resize)]
    assert step.size == [resize] and step.interpolation.value == mode


def test_the_report_records_the_resize_and_evaluate_uses_it(tiny_weights_file, image_folder, write_recipe, cli,
                                                            tmp_path, monkeypatch):
    """Weights published with bicubic at crop_pct 0.8: the run records it, and tl evaluate rebuilds that transform."""
    from dataclasses import replace

    from conftest import tiny_spec

    from tl_core import hookimpl
    from tl_core.builtin.classification import evaluate as evaluate_module
    from tl_core.plugins import register_plugin, unregister_plugin
    from tl_core.weights import WeightsEntry, sha256_of

    entry = WeightsEntry(name="pretrained", architecture="tiny", source="file", location=str(tiny_weights_file),
                         sha256=sha256_of(tiny_weights_file), licence="test", mean=(0.5,) * 3, std=(0.5,) * 3,
                         input_size=16, classifier=("fc",), crop_pct=0.8, interpolation="bicubic")

    class Bicubic:
        @hookimpl
        def tl_register_backbones(self, register):
            register(replace(tiny_spec([entry])))

    register_plugin(Bicubic(), "bicubic-test")
    try:
        out = tmp_path / "run"
        code, _, stderr = cli("run", write_recipe(tiny_recipe(image_folder, train={"epochs": 1})), "--out", out,
                              "--quiet")
        assert code == 0, stderr
        pre = json.loads((out / "report.json").read_text())["preprocessing"]
        assert pre["crop_pct"] == 0.8 and pre["interpolation"] == "bicubic"
        seen = []
        made = evaluate_module.transform_for
        monkeypatch.setattr(evaluate_module, "transform_for", lambda fmt, spec, size, augment: (
            seen.append(spec), made(fmt, spec, size, augment))[1])
        code, _, stderr = cli("evaluate", out, "--data", image_folder)
        assert code == 0, stderr
        assert (seen[0].crop_pct, seen[0].interpolation) == (0.8, "bicubic")
    finally:
        unregister_plugin("bicubic-test")


# ---------------------------------------------------------------- the optimizer


def tiny_model():
    from torch import nn

    from tl_core.model import TransferModel

    return TransferModel(tiny_factory(), nn.Linear(16, 3))


TINY_GROUPS = (LayerGroup("stem", ("features.0",)), LayerGroup("middle", ("features.1",)),
               LayerGroup("top", ("features.2",)))


def test_weight_decay_spares_biases_and_norm_weights():
    from tl_core.policies import GroupState, param_groups

    model = tiny_model()
    groups = param_groups(model, TINY_GROUPS, [GroupState(True, 1.0, "train")] * 3, lr=0.1, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    spared = {names[id(p)] for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert decayed == {"backbone.features.0.0.weight", "backbone.features.1.0.weight",
                       "backbone.features.2.0.weight", "head.weight"}  # convolutions and the linear head
    assert "head.bias" in spared and "backbone.features.0.1.weight" in spared  # a bias, a BatchNorm weight
    assert decayed | spared == set(names.values())
    assert {g["name"] for g in groups} >= {"head", "head (no decay)", "top", "top (no decay)"}


def test_a_modules_own_no_weight_decay_list_is_honoured():
    """timm's models list their position embeddings and class tokens in ``no_weight_decay()``."""
    from torch import nn

    from tl_core.policies import no_decay

    class WithToken(nn.Module):
        def __init__(self):
            super().__init__()
            self.cls_token = nn.Parameter(torch.zeros(1, 1, 8))
            self.proj = nn.Linear(8, 8)

        def no_weight_decay(self):
            return {"cls_token"}

    model = nn.Sequential(WithToken())
    assert no_decay(model) == {id(model[0].cls_token), id(model[0].proj.bias)}


def test_the_trainers_adamw_decays_only_what_it_should(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = cli("run", write_recipe(tiny_recipe(image_folder, train={"epochs": 1, "weight_decay": 0.05})),
                          "--out", out, "--quiet")
    assert code == 0, stderr
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    by_name = {g["name"]: g["weight_decay"] for g in saved}
    assert by_name["head"] == 0.05 and by_name["head (no decay)"] == 0.0


def test_max_grad_norm_clips_the_update(tiny_plugin, image_folder, write_recipe, cli, tmp_path):
    """SGD, one step: the change of the backbone's weights is at most lr x max_grad_norm when clipped."""
    from safetensors.torch import load_file

    from tl_core.weights import read_state_dict

    before = read_state_dict(Path(tiny_plugin.spec.weights[0].location), "tiny")
    moved = {}
    for clip in (None, 1e-3):
        train = {"epochs": 1, "batch_size": 64, "optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0,
                 "lr": 0.5, "schedule": "constant", "max_grad_norm": clip}
        out = tmp_path / f"run-{clip}"
        recipe = tiny_recipe(image_folder, train=train, policy={"name": "fine-tune", "backbone_lr_mult": 1.0})
        code, _, stderr = cli("run", write_recipe(recipe, f"r{clip}.yaml"), "--out", out, "--quiet")
        assert code == 0, stderr
        after = load_file(str(out / "model.safetensors"))
        moved[clip] = sum(float((after[f"backbone.{k}"] - v).pow(2).sum()) for k, v in before.items()
                          if f"backbone.{k}" in after and "running" not in k and "num_batches" not in k) ** 0.5
    assert moved[1e-3] <= 0.5 * 1e-3 * 1.01  # lr x max_grad_norm (the head's share of the norm moves the head)
    assert moved[None] > 10 * moved[1e-3]


def test_the_fp16_loss_scale_is_checkpointed_and_resumed(tiny_plugin, image_folder, write_recipe, cli, tmp_path,
                                                         monkeypatch):
    """A GradScaler on the CPU (torch has one) stands in for fp16 on a GPU: growing by 2x each step, its scale after a
    resumed run must be what it is after the same steps in one go."""
    from tl_core import train as train_module

    made = train_module.make_accelerator

    def with_scaler(cfg):
        acc = made(cfg)
        acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=1)
        return acc

    monkeypatch.setattr(train_module, "make_accelerator", with_scaler)
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1, "batch_size": 9}))  # 2 steps an epoch
    out = tmp_path / "run"
    code, _, stderr = cli("run", recipe, "--out", out, "--quiet")
    assert code == 0, stderr
    first = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["scaler"]
    assert first["scale"] == 2.0**10
    (out / "report.json").unlink()
    code, _, stderr = cli("run", recipe, "--out", out, "--quiet", "--resume", "--set", "train.epochs=2")
    assert code == 0, stderr
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["scaler"]["scale"] == 2.0**12


# ---------------------------------------------------------------- files, versions


def test_atomic_writes_reach_the_disk_before_the_rename(tmp_path, monkeypatch):
    import os

    from tl_core.files import write_atomic

    calls = []
    fsync, replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), replace(a, b))[1])
    write_atomic(tmp_path / "report.json", "{}")
    assert calls[:2] == ["fsync", "replace"] and (tmp_path / "report.json").read_text() == "{}"


def test_versions_name_every_library_a_plugin_requires(monkeypatch):
    """A plugin's distribution's requirements (tl-medical: MONAI, pydicom; tl-translation: transformers, ...) are
    recorded; here a distribution every tl has, typer, stands in for a plugin's."""
    from tl_core import report
    from tl_core.plugins import PluginInfo

    monkeypatch.setattr(report, "plugins", lambda: [PluginInfo("x", "x", distribution="typer", version="1")])
    packages = report.versions()["packages"]
    assert packages["shellingham"] and packages["rich"] and packages["torch"]


def test_no_pyproject_uses_the_deprecated_licence_table():
    """setuptools warns, once per distribution and install, about ``license = {text = ...}``."""
    for path in [ROOT / "pyproject.toml", *sorted((ROOT / "plugins").glob("*/pyproject.toml"))]:
        project = tomllib.loads(path.read_text())["project"]
        assert isinstance(project.get("license"), str), path


# ---------------------------------------------------------------- an 80-column terminal


def narrow(monkeypatch, *args: str) -> str:
    from rich.console import Console

    from tl_core import cli as cli_module

    buffer = io.StringIO()
    monkeypatch.setattr(cli_module, "out", Console(file=buffer, width=80))
    monkeypatch.setattr(sys, "argv", ["tl", *args])
    try:
        cli_module.main()
    except SystemExit as exc:
        assert not exc.code
    return buffer.getvalue()


@pytest.mark.parametrize("command", ["policies", "heads", "formats", "backbones", "plugins"])
def test_names_stay_whole_at_80_columns(command, monkeypatch):
    from tl_core.plugins import registry

    text = narrow(monkeypatch, command)
    assert "…" not in text
    kind = {"policies": "policy", "heads": "head", "formats": "data format", "backbones": "backbone"}.get(command)
    for name in registry(kind).names() if kind else ["tl.classification", "tl.policies"]:
        assert any(line.strip().startswith(name) or f" {name} " in f" {line} " for line in text.splitlines()), name


def test_epoch_lines_are_not_broken_at_80_columns():
    from rich.console import Console

    from tl_core.context import RunContext

    buffer = io.StringIO()
    ctx = RunContext(recipe=None, out=Path("."), console=Console(file=buffer, width=80))
    line = "transfer epoch 1/2  loss 1.1840  val_accuracy 0.6667  val_balanced_accuracy 0.6667  val_macro_f1 0.5333"
    ctx.log(line)
    assert buffer.getvalue() == line + "\n"
