"""Meta-tests (as datasette does): every hook has a heading with its exact signature in docs/plugin_hooks.md,
and a test named test_hook_<name>."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from tl_core import hookspecs

ROOT = Path(__file__).resolve().parent.parent


def hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("tl_")]


def signature(name: str) -> str:
    """``name(param: Annotation, ...) -> Return``, annotations as written in hookspecs.py."""
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def test_every_hook_is_documented_with_its_exact_signature():
    doc = (ROOT / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    problems = []
    for name in hook_names():
        if f"\n## {name}\n" not in doc:
            problems.append(f"no '## {name}' heading")
        elif signature(name) not in doc:
            problems.append(f"{name}: signature must read exactly `{signature(name)}`")
    assert not problems, "docs/plugin_hooks.md: " + "; ".join(problems)


def test_docs_name_no_hook_that_does_not_exist():
    doc = (ROOT / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    documented = {line[3:].strip() for line in doc.splitlines() if line.startswith("## tl_")}
    assert documented == set(hook_names())


def test_every_hook_has_a_test():
    tests = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        tests |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    missing = [n for n in hook_names() if not any(t == f"test_hook_{n}" or t.startswith(f"test_hook_{n}_")
                                                 for t in tests)]
    assert not missing, f"hooks without a test_hook_<name> test: {missing}"
