"""One error hierarchy for everything a user can get wrong.

The CLI turns any :class:`TLError` into one line on stderr and exit code 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TLError(Exception):
    """A mistake the user can fix: the message names the problem and how to fix it."""


class RecipeError(TLError):
    """A recipe that does not validate: unknown key, wrong type, unknown registry name, bad ``--set``."""


class RegistryError(TLError):
    """An unknown or duplicate name in a registry."""


class WeightsError(TLError):
    """Weights that cannot be had or trusted: wrong sha256, refused pickle, offline with a URL-only entry."""


class DataError(TLError):
    """Data that cannot be used: missing path, empty data set, a class with no examples, undecodable files."""


class RunError(TLError):
    """A run directory that cannot be used: no checkpoint to resume, no report to read."""


class PluginError(TLError):
    """A plugin that broke the hook contract (an answer of the wrong shape): the message names the plugin and how to
    switch it off."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choices, or ``""`` when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
