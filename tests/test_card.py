"""The model card (``tl card RUN`` -> ``RUN/README.md``): made from report.json alone, in the hub's conventions, read
back by huggingface_hub's ModelCard with the run's own metrics."""

from __future__ import annotations

import json

from conftest import make_image_folder, tiny_recipe

from tl_core.testing import assert_refused


def test_the_card_holds_the_runs_metrics_licence_and_verdict_and_reads_back_as_a_hub_card(write_recipe, cli, tmp_path):
    from huggingface_hub import ModelCard

    images = make_image_folder(tmp_path / "images", per_class=4, size=32)
    recipe = write_recipe(tiny_recipe(images, backbone={"name": "torchvision:resnet18", "weights": "none"},
                                      train={"epochs": 1, "batch_size": 3}, data={"image_size": 32,
                                                                                 "test_path": str(images)}))
    code, _, err = cli("run", recipe, "--out", tmp_path / "run", "--quiet")
    assert code == 0, err
    written = (tmp_path / "run" / "README.md").read_text()  # every run writes its card
    code, out, err = cli("card", tmp_path / "run")
    assert code == 0, err
    assert (tmp_path / "run" / "README.md").read_text() == written  # tl card makes the same from report.json
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.pipeline_tag == "image-classification" and card.data.library_name == "tl"
    assert card.data.license == "other" and "random init" in card.data.license_name  # no weights: no licence known
    got = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert got == report["metrics"]["test"] and {r.dataset_split for r in card.data.eval_results} == {"test"}
    assert report["verdict"]["message"] in card.text and "```yaml" in card.text and "torchvision:resnet18" in card.text
    assert_refused(cli("card", tmp_path / "nothing"), "holds no finished run")


def test_the_front_matter_names_the_hub_base_model_and_the_hubs_licence_ids():
    from tl_core.card import _base_model, _licence

    assert _base_model({"source": "hf", "location": "timm/resnet18.a1_in1k/model.safetensors"}) == \
        "timm/resnet18.a1_in1k"
    assert _base_model({"source": "url", "location": "https://download.pytorch.org/models/x.pth"}) is None
    assert _licence("BSD-3-Clause (torchvision)") == {"license": "bsd-3-clause"}
    assert _licence("apache-2.0") == {"license": "apache-2.0"}
    assert _licence("MIT (Astra, zh-Wang-Med)") == {"license": "mit"}
    assert _licence("see the model card") == {"license": "other", "license_name": "see the model card"}


def test_an_ap_of_a_class_the_split_does_not_hold_is_not_published_as_a_score():
    """pycocotools' -1 (no object of the class in the split) is left out of the model-index and shown as n/a."""
    from tl_core.card import card_data, model_card

    report = {"recipe": {"task": "object-detection", "backbone": {"name": "yolo11n"}, "policy": {"name": "fine-tune"},
                         "data": {"path": "/data/scenes/train.json"}},
              "metrics": {"test": {"map_50": 0.42, "ap_car": 0.5, "ap_bus": -1.0}}, "data": {}}
    results = {r.metric_type: r.metric_value for r in card_data(report).eval_results}
    assert results == {"map_50": 0.42, "ap_car": 0.5}
    assert "| test | n/a | 0.5 | 0.42 |" in model_card(report)
