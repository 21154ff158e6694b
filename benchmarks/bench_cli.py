"""``tl plugins`` wall time (target <= 0.5 s), next to a bare ``python -c pass`` in the same run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from common import median_time

TL = str(Path(sys.executable).with_name("tl"))


def main() -> None:
    env = {**os.environ, "COLUMNS": "200"}

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, env=env)

    run(TL, "plugins")  # warm the file-system cache
    t_python = median_time(lambda: run(sys.executable, "-c", "pass"), 7)
    t_plugins = median_time(lambda: run(TL, "plugins"), 7)
    t_backbones = median_time(lambda: run(TL, "backbones", "--json"), 7)
    print(f"python -c pass        {t_python:6.3f} s")
    print(f"tl plugins            {t_plugins:6.3f} s   {t_plugins / t_python:5.1f}x bare python   (target <= 0.5 s)")
    print(f"tl backbones --json   {t_backbones:6.3f} s   {t_backbones / t_python:5.1f}x bare python")


if __name__ == "__main__":
    main()
