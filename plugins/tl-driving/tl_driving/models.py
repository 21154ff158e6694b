"""torchvision detectors (Faster R-CNN, RetinaNet, FCOS, SSDlite) on any registry backbone. (torchvision's own
COCO-trained detectors, whole, are :mod:`tl_driving.coco_detectors`'s; :mod:`tl_driving.build` picks one.)

The registry backbone's stride-8, 16 and 32 maps (the last layer-group module at each stride, found by a probe
image) feed a new feature pyramid (SSDlite: strides 16 and 32 and four new blocks); a fresh box predictor is
sized from the data's classes. Freeze policies act on the backbone's
own layer groups (instead of torchvision's ``trainable_backbone_layers``), and their BatchNorm rules apply to it:
a frozen group's BatchNorm stays in eval mode, so its statistics cannot drift with tiny detection batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from tl_core.api import InputSpec, ModelBundle, TLError
from tl_driving.registrations import TASK

if TYPE_CHECKING:
    from tl_core.api import Recipe



class DetectorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    anchor_sizes: tuple[int, ...] = Field(
        (16, 32, 64, 128),
        description="anchor size in pixels per pyramid level (strides 8, 16, 32, 64); SSDlite: its smallest box",
    )
    score_threshold: float = Field(0.05, ge=0, lt=1, description="detections below this score are dropped")
    detections_per_image: int = Field(100, ge=1)


def feature_map(module: Any, x: Any) -> Any:
    """Run the backbone's feature path (timm ``forward_features``, a ``features`` stack, or the module itself)."""
    if hasattr(module, "forward_features"):  # timm
        return module.forward_features(x)
    features = getattr(module, "features", None)
    return module(x) if features is None else features(x)


STRIDES = (8, 16, 32)
NECK_CHANNELS = 256
PROBE = 256  # a multiple of every stride


def taps(module: Any, spec: Any, strides: tuple[int, ...] = STRIDES) -> list[tuple[str, int, int]]:
    """``(module name, stride, channels)`` of the maps a detector reads: for each stride, the last of the
    backbone's layer-group modules (a stage, a block; not their insides) whose output has that stride, found by
    running one probe image through the backbone. A timm model declares its feature maps (``feature_info``: what
    ``features_only=True`` returns, whole stages after their residual sums); those are read instead, since its
    layer groups (timm's ``group_matcher``) may end inside a stage (``layer4.1.bn2``, before the residual sum)."""
    import torch

    names = {p for g in spec.layer_groups for p in g.prefixes}
    info = getattr(module, "feature_info", None)
    if isinstance(info, list) and info and all(isinstance(f, dict) and "module" in f for f in info):
        names = {f["module"] for f in info}
    modules = dict(module.named_modules())
    seen: list[tuple[str, Any]] = []
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: seen.append((n, o)))
               for n in names if n in modules]
    try:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            feature_map(module, torch.zeros(1, 3, PROBE, PROBE))
        module.train(was_training)
    finally:
        for h in handles:
            h.remove()
    found: dict[int, tuple[str, int, int]] = {}
    for name, out in seen:
        if isinstance(out, torch.Tensor) and out.ndim == 4 and PROBE % out.shape[-1] == 0:
            stride = PROBE // out.shape[-1]
            if stride in strides:
                found[stride] = (name, stride, out.shape[1])  # a later module at the same stride wins
    if not found:
        raise TLError(f"backbone {spec.name!r}: none of its layer groups outputs a map of stride "
                      f"{', '.join(map(str, strides))}; it cannot be a detector body")
    return [found[s] for s in sorted(found)]


def _keep(module: Any, inputs: Any, output: Any) -> None:
    module._tl_tap = output


def _tap(module: Any, names: list[str]) -> None:
    """Hook the tapped modules so that each keeps its output of the current forward pass (on itself, so a deep
    copy of the model taps its own modules)."""
    for name in names:
        module.get_submodule(name).register_forward_hook(_keep)


