"""tl-driving on generated street scenes (drawn cars, trucks, buses, pedestrians, lights, stop signs):

1. (default) YOLO training throughput through `tl run` / ultralytics `model.train` directly, same data set, model,
   image size, batch and epochs: an epoch's time (train + validation) from the second epoch on, alternating, as a
   ratio (goal: <= 3% overhead);
2. (`--transfer`) Faster R-CNN (FPN) on an ImageNet MobileNetV2 backbone vs the same from scratch at the same
   budget: mAP@0.5 on a test set of another seed, over 3 seeds (`--device cuda` on a GPU).
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


def transfer(seeds: int, epochs: int, size: int, device: str = "cpu", train_n: int = 80, test_n: int = 40,
             batch: int = 4, workers: int = 0, head: str = "faster-rcnn", amp: str = "auto",
             first_seed: int = 0) -> dict[str, list[float]]:
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    train, test = scenes(train_n, "coco", 0), scenes(test_n, "coco", 1)
    rows: dict[str, list[float]] = {"ImageNet MobileNetV2": [], "from scratch": []}
    device_line = ""
    for seed in range(first_seed, first_seed + seeds):
        out = WORK / f"{head}-{seed}"
        shutil.rmtree(out, ignore_errors=True)
        recipe = load_recipe("driving/faster-rcnn", [
            f"data.path={train}", f"data.test_path={test}", f"data.options.image_size={size}",
            f"train.epochs={epochs}", f"train.seed={seed}", f"train.device={device}", f"train.batch_size={batch}",
            f"train.lr={0.005 * batch / 4}", f"data.num_workers={workers}", f"head.name={head}", f"train.amp={amp}"])
        report = execute(recipe, out, quiet=True)
        rows["ImageNet MobileNetV2"].append(report["metrics"]["test"]["map_50"])
        rows["from scratch"].append(report["scratch"]["metrics"]["test"]["map_50"])
        d = report["device"]
        device_line = f"{d['name']} ({d['type']}, precision {d['precision']})"
        losses = " ".join(f"{row['train_loss']:.3g}" for row in report["epochs"])
        print(f"  seed {seed}: pre-trained {rows['ImageNet MobileNetV2'][-1]:.3f}, scratch "
              f"{rows['from scratch'][-1]:.3f}, {report['timings']['total_seconds']:.0f} s; train loss by epoch "
              f"{losses}", flush=True)
    print(f"data: {train_n} generated scenes (20% to validation), {test_n} test scenes of another seed, {head} "
          f"(FPN on MobileNetV2, driving/faster-rcnn recipe), {size}px, {epochs} epochs, batch {batch}, on "
          f"{device_line}; test mAP@0.5 over {seeds} seeds")
    for name, values in rows.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"  {name:22s} {statistics.mean(values):.3f} +- {spread:.3f}   {' '.join(f'{v:.3f}' for v in values)}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transfer", action="store_true")
    parser.add_argument("--n", type=int, help="scenes (default 48); with --transfer training scenes (default 80)")
    parser.add_argument("--test-n", type=int, default=40, help="test scenes (--transfer)")
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--head", default="faster-rcnn")
    args = parser.parse_args()
    if args.transfer:
        transfer(args.seeds, args.epochs, args.size, args.device, args.n or 80, args.test_n, args.batch,
                 args.workers, args.head)
    else:
        throughput(args.n or 48, args.size, args.epochs, args.repeats)


if __name__ == "__main__":
    main()
