"""Start-up: ``tl plugins --json`` (every installed plugin loaded and its registrations run) side by side with what
the command line is made of, in the same run, median wall time of separate processes:

- ``import typer, rich, pydantic, pluggy, yaml``: the libraries the CLI is made of, imported (the issue's baseline);
- a bare typer CLI whose one command takes ``--json`` and prints ``[]``: those libraries as a CLI uses them (typer
  parses its options with pydantic, which imports the rest of pydantic);
- ``python -c pass``.

Python writes bytecode caches here as it does on a user's machine (``PYTHONDONTWRITEBYTECODE`` is unset for the
timed processes, and each command runs once before timing): without them every run would compile tl's sources and
measure the compiler. The commands take turns, round after round, so that a slower moment of the machine slows them
all alike.

``--old DIR`` adds ``tl plugins --json`` of another checkout of tl (e.g. ``git worktree add /tmp/tl-old <commit>``),
its core and plugins imported from DIR instead of the installed ones, with the same libraries and plugins.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TL = str(Path(sys.executable).with_name("tl"))
OLD = '''
import sys

# the installed tl's editable finders would win over PYTHONPATH: take them out
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]
sys.argv = ["tl", "plugins", "--json"]
from tl_core.cli import main

main()
'''
BARE = '''
import json
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def plugins(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    print(json.dumps([]))


@app.command()
def other() -> None:
    pass


app(["plugins", "--json"])
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--old", type=Path, help="another checkout of tl, timed side by side")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"COLUMNS": "200"}
    work = Path(tempfile.mkdtemp(prefix="tl-bench-cli-"))
    (work / "bare_cli.py").write_text(BARE)
    (work / "old_cli.py").write_text(OLD)
    libraries = "import typer, rich, pydantic, pluggy, yaml"
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        libraries: [sys.executable, "-c", libraries],
        "bare typer CLI, one --json command": [sys.executable, str(work / "bare_cli.py")],
        "tl plugins --json": [TL, "plugins", "--json"],
        "tl backbones --json": [TL, "backbones", "--json"],
    }
    envs = {name: env for name in commands}
    if args.old:
        old = args.old.resolve()
        name = f"tl plugins --json of {old}"
        commands[name] = [sys.executable, str(work / "old_cli.py")]
        path = [str(old), *(str(p) for p in sorted((old / "plugins").glob("tl-*")))]
        envs[name] = env | {"PYTHONPATH": os.pathsep.join(path)}

    def run(name: str) -> float:
        start = time.perf_counter()
        subprocess.run(commands[name], check=True, capture_output=True, env=envs[name])
        return time.perf_counter() - start

    for name in commands:  # bytecode caches written, file-system cache warm
        run(name)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name in commands:
            samples[name].append(run(name))
    times = {name: statistics.median(values) for name, values in samples.items()}
    libs, cli, tl = times[libraries], times["bare typer CLI, one --json command"], times["tl plugins --json"]
    for name, t in times.items():
        print(f"{name:45s} {t:6.3f} s")
    print(f"tl plugins --json / import of the CLI's libraries   {tl / libs:5.2f}x   (target <= 1.5x)")
    print(f"tl plugins --json / a bare typer CLI                {tl / cli:5.2f}x")
    print(f"a bare typer CLI / import of the CLI's libraries    {cli / libs:5.2f}x   (typer's own parse-time imports)")
    if args.old:
        print(f"tl plugins --json of {args.old} / import of the CLI's libraries   "
              f"{times[f'tl plugins --json of {args.old.resolve()}'] / libs:5.2f}x")
    print(f"median of {args.repeats} runs each, {len(os.sched_getaffinity(0))} CPUs")


if __name__ == "__main__":
    main()
