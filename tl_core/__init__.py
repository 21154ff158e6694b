"""tl: transfer learning with pre-trained backbones, freeze policies and honest reports.

A plugin needs only ``from tl_core import hookimpl``.
"""

from __future__ import annotations

import pluggy

NAME = "tl"
"""The pluggy project name, the hook marker and the entry-point group."""

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker(NAME)
hookspec = pluggy.HookspecMarker(NAME)

__all__ = ["NAME", "__version__", "hookimpl", "hookspec"]
