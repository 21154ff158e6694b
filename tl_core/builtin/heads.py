"""Hook API 1.1's built-in heads. They are the image-classification plugin's now
(:mod:`tl_core.builtin.classification.heads`); the old names still import from here, with a
:class:`DeprecationWarning`."""

from __future__ import annotations

from tl_core.compat import moved

__getattr__ = moved(__name__, dict.fromkeys(("LinearOptions", "MLPOptions", "linear", "mlp"),
                                            "tl_core.builtin.classification.heads"))
