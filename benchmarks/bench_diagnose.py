"""Does ``tl diagnose`` know, before training, which backbone will fine-tune best and whether transfer pays?

For each task, every candidate backbone is scored by ``tl diagnose`` (one forward pass per item, pre-trained and
random-init), then fine-tuned at the task's recipe and budget, and scored on a held-out test split. Candidates:

- the offline ImageNet pair: ``mobilenet_v2`` and ``efficientnet_lite0``;
- their random-init twins, registered as backbones without weights (``*-random``);
- deliberately damaged variants: MobileNetV2's ImageNet weights with stages 4 and 5 re-initialised
  (``mobilenet_v2-top-reinit``), and Lite0's ImageNet weights fed the wrong channel statistics
  (``efficientnet_lite0-wrong-stats``: mean 0, std 0.25 instead of 0.5 and 0.5). Their weights entries claim the
  original's ImageNet accuracy, as a mislabelled file would: the prior cannot see the damage;
- for the 3D task: the CT-pretrained 3D ResNet-152 encoder against 2D ImageNet weights inflated to 3D.

Printed per task: the weighted Kendall tau (scipy's ``weightedtau``, hyperbolic weights, as in the LogME and SFDA
papers) between the diagnose ranking and the fine-tuned test results, and beside it the tau of the prior alone
(the weights' published accuracy; random init counts 0); then whether the transfer-or-scratch recommendation
matched the outcome: the recommended backbone fine-tuned against the same architecture from scratch with its own
searched learning rate and batch size (the fair baseline of ``compare.scratch``), on the test split.

    python benchmarks/bench_diagnose.py                      # every task (about an hour on 2 CPU cores)
    python benchmarks/bench_diagnose.py --tasks digits-10 --epochs 4    # one task, shorter

Results go to ``$TL_BENCH_DIR/bench_diagnose.json`` too. docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import WORK, digits

IMAGE_CANDIDATES = ["mobilenet_v2", "efficientnet_lite0", "mobilenet_v2-random", "efficientnet_lite0-random",
                    "mobilenet_v2-top-reinit", "efficientnet_lite0-wrong-stats"]
ARCHITECTURE = {"mobilenet_v2": "mobilenet_v2", "efficientnet_lite0": "efficientnet_lite0",
                "resnet152_3d_ct": "resnet152_3d_ct"}  # the random and damaged variants are added below


# ---------------------------------------------------------------- candidates


def register_candidates() -> None:
    """The random-init twins and the damaged variants, as a plugin of this benchmark."""
    import torch

    from tl_core import hookimpl
    from tl_core.api import build_backbone, core_backbone, register_plugin, sha256_of

    mobilenet, lite0 = core_backbone("mobilenet_v2"), core_backbone("efficientnet_lite0")
    reinit_file = WORK / "mobilenet_v2-top-reinit.pt"
    if not reinit_file.is_file():
        pretrained = build_backbone(mobilenet, "imagenet").module.state_dict()
        torch.manual_seed(0)
        fresh = mobilenet.factory().state_dict()  # torchvision's own initialisation
        top = tuple(f"features.{i}." for i in range(7, 19))  # the layer groups stage4 and stage5
        damaged = {k: fresh[k] if k.startswith(top) else v for k, v in pretrained.items()}
        torch.save(damaged, reinit_file)
    imagenet = mobilenet.weights_entry("imagenet")
    reinit_entry = replace(imagenet, name="imagenet-top-reinit", source="file", location=str(reinit_file),
                           sha256=sha256_of(reinit_file), package=None, key_map="exact",
                           description="ImageNet MobileNetV2 with stages 4 and 5 re-initialised (damaged on purpose)")
    wrong_entry = replace(lite0.weights_entry("imagenet"), name="imagenet-wrong-stats", mean=(0.0,) * 3,
                          std=(0.25,) * 3, description="Lite0 ImageNet weights fed the wrong channel statistics")
    specs = [
        replace(mobilenet, name="mobilenet_v2-random", weights=()),
        replace(lite0, name="efficientnet_lite0-random", weights=()),
        *([replace(ct_encoder(), name="resnet152_3d_ct-random", weights=())] if has_medical() else []),
        replace(mobilenet, name="mobilenet_v2-top-reinit", weights=(reinit_entry,)),
        replace(lite0, name="efficientnet_lite0-wrong-stats", weights=(wrong_entry,)),
    ]
    for spec in specs:
        ARCHITECTURE[spec.name] = spec.name.split("-")[0]

    class Candidates:
        @hookimpl
        def tl_register_backbones(self, register: Any) -> None:
            for spec in specs:
                register(spec)

    register_plugin(Candidates(), "bench-candidates")


def has_medical() -> bool:
    from importlib.util import find_spec

    return find_spec("tl_medical") is not None


def ct_encoder() -> Any:
    """tl-medical's CT-pretrained 3D ResNet-152 spec (its registration, without the registry being filled)."""
    from tl_medical.backbones import BACKBONES

    return next(spec for spec in BACKBONES if spec.name == "resnet152_3d_ct")


