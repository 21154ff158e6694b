"""torchvision detectors (Faster R-CNN, RetinaNet, FCOS) on any registry backbone.

The registry backbone's feature map (torchvision ``features``, or timm's ``forward_features``) becomes the
detector's body; a fresh box predictor is sized from the data's classes. Freeze policies act on the backbone's
own layer groups (instead of torchvision's ``trainable_backbone_layers``), and their BatchNorm rules apply to it:
a frozen group's BatchNorm stays in eval mode, so its statistics cannot drift with tiny detection batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tl_core.components import HeadSpec, ModelBundle
from tl_core.errors import TLError

if TYPE_CHECKING:
    from tl_core.recipe import Recipe

TASK = "object-detection"


class DetectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    anchor_sizes: tuple[int, ...] = Field((16, 32, 64, 128), description="anchor sizes in pixels (one feature map)")
    score_threshold: float = Field(0.05, ge=0, lt=1, description="detections below this score are dropped")
    detections_per_image: int = Field(100, ge=1)


def feature_map(module: Any, x: Any) -> Any:
    """The backbone's last feature map (before pooling)."""
    if hasattr(module, "forward_features"):  # timm
        return module.forward_features(x)
    features = getattr(module, "features", None)
    if features is None:
        raise TLError(f"{type(module).__name__} has no 'features' nor 'forward_features'; it cannot be a detector body")
    return features(x)


NECK_CHANNELS = 256


def _body(module: Any, channels: int) -> Any:
    from torch import nn

    class Body(nn.Module):
        """The registry backbone's feature map, projected to ``NECK_CHANNELS`` by a new 1x1 convolution (the
        "neck", trained with the head) so the detection heads stay small."""

        def __init__(self) -> None:
            super().__init__()
            self.module = module
            self.neck = nn.Sequential(nn.Conv2d(channels, NECK_CHANNELS, 1), nn.ReLU(inplace=True))
            self.out_channels = NECK_CHANNELS

        def forward(self, x: Any) -> Any:
            return self.neck(feature_map(self.module, x))

    return Body()


def _anchors(options: DetectorOptions) -> Any:
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    return AnchorGenerator(sizes=(options.anchor_sizes,), aspect_ratios=((0.5, 1.0, 2.0),))


def faster_rcnn(body: Any, num_classes: int, mean: Any, std: Any, size: int, options: DetectorOptions) -> Any:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    representation = 256  # torchvision's default 1024 would put 13M parameters in the box head
    return FasterRCNN(body, rpn_anchor_generator=_anchors(options),
                      box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), min_size=size, max_size=size,
                      box_head=TwoMLPHead(body.out_channels * 7 * 7, representation),
                      box_predictor=FastRCNNPredictor(representation, num_classes),
                      image_mean=list(mean), image_std=list(std), box_score_thresh=options.score_threshold,
                      box_detections_per_img=options.detections_per_image)


def retinanet(body: Any, num_classes: int, mean: Any, std: Any, size: int, options: DetectorOptions) -> Any:
    from torchvision.models.detection import RetinaNet

    return RetinaNet(body, num_classes=num_classes, anchor_generator=_anchors(options), min_size=size,
                     max_size=size, image_mean=list(mean), image_std=list(std),
                     score_thresh=options.score_threshold, detections_per_img=options.detections_per_image)


def fcos(body: Any, num_classes: int, mean: Any, std: Any, size: int, options: DetectorOptions) -> Any:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    one_point = AnchorGenerator(sizes=((options.anchor_sizes[0],),), aspect_ratios=((1.0,),))  # anchor-free
    return FCOS(body, num_classes=num_classes, anchor_generator=one_point,
                min_size=size, max_size=size, image_mean=list(mean), image_std=list(std),
                score_thresh=options.score_threshold, detections_per_img=options.detections_per_image)


def yolo_head(*args: Any, **kwargs: Any) -> Any:
    raise TLError("the yolo head is part of an ultralytics model: use a yolo backbone (yolo11n, yolov8n, ...)")


HEADS = (
    HeadSpec("yolo", yolo_head, tasks=(TASK,), description="the ultralytics model's own Detect head"),
    HeadSpec("faster-rcnn", faster_rcnn, tasks=(TASK,), options=DetectorOptions,
             description="torchvision Faster R-CNN (RPN + RoI heads) on the backbone's last feature map"),
    HeadSpec("retinanet", retinanet, tasks=(TASK,), options=DetectorOptions,
             description="torchvision RetinaNet (focal loss, one stage)"),
    HeadSpec("fcos", fcos, tasks=(TASK,), options=DetectorOptions,
             description="torchvision FCOS (anchor-free, one stage)"),
)


@dataclass
class Detector(ModelBundle):
    """What ``tl_build_model`` returns for object detection: the model, its backbone, the classes, the size."""

    classes: list[str] = field(default_factory=list)
    size: int = 320


def build(recipe: Recipe, data: Any, weights: str | None = None) -> Detector:
    from torch import nn

    from tl_core.components import InputSpec
    from tl_core.model import build_backbone
    from tl_core.plugins import registry

    spec = registry("backbone").get(recipe.backbone.name)
    head = registry("head").get(recipe.head.name)
    if TASK not in head.tasks:
        detectors = ", ".join(n for n, h in registry("head").items() if TASK in h.tasks)
        raise TLError(f"head {head.name!r} is not a detector; object-detection heads: {detectors}")
    rgb = InputSpec(channels=3, size=spec.input.size, mean=spec.input.mean, std=spec.input.std)
    built = build_backbone(spec, recipe.backbone.weights if weights is None else weights, rgb)
    size = recipe.data.image_size or data.options.image_size
    detector = head.factory(_body(built.module, spec.feature_dim), len(data.classes) + 1, built.input.mean,
                            built.input.std, size, DetectorOptions(**recipe.head.options))

    class DetectionModel(nn.Module):
        """The torchvision detector, seen by the core as ``backbone`` (the registry module) + ``head``."""

        def __init__(self) -> None:
            super().__init__()
            self.detector = detector

        @property
        def backbone(self) -> nn.Module:
            return self.detector.backbone.module

        @property
        def head(self) -> nn.Module:
            """Everything new: the neck, and the detector's heads (RPN and box heads, or the one-stage head)."""
            rest = [m for n, m in self.detector.named_children() if n not in ("backbone", "transform")]
            return nn.ModuleList([self.detector.backbone.neck, *rest])

        def forward(self, images: Any, targets: Any = None) -> Any:
            return self.detector(images, targets)

    return Detector(DetectionModel(), built, list(data.classes), size)
