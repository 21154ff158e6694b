"""tl: transfer learning with pre-trained backbones, freeze policies and honest reports.

A plugin needs only ``from tl_core import hookimpl``.
"""

from __future__ import annotations

import pluggy

NAME = "tl"
"""The pluggy project name, the hook marker and the entry-point group."""

__version__ = "0.1.0"

HOOK_API_VERSION = "1.1"
"""The version of the hook API (the hooks in :mod:`tl_core.hookspecs` and what they pass and expect). The minor
number grows when hooks are added (1.1: ``tl_evaluate_run``), the major when a hook changes incompatibly. A plugin
states the versions it works with as a module attribute, e.g. ``TL_HOOK_API = ">=1.0,<2"``; a plugin whose range
leaves this version out is skipped, with the reason in ``tl plugins``."""

hookimpl = pluggy.HookimplMarker(NAME)
hookspec = pluggy.HookspecMarker(NAME)

__all__ = ["HOOK_API_VERSION", "NAME", "__version__", "hookimpl", "hookspec"]