def prior(name: str) -> float | None:
    """What the weights' label says: the published top-1 accuracy of the entry the candidate loads; 0 for random
    init; ``None`` for weights without a published figure (the CT encoder)."""
    from tl_core.api import registry

    spec = registry("backbone").get(name)
    entry = spec.weights[0] if spec.weights else None
    if entry is None:
        return 0.0
    return float(entry.source_accuracy) if entry.source_accuracy is not None else None


def tau(scores: list[float], results: list[float]) -> float | None:
    """scipy's weighted Kendall tau; ``None`` where it is undefined (every result, or every score, equal)."""
    from scipy.stats import weightedtau

    if len(set(results)) < 2 or len(set(scores)) < 2:
        return None
    return float(weightedtau(scores, results).statistic)


# ---------------------------------------------------------------- tasks


def image_recipe(train: Path, test: Path, epochs: int, size: int) -> dict[str, Any]:
    return {
        "task": "image-classification",
        "backbone": {"name": "mobilenet_v2", "weights": "imagenet"},
        "head": {"name": "linear", "dropout": 0.2},
        "policy": {"name": "fine-tune", "backbone_lr_mult": 0.1, "layer_decay": 0.8, "bn": "train"},
        "data": {"format": "image-folder", "path": str(train), "test_path": str(test), "val_fraction": 0.2,
                 "image_size": size, "augment": True},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 1e-3, "weight_decay": 0.01, "schedule": "one-cycle",
                  "seed": 0, "device": "cpu", "metric": "accuracy"},
    }


