"""Frozen-backbone training, 10 epochs: ``tl run`` (feature cache) against a hand-written loop that runs the
frozen backbone every epoch (what Flash's and fastai's freeze modes do), on the same data and backbone.

Prints both times, their ratio, and each one's ratio to a single forward pass of the backbone over the data.
Target: tl <= 1.3x one pass. ``tl run`` is timed whole (reading and checking the images, building the model and
loading the weights, features, 10 epochs, report, curves, model); the feature cache starts cold.
"""

from __future__ import annotations

import argparse
import shutil

from common import WORK, digits, timed

EPOCHS = 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=60, help="images per digit (10 digits)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from tl_core.api import build_backbone, execute, load_recipe, read_image_folder, registry
    from tl_core.builtin.classification.images import ImageDataset, transforms

    data = digits(args.per_class) / "train"
    samples = read_image_folder(str(data))
    built = build_backbone(registry("backbone").get("mobilenet_v2"), "imagenet")
    backbone = built.module.eval()
    dataset = ImageDataset(samples, transforms(built.input, args.size, augment=False))

    def one_pass() -> None:
        with torch.inference_mode():
            for x, _ in DataLoader(dataset, batch_size=args.batch_size):
                backbone(x)

    def hand_loop() -> None:
        """The frozen backbone runs inside every epoch; only the head trains."""
        torch.manual_seed(0)
        head = nn.Linear(1280, len(samples.classes))
        optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
        for _ in range(EPOCHS):
            for x, y in loader:
                with torch.no_grad():
                    features = backbone(x)
                loss = nn.functional.cross_entropy(head(features), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    def tl_run() -> None:
        out = WORK / "frozen-run"
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(WORK / "cache" / "features", ignore_errors=True)  # cold cache: features computed once
        recipe = load_recipe("vision/linear-probe", [
            f"data.path={data}", "data.val_fraction=0", f"data.image_size={args.size}",
            f"train.epochs={EPOCHS}", f"train.batch_size={args.batch_size}", "train.device=cpu",
        ])
        execute(recipe, out, quiet=True)

    one_pass()  # warm-up: first-touch allocations, lazy imports
    t_pass = timed(one_pass)
    t_hand = timed(hand_loop)
    t_tl = timed(tl_run)
    print(f"data: {len(samples)} digit images at {args.size}px, mobilenet_v2 ImageNet, {EPOCHS} epochs, "
          f"{torch.get_num_threads()} threads")
    print(f"one forward pass over the data     {t_pass:8.2f} s")
    print(f"hand-written loop (backbone/epoch) {t_hand:8.2f} s   {t_hand / t_pass:5.2f}x one pass")
    print(f"tl run (feature cache, cold)       {t_tl:8.2f} s   {t_tl / t_pass:5.2f}x one pass   (target <= 1.3x)")
    print(f"speed-up of tl over the hand loop  {t_hand / t_tl:8.2f}x")


if __name__ == "__main__":
    main()
