"""``tl evaluate RUN --data PATH``: score a finished run on new data, by whichever plugin answers for its task
(``tl_evaluate_run``), and write the result to ``RUN/evaluations/<name>.json``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tl_core.errors import RunError, TLError
from tl_core.files import write_json
from tl_core.plugins import hook
from tl_core.recipe import is_named_data
from tl_core.report import read_report


def evaluate_run(run_dir: Path, data_path: str) -> dict[str, Any]:
    """The answer of the plugin that scores runs of this run's task, with the resolved data path; written to
    ``RUN/evaluations/<data name>.json``."""
    report = read_report(run_dir)
    if not is_named_data(data_path) and not Path(data_path).exists():
        raise RunError(f"--data {data_path} does not exist; give data in the run's format "
                       f"({report['recipe']['data'].get('format', 'its data format')})")
    task = (report.get("recipe") or {}).get("task")
    answer = hook().tl_evaluate_run(run_dir=run_dir, report=report, data=data_path)
    if answer is None:
        raise TLError(f"{run_dir} is a {task!r} run and no installed plugin scores such runs; install the plugin of "
                      "that task")
    result = {"data": str(Path(data_path).resolve()), **answer}
    name = re.sub(r"[^\w.-]+", "_", Path(data_path).resolve().name) or "data"
    write_json(run_dir / "evaluations" / f"{name}.json", result)
    return result
