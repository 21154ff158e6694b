"""The plugin that docs/writing_plugins.md builds must work as the page says.

The page's plugin module and recipe are taken from the page itself (the blocks marked
``<!-- example: PATH -->``), written out as a package in a temporary folder, imported and registered in-process.
Nothing trains: the backbone runs one forward pass on a tiny batch.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "writing_plugins.md"
PLUGIN, RECIPE = "tl_example/plugin.py", "tl_example/recipes/example/tiny.yaml"
# the marker line, then one fenced block (any language) directly after it
EXAMPLE = re.compile(r"^<!-- example: (?P<path>\S+) -->\n```[a-z]*\n(?P<code>.*?)^```$", re.M | re.S)


def doc_examples() -> dict[str, str]:
    found: dict[str, str] = {}
    for match in EXAMPLE.finditer(DOC.read_text(encoding="utf-8")):
        assert match["path"] not in found, f"{DOC.name}: two example blocks for {match['path']}"
        found[match["path"]] = match["code"]
    return found


def write_package(root: Path) -> None:
    examples = doc_examples()
    assert set(examples) == {PLUGIN, RECIPE}, f"{DOC.name}: example blocks found: {sorted(examples)}"
    for rel, code in examples.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(code, encoding="utf-8")
    (root / "tl_example" / "__init__.py").write_text("", encoding="utf-8")


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_package(tmp_path / "pkg")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("tl_example.plugin")
    finally:
        # forget the module: another test's tmp_path holds another copy
        for name in [n for n in sys.modules if n == "tl_example" or n.startswith("tl_example.")]:
            del sys.modules[name]


def test_docs_example_plugin_registers_backbone_policy_and_recipe(example_module, tmp_path: Path):
    import torch

    from tl_core.components import RecipeSource
    from tl_core.plugins import plugins, register_plugin, registry, unregister_plugin
    from tl_core.policies import GroupState, group_parameters
    from tl_core.recipe import load_recipe

    register_plugin(example_module, "example")
    try:
        info = {p.name: p for p in plugins()}["example"]  # plugins() also fills every registry
        assert info.status == "loaded", info.reason
        assert set(info.hooks) == {"tl_register_backbones", "tl_register_policies", "tl_register_recipes"}

        backbones = registry("backbone")
        assert "tinynet" in backbones and backbones.owner("tinynet") == "example"
        spec = backbones.get("tinynet")
        assert [e.source for e in spec.weights] == ["file"]
        module = spec.factory()
        with torch.no_grad():
            features = module.eval()(torch.zeros(2, spec.input.channels, 16, 16))
        assert features.shape == (2, spec.feature_dim)
        split = group_parameters(module, spec.layer_groups)  # raises for a parameter in no group or in two
        assert all(split), "a layer group owns no parameter"
        assert sum(len(params) for params in split) == len(list(module.parameters()))

        policy_cls = registry("policy").get("top-only")
        assert registry("policy").owner("top-only") == "example"
        states = policy_cls().plan(len(spec.layer_groups), 0, 10)
        assert len(states) == len(spec.layer_groups)
        assert all(isinstance(s, GroupState) for s in states)
        assert [s.trainable for s in states] == [False] * (len(states) - 1) + [True]
        assert [s.bn for s in states if not s.trainable] == ["freeze"] * (len(states) - 1)

        source = registry("recipe").get("example/tiny")
        assert isinstance(source, RecipeSource) and source.path.is_file() and source.description
        data = tmp_path / "images"
        data.mkdir()
        recipe = load_recipe("example/tiny", [f"data.path={data}"])
        assert recipe.task == "image-classification"
        assert (recipe.backbone.name, recipe.head.name, recipe.policy.name) == ("tinynet", "linear", "top-only")
        assert (recipe.data.format, recipe.data.path) == ("image-folder", str(data))
    finally:
        unregister_plugin("example")
    assert "tinynet" not in registry("backbone")


def test_docs_example_plugin_imports_without_torch(tmp_path: Path):
    """The page says the module is cheap to import; a fresh interpreter proves torch stays out."""
    write_package(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    code = "import sys, tl_example.plugin; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_docs_pyproject_declares_the_entry_point():
    doc = DOC.read_text(encoding="utf-8")
    assert '[project.entry-points.tl]\nexample = "tl_example.plugin"' in doc
    assert 'tl_example = ["recipes/*/*.yaml"]' in doc  # without it the installed package has no recipe
