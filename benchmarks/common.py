"""Shared set-up for the benchmarks: the digits image folder, the environment, timing helpers."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("TL_BENCH_DIR") or tempfile.mkdtemp(prefix="tl-bench-"))
WORK.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("TL_CACHE_DIR", str(WORK / "cache"))
os.environ.setdefault("MPLCONFIGDIR", str(WORK / "mpl"))
os.environ.setdefault("HF_HOME", str(WORK / "hf"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def digits(per_class: int, test_per_class: int = 0) -> Path:
    """scikit-learn's real handwritten digits as an image folder (written once per benchmark directory)."""
    from tl_core.sample_data import write_digits

    out = WORK / f"digits-{per_class}-{test_per_class}"
    if not out.exists():
        write_digits(out, per_class, test_per_class)
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn: Callable[[], object], repeats: int) -> float:
    return statistics.median(timed(fn) for _ in range(repeats))
