"""`tl new-plugin NAME` writes a distribution that installs, is listed by `tl plugins`, runs its recipe, and passes
its own tests and tl's conformance suite as generated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """tl-birds, generated, then installed with pip into a folder of its own (not into this environment)."""
    from tl_core.scaffold import new_plugin

    root = tmp_path_factory.mktemp("new-plugin")
    source = new_plugin("birds", root)
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(source)], check=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "TL_PLUGINS": "birds"}
    return source, env


def tl(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tl_core.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd)


def test_new_plugin_writes_a_complete_distribution(generated):
    source, _ = generated
    for rel in ("pyproject.toml", "README.md", "tl_birds/__init__.py", "tl_birds/plugin.py",
                "tl_birds/recipes/birds/tiny.yaml", "tests/test_plugin.py"):
        assert (source / rel).is_file(), rel
    text = (source / "pyproject.toml").read_text()
    assert 'name = "tl-birds"' in text and 'birds = "tl_birds.plugin"' in text
    assert "{{" not in "".join(p.read_text() for p in source.rglob("*") if p.is_file())


def test_the_installed_plugin_is_listed_and_its_recipe_runs(generated, tmp_path):
    from tl_core.testing import write_image_folder

    _, env = generated
    listed = tl(env, "plugins", "--json")
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows["birds"]["status"] == "loaded" and rows["birds"]["distribution"] == "tl-birds"
    images = write_image_folder(tmp_path / "images", per_class=8)
    run = tl(env, "run", "birds/tiny", "--out", tmp_path / "run", "--set", f"data.path={images}",
             "--set", "train.epochs=1", "--set", "train.device=cpu", "--quiet")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["recipe"]["policy"]["name"] == "birds-top-only"


def test_its_tests_and_the_conformance_suite_pass_as_generated(generated):
    source, env = generated
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source / "tests")],
                           capture_output=True, text=True, env=env, cwd=source)
    assert tests.returncode == 0, tests.stdout[-3000:]
    conformance = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                  "--tl-conformance=birds"], capture_output=True, text=True, env=env, cwd=source)
    assert conformance.returncode == 0, conformance.stdout[-3000:]
    assert "failed" not in conformance.stdout


def test_a_bad_name_or_an_existing_folder_is_one_clear_line(cli, tmp_path):
    code, _, err = cli("new-plugin", "Birds!", "--dir", tmp_path)
    assert code == 2 and "use lowercase letters" in err and not any(tmp_path.iterdir())
    assert cli("new-plugin", "owls", "--dir", tmp_path)[0] == 0
    code, _, err = cli("new-plugin", "owls", "--dir", tmp_path)
    assert code == 2 and "already exists" in err
