"""The trainer: resume, determinism, early stopping, gradient accumulation, the feature cache."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import make_image_folder, tiny_recipe

from tl_core import hookimpl
from tl_core.errors import TLError
from tl_core.plugins import register_plugin, unregister_plugin
from tl_core.recipe import validate
from tl_core.run import execute


def run(recipe_data: dict, out, resume: bool = False) -> dict:
    return execute(validate(recipe_data), out, resume=resume, quiet=True)


def strip_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def same_history(a: list[dict], b: list[dict]) -> bool:
    a, b = strip_seconds(a), strip_seconds(b)
    return len(a) == len(b) and all(x == pytest.approx(y, rel=1e-5) for x, y in zip(a, b))


class Interrupt:
    """Stops a run after ``epoch`` epochs, as a Ctrl-C would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    @hookimpl
    def tl_on_epoch_end(self, ctx, epoch, metrics):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("policy", [{"name": "fine-tune"}, {"name": "gradual-unfreeze", "every": 1}])
def test_resume_continues_exactly_where_the_run_stopped(tiny_plugin, image_folder, tmp_path, policy):
    data = tiny_recipe(image_folder, policy=policy, data={"augment": True},
                       train={"epochs": 4, "schedule": "one-cycle"})
    whole = run(data, tmp_path / "whole")

    register_plugin(Interrupt(2), "interrupt")
    try:
        with pytest.raises(KeyboardInterrupt):
            run(data, tmp_path / "resumed")
    finally:
        unregister_plugin("interrupt")
    assert not (tmp_path / "resumed" / "report.json").exists()  # nothing claims to be finished
    resumed = run(data, tmp_path / "resumed", resume=True)

    assert same_history(resumed["epochs"], whole["epochs"])
    a = torch.load(tmp_path / "whole" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_resume_of_a_different_recipe_is_refused(tiny_plugin, image_folder, tmp_path, write_recipe, cli):
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 1}))
    assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 0
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--resume", "--set", "train.lr=0.5", "--quiet")
    assert code == 2 and "train.lr" in stderr and "only train.epochs, train.patience may change" in stderr
    # more epochs is fine: the run continues
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--resume", "--set", "train.epochs=2", "--quiet")
    assert code == 0, stderr
    assert len(json.loads((tmp_path / "run" / "report.json").read_text())["epochs"]) == 2


def test_resume_of_a_run_checkpointed_by_an_older_tl_fills_in_the_keys_added_since(tiny_plugin, image_folder, tmp_path,
                                                                                    write_recipe, cli):
    """A checkpoint written before backbone.allow_partial existed is not "a different recipe"."""
    recipe = write_recipe(tiny_recipe(image_folder, train={"epochs": 2}))
    register_plugin(Interrupt(1), "interrupt")
    try:
        assert cli("run", recipe, "--out", tmp_path / "run", "--quiet")[0] == 130
    finally:
        unregister_plugin("interrupt")
    saved = tmp_path / "run" / "checkpoints" / "recipe.json"
    old = json.loads(saved.read_text())
    del old["backbone"]["allow_partial"]  # as tl 0.1 wrote it
    saved.write_text(json.dumps(old))
    code, _, stderr = cli("run", recipe, "--out", tmp_path / "run", "--resume", "--quiet")
    assert code == 0, stderr


def test_same_seed_same_result(tiny_plugin, image_folder, tmp_path):
    data = tiny_recipe(image_folder, data={"augment": True}, head={"name": "linear", "dropout": 0.3})
    a, b = run(data, tmp_path / "a"), run(data, tmp_path / "b")
    assert strip_seconds(a["epochs"]) == strip_seconds(b["epochs"])
    data["train"]["seed"] = 1
    c = run(data, tmp_path / "c")
    assert strip_seconds(c["epochs"]) != strip_seconds(a["epochs"])


def test_early_stopping_on_the_validation_metric(tiny_plugin, image_folder, tmp_path):
    data = tiny_recipe(image_folder, train={"epochs": 10, "lr": 1e-12, "patience": 2})  # nothing can improve
    report = run(data, tmp_path / "run")
    assert report["stopped_early"] is True
    assert len(report["epochs"]) == 3 and report["best_epoch"] == 1


