"""The tl-translation tests run offline, with Hugging Face, matplotlib and tl caches in a temporary folder."""

from __future__ import annotations

import os

import pytest

os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


@pytest.fixture(autouse=True)
def tr_isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.getbasetemp() / "home"
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("MPLCONFIGDIR", str(home / "mpl"))
    monkeypatch.setenv("TL_CACHE_DIR", str(home / "tl-cache"))
    monkeypatch.delenv("TL_PLUGINS", raising=False)
    monkeypatch.delenv("TL_DISABLE_PLUGINS", raising=False)
