"""Run every benchmark, one process at a time (two torch processes at once oversubscribe the cores)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in ("bench_cli.py", "bench_finetune.py", "bench_frozen.py", "bench_medical.py", "bench_driving.py",
               "bench_diagnose.py"):  # the last takes about an hour
    print(f"== {script}", flush=True)
    subprocess.run([sys.executable, str(HERE / script)], check=True, cwd=HERE)
