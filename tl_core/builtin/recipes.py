"""The core's recipes, shipped as package data: ``vision/linear-probe`` and ``vision/fine-tune``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tl_core import hookimpl
from tl_core.components import recipes_in

HERE = Path(__file__).parent / "recipes"


@hookimpl
def tl_register_recipes(register: Any) -> None:
    for source in recipes_in(HERE):
        register(source)