def test_best_checkpoint_is_the_model_that_is_kept(tiny_plugin, image_folder, tmp_path):
    from safetensors.torch import load_file

    report = run(tiny_recipe(image_folder, train={"epochs": 3}), tmp_path / "run")
    best = load_file(str(tmp_path / "run" / "checkpoints" / "best.safetensors"))
    kept = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert all(torch.equal(best[k], kept[k]) for k in best)
    accuracies = [row["val_accuracy"] for row in report["epochs"]]
    assert accuracies[report["best_epoch"] - 1] == max(accuracies)


def test_gradient_accumulation_matches_a_larger_batch(tiny_plugin, tmp_path):
    images = make_image_folder(tmp_path / "images", classes=3, per_class=8)  # 24 images: 3 batches of 8
    base = {"policy": {"name": "feature-extraction"}, "data": {"val_fraction": 0.0}}
    big = run(tiny_recipe(images, **base, train={"batch_size": 8, "schedule": "constant"}), tmp_path / "big")
    accumulated = run(tiny_recipe(images, **base, train={"batch_size": 4, "grad_accum": 2, "schedule": "constant"}),
                      tmp_path / "acc")
    a = torch.load(tmp_path / "big" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "acc" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert big["epochs"][-1]["train_loss"] == pytest.approx(accumulated["epochs"][-1]["train_loss"], rel=1e-4)


def test_sgd_and_schedules_run(tiny_plugin, image_folder, tmp_path):
    for i, schedule in enumerate(("cosine", "one-cycle", "constant")):
        report = run(tiny_recipe(image_folder, train={"optimizer": "sgd", "schedule": schedule, "epochs": 1}),
                     tmp_path / str(i))
        assert report["epochs"][0]["train_loss"] > 0


def test_a_diverging_run_stops_with_one_clear_line_and_writes_no_report(tiny_plugin, image_folder, tmp_path):
    from tl_core.errors import RunError

    recipe = tiny_recipe(image_folder, train={"optimizer": "sgd", "lr": 1e30, "epochs": 3, "amp": "no"})
    with pytest.raises(RunError, match=r"transfer: the training loss is (nan|inf) at epoch \d+, batch \d+ "
                                       r"\(precision no, lr 1e\+30\): the model diverged; lower train.lr and run"):
        run(recipe, tmp_path / "run")
    assert not (tmp_path / "run" / "report.json").exists()


def test_lr_schedules():
    from tl_core.train import lr_factor

    assert lr_factor("cosine", 0, 100) == 1.0 and lr_factor("cosine", 100, 100) == pytest.approx(0.0)
    assert lr_factor("one-cycle", 0, 100) == pytest.approx(0.04) and lr_factor("one-cycle", 30, 100) == 1.0
    assert lr_factor("constant", 50, 100) == 1.0


def test_feature_cache_computes_once_and_reuses(tiny_plugin, image_folder, tmp_path, monkeypatch):
    from tl_core import features

    calls = []
    real_extract = features.extract
    monkeypatch.setattr(features, "extract", lambda *a, **k: calls.append(1) or real_extract(*a, **k))
    data = tiny_recipe(image_folder, policy={"name": "feature-extraction"}, train={"epochs": 5})

    first = run(data, tmp_path / "first")
    assert first["feature_cache"] == {"used": True, "reason": None, "hits": {"train": False, "val": False}}
    assert len(calls) == 2  # once per split, not once per epoch

    second = run(data, tmp_path / "second")
    assert second["feature_cache"]["hits"] == {"train": True, "val": True}
    assert len(calls) == 2  # nothing recomputed
    assert same_history(second["epochs"], first["epochs"])

    data["data"]["image_size"] = 20  # other preprocessing: other features
    run(data, tmp_path / "third")
    assert len(calls) == 4


def test_feature_cache_key_follows_the_data(tiny_plugin, image_folder, tmp_path):
    from PIL import Image

    data = tiny_recipe(image_folder, policy={"name": "feature-extraction"}, data={"val_fraction": 0.0},
                       train={"epochs": 1})
    run(data, tmp_path / "a")
    Image.new("RGB", (20, 20), (1, 2, 3)).save(image_folder / "class_0" / "img_000.png")  # one image changed
    report = run(data, tmp_path / "b")
    assert report["feature_cache"]["hits"] == {"train": False}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"policy": {"name": "fine-tune"}}, "policy fine-tune trains the backbone"),
        ({"policy": {"name": "feature-extraction"}, "data": {"augment": True}}, "data.augment is on"),
    ],
)
def test_feature_cache_is_not_used_when_something_random_or_trainable_lies_before_the_head(
    tiny_plugin, image_folder, tmp_path, change, reason
):
    report = run(tiny_recipe(image_folder, train={"epochs": 1}, **change), tmp_path / "run")
    assert report["feature_cache"]["used"] is False and reason in report["feature_cache"]["reason"]


