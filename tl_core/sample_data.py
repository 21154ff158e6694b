"""Small real image sets that ship inside Python packages, written out as image folders; and tiny generated ones.

``python -m tl_core.sample_data digits OUT`` writes scikit-learn's handwritten digits (1,797 real 8x8 scans of
ten digits, from the UCI "Optical Recognition of Handwritten Digits" set) as PNG files, ``OUT/train/<digit>/``
and ``OUT/test/<digit>/``: the data of ``make demo``. Nothing is downloaded: the images are in scikit-learn.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path


def write_digits(out: Path, per_class: int, test_per_class: int, seed: int = 0, size: int = 32) -> dict[str, int]:
    """Write ``per_class`` training and ``test_per_class`` test images of each digit; return the counts."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = random.Random(seed)
    counts = {"train": 0, "test": 0}
    for label in range(10):
        idx = [i for i, t in enumerate(digits.target) if t == label]
        rng.shuffle(idx)
        if per_class + test_per_class > len(idx):
            raise SystemExit(f"digit {label} has only {len(idx)} images; ask for fewer")
        for split, chosen in (("train", idx[:per_class]), ("test", idx[per_class : per_class + test_per_class])):
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                pixels = (digits.images[i] / 16.0 * 255).astype(np.uint8)
                image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC)
                image.save(folder / f"{i:04d}.png")
                counts[split] += 1
    return counts


def write_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 6,
                       size: int = 24, seed: int = 0) -> Path:
    """``root/<class>/<n>.png``: small images whose colour depends on the class (a learnable task); the tiny data
    of tl's tests and conformance suite."""
    from PIL import Image

    rng = random.Random(seed)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = (60 + 150 * (k % 2), 60 + 80 * (k % 3), 200 - 140 * (k % 2))
            colour = tuple(min(255, max(0, c + rng.randint(-25, 25))) for c in base)
            Image.new("RGB", (size, size), colour).save(folder / f"{i}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=["digits"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--test-per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty; choose a new folder (its images would mix with these)")
    counts = write_digits(args.out, args.per_class, args.test_per_class, args.seed)
    print(f"wrote {counts['train']} training and {counts['test']} test images of 10 digits to {args.out}")


if __name__ == "__main__":
    main()
