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


def test_every_hook_section_says_when_what_kind_and_shows_an_example():
    """Each hook's section: **When:** it is called, **Kind:** (firstresult exactly for the firstresult hooks), and
    an example implementation after the signature block."""
    import re

    doc = (ROOT / "docs" / "plugin_hooks.md").read_text(encoding="utf-8")
    sections = dict(zip(*[iter(re.split(r"\n## (tl_\w+)\n", doc)[1:])] * 2, strict=True))
    problems = []
    for name in hook_names():
        body = sections.get(name, "")
        firstresult = bool(getattr(getattr(hookspecs, name), "tl_spec", {}).get("firstresult"))
        kind = re.search(r"\*\*Kind:\*\*([^.]*)", body)
        if "**When:**" not in body or kind is None:
            problems.append(f"{name}: no **When:** or **Kind:**")
        elif ("firstresult" in kind.group(1)) != firstresult:
            problems.append(f"{name}: **Kind:** must {'' if firstresult else 'not '}say firstresult")
        if body.count("```python") < 2:
            problems.append(f"{name}: an example implementation (a second ```python block) is missing")
    assert not problems, "docs/plugin_hooks.md: " + "; ".join(problems)