def faces(per_class: int) -> Path:
    """scikit-image's ``lfw_subset``: 100 real face crops and 100 non-face patches (25 x 25), as an image folder with
    ``per_class`` training items per class and the rest as test."""
    import numpy as np
    import skimage
    from PIL import Image

    out = WORK / f"faces-{per_class}"
    if out.exists():
        return out
    images = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("face", "other")):
        idx = rng.permutation(np.arange(100) + 100 * c)
        for split, chosen in (("train", idx[:per_class]), ("test", idx[per_class:])):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray((images[i] * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return out


def medical_data(dims: int, per_class: int, test_per_class: int) -> tuple[Path, Path]:
    """tl-medical's synthetic lesion-or-not scans: 2D PNGs at 64 px, or 3D NIfTI volumes at 32^3; train and test
    from different seeds (written once per benchmark directory)."""
    from tl_medical.synthetic import write_classification

    fmt, size = ("png", 64) if dims == 2 else ("nifti", 32)
    root = WORK / f"medical-{dims}d-{per_class}"
    if not root.exists():
        write_classification(root / "train", per_class, dims, fmt, size=size, seed=0)  # type: ignore[arg-type]
        write_classification(root / "test", test_per_class, dims, fmt, size=size, seed=1)  # type: ignore[arg-type]
    return root / "train", root / "test"


def medical_recipe(train: Path, test: Path, epochs: int) -> dict[str, Any]:
    return {
        "task": "medical-classification",
        "backbone": {"name": "mobilenet_v2", "weights": "imagenet"},
        "head": {"name": "linear", "dropout": 0.2},
        "policy": {"name": "fine-tune", "backbone_lr_mult": 0.1, "bn": "train"},
        "data": {"format": "medical-folder", "path": str(train), "test_path": str(test), "val_fraction": 0.2,
                 "augment": True, "options": {"spatial_dims": 2, "size": 64, "window": None,
                                              "positive_class": "lesion"}},
        "train": {"epochs": epochs, "batch_size": 16, "lr": 3e-3, "seed": 0, "device": "cpu", "metric": "accuracy"},
    }


def medical_3d_recipe(train: Path, test: Path, epochs: int) -> dict[str, Any]:
    """Frozen features and a trained head for every candidate (what the shipped ct-3d recipe does: 117M parameters
    of a 3D ResNet-152 do not fine-tune on a CPU budget), so "fine-tuned" means feature extraction here."""
    return {
        "task": "medical-classification",
        "backbone": {"name": "resnet152_3d_ct", "weights": "ct-astra"},
        "head": {"name": "linear"},
        "policy": {"name": "feature-extraction"},
        "data": {"format": "medical-folder", "path": str(train), "test_path": str(test), "val_fraction": 0.25,
                 "options": {"spatial_dims": 3, "size": 32, "window": "lung", "positive_class": "lesion"}},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 3e-3, "seed": 0, "device": "cpu", "metric": "accuracy"},
    }


def tasks(epochs: int, size: int) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """name -> (raw recipe, candidates), built lazily (each writes its data on first use)."""
    def digit_task(per_class: int) -> tuple[dict[str, Any], list[str]]:
        root = digits(per_class, 30)
        return image_recipe(root / "train", root / "test", epochs, size), IMAGE_CANDIDATES

    def face_task(per_class: int) -> tuple[dict[str, Any], list[str]]:
        root = faces(per_class)
        return image_recipe(root / "train", root / "test", epochs, size), IMAGE_CANDIDATES

    def medical_task() -> tuple[dict[str, Any], list[str]]:
        train, test = medical_data(2, 20, 30)
        return medical_recipe(train, test, epochs), IMAGE_CANDIDATES

    def medical_3d_task() -> tuple[dict[str, Any], list[str]]:
        train, test = medical_data(3, 12, 16)
        return medical_3d_recipe(train, test, epochs), ["resnet152_3d_ct", "mobilenet_v2", "resnet152_3d_ct-random",
                                                        "mobilenet_v2-random"]

    return {"digits-5": lambda: digit_task(5), "digits-10": lambda: digit_task(10),  # type: ignore[dict-item]
            "digits-20": lambda: digit_task(20), "faces-10": lambda: face_task(10),
            "faces-40": lambda: face_task(40), "medical-2d": medical_task, "medical-3d": medical_3d_task}


# ---------------------------------------------------------------- one task


def fine_tune(raw: dict[str, Any], backbone: str, out: Path, scratch: bool) -> dict[str, Any]:
    """The recipe with ``backbone`` (its own weights; a random-init candidate from random init), trained; with
    ``scratch`` its fair from-scratch comparison too. A run already in ``out`` (the same ``TL_BENCH_DIR``) is read,
    not trained again: the fine-tuned results do not depend on diagnose's rules."""
    from tl_core.api import execute, read_report, registry, validate_recipe

    if (out / "report.json").is_file():
        return read_report(out)
    data = json.loads(json.dumps(raw))
    spec = registry("backbone").get(backbone)
    data["backbone"] = {"name": backbone, "weights": spec.weights[0].name if spec.weights else "none"}
    data["compare"] = {"scratch": scratch}
    return execute(validate_recipe(data, f"bench {backbone}"), out, quiet=True)


def run_task(name: str, raw: dict[str, Any], candidates: list[str]) -> dict[str, Any]:
    from tl_core.api import validate_recipe
    from tl_core.diagnose import diagnose

    metric = raw["train"]["metric"]
    started = time.perf_counter()
    diagnosis = diagnose(validate_recipe(raw, name), candidates)
    diagnose_seconds = time.perf_counter() - started
    by_name = {c["backbone"]: c for c in diagnosis["candidates"]}
    rows = []
    for backbone in candidates:
        report = fine_tune(raw, backbone, WORK / "bench-diagnose" / name / backbone, scratch=False)
        c = by_name[backbone]
        rows.append({"backbone": backbone, "rank": c["rank"], "mean_rank": c.get("mean_rank"),
                     "knn": c["scores"].get("knn_accuracy"), "probe": c["scores"].get("probe_accuracy"),
                     "logme": c["scores"].get("logme"), "gain": (c["transfer_gain"] or {}).get("value"),
                     "prior": prior(backbone), "finetuned": report["metrics"]["test"][metric]})
    scored = [r for r in rows if r["mean_rank"] is not None]
    known = [r["prior"] for r in rows if r["prior"]]
    neutral = sum(known) / len(known) if known else 1.0  # weights without a published figure: the known ones' mean
    priors = [r["prior"] if r["prior"] is not None else neutral for r in rows]
    tau_diagnose = tau([-r["mean_rank"] for r in scored], [r["finetuned"] for r in scored])
    tau_prior = tau(priors, [r["finetuned"] for r in rows])
    advice = diagnosis["recommendation"]
    chosen = advice["backbone"]
    # the outcome: the recommended candidate fine-tuned (a candidate without weights: its architecture's real
    # weights, the transfer it advised against), against its architecture from scratch with its own searched
    # learning rate and batch size (the scratch side does not depend on which weights the candidate loads)
    base = ARCHITECTURE.get(chosen, chosen)
    versus = fine_tune(raw, base, WORK / "bench-diagnose" / name / f"{base}-vs-scratch", scratch=True)
    finetuned = {r["backbone"]: r["finetuned"] for r in rows}
    transfer_side = base if chosen.endswith("-random") else chosen
    transfer_value = finetuned[transfer_side]
    scratch_value = versus["scratch"]["metrics"]["test"][metric]
    said_transfer = advice["policy"] != "scratch"
    # a tie makes either advice right: each is matched when its side did at least as well
    matched = transfer_value >= scratch_value if said_transfer else scratch_value >= transfer_value
    return {"task": name, "metric": metric, "rows": rows, "tau": tau_diagnose, "tau_prior": tau_prior,
            "recommendation": advice, "outcome": {"backbone": transfer_side, "transfer": transfer_value,
                                                 "scratch": scratch_value, "verdict": versus["verdict"]["message"]},
            "matched": matched, "diagnose_seconds": diagnose_seconds,
            "items": diagnosis["items"]}


def show(result: dict[str, Any]) -> None:
    print(f"\n== {result['task']}: {result['items']} labelled items, test {result['metric']}; diagnose took "
          f"{result['diagnose_seconds']:.0f} s")
    print(f"{'candidate':32} {'rank':>4} {'k-NN':>6} {'probe':>6} {'LogME':>7} {'gain':>7} {'prior':>6} "
          f"{'fine-tuned':>10}")
    for r in sorted(result["rows"], key=lambda r: (r["rank"] or 99)):
        def num(v: Any, fmt: str) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

        print(f"{r['backbone']:32} {num(r['rank'], 'd'):>4} {num(r['knn'], '.3f'):>6} {num(r['probe'], '.3f'):>6} "
              f"{num(r['logme'], '.3f'):>7} {num(r['gain'], '+.3f'):>7} {num(r['prior'], '.1f'):>6} "
              f"{r['finetuned']:>10.4f}")
    advice, outcome = result["recommendation"], result["outcome"]
    def shown(value: float | None) -> str:
        return "undefined (all equal)" if value is None else f"{value:+.3f}"

    print(f"weighted tau: diagnose {shown(result['tau'])}   prior alone {shown(result['tau_prior'])}")
    print(f"recommended: {advice['policy']} with {advice['backbone']} ({advice['confidence']}); outcome: "
          f"{outcome['backbone']} fine-tuned {outcome['transfer']:.4f} against fair scratch {outcome['scratch']:.4f}"
          f" -> {'matched' if result['matched'] else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="image size of the image tasks")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    register_candidates()
    available = tasks(args.epochs, args.size)
    names = [t.strip() for t in args.tasks.split(",") if t.strip()] or list(available)
    results = []
    for name in names:
        raw, candidates = available[name]()
        results.append(run_task(name, raw, candidates))
        show(results[-1])
    defined = [r for r in results if r["tau"] is not None and r["tau_prior"] is not None]
    matched = sum(r["matched"] for r in results)
    if defined:
        mean_tau = sum(r["tau"] for r in defined) / len(defined)
        mean_prior = sum(r["tau_prior"] for r in defined) / len(defined)
        print(f"\nmean weighted tau over the {len(defined)} tasks where both are defined: diagnose {mean_tau:+.3f}, "
              f"prior alone {mean_prior:+.3f} (difference {mean_tau - mean_prior:+.3f})")
    print(f"transfer-or-scratch recommendation matched the outcome on {matched} of {len(results)} tasks")
    out = WORK / "bench_diagnose.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
