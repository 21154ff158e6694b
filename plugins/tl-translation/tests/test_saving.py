"""``RUN/model`` (and ``RUN/adapter``) are durable before they are renamed into place: every file written in the
temporary folder, and the folder itself, is fsync'ed before the rename, and the run folder after it (a unit test of
the saving function on a tiny random model: no training)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest


class TinyTokenizer:
    """What ``save_model`` asks of a tokenizer: its length and ``save_pretrained`` (here with a nested folder)."""

    def __len__(self) -> int:
        return 32

    def save_pretrained(self, folder: str) -> None:
        folder = Path(folder)
        (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 32}))
        (folder / "extra").mkdir(exist_ok=True)
        (folder / "extra" / "vocab.txt").write_text("\n".join(f"t{i}" for i in range(32)))


def tiny_marian():
    import torch
    from transformers import MarianConfig, MarianMTModel

    torch.manual_seed(0)
    config = MarianConfig(vocab_size=32, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, max_position_embeddings=32,
                          pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return MarianMTModel(config)


def bundle_of(hf_model):
    from tl_translation.models import GenerationOptions, Translator

    return Translator(model=SimpleNamespace(backbone=hf_model), backbone=None, tokenizer=TinyTokenizer(),
                      generation=GenerationOptions(num_beams=1))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """Every ``os.fsync`` (as the synced file's (device, inode)) and every folder rename, in order."""
    seen: list[tuple] = []
    fsync, os_replace, path_replace = os.fsync, os.replace, Path.replace

    def record_fsync(fd: int) -> None:
        st = os.fstat(fd)
        seen.append(("fsync", (st.st_dev, st.st_ino)))
        fsync(fd)

    def record(src, dst) -> None:
        event = ("replace", Path(src), Path(dst))
        if not seen or seen[-1] != event:  # Path.replace calls os.replace: one rename
            seen.append(event)

    def record_os_replace(src, dst, *args, **kwargs):
        record(src, dst)
        return os_replace(src, dst, *args, **kwargs)

    def record_path_replace(self, target):
        record(self, target)
        return path_replace(self, target)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_os_replace)
    monkeypatch.setattr(Path, "replace", record_path_replace)
    return seen


def identity(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def assert_committed(events: list[tuple], target: Path) -> None:
    """Every file and folder of ``target`` was fsync'ed before the rename that made ``target``, and ``target``'s
    parent after it (a rename keeps a file's inode, so the moved files are the ones written)."""
    moves = [i for i, e in enumerate(events) if e[0] == "replace" and e[2] == target]
    assert len(moves) == 1, f"{target} was not moved into place once: {events}"
    before = {e[1] for e in events[:moves[0]] if e[0] == "fsync"}
    written = [target, *target.rglob("*")]
    assert len(written) > 4
    unsynced = [str(p.relative_to(target.parent)) for p in written if identity(p) not in before]
    assert not unsynced, f"not fsync'ed before the rename: {unsynced}"
    after = {e[1] for e in events[moves[0] + 1:] if e[0] == "fsync"}
    assert identity(target.parent) in after, "the rename itself was not made durable"


def test_the_saved_model_is_fsynced_before_it_is_renamed_into_place(events, tmp_path):
    from tl_translation.saving import save_model

    target = save_model(bundle_of(tiny_marian()), tmp_path)
    assert target == tmp_path / "model" and (target / "model.safetensors").is_file()
    assert (target / "extra" / "vocab.txt").is_file() and not (tmp_path / ".model.tmp").exists()
    assert_committed(events, target)


def test_the_adapter_and_the_merged_model_are_fsynced_before_they_are_renamed(events, tmp_path):
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    from tl_translation.saving import save_model

    model = get_peft_model(tiny_marian(), LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    save_model(bundle_of(model), tmp_path)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert_committed(events, tmp_path / "adapter")
    assert_committed(events, tmp_path / "model")
