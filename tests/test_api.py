"""The declared API: every name a plugin may use is in ``tl_core.api.__all__`` (or ``tl_core.__all__``), resolves,
and is documented; the bundled plugins and the ``tl new-plugin`` template import nothing else from ``tl_core``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import tl_core
from tl_core import api

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("docs/plugin_hooks.md", "docs/writing_plugins.md")
TEMPLATE = ROOT / "tl_core" / "plugin_template"


def plugin_sources() -> list[tuple[str, str]]:
    """``(name, source)`` of every module of the bundled plugins' packages and of the template (rendered)."""
    found = [(str(f.relative_to(ROOT)), f.read_text(encoding="utf-8"))
             for f in sorted(ROOT.glob("plugins/*/tl_*/**/*.py"))]
    for f in sorted(TEMPLATE.rglob("*.py.tmpl")):
        text = f.read_text(encoding="utf-8").replace("{{package}}", "tl_birds").replace("{{name}}", "birds")
        found.append((str(f.relative_to(ROOT)), text))
    return found


def core_imports(source: str) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` for every import from ``tl_core`` (module level, in functions, under
    ``TYPE_CHECKING``); ``name`` is ``"*module*"`` for ``import tl_core.x``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tl_core":
            found.extend((node.module, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((alias.name, "*module*", node.lineno) for alias in node.names
                         if alias.name.split(".")[0] == "tl_core")
    return found


def undeclared(source: str) -> list[str]:
    """What ``source`` takes from ``tl_core`` that is not declared: anything but ``tl_core.__all__`` and
    ``tl_core.api.__all__``."""
    declared = {"tl_core": set(tl_core.__all__), "tl_core.api": set(api.__all__)}
    return [f"line {line}: {module}.{name}" for module, name, line in core_imports(source)
            if name not in declared.get(module, ())]


def test_every_declared_name_resolves_and_none_is_private():
    assert set(api.__all__) == set(api.WHERE), "tl_core.api: __all__ and WHERE must name the same things"
    for name in api.__all__:
        assert not name.startswith("_"), name
        assert getattr(api, name) is not None, name
    assert set(tl_core.__all__) == {"HOOK_API_VERSION", "NAME", "__version__", "hookimpl", "hookspec"}
    with pytest.raises(AttributeError, match="the names a plugin may use are tl_core.api.__all__"):
        api.Trainer  # noqa: B018 - the trainer is the core's, not a plugin's


@pytest.mark.parametrize("name, source", plugin_sources(), ids=lambda v: v if v.endswith(("py", "tmpl")) else "")
def test_bundled_plugins_and_the_template_use_only_declared_names(name: str, source: str):
    assert not undeclared(source), f"{name} imports undeclared tl_core names: {undeclared(source)}"


def test_an_undeclared_or_private_import_is_caught():
    source = ("from tl_core.api import BackboneSpec\nfrom tl_core.weights import _package_file\n"
              "def f():\n    from tl_core.train import Trainer\n    import tl_core.plugins\n")
    assert undeclared(source) == ["line 2: tl_core.weights._package_file", "line 4: tl_core.train.Trainer",
                                  "line 5: tl_core.plugins.*module*"]


def test_every_declared_name_is_documented():
    """As datasette does for its internals: a declared name must appear (as `name`) in the plugin author's docs."""
    text = "\n".join((ROOT / doc).read_text(encoding="utf-8") for doc in DOCS)
    documented = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)", text))
    missing = [name for name in api.__all__ if name not in documented]
    assert not missing, f"declared in tl_core.api but not documented in {' or '.join(DOCS)}: {missing}"
