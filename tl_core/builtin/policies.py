"""The core's freeze policies (defined in :mod:`tl_core.policies`), registered like any plugin's."""

from __future__ import annotations

from typing import Any

from tl_core import hookimpl
from tl_core.policies import CORE_POLICIES


@hookimpl
def tl_register_policies(register: Any) -> None:
    for policy in CORE_POLICIES:
        register(policy)