def test_report_counts_a_cached_feature_extraction_as_head_only(tiny_plugin, image_folder, tmp_path):
    report = run(tiny_recipe(image_folder, policy={"name": "feature-extraction"}, train={"epochs": 1}), tmp_path / "r")
    assert report["feature_cache"]["used"] is True
    assert report["parameters"]["trainable"] == 16 * 3 + 3  # the head; the frozen backbone is counted as frozen


def test_task_steps_train_a_model_that_computes_its_own_loss_and_after_step_runs_each_step(tmp_path):
    """What domain plugins use (detection, translation): their own loss and predictions, and a hook after every
    optimizer step - here putting back row 0 of an embedding, which must stay bit-identical while the rest trains."""
    from tl_core.components import LayerGroup
    from tl_core.context import RunContext
    from tl_core.policies import FineTune
    from tl_core.sections import TrainConfig
    from tl_core.train import TaskSteps, run_trainer

    torch.manual_seed(0)

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Embedding(4, 3)
            self.head = torch.nn.Linear(3, 1)

        def forward(self, ids, targets):
            return torch.nn.functional.mse_loss(self.head(self.backbone(ids)).squeeze(-1), targets)

    model = Toy()
    row0 = model.backbone.weight[0].detach().clone()
    start = model.backbone.weight.detach().clone()
    calls = []

    def keep_row0(m):
        calls.append(1)
        with torch.no_grad():
            m.backbone.weight[0] = row0

    data = [(torch.tensor(i % 4), float(i % 4)) for i in range(12)]
    steps = TaskSteps(
        train=lambda m, ids, y: m(ids, y),
        predict=lambda m, ids: [float(v) for v in m.head(m.backbone(ids)).squeeze(-1)],
        collate=lambda batch: (torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])),
        after_step=keep_row0,
    )
    ctx = RunContext(recipe=SimpleNamespace(resolved=dict), out=tmp_path, quiet=True)
    ctx.checkpoints.mkdir(parents=True)
    groups = (LayerGroup("all", ("weight",)),)
    with pytest.raises(TLError, match="train.metric 'loss' is not computed for task 'toy'; choose one of: mse"):
        run_trainer(model, groups, FineTune(), TrainConfig(metric="loss", device="cpu"), ctx, "toy", [], data,
                    None, None, metric_names={"mse"}, task_steps=steps)  # an own-loss task has no validation loss
    cfg = TrainConfig(epochs=2, batch_size=4, lr=0.1, weight_decay=0.1, device="cpu", metric="mse")
    result = run_trainer(model, groups, FineTune(backbone_lr_mult=1.0), cfg, ctx, "toy", [], data, None, None,
                         metric_names={"mse"}, task_steps=steps)
    weight = result.model.backbone.weight
    assert len(calls) == 6  # 2 epochs x 3 batches
    assert torch.equal(weight[0], row0) and not torch.equal(weight[1:], start[1:])
    assert [row["epoch"] for row in result.history] == [1, 2] and result.history[-1]["train_loss"] > 0
