"""Every user mistake of the core issue's list: one clear line on stderr, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_recipe
from test_weights import Evil


def setup_case(case: str, tmp_path: Path, images: Path) -> tuple[dict, list[str]]:
    """Raw recipe data and extra CLI arguments that produce the mistake ``case``."""
    data = tiny_recipe(images)
    args: list[str] = []
    if case == "unknown key":
        data["train"]["epoch"] = 3
    elif case == "wrong type":
        data["train"]["batch_size"] = "big"
    elif case == "unknown backbone":
        data["backbone"] = {"name": "resnet19"}
    elif case == "unknown policy":
        data["policy"] = {"name": "freeze-all"}
    elif case == "unknown head":
        data["head"] = {"name": "linaer"}
    elif case == "missing data path":
        data["data"]["path"] = str(tmp_path / "no-such-folder")
    elif case == "empty data set":
        (tmp_path / "empty").mkdir()
        data["data"]["path"] = str(tmp_path / "empty")
    elif case == "class with no images":
        (images / "class_9").mkdir()
    elif case == "wrong sha256":
        fake = tmp_path / "resnet18-f37072fd.pth"
        torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, fake)
        data["backbone"] = {"name": "resnet18", "weights": str(fake)}
    elif case == "pickle refused":
        evil = tmp_path / "evil.pt"
        torch.save({"w": torch.zeros(1), "x": Evil(f"touch {tmp_path / 'pwned'}")}, evil)
        data["backbone"]["weights"] = str(evil)
    elif case == "offline url weights":
        data["backbone"] = {"name": "resnet18", "weights": "imagenet"}
    elif case == "set unknown key":
        args = ["--set", "train.epohcs=3"]
    elif case == "resume without checkpoint":
        args = ["--resume"]
    elif case == "cuda without gpu":
        data["train"]["device"] = "cuda"
    return data, args


CASES = {
    "unknown key": r"unknown key 'train.epoch' \(did you mean 'epochs'\?\)",
    "wrong type": r"train.batch_size: .*integer.*'big'",
    "unknown backbone": r"unknown backbone 'resnet19' \(did you mean 'resnet18'",
    "unknown policy": r"unknown policy 'freeze-all' \(did you mean 'freeze-first'",
    "unknown head": r"unknown head 'linaer' \(did you mean 'linear'",
    "missing data path": r"no-such-folder does not exist or is not a folder",
    "empty data set": r"empty: no class sub-folders",
    "class with no images": r"class 'class_9' has no images",
    "wrong sha256": r"resnet18-f37072fd.pth has sha256 .*expected f37072fd",
    "pickle refused": r"refused to load .*evil.pt.*weights_only=True",
    "offline url weights": r"cannot download https://download.pytorch.org/models/resnet18-f37072fd.pth.*"
                           r"--set backbone.weights=/path/to/resnet18-f37072fd.pth",
    "set unknown key": r"--set train.epohcs: no such recipe key \(did you mean 'train.epochs'",
    "resume without checkpoint": r"--resume: no checkpoint in .*; start the run without --resume",
    "cuda without gpu": r"train.device is 'cuda' but no CUDA device is visible",
}


@pytest.mark.parametrize("case", CASES)
def test_user_error_is_one_line_exit_2_and_nothing_written(case, tiny_plugin, image_folder, write_recipe, cli,
                                                           tmp_path):
    if case == "cuda without gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    data, args = setup_case(case, tmp_path, image_folder)
    out = tmp_path / "run"
    code, stdout, stderr = cli("run", write_recipe(data), "--out", out, *args)
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    import re

    assert re.search(CASES[case], lines[0]), lines[0]
    assert not out.exists()  # nothing half-written
    assert not (tmp_path / "pwned").exists()


def test_usage_errors_of_the_command_line_exit_2(cli):
    code, _, stderr = cli("run")
    assert code == 2 and "Missing argument" in stderr
