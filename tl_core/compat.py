"""Where hook API 1.1 plugins found names that have moved since: still importable there, with a warning.

A module that lost names gives itself ``__getattr__ = moved(__name__, {name: new_module})``: importing a moved
name from the old place works, and warns with a :class:`DeprecationWarning` that says where the name lives now
(``tl_core.api`` declares every name a plugin may use); Python's warning filters show it once per place.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

MIGRATION = "docs/writing_plugins.md, 'Migrating from hook API 1.1'"


def moved(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving ``names`` (old name -> ``"new.module"`` or ``"new.module:new_name"``)."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, new_name = names[name].partition(":")
        new_name = new_name or name
        warnings.warn(
            f"{module}.{name} moved to {target}.{new_name} in tl hook API 2.0; import it from tl_core.api "
            f"({MIGRATION})", DeprecationWarning, stacklevel=2,
        )
        return getattr(importlib.import_module(target), new_name)

    return __getattr__
