"""tl-medical on `medical/xray-2d` (synthetic 2D DICOM, lesion vs normal, real files):

1. ImageNet-pre-trained vs from scratch at the same budget: test ROC AUC, mean +- std over 3 seeds
   (the scratch model comes from the same runs, `compare.scratch: true`);
2. feature extraction vs fine-tuning vs the recipe's probe-then-fine-tune, same seeds;
3. training throughput of `tl run` vs an equivalent plain MONAI/PyTorch loop (same model, dataset, batch size,
   optimizer), epochs after the first, alternating, as a ratio;
4. 3D (`--ct`): synthetic CT volumes (3D DICOM series, lung window): the CT-pre-trained 3D ResNet-152 encoder
   (tl-medical[ct]) as a frozen feature extractor, ImageNet MobileNetV2 inflated to 3D and fine-tuned, and the
   same inflated network from scratch; test ROC AUC over 3 seeds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from common import WORK, timed


def data(per_class: int, test_per_class: int, size: int):
    from tl_medical.synthetic import write_classification

    root = WORK / f"xray-{per_class}-{test_per_class}-{size}"
    if not root.exists():
        write_classification(root / "train", per_class, 2, "dicom", size=size, seed=0)
        write_classification(root / "test", test_per_class, 2, "dicom", size=size, seed=1)
    return root / "train", root / "test"


def run(sets: list[str], name: str, recipe: str = "medical/xray-2d") -> dict:
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    out = WORK / "medical-runs" / name
    shutil.rmtree(out, ignore_errors=True)
    return execute(load_recipe(recipe, sets), out, quiet=True)


def ct(seeds: int, per_class: int = 24, test_per_class: int = 20, size: int = 32) -> None:
    from tl_medical.synthetic import write_classification

    root = WORK / f"ct-{per_class}-{test_per_class}-{size}"
    if not root.exists():
        write_classification(root / "train", per_class, 3, "dicom", size=size, seed=0)
        write_classification(root / "test", test_per_class, 3, "dicom", size=size, seed=1)
    base = [f"data.path={root / 'train'}", f"data.test_path={root / 'test'}", f"data.options.size={size}",
            "train.device=cpu"]
    auc: dict[str, list[float]] = {"CT encoder (3D ResNet-152), frozen": [],
                                   "ImageNet MobileNetV2 inflated, fine-tuned": [],
                                   "the same inflated network from scratch": []}
    for seed in range(seeds):
        frozen = run([*base, f"train.seed={seed}"], f"ct-frozen-{seed}", "medical/ct-3d")
        auc["CT encoder (3D ResNet-152), frozen"].append(frozen["metrics"]["test"]["auc"])
        inflated = run([*base, f"train.seed={seed}"], f"ct-inflated-{seed}", "medical/ct-3d-inflated")
        auc["ImageNet MobileNetV2 inflated, fine-tuned"].append(inflated["metrics"]["test"]["auc"])
        auc["the same inflated network from scratch"].append(inflated["scratch"]["metrics"]["test"]["auc"])
    print(f"data: synthetic 3D CT (DICOM series), {per_class * 2} training volumes (25% to validation), "
          f"{test_per_class * 2} test volumes, {size}^3 voxels, lung window; test ROC AUC over {seeds} seeds")
    for name, values in auc.items():
        print(f"  {name:45s} {mean_std(values)}   {' '.join(f'{v:.3f}' for v in values)}")


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} +- {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only-throughput", action="store_true")
    parser.add_argument("--ct", action="store_true", help="run the 3D CT comparison only")
    args = parser.parse_args()
    if args.ct:
        ct(args.seeds)
        return
    train_dir, test_dir = data(args.per_class, args.test_per_class, args.size)
    if args.only_throughput:
        throughput(train_dir, args.size)
        return
    base = [f"data.path={train_dir}", f"data.test_path={test_dir}", f"data.options.size={args.size}",
            f"train.epochs={args.epochs}", "train.device=cpu"]

    auc: dict[str, list[float]] = {"probe-then-fine-tune": [], "scratch": [], "feature-extraction": [],
                                   "fine-tune": []}
    for seed in range(args.seeds):
        report = run([*base, f"train.seed={seed}"], f"recipe-{seed}")
        auc["probe-then-fine-tune"].append(report["metrics"]["test"]["auc"])
        auc["scratch"].append(report["scratch"]["metrics"]["test"]["auc"])
        for policy in ("feature-extraction", "fine-tune"):
            extra = [f"policy={{name: {policy}}}", "compare.scratch=false", f"train.seed={seed}"]
            if policy == "feature-extraction":
                extra.append("data.augment=false")  # so that the features are computed once and cached
            auc[policy].append(run([*base, *extra], f"{policy}-{seed}")["metrics"]["test"]["auc"])
    n_train = args.per_class * 2
    print(f"data: synthetic 2D DICOM, {n_train} training images (20% to validation), {args.test_per_class * 2} "
          f"test images, {args.size}px, {args.epochs} epochs, MobileNetV2; test ROC AUC over {args.seeds} seeds")
    for name, values in auc.items():
        label = "ImageNet, " + name if name != "scratch" else "from scratch (same budget)"
        print(f"  {label:40s} {mean_std(values)}   {' '.join(f'{v:.3f}' for v in values)}")

    throughput(train_dir, args.size)


def throughput(train_dir, size: int, epochs: int = 6, repeats: int = 3) -> None:
    import torch
    from torch.utils.data import DataLoader

    from tl_core.api import RunContext, load_recipe
    from tl_medical.data import read_folder_data
    from tl_medical.tasks import build_classifier, task_spec, train

    recipe = load_recipe("medical/xray-2d", [f"data.path={train_dir}", f"data.options.size={size}",
                                             "data.val_fraction=0", f"train.epochs={epochs}", "train.device=cpu",
                                             "policy={name: fine-tune, backbone_lr_mult: 1.0}",
                                             "compare.scratch=false", "head.dropout=0"])
    data_ = read_folder_data(recipe.data, 0)
    per_epoch = -(-len(data_.train) // recipe.train.batch_size)
    plain_epochs: list[float] = []
    tl_epochs: list[float] = []

    def plain() -> None:
        """What a MONAI user writes by hand: the same model and dataset, AdamW, cross-entropy."""
        torch.manual_seed(0)
        clf = build_classifier(recipe, data_)
        dataset = task_spec(clf).make_dataset(data_.train, True)
        loader = DataLoader(dataset, batch_size=recipe.train.batch_size, shuffle=True)
        model = clf.model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.train.lr, weight_decay=recipe.train.weight_decay)
        for epoch in range(epochs):
            start = time.perf_counter()
            for x, y in loader:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if epoch:
                plain_epochs.append(time.perf_counter() - start)

    def through_tl() -> None:
        torch.manual_seed(0)
        out = WORK / "medical-throughput"
        shutil.rmtree(out, ignore_errors=True)
        clf = build_classifier(recipe, data_)
        result = train(recipe, clf, data_, RunContext(recipe=recipe, out=out, quiet=True))
        tl_epochs.extend(row["seconds"] for row in result.history[1:])

    for _ in range(repeats):
        timed(plain)
        timed(through_tl)
    s_plain = statistics.median(plain_epochs) / per_epoch
    s_tl = statistics.median(tl_epochs) / per_epoch
    batch = recipe.train.batch_size
    print(f"throughput, fine-tuning {len(data_.train)} images at {size}px, batch {batch}, median of "
          f"{len(tl_epochs)} epochs each:")
    print(f"  plain MONAI/PyTorch loop  {batch / s_plain:7.1f} images/s")
    print(f"  tl run                    {batch / s_tl:7.1f} images/s   tl/plain {s_plain / s_tl:5.3f}x throughput")


if __name__ == "__main__":
    main()
