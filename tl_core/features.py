"""The feature cache: when the backbone is frozen and nothing random lies between the data and the backbone,
its features are computed once, stored on disk, and the head trains on them.

The key is a hash of the data (file contents, or the bytes of in-memory items, and labels), the weights (their
sha256), the backbone and the preprocessing (a data format's own transforms included), so any change to one of
them computes the features again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tl_core.weights import cache_dir

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tl_core.data import Samples

VERSION = 1  # bump when the way features are computed changes


def cache_key(backbone: str, weights: str, preprocessing: dict[str, Any], samples: Samples) -> str:
    """The cache key of one split's features."""
    blob = json.dumps(
        {"v": VERSION, "backbone": backbone, "weights": weights, "pre": preprocessing, "data": samples.fingerprint()},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def extract(backbone: nn.Module, dataset: Any, batch_size: int, device: str,
            progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Run the frozen backbone once over ``dataset`` (eval mode, no gradient); ``progress(n)`` after each batch."""
    import torch
    from torch.utils.data import DataLoader

    backbone.eval().to(device)
    chunks = []
    with torch.inference_mode():
        for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            chunks.append(backbone(x.to(device)).float().cpu())
            if progress is not None:
                progress(len(x))
    return torch.cat(chunks)


def cached(
    backbone: nn.Module, dataset: Any, key: str, batch_size: int, device: str,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, bool, Path]:
    """Features of ``dataset`` under ``key``: read from the cache, or extracted and stored. Returns
    ``(features, hit, path)``; a hit reports every item to ``progress`` at once."""
    from safetensors.torch import load_file, save_file

    path = cache_dir() / "features" / f"{key}.safetensors"
    if path.is_file():
        try:
            features = load_file(str(path))["features"]
            if progress is not None:
                progress(len(features))
            return features, True, path
        except Exception:  # a damaged cache file is recomputed, never trusted
            path.unlink(missing_ok=True)
    import os
    import tempfile

    features = extract(backbone, dataset, batch_size, device, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # unique: processes may race here
    os.close(fd)
    save_file({"features": features.contiguous()}, tmp)
    os.replace(tmp, path)
    return features, False, path
