"""The ultralytics YOLO backbones tl-driving registers, as data: their layer groups (stem to Detect head) and the COCO
checkpoints by URL. Registering them imports nothing of ultralytics; :func:`build_model` does, when a model is built.
Training them is :mod:`tl_driving.yolo`'s job."""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from tl_core.api import BackboneSpec, InputSpec, LayerGroup, WeightsEntry, WeightsError, read_yaml

ASSETS = "https://github.com/ultralytics/assets/releases/download/v8.3.0/"
# model -> (number of backbone layers, number of layers); the same for every scale (n, s, m, l, x)
LAYOUTS = {"yolo11": (11, 24), "yolov8": (10, 23)}


@lru_cache(maxsize=1)
def coco_names() -> tuple[str, ...]:
    """The 80 class names of ultralytics' COCO checkpoints, in the order of their Detect rows: the ``names`` of
    ultralytics' own ``cfg/datasets/coco.yaml``, read from the installed package (without importing it)."""
    from importlib.util import find_spec

    spec = find_spec("ultralytics")
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0] if folders else ".") / "cfg" / "datasets" / "coco.yaml"
    names = (read_yaml(path, error=WeightsError) or {}).get("names") if path.is_file() else None
    if not isinstance(names, dict) or sorted(names) != list(range(80)):
        raise WeightsError(f"{path}: ultralytics' COCO class list (80 names) was not found; reinstall ultralytics")
    return tuple(str(names[i]) for i in range(80))


def layer_groups(family: str) -> tuple[LayerGroup, ...]:
    backbone, total = LAYOUTS[family]

    def layers(a: int, b: int) -> tuple[str, ...]:
        return tuple(f"model.{i}" for i in range(a, b))

    return (
        LayerGroup("stem", layers(0, 2)), LayerGroup("stage2", layers(2, 4)), LayerGroup("stage3", layers(4, 6)),
        LayerGroup("stage4", layers(6, 8)), LayerGroup("stage5", layers(8, backbone)),
        LayerGroup("neck", layers(backbone, total - 1)), LayerGroup("detect", layers(total - 1, total)),
    )


def quiet_import() -> None:
    """Import ultralytics with stdout sent to stderr. Its first import in a fresh config folder creates its settings
    file and says so on stdout ("Creating new Ultralytics Settings ..."), which would corrupt what a ``--json``
    command prints there (``tl diagnose --json``). Its log handler, which takes ``sys.stdout`` when ultralytics is
    imported, is then pointed back at stdout: every later ultralytics log goes where it went before."""
    import sys
    from contextlib import redirect_stdout

    if "ultralytics.utils" in sys.modules:
        return
    err = sys.stderr
    with redirect_stdout(err):
        from ultralytics.utils import LOGGER
    for handler in LOGGER.handlers:
        if getattr(handler, "stream", None) is err:
            handler.setStream(sys.stdout)


def build_model(cfg: str, nc: int = 80) -> Any:
    quiet_import()
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(cfg, nc=nc, verbose=False)


def _spec(name: str) -> BackboneSpec:
    family = "yolo11" if name.startswith("yolo11") else "yolov8"
    return BackboneSpec(
        name=name,
        factory=partial(build_model, f"{name}.yaml"),
        feature_dim=0,
        layer_groups=layer_groups(family),
        weights=(
            WeightsEntry(
                name="coco",
                architecture=name,
                source="url",
                location=f"{ASSETS}{name}.pt",
                sha256=None,  # ultralytics publishes no digest for its assets
                licence="AGPL-3.0 (Ultralytics)",
                training_data="COCO 2017 (80 classes)",
                description=f"Ultralytics {name} COCO detector (downloaded on first use)",
                reader="tl_driving.yolo:read_checkpoint",
                mean=(0.0, 0.0, 0.0),
                std=(1.0, 1.0, 1.0),
                input_size=640,
            ),
        ),
        input=InputSpec(size=640, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        tasks=("object-detection",),
        description=f"Ultralytics {name} (backbone, neck and Detect head; head: yolo)",
    )


BACKBONES = tuple(_spec(n) for n in ("yolo11n", "yolo11s", "yolov8n", "yolov8s"))


def is_yolo(name: str) -> bool:
    return any(name == b.name for b in BACKBONES)
