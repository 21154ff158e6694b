"""docs/writing_plugins.md must work as the page says, every code block of it.

The page marks its blocks for this test with HTML comments (invisible when rendered):

- ``<!-- tutorial: layout -->``: the folder tree, checked against the files the page writes;
- ``<!-- tutorial: file PATH -->``: a file the reader writes, at PATH relative to the working folder;
- ``<!-- tutorial: in PATH -->``: a snippet that must appear in that file as the page writes it.

Unmarked ``sh`` blocks are commands and unmarked blocks that start with ``$ `` are transcripts: the walkthrough
runs each command, in page order, in a fresh virtual environment that sees this one's packages, with
``pip install -e`` as the page says, and each line of a transcript must match the real output (``...`` stands for
anything). A block of any other kind fails the test, so a new block cannot go untested.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "writing_plugins.md"
PACKAGE = "tl-example"
PLUGIN, RECIPE = "tl-example/tl_example/plugin.py", "tl-example/tl_example/recipes/example/tiny.yaml"
FENCE = re.compile(r"(?:^<!-- tutorial: (?P<marker>[^>]*?) -->\n)?^```(?P<lang>[a-z]*)\n(?P<code>.*?)^```$",
                   re.M | re.S)
BOX = re.compile(r"[│┃]")


@dataclass
class Block:
    line: int  # where the block starts on the page, for messages
    marker: str
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{DOC.name}:{self.line}"


def blocks() -> list[Block]:
    text = DOC.read_text(encoding="utf-8")
    return [Block(text.count("\n", 0, m.start()) + 1, m["marker"] or "", m["lang"], m["code"])
            for m in FENCE.finditer(text)]


def page_files() -> dict[str, str]:
    """The files the page writes, PATH -> text; ``empty`` entries of the layout are empty files."""
    files: dict[str, str] = {}
    for block in blocks():
        if block.marker.startswith("file "):
            path = block.marker.removeprefix("file ")
            assert path not in files, f"{block.where}: a second block for {path}"
            files[path] = block.code
        elif block.marker == "layout":
            for path, note in layout(block.code).items():
                if note == "empty":
                    files.setdefault(path, "")
    return files


def layout(tree: str) -> dict[str, str]:
    """The files of an indented tree (folders end with /), as PATH -> the note after the name."""
    found: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in tree.splitlines():
        indent = len(line) - len(line.lstrip())
        name, _, note = line.strip().partition(" ")
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = "/".join([p for _, p in parents] + [name.rstrip("/")])
        if name.endswith("/"):
            parents.append((indent, name.rstrip("/")))
        else:
            found[path] = note.strip()
    return found


def write_files(root: Path) -> None:
    for rel, text in page_files().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- the plugin module and recipe, in-process


@pytest.fixture
def example_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_files(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / PACKAGE))
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
    write_files(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / PACKAGE), str(ROOT)])}
    code = "import sys, tl_example.plugin; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_every_block_of_the_page_is_one_this_test_handles():
    files = page_files()
    for block in blocks():
        marker = block.marker
        if marker == "layout":
            assert set(layout(block.code)) == set(files), f"{block.where}: the layout lists other files than the page"
        elif marker.startswith("in "):
            path = marker.removeprefix("in ")
            assert block.code in files[path], f"{block.where}: this snippet is not in {path} as the page writes it"
        else:
            handled = marker.startswith("file ") or (not marker and block.lang == "sh") or (
                not marker and not block.lang and block.code.startswith("$ "))
            assert handled, f"{block.where}: a ```{block.lang} block the tutorial test does not run; mark it"
    assert {PLUGIN, RECIPE, "tl-example/pyproject.toml"} <= set(files)


# ---------------------------------------------------------------- the whole page, in a fresh environment


def cells(line: str) -> list[str]:
    """A line of real output as cells: a table row's cells, else the line."""
    return [c.strip() for c in BOX.split(line) if c.strip()]


def shown(line: str) -> list[str]:
    """A transcript line of the page as cells (two or more spaces apart); a cell ending in ``...`` is a prefix."""
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]


def row_matches(expected: list[str], actual: list[str]) -> bool:
    """The page's cells appear in the real row in order, some columns left out."""
    rest = iter(actual)
    for cell in expected:
        prefix = cell.endswith("...")
        want = cell.removesuffix("...").rstrip()
        if not any((got.startswith(want) if prefix else got == want) for got in rest):
            return False
    return True


def check_transcript(expected: str, output: str, where: str) -> None:
    lines = output.splitlines()
    at = 0
    for line in expected.splitlines():
        if not line.strip() or line.strip() == "...":
            continue
        want = shown(line)
        for i in range(at, len(lines)):
            if row_matches(want, cells(lines[i])):
                at = i + 1
                break
        else:
            pytest.fail(f"{where}: no line of the output (after line {at}) matches {line.strip()!r}:\n{output}")


