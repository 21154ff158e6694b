"""Fine-tuning step time: the tl trainer (Accelerate, policy, LR schedule, progress, metrics) against a
hand-written PyTorch loop, same model, data, batch size and optimizer. Target: overhead <= 5%.

Both run alternately (hand, tl, hand, tl, ...). Step time is an epoch's training loop divided by its steps, from
the second epoch on (the first pays for lazy initialisation in both). The whole call is compared too: for tl it
adds the fixed costs of a run (Accelerate set-up, a checkpoint with optimizer state after every epoch, reloading
the best weights).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from common import WORK, digits, timed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from tl_core.api import RunContext, load_classification, load_recipe, read_image_folder
    from tl_core.builtin.classification.images import ImageDataset, transforms
    from tl_core.builtin.classification.model import build_classifier
    from tl_core.builtin.classification.training import train

    folder = digits(args.per_class) / "train"
    recipe = load_recipe("vision/fine-tune", [
        f"data.path={folder}", "data.val_fraction=0", f"data.image_size={args.size}", "data.augment=false",
        f"train.epochs={args.epochs}", f"train.batch_size={args.batch_size}", "train.device=cpu",
        "train.patience=null", "head.dropout=0", "policy.backbone_lr_mult=1", "policy.layer_decay=1",
    ])
    data = load_classification(recipe.data, 0, read_image_folder)
    per_epoch = -(-len(data.train) // args.batch_size)
    steps = args.epochs * per_epoch
    hand_epochs: list[float] = []
    tl_epochs: list[float] = []

    def hand() -> None:
        torch.manual_seed(0)
        clf = build_classifier(recipe, len(data.classes))
        model = clf.model.train()
        dataset = ImageDataset(data.train, transforms(clf.backbone.input, args.size, augment=False))
        loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.train.lr, weight_decay=recipe.train.weight_decay,
                                      fused=True)  # as tl does, and as a careful hand-written loop would
        for epoch in range(args.epochs):
            start = time.perf_counter()
            for x, y in loader:
                loss = nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if epoch:
                hand_epochs.append(time.perf_counter() - start)

    def tl() -> None:
        torch.manual_seed(0)
        out = WORK / "finetune-run"
        shutil.rmtree(out, ignore_errors=True)
        clf = build_classifier(recipe, len(data.classes))
        result = train(recipe, clf, data, RunContext(recipe=recipe, out=out, quiet=True))
        tl_epochs.extend(row["seconds"] for row in result.history[1:])

    hand_times, tl_times = [], []
    for _ in range(args.repeats):
        hand_times.append(timed(hand))
        tl_times.append(timed(tl))
    t_hand, t_tl = statistics.median(hand_times), statistics.median(tl_times)
    print(f"data: {len(data.train)} digit images at {args.size}px, efficientnet_lite0 fine-tune, batch "
          f"{args.batch_size}, {steps} steps, median of {args.repeats}, {torch.get_num_threads()} threads")
    s_hand = statistics.median(hand_epochs) / per_epoch
    s_tl = statistics.median(tl_epochs) / per_epoch
    print(f"step time, hand-written loop  {s_hand * 1000:7.1f} ms")
    print(f"step time, tl trainer         {s_tl * 1000:7.1f} ms   tl/hand {s_tl / s_hand:6.3f}x   "
          f"(overhead {100 * (s_tl / s_hand - 1):+.1f}%, target <= 5%)")
    print(f"whole call, hand-written loop {t_hand:7.2f} s")
    print(f"whole call, tl trainer        {t_tl:7.2f} s   tl/hand {t_tl / t_hand:6.3f}x   "
          "(fixed costs of a run included)")


if __name__ == "__main__":
    main()
