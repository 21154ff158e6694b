"""``tl diagnose``: the scores of each candidate and of its random-init twin, the ranking and its uncertainty, the
domain-shift score, the recommendation, the --json shape, and the bad inputs the issue names (too few items per
class, a backbone that gives no features, a plugin's answer of the wrong shape)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import make_image_folder, tiny_recipe, tiny_spec

from tl_core import hookimpl
from tl_core.components import FeatureSet
from tl_core.weights import WeightsEntry, sha256_of

PHOTOS = "tl_core:builtin/classification/reference/photos"


def no_nan(text: str) -> dict:
    """JSON as a strict parser reads it: NaN or Infinity anywhere is an error."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in tl diagnose --json")

    return json.loads(text, parse_constant=refuse)


def _entry(path: Path, name: str, **extra) -> WeightsEntry:
    return WeightsEntry(name=name, architecture="tiny", source="file", location=str(path), sha256=sha256_of(path),
                        licence="test", mean=(0.5,) * 3, std=(0.5,) * 3, input_size=16, **extra)


@pytest.fixture
def candidates(tiny_weights_file: Path, tmp_path: Path, plugin):
    """Two registered backbones of the tiny architecture: ``tiny`` with its "pre-trained" file (weights entry with a
    prior and the photographs as reference), and ``tiny-damaged`` whose every convolution was zeroed - features
    that are the same for every image, the "deliberately damaged variant" of the issue."""
    from dataclasses import replace

    state = torch.load(tiny_weights_file, weights_only=True)
    damaged = {k: torch.zeros_like(v) if k.endswith("weight") and v.ndim == 4 else v for k, v in state.items()}
    damaged_file = tmp_path / "damaged.pt"
    torch.save(damaged, damaged_file)
    good = tiny_spec([_entry(tiny_weights_file, "pretrained", classifier=("fc",), source_accuracy=70.0,
                             reference=PHOTOS, training_data="photos")])
    bad = replace(tiny_spec([_entry(damaged_file, "zeroed", classifier=("fc",), source_accuracy=60.0)]),
                  name="tiny-damaged")

    class Two:
        @hookimpl
        def tl_register_backbones(self, register):
            register(good)
            register(bad)

    plugin(Two(), "candidates")


@pytest.fixture
def recipe(tmp_path: Path, write_recipe) -> Path:
    images = make_image_folder(tmp_path / "images", per_class=10)
    return write_recipe(tiny_recipe(images, policy={"name": "feature-extraction"}))


def test_diagnose_scores_each_candidate_and_its_random_twin(candidates, recipe, cli):
    code, out, err = cli("diagnose", recipe, "--backbones", "tiny,tiny-damaged", "--json")
    assert code == 0, err
    result = no_nan(out)
    assert result["items"] == 30 and result["classes"] == 3 and result["unit"] == "images"  # train + val, no test
    by_name = {c["backbone"]: c for c in result["candidates"]}
    good, bad = by_name["tiny"], by_name["tiny-damaged"]
    for c in (good, bad):
        for scores in (c["scores"], c["random_init"]["scores"]):
            for key in ("knn_accuracy", "probe_accuracy"):
                assert 0 <= scores[key] <= 1
                low, high = scores[key.replace("accuracy", "interval")]
                assert low <= scores[key] <= high
            assert isinstance(scores["logme"], float) and isinstance(scores["h_score"], float)
    # zeroed convolutions give every image the same features: chance, below their own random-init twin
    assert bad["scores"]["knn_accuracy"] <= 0.4 and bad["random_init"]["scores"]["knn_accuracy"] > 0.8
    assert bad["transfer_gain"]["helps"] is False and bad["transfer_gain"]["interval"][1] < 0
    # the colour classes are easy for the tiny convnet's own features: the good candidate ranks first, surely
    assert good["rank"] == 1 and bad["rank"] == 2 and good["first_probability"] >= 0.9
    assert good["prior"] == {"source_accuracy": 70.0, "on": "photos"}
    assert result["recommendation"]["backbone"] == "tiny"


def test_damaged_weights_alone_lead_to_scratch(candidates, recipe, cli):
    code, out, _ = cli("diagnose", recipe, "--backbones", "tiny-damaged")
    assert code == 0
    assert "recommendation" in out and "scratch with tiny-damaged" in out
    assert "worse than random-init ones" in out and "negative transfer is likely" in out
    assert "--set backbone.weights=none" in out  # the command to try, whole


def test_domain_shift_from_the_reference_photographs(candidates, recipe, cli):
    """Coloured squares are far from photographs: the permutation test says so with a small p-value, in words.
    The damaged candidate's entry carries no reference: its shift is not measured, and says so."""
    code, out, _ = cli("diagnose", recipe, "--backbones", "tiny,tiny-damaged", "--json")
    by_name = {c["backbone"]: c for c in no_nan(out)["candidates"]}
    moved = by_name["tiny"]["shift"]
    assert moved["reference_items"] == 50 and moved["p_value"] < 0.01 and moved["detected"]
    assert "a domain shift" in moved["plain"]
    assert by_name["tiny-damaged"]["shift"] is None


def test_a_class_with_one_item_is_said_not_scored_as_nan(candidates, tmp_path, write_recipe, cli):
    images = make_image_folder(tmp_path / "few", per_class=6)
    for extra in sorted((images / "class_2").iterdir())[1:]:
        extra.unlink()  # class_2 keeps one image
    path = write_recipe(tiny_recipe(images, data={"val_fraction": 0.0}), "few.yaml")
    code, out, err = cli("diagnose", path, "--json")
    assert code == 0, err
    result = no_nan(out)
    scores = result["candidates"][0]["scores"]
    assert "knn_accuracy" not in scores and "probe_accuracy" not in scores
    assert any("need at least 2 per class" in note for note in scores["notes"])
    assert result["per_class"]["min"] == 1


