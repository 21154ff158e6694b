"""The core and every bundled plugin are layered: their modules import each other without a cycle, read from the
code (function-local imports count; ``if TYPE_CHECKING:`` blocks do not, they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = [ROOT / "tl_core", *sorted(p for p in (ROOT / "plugins").glob("*/tl_*") if (p / "__init__.py").is_file())]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.AST, me: str, is_package: bool) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` of every import that can run: module level and inside functions alike."""
    found: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the package the module is in
                base = me.split(".") if is_package else me.split(".")[:-1]
                module = ".".join(base[: len(base) - node.level + 1] + ([module] if module else []))
            found.append((module, [alias.name for alias in node.names], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports at run time."""
    files = {module_name(f, package.parent): f for f in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for module, file in files.items():
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
        for target, names, _ in runtime_imports(tree, module, file.name == "__init__.py"):
            for candidate in (target, *(f"{target}.{n}" for n in names)):
                # importing a submodule also runs its package's __init__, which is not a dependency worth a cycle
                if candidate in graph and candidate != module and not module.startswith(candidate + "."):
                    graph[module].add(candidate)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_runtime_import_cycle(package: Path) -> None:
    graph = import_graph(package)
    assert len(graph) > 3, f"{package}: no modules found"
    found = cycles(graph)
    assert not found, f"{package.name}: runtime import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle_made_by_a_function_local_import() -> None:
    graph = {"p.a": {"p.b"}, "p.b": set(), "p.c": set()}
    tree = ast.parse("def f():\n    from p.a import thing\n")
    graph["p.b"] = {t for t, _, _ in runtime_imports(tree, "p.b", False)}
    assert cycles(graph) == [["p.a", "p.b"]]
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.a import thing\n")
    assert [t for t, _, _ in runtime_imports(tree, "p.b", False)] == ["typing"]


HEAVY = {"torch", "torchvision", "timm", "accelerate", "safetensors", "matplotlib", "torchmetrics", "PIL", "numpy",
         "monai", "ultralytics", "transformers", "sentencepiece", "peft", "huggingface_hub", "pytest"}
# the core modules whose function-local imports of other core modules are deliberate, and why
DEFERRING = {
    "tl_core.cli": "each command imports its own work: tl --help and the listings load only what they use",
    "tl_core.testing": "a pytest plugin, loaded by every pytest session of the environment: fixtures import when used",
    "tl_core.conformance": "the conformance suite's checks import what each needs, as the fixtures do",
    "tl_core.builtin.classification.plugin": "a plugin module, imported by every tl command: hooks import when run",
    "tl_core.classifier": "hook API 1.1's names, served with a warning; the new homes are imported when asked for",
}


def module_level_imports(tree: ast.Module) -> list[str]:
    """The modules a module imports when it is imported (not in functions, not under TYPE_CHECKING)."""
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_imports_between_light_core_modules_are_at_module_level() -> None:
    """A function-local import inside the core is kept only where it defers something heavy (torch and the
    like, or a core module that imports them), or in a module that says why it defers (``DEFERRING``)."""
    package = ROOT / "tl_core"
    files = {module_name(f, ROOT): f for f in sorted(package.rglob("*.py"))}
    trees = {m: ast.parse(f.read_text(encoding="utf-8")) for m, f in files.items()}
    heavy: set[str] = set()
    changed = True
    while changed:  # a module is heavy when it imports a heavy library, or a heavy core module, on import
        changed = False
        for module, tree in trees.items():
            imported = module_level_imports(tree)
            if module not in heavy and any(i.split(".")[0] in HEAVY or i in heavy for i in imported):
                heavy.add(module)
                changed = True
    problems = []
    for module, tree in trees.items():
        if module in DEFERRING:
            continue
        for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tl_core":
                    targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
                    if not any(t in heavy for t in targets if t in trees):
                        problems.append(f"{module}:{node.lineno} imports {node.module} inside {function.name}()")
    assert not problems, "light core modules imported in functions; import them at the top: " + "; ".join(problems)