def _read(module: Any, x: Any, names: list[str]) -> list[Any]:
    feature_map(module, x)
    maps = []
    for name in names:
        tapped = module.get_submodule(name)
        maps.append(tapped._tl_tap)
        tapped._tl_tap = None
    return maps


def _fpn_body(module: Any, spec: Any) -> Any:
    """The backbone's stride-8/16/32 maps through a new feature pyramid (torchvision's FPN with a max-pooled
    stride-64 level): the "neck", trained with the heads."""
    from collections import OrderedDict

    from torch import nn
    from torchvision.ops import FeaturePyramidNetwork
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    tapped = taps(module, spec)

    class Body(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module
            self.names = [n for n, _, _ in tapped]
            self.strides = [s for _, s, _ in tapped] + [tapped[-1][1] * 2]
            self.neck = FeaturePyramidNetwork([c for _, _, c in tapped], NECK_CHANNELS,
                                              extra_blocks=LastLevelMaxPool())
            self.out_channels = NECK_CHANNELS
            _tap(module, self.names)

        def forward(self, x: Any) -> Any:
            maps = _read(self.module, x, self.names)
            return self.neck(OrderedDict((str(i), m) for i, m in enumerate(maps)))

    return Body()


def _levels(body: Any, options: DetectorOptions) -> tuple[tuple[int, ...], ...]:
    if len(options.anchor_sizes) != len(body.strides):
        raise TLError(f"head.anchor_sizes has {len(options.anchor_sizes)} sizes but the feature pyramid has "
                      f"{len(body.strides)} levels (strides {', '.join(map(str, body.strides))}): give one size "
                      f"per level, e.g. --set head.anchor_sizes=[16,32,64,128]")
    return tuple((s,) for s in options.anchor_sizes)


def _anchors(body: Any, options: DetectorOptions) -> Any:
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = _levels(body, options)
    return AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))


def faster_rcnn(module: Any, spec: Any, num_classes: int, mean: Any, std: Any, size: int,
                options: DetectorOptions) -> Any:
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    body = _fpn_body(module, spec)
    representation = 256  # torchvision's default 1024 would put 13M parameters in the box head
    levels = [str(i) for i in range(len(body.names))]  # RoIs pool from the stride-8/16/32 maps
    return FasterRCNN(body, rpn_anchor_generator=_anchors(body, options),
                      box_roi_pool=MultiScaleRoIAlign(levels, 7, 2), min_size=size, max_size=size,
                      box_head=TwoMLPHead(body.out_channels * 7 * 7, representation),
                      box_predictor=FastRCNNPredictor(representation, num_classes),
                      image_mean=list(mean), image_std=list(std), box_score_thresh=options.score_threshold,
                      box_detections_per_img=options.detections_per_image)


def retinanet(module: Any, spec: Any, num_classes: int, mean: Any, std: Any, size: int,
              options: DetectorOptions) -> Any:
    from torchvision.models.detection import RetinaNet

    body = _fpn_body(module, spec)
    return RetinaNet(body, num_classes=num_classes, anchor_generator=_anchors(body, options), min_size=size,
                     max_size=size, image_mean=list(mean), image_std=list(std),
                     score_thresh=options.score_threshold, detections_per_img=options.detections_per_image)


def fcos(module: Any, spec: Any, num_classes: int, mean: Any, std: Any, size: int, options: DetectorOptions) -> Any:
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    body = _fpn_body(module, spec)
    sizes = _levels(body, options)
    one_point = AnchorGenerator(sizes=sizes, aspect_ratios=((1.0,),) * len(sizes))  # anchor-free: one per place
    return FCOS(body, num_classes=num_classes, anchor_generator=one_point,
                min_size=size, max_size=size, image_mean=list(mean), image_std=list(std),
                score_thresh=options.score_threshold, detections_per_img=options.detections_per_image)


SSD_EXTRAS = (512, 256, 256, 128)


