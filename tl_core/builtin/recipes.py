"""The core's recipes, shipped as package data: ``vision/linear-probe`` and ``vision/fine-tune``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_core import hookimpl
from tl_core.components import RecipeSource

HERE = Path(__file__).parent / "recipes"


@hookimpl
def tl_register_recipes(register: Any) -> None:
    for path in sorted(HERE.glob("*/*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0]
        description = first.lstrip("# ").strip() if first.startswith("#") else ""
        register(RecipeSource(f"{path.parent.name}/{path.stem}", path, description))
