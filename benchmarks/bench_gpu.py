"""The GPU check, for a lent CUDA machine (one short script: tests never need a GPU).

1. CUDA placement and mixed precision in the core trainer: `vision/fine-tune` (EfficientNet-Lite0, real ImageNet
   weights) on scikit-learn's digits with `train.amp` no, bf16 and fp16 (fp16 goes through Accelerate's gradient
   scaler): the device the report names, test accuracy, and seconds per epoch from the second epoch on;
2. tl-driving's pre-trained vs scratch comparison (`bench_driving.py --transfer`) at a budget a GPU affords.

Run from `benchmarks/`: `python bench_gpu.py` (on a CPU: `python bench_gpu.py --device cpu --quick`, a dry run).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import traceback

from common import WORK, digits


def amp_check(device: str, per_class: int, size: int, epochs: int) -> None:
    from tl_core.recipe import load_recipe
    from tl_core.run import execute

    folder = digits(per_class, per_class // 2)
    print(f"vision/fine-tune, digits {per_class}/class train+val, {per_class // 2}/class test, {size}px, "
          f"{epochs} epochs, batch 32", flush=True)
    for amp in ("no", "bf16", "fp16") if device == "cuda" else ("no",):
        out = WORK / f"amp-{amp}"
        shutil.rmtree(out, ignore_errors=True)
        recipe = load_recipe("vision/fine-tune", [
            f"data.path={folder / 'train'}", f"data.test_path={folder / 'test'}", f"data.image_size={size}",
            f"train.epochs={epochs}", f"train.device={device}", f"train.amp={amp}", "train.batch_size=32"])
        report = execute(recipe, out, quiet=True)
        per_epoch = statistics.median(row["seconds"] for row in report["epochs"][1:])
        d = report["device"]
        print(f"  amp {amp:4s}  ran on {d['type']} {d['name']!r} precision {d['precision']:4s}  test accuracy "
              f"{report['metrics']['test']['accuracy']:.3f}  {per_epoch:.2f} s/epoch", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--skip-amp", action="store_true")
    args = parser.parse_args()
    from bench_driving import transfer

    if not args.skip_amp:
        amp_check(args.device, 4 if args.quick else 60, 64 if args.quick else 128, 2 if args.quick else 6)
    if args.quick:
        transfer(1, 1, 96, args.device, train_n=8, test_n=4, batch=4)
        return
    try:
        transfer(3, 20, 320, args.device, train_n=240, test_n=80, batch=8, workers=6)
    except Exception:  # a failure of mixed precision in torchvision's detectors is a finding, not the end
        traceback.print_exc()
        print("retrying in full precision (train.amp=no)", flush=True)
        transfer(3, 20, 320, args.device, train_n=240, test_n=80, batch=8, workers=6, amp="no")


if __name__ == "__main__":
    main()