def ssdlite(module: Any, spec: Any, num_classes: int, mean: Any, std: Any, size: int,
            options: DetectorOptions) -> Any:
    """SSDlite as torchvision builds it on MobileNetV3 (its ``ssdlite320_mobilenet_v3_large``): the backbone's
    stride-16 and stride-32 maps, four new depthwise-separable blocks that halve the map each, and the SSDlite
    head (depthwise-separable predictors). Default boxes range from ``anchor_sizes[0]`` pixels to 95% of the
    image."""
    from collections import OrderedDict
    from functools import partial

    import torch
    from torch import nn
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.ssdlite import SSDLiteHead
    from torchvision.ops.misc import Conv2dNormActivation

    tapped = taps(module, spec, (16, 32))
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)

    def extra(c_in: int, c_out: int) -> nn.Sequential:  # torchvision's ssdlite._extra_block
        mid = c_out // 2
        return nn.Sequential(
            Conv2dNormActivation(c_in, mid, kernel_size=1, norm_layer=norm, activation_layer=nn.ReLU6),
            Conv2dNormActivation(mid, mid, kernel_size=3, stride=2, groups=mid, norm_layer=norm,
                                 activation_layer=nn.ReLU6),
            Conv2dNormActivation(mid, c_out, kernel_size=1, norm_layer=norm, activation_layer=nn.ReLU6),
        )

    channels = [c for _, _, c in tapped]
    last = channels[-1]
    extras = nn.ModuleList()
    for c in SSD_EXTRAS:
        extras.append(extra(last, c))
        last = c
    for layer in extras.modules():  # torchvision's _normal_init for new layers
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)

    class Body(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = module
            self.names = [n for n, _, _ in tapped]
            self.neck = extras
            _tap(module, self.names)

        def forward(self, x: Any) -> Any:
            maps = _read(self.module, x, self.names)
            for block in self.neck:
                maps.append(block(maps[-1]))
            return OrderedDict((str(i), m) for i, m in enumerate(maps))

    body = Body()
    in_channels = channels + list(SSD_EXTRAS)
    low = min(options.anchor_sizes[0] / size, 0.5)
    scales = torch.logspace(torch.log10(torch.tensor(low)), torch.log10(torch.tensor(0.95)),
                            len(in_channels) + 1).tolist()
    boxes = DefaultBoxGenerator([[2, 3]] * len(in_channels), scales=scales)
    head = SSDLiteHead(in_channels, boxes.num_anchors_per_location(), num_classes, norm)
    return SSD(body, boxes, (size, size), num_classes, image_mean=list(mean), image_std=list(std), head=head,
               score_thresh=options.score_threshold, nms_thresh=0.55,
               detections_per_img=options.detections_per_image, topk_candidates=300)


def yolo_head(*args: Any, **kwargs: Any) -> Any:
    raise TLError("the yolo head is part of an ultralytics model: use a yolo backbone (yolo11n, yolov8n, ...)")


@dataclass
class Detector(ModelBundle):
    """What ``tl_build_model`` returns for object detection: the model, its backbone, the classes, the size."""

    classes: list[str] = field(default_factory=list)
    size: int = 320


def on_backbone(recipe: Recipe, data: Any, weights: str | None = None) -> Detector:
    """A registry backbone under a new pyramid and the recipe's torchvision head, sized for ``data.classes``."""
    from torch import nn

    from tl_core.api import backbone_for, registry

    head = registry("head").get(recipe.head.name)
    if TASK not in head.tasks:
        detectors = ", ".join(n for n, h in registry("head").items() if TASK in h.tasks)
        raise TLError(f"head {head.name!r} is not a detector; object-detection heads: {detectors}")
    built = backbone_for(recipe, InputSpec(channels=3), weights)
    spec = built.spec
    size = recipe.data.image_size or data.options.image_size
    detector = head.factory(built.module, spec, len(data.classes) + 1, built.input.mean, built.input.std, size,
                            DetectorOptions(**recipe.head.options))

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