def test_diagnosed_features_are_reused_by_a_feature_extraction_run(candidates, recipe, cli, tmp_path):
    assert cli("diagnose", recipe, "--json")[0] == 0
    code, _, err = cli("run", recipe, "--out", tmp_path / "run", "--set", "train.epochs=1")
    assert code == 0, err
    assert "features train: cache hit" in err and "features val: cache hit" in err


def test_progress_counts_every_item_of_every_pass(candidates, recipe):
    from tl_core.diagnose import diagnose
    from tl_core.recipe import load_recipe

    passes: list[tuple[str, int | None, list[int]]] = []

    def reporter(label, total):
        seen: list[int] = []
        passes.append((label, total, seen))
        return seen.append

    diagnose(load_recipe(str(recipe)), ["tiny"], reporter)
    assert [label for label, _, _ in passes] == ["tiny pre-trained", "tiny random-init"]
    assert all(total == 30 for _, total, _ in passes)
    assert sum(passes[0][2]) == 30 + 50  # the images and the 50 reference photographs
    assert sum(passes[1][2]) == 30  # random init: no weights entry, no reference


def test_a_backbone_that_gives_no_features_is_named(candidates, plugin, recipe, cli):
    """A domain whose model nobody extracts features from."""
    from tl_core.components import ModelBundle

    class Opaque:
        @hookimpl(tryfirst=True)
        def tl_build_model(self, recipe, data):
            return ModelBundle(model=torch.nn.Linear(1, 1), backbone=None)

    plugin(Opaque(), "opaque")
    code, _, err = cli("diagnose", recipe)
    assert code == 2
    assert "backbone 'tiny' cannot give features for task 'image-classification'" in err
    assert "Traceback" not in err


def test_hook_tl_extract_features(candidates, plugin, recipe, cli):
    """A plugin that answers first is used (its features scored, its reference compared); one whose feature rows and
    labels disagree is refused in one line that names it."""
    calls = []

    class Mine:
        def __init__(self, rows: int | None = None) -> None:
            self.rows = rows

        @hookimpl(tryfirst=True)
        def tl_extract_features(self, recipe, model, data, progress):
            calls.append(recipe.backbone.weights)
            n = len(data.train) + len(data.val)
            labels = torch.tensor(list(data.train.labels) + list(data.val.labels))
            features = torch.nn.functional.one_hot(labels, 3).float() + 0.01 * torch.arange(n)[:, None]
            progress(n)
            return FeatureSet(features[: self.rows] if self.rows else features, labels=labels,
                              classes=data.classes, unit="things", reference=torch.zeros(4, 3),
                              reference_name="zeros")

    plugin(Mine(), "mine")
    code, out, _ = cli("diagnose", recipe, "--json")
    assert code == 0
    result = no_nan(out)
    assert calls == ["pretrained", "none"] and result["unit"] == "things"
    assert result["candidates"][0]["scores"]["knn_accuracy"] == 1.0
    assert result["candidates"][0]["shift"]["reference"] == "zeros"

    plugin(Mine(rows=5), "short")  # registered last, asked first
    code, _, err = cli("diagnose", recipe)
    assert code == 2 and "plugin 'short' broke the tl_extract_features contract" in err
    assert "labels must be 5 integers" in err and "Traceback" not in err


def test_an_unknown_candidate_is_one_line_with_the_nearest_name(candidates, recipe, cli):
    code, _, err = cli("diagnose", recipe, "--backbones", "tiny,tiny-damagd")
    assert code == 2 and "tiny-damagd" in err and "tiny-damaged" in err and "Traceback" not in err


def test_table_and_recommendation_in_words(candidates, recipe, cli):
    code, out, _ = cli("diagnose", recipe, "--backbones", "tiny,tiny-damaged")
    assert code == 0
    assert "30 images, 3 classes" in out and "recommendation" in out and "confidence" in out
    assert "tl run" in out and "--set backbone.name=tiny" in out
    assert not any(math.isnan(float(tok)) for tok in out.split() if tok.replace(".", "", 1).isdigit())


def test_the_core_backbones_carry_priors_and_the_reference():
    from tl_core.builtin.classification.backbones import BACKBONES
    from tl_core.weights import reference_folder

    entries = [e for spec in BACKBONES for e in spec.weights]
    assert all(e.source_accuracy is not None and 60 < e.source_accuracy < 90 for e in entries)
    folder = reference_folder(next(e for e in entries if e.reference))
    assert len(list(folder.glob("*.jpg"))) == 50
    assert (folder.parent / "README.txt").is_file()  # where each photograph comes from, and its licence



def test_random_features_beating_the_pre_trained_ones_recommend_scratch(candidates, plugin, recipe, cli):
    """A backbone without weights among the candidates, scoring above the damaged pre-trained one: scratch."""
    from dataclasses import replace

    from tl_core.plugins import registry

    bare = replace(registry("backbone").get("tiny"), name="tiny-random", weights=())

    class Bare:
        @hookimpl
        def tl_register_backbones(self, register):
            register(bare)

    plugin(Bare(), "bare")
    code, out, err = cli("diagnose", recipe, "--backbones", "tiny-damaged,tiny-random", "--json")
    assert code == 0, err
    result = no_nan(out)
    by_name = {c["backbone"]: c for c in result["candidates"]}
    assert by_name["tiny-random"]["weights"] == "none" and by_name["tiny-random"]["rank"] == 1
    advice = result["recommendation"]
    assert advice["backbone"] == "tiny-random" and advice["policy"] == "scratch"
    assert "has no pre-trained weights" in " ".join(advice["why"]) and "backbone.weights=none" in advice["set"]
