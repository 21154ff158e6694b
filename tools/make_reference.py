"""Writes tl_core/builtin/classification/reference/: the small sample of natural photographs that the core's
ImageNet weights entries carry as their reference (``WeightsEntry.reference``), which ``tl diagnose`` compares a
target data set's features with for its domain-shift score. Run once by a maintainer (it needs scikit-image, a
dev dependency); the output is committed.

The photographs are scikit-image's public-domain and CC0 sample images (licences in the README written beside
them). ImageNet itself cannot be shipped or fetched here; these stand in as a sample of its domain (photographs of
objects, animals, scenes and textures), which is what the test can detect a departure from - not ImageNet's own
statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = {  # name: licence, as scikit-image's docstrings state it
    "astronaut": "public domain (NASA)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "rocket": "public domain (SpaceX)",
    "hubble_deep_field": "public domain (NASA)",
    "camera": "CC0 (Lav Varshney)",
    "brick": "CC0 (CC0Textures)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "coins": "no known copyright restrictions (Greek coins, Brooklyn Museum)",
}
SIZE = 112


def crops(image: Image.Image) -> list[Image.Image]:
    """The centre and the four quarter squares of the largest centred square, each resized to SIZE."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = image.crop((left, top, left + side, top + side))
    half = side // 2
    boxes = [(side // 4, side // 4, side // 4 + half, side // 4 + half),
             (0, 0, half, half), (half, 0, side, half), (0, half, half, side), (half, half, side, side)]
    return [square.crop(b).resize((SIZE, SIZE), Image.BICUBIC) for b in boxes]


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "tl_core/builtin/classification/reference/photos"
    out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        array = getattr(skimage.data, name)()
        if array.ndim == 2:
            array = np.stack([array] * 3, -1)
        for i, crop in enumerate(crops(Image.fromarray(array[..., :3].astype(np.uint8)))):
            crop.save(out / f"{name}-{i}.jpg", quality=90)
    lines = ["Natural photographs from scikit-image's sample data, five crops each (tools/make_reference.py):",
             "the reference sample of the core's ImageNet weights entries for tl diagnose's domain-shift score.", ""]
    lines += [f"- {name}: {licence}" for name, licence in PHOTOS.items()]
    (out.parent / "README.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
