"""The tl-translation tests run offline, with their caches in a temporary folder (tl_core.testing's tl_env)."""

from __future__ import annotations

import os

import pytest

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


@pytest.fixture(autouse=True)
def tr_isolated(tl_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TL_PLUGINS", raising=False)
    monkeypatch.delenv("TL_DISABLE_PLUGINS", raising=False)