class Reader:
    """Someone following the page: a working folder and a virtual environment of their own."""

    def __init__(self, work: Path):
        self.work = work
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        self.python = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
        purelib = subprocess.run([self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        # the new environment sees this one's packages (tl-core, torch, pytest, pip) without copying them
        lines = [f"import site; site.addsitedir({p!r})" for p in site.getsitepackages()]
        Path(purelib, "_tl_parent.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.env = {**os.environ, "HOME": str(work / "home"), "USERPROFILE": str(work / "home"), "COLUMNS": "500"}
        for var in ("TL_PLUGINS", "TL_DISABLE_PLUGINS", "PYTHONPATH"):  # entry-point plugins load as for a user
            self.env.pop(var, None)

    def argv(self, words: list[str]) -> list[str]:
        program, *args = words
        if program == "tl":
            return [self.python, "-m", "tl_core.cli", *args]
        if program == "python":
            return [self.python, *args]
        if program == "pytest":
            return [self.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
        if program == "pip" and args[:1] == ["install"]:
            # offline, with the build backend this environment already has
            return [self.python, "-m", "pip", "install", "--quiet", "--no-index", "--no-build-isolation", *args[1:]]
        raise AssertionError(f"the tutorial test does not know how to run {program!r}")

    def run(self, command: str, where: str) -> str:
        """Run one command line of the page (``A && B``, ``VAR=value cmd`` and ``# comments`` allowed)."""
        out = ""
        for part in command.split("&&"):
            words = shlex.split(part, comments=True)
            env = dict(self.env)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            proc = subprocess.run(self.argv(words), cwd=self.work, env=env, capture_output=True, text=True,
                                  timeout=900)
            assert proc.returncode == 0, (f"{where}: `{part.strip()}` exited {proc.returncode}:\n"
                                          f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            out += proc.stdout
        return out


def paste_digest(reader: Reader, output: str) -> None:
    """Step 5 asks the reader to paste the printed digest into WEIGHTS_SHA256."""
    digest = output.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", digest), f"make_weights.py printed {output!r}, not a sha256"
    plugin = reader.work / PLUGIN
    text = plugin.read_text(encoding="utf-8")
    assert "WEIGHTS_SHA256: str | None = None" in text
    plugin.write_text(text.replace("WEIGHTS_SHA256: str | None = None", f'WEIGHTS_SHA256 = "{digest}"'),
                      encoding="utf-8")


def both_runs_reported(reader: Reader, output: str) -> None:
    """Step 6: the report holds the pre-trained run's and the from-scratch run's metrics side by side."""
    report = json.loads((reader.work / "runs" / "tiny" / "report.json").read_text(encoding="utf-8"))
    assert "accuracy" in report["metrics"]["test"] and "accuracy" in report["scratch"]["metrics"]["test"]


# what the prose asks of the reader after a command, or says happens, beyond the command's own exit code
AFTER = {
    "python tl-example/make_weights.py": paste_digest,
    "tl run example/tiny": both_runs_reported,
}


def test_the_tutorial_runs_from_start_to_finish(tmp_path: Path):
    reader = Reader(tmp_path)
    write_files(tmp_path)
    done: set[str] = set()
    for block in blocks():
        if block.lang == "sh" and not block.marker:
            for command in filter(str.strip, block.code.splitlines()):
                output = reader.run(command, block.where)
                for start, then in AFTER.items():
                    if command.startswith(start):
                        then(reader, output)
                        done.add(start)
        elif not block.lang and block.code.startswith("$ "):
            for chunk in re.split(r"^\$ ", block.code, flags=re.M)[1:]:
                command, _, expected = chunk.partition("\n")
                check_transcript(expected, reader.run(command, block.where), f"{block.where} `{command}`")
    assert done == set(AFTER), f"the page no longer runs {sorted(set(AFTER) - done)}"

    # what the page says once the digest is pasted: a changed weights file is refused, in one line
    weights = tmp_path / "home" / ".cache" / "tl-example" / "tinynet-pretrained.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")
    proc = subprocess.run(reader.argv(["tl", "run", "example/tiny", "--set", "data.path=data/digits/train",
                                       "--out", "runs/tampered"]),
                          cwd=tmp_path, env=reader.env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "sha256" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "runs" / "tampered" / "report.json").exists()


def test_a_transcript_must_match_the_real_table():
    """The transcript check reads rich tables cell by cell: a wrong number or a missing row fails it."""
    output = "\n".join([
        "┃ group  ┃ prefixes ┃ parameters ┃ trainable ┃",
        "│ stem   │ stem     │ 464        │ False     │",
        "│ stage2 │ stage2   │ 18560      │ True      │",
        "trainable 18,690 / 23,826 parameters (5,136 frozen)",
    ])
    check_transcript(" group  parameters\n stem  464  False\n ...\n stage2  18560\ntrainable 18,690 / 23,826 ...",
                     output, "ok")
    for wrong in (" stem  465", " stage2  18560\n stem  464", " head  130", " stem  46...  True  x"):
        with pytest.raises(pytest.fail.Exception):
            check_transcript(wrong, output, "wrong")
