"""tl: transfer learning with pre-trained backbones, freeze policies and honest reports.

A plugin implements hooks with ``from tl_core import hookimpl`` and uses the names :mod:`tl_core.api` declares.
"""

from __future__ import annotations

import pluggy

NAME = "tl"
"""The pluggy project name, the hook marker and the entry-point group."""

__version__ = "0.2.0"

HOOK_API_VERSION = "2.1"
"""The version of the hook API: the hooks in :mod:`tl_core.hookspecs`, what they pass and expect, and the names
:mod:`tl_core.api` declares. The minor number grows when hooks or names are added (1.1: ``tl_evaluate_run``; 2.1:
``tl_extract_features`` and ``FeatureSet``), the major when something changes incompatibly (2.0: the declared API,
names moved, ``tl_evaluate`` gets the options, ``tl_conformance_smoke`` is a hook). A plugin states the versions it
works with as a module attribute, e.g. ``TL_HOOK_API = ">=2.0,<3"``; a plugin whose range leaves this version out is
skipped, with the reason in ``tl plugins`` - unless it was written for an older version this tl still runs (1.0,
1.1), which loads with a deprecation warning."""

hookimpl = pluggy.HookimplMarker(NAME)
hookspec = pluggy.HookspecMarker(NAME)

__all__ = ["HOOK_API_VERSION", "NAME", "__version__", "hookimpl", "hookspec"]
