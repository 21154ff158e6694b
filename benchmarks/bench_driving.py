"""tl-driving on generated street scenes (drawn cars, trucks, buses, pedestrians, lights, stop signs):

1. (default) YOLO training throughput through `tl run` / ultralytics `model.train` directly, same data set, model,
   image size, batch and epochs: an epoch's time (train + validation) from the second epoch on, alternating, as a
   ratio (goal: <= 3% overhead);
2. (`--transfer`) Faster R-CNN on an ImageNet MobileNetV2 backbone vs the same from scratch at the same budget:
   mAP@0.5 on a test set of another seed, over 3 seeds.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time

from common import WORK


def scenes(n: int, fmt: str, seed: int = 0, split_val: int = 0):
    from tl_driving.synthetic import write_scenes

    out = WORK / f"scenes-{fmt}-{n}-{seed}"
    shutil.rmtree(out, ignore_errors=True)
    return write_scenes(out, n, fmt, seed=seed, split_val=split_val)


def throughput(n: int, size: int, epochs: int, repeats: int) -> None:
    from ultralytics import YOLO

    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    data_yaml = scenes(n, "yolo", split_val=n // 4)  # the YAML's own val split: both sides use the same
    tl_epochs: list[float] = []
    direct_epochs: list[float] = []

    def direct() -> None:
        model = YOLO("yolo11n.yaml", task="detect")
        marks: dict[str, float] = {}
        model.add_callback("on_train_epoch_start", lambda t: marks.__setitem__("start", time.perf_counter()))
        model.add_callback("on_fit_epoch_end", lambda t: direct_epochs.append(time.perf_counter() - marks["start"])
                           if t.epoch >= 1 and t.epoch < epochs else None)
        out = WORK / "direct"
        shutil.rmtree(out, ignore_errors=True)
        model.train(data=str(data_yaml), epochs=epochs, imgsz=size, batch=8, device="cpu", workers=0,
                    project=str(out), name="u", exist_ok=True, seed=0, deterministic=True, plots=False, amp=False,
                    verbose=False, optimizer="SGD", lr0=0.01, momentum=0.937, weight_decay=0.0005, cos_lr=True,
                    freeze=list(range(6)))

    def through_tl() -> None:
        out = WORK / "tl-yolo"
        shutil.rmtree(out, ignore_errors=True)
        recipe = load_recipe("driving/yolo", [f"data.path={data_yaml}", "backbone.weights=none",
                                              f"train.epochs={epochs}", f"data.options.image_size={size}",
                                              "train.batch_size=8", "train.device=cpu"])
        report = execute(recipe, out, quiet=True)
        tl_epochs.extend(row["seconds"] for row in report["epochs"][1:])

    for _ in range(repeats):
        direct()
        through_tl()
    d, t = statistics.median(direct_epochs), statistics.median(tl_epochs)
    print(f"data: {n} generated street scenes (YOLO files), yolo11n from its YAML, imgsz {size}, batch 8, "
          f"layers 0-5 frozen, {epochs} epochs x {repeats} alternating runs; median epoch (train + val) from the "
          f"second on")
    print(f"  ultralytics model.train  {d:7.2f} s/epoch")
    print(f"  tl run                   {t:7.2f} s/epoch   tl/ultralytics {t / d:5.3f}x   (goal <= 1.03x)")


def transfer(seeds: int, epochs: int, size: int) -> None:
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    train, test = scenes(80, "coco", 0), scenes(40, "coco", 1)
    rows: dict[str, list[float]] = {"ImageNet MobileNetV2": [], "from scratch": []}
    for seed in range(seeds):
        out = WORK / f"frcnn-{seed}"
        shutil.rmtree(out, ignore_errors=True)
        recipe = load_recipe("driving/faster-rcnn", [f"data.path={train}", f"data.test_path={test}",
                                                     f"data.options.image_size={size}", f"train.epochs={epochs}",
                                                     f"train.seed={seed}", "train.device=cpu"])
        report = execute(recipe, out, quiet=True)
        rows["ImageNet MobileNetV2"].append(report["metrics"]["test"]["map_50"])
        rows["from scratch"].append(report["scratch"]["metrics"]["test"]["map_50"])
    print(f"data: 80 generated scenes (20% to validation), 40 test scenes of another seed, Faster R-CNN, "
          f"{size}px, {epochs} epochs; test mAP@0.5 over {seeds} seeds")
    for name, values in rows.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"  {name:22s} {statistics.mean(values):.3f} +- {spread:.3f}   {' '.join(f'{v:.3f}' for v in values)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transfer", action="store_true")
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.transfer:
        transfer(args.seeds, args.epochs, args.size)
    else:
        throughput(args.n, args.size, args.epochs, args.repeats)


if __name__ == "__main__":
    main()
