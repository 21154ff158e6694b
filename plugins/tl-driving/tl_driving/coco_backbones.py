"""torchvision's COCO-trained detectors, registered whole (body, feature pyramid, RPN and heads) as backbones named
``torchvision:<model>``, as data: their layer groups and their weights entries, written out from torchvision's
weights enums (``torchvision.models.get_model_weights(name)``: the URL, the sha256 prefix in its file name, the
published box mAP). Registering them imports nothing of torchvision; ``tests/test_coco_detectors.py`` checks this
data against the enums of the installed torchvision, so it cannot drift. :func:`build_detector` builds one, and
:mod:`tl_driving.coco_detectors` turns it into a detector for the data's classes.

The core's own ``torchvision:`` resolver builds torchvision's classification models; the registry looks registered
names up first, so these names are answered here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Any

from tl_core.api import BackboneSpec, InputSpec, LayerGroup, WeightsEntry

PREFIX = "torchvision:"
MODELS = "https://download.pytorch.org/models/"
COCO_CATEGORIES = 91  # torchvision's COCO heads: the background, 80 classes and the 10 unused ids ("N/A")
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))  # what torchvision's detectors normalise with
LICENCE = ("BSD-3-Clause (torchvision); torchvision's README: pre-trained weights may carry terms of the data they "
           "were trained on (COCO 2017)")


@dataclass(frozen=True)
class CocoModel:
    """One of torchvision's COCO detectors, as its weights enum describes it."""

    name: str  # torchvision's model name (get_model)
    kind: str  # the tl head it is: faster-rcnn, retinanet, fcos or ssdlite
    body: str  # the layout of its layer groups: resnet50, mobilenet_v3 or ssdlite
    enum: str  # its weights enum in torchvision.models.detection
    file: str  # the COCO_V1 file under MODELS; its name ends in the first digits of its sha256
    box_map: float  # COCO val2017 box mAP, as the enum publishes it
    num_params: int  # as the enum publishes it (torchvision's frozen BatchNorm holds no parameters)
    size: int  # torchvision's min_size: the shorter side it resizes to
    mean: tuple[float, ...] = IMAGENET[0]
    std: tuple[float, ...] = IMAGENET[1]
    #: the weights were trained with frozen BatchNorm's eps = 0: torchvision sets it when it loads them
    #: (``overwrite_eps(model, 0.0)``), and so does tl
    eps_zero: bool = False

    @property
    def url(self) -> str:
        return MODELS + self.file

    @property
    def sha256(self) -> str:
        """The sha256 prefix in the file name (torch.hub's ``check_hash`` checks the same digits)."""
        found = re.search(r"-([0-9a-f]{8,})\.pth$", self.file)
        assert found, self.file
        return found.group(1)


COCO_MODELS: tuple[CocoModel, ...] = (
    CocoModel("fasterrcnn_resnet50_fpn", "faster-rcnn", "resnet50", "FasterRCNN_ResNet50_FPN_Weights",
              "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", 37.0, 41_755_286, 800, eps_zero=True),
    CocoModel("fasterrcnn_resnet50_fpn_v2", "faster-rcnn", "resnet50", "FasterRCNN_ResNet50_FPN_V2_Weights",
              "fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth", 46.7, 43_712_278, 800),
    CocoModel("fasterrcnn_mobilenet_v3_large_fpn", "faster-rcnn", "mobilenet_v3",
              "FasterRCNN_MobileNet_V3_Large_FPN_Weights", "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth", 32.8,
              19_386_354, 800),
    CocoModel("fasterrcnn_mobilenet_v3_large_320_fpn", "faster-rcnn", "mobilenet_v3",
              "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights", "fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
              22.8, 19_386_354, 320),
    CocoModel("retinanet_resnet50_fpn", "retinanet", "resnet50", "RetinaNet_ResNet50_FPN_Weights",
              "retinanet_resnet50_fpn_coco-eeacb38b.pth", 36.4, 34_014_999, 800, eps_zero=True),
    CocoModel("retinanet_resnet50_fpn_v2", "retinanet", "resnet50", "RetinaNet_ResNet50_FPN_V2_Weights",
              "retinanet_resnet50_fpn_v2_coco-5905b1c5.pth", 41.5, 38_198_935, 800),
    CocoModel("fcos_resnet50_fpn", "fcos", "resnet50", "FCOS_ResNet50_FPN_Weights",
              "fcos_resnet50_fpn_coco-99b0c9b7.pth", 39.2, 32_269_600, 800),
    CocoModel("ssdlite320_mobilenet_v3_large", "ssdlite", "ssdlite", "SSDLite320_MobileNet_V3_Large_Weights",
              "ssdlite320_mobilenet_v3_large_coco-a79551df.pth", 21.3, 3_440_060, 320, mean=(0.5,) * 3, std=(0.5,) * 3),
)
BY_NAME = {PREFIX + m.name: m for m in COCO_MODELS}


def coco_model(name: str) -> CocoModel | None:
    """The COCO detector a backbone name (``torchvision:...``) registers, or ``None``."""
    return BY_NAME.get(name)


def _mobilenet_v3_stages(blocks: list[tuple[str, ...]]) -> tuple[LayerGroup, ...]:
    """MobileNetV3-Large's 17 feature blocks (each given as its module names) in torchvision's stages: it freezes
    whole stages (its ``trainable_backbone_layers``), each starting at a strided block (2, 4, 7, 13) or the last
    (16)."""
    bounds = ((0, 2), (2, 4), (4, 7), (7, 13), (13, 16), (16, 17))
    return tuple(LayerGroup("stem" if i == 0 else f"stage{i}", tuple(m for b in blocks[a:z] for m in b))
                 for i, (a, z) in enumerate(bounds))


def layer_groups(model: CocoModel) -> tuple[LayerGroup, ...]:
    """The detector's parameters, stem first: its body's stages, its feature pyramid (SSDlite: its four extra
    blocks), and last ``heads`` (the RPN and the RoI heads, or the one-stage head), the task head that always trains.
    Prefixes are the module names of torchvision's model."""
    if model.body == "resnet50":
        body = "backbone.body."
        stages: tuple[LayerGroup, ...] = (LayerGroup("stem", (body + "conv1", body + "bn1")),
                                          *(LayerGroup(f"layer{i}", (f"{body}layer{i}",)) for i in range(1, 5)))
    elif model.body == "mobilenet_v3":
        stages = _mobilenet_v3_stages([(f"backbone.body.{i}",) for i in range(17)])
    else:  # SSDlite cuts block 13 after its expansion layer (features.0.13 | features.1.0), where it reads C4
        f = "backbone.features."
        stages = _mobilenet_v3_stages([(f"{f}0.{i}",) for i in range(13)] + [(f"{f}0.13", f"{f}1.0")]
                                      + [(f"{f}1.{i}",) for i in range(1, 4)])
    neck = LayerGroup("extra", ("backbone.extra",)) if model.body == "ssdlite" else LayerGroup("fpn", ("backbone.fpn",))
    heads = LayerGroup("heads", ("rpn", "roi_heads") if model.kind == "faster-rcnn" else ("head",))
    return (*stages, neck, heads)


def build_detector(name: str) -> Any:
    """torchvision's ``name`` at random init with its 91 COCO outputs: the architecture the COCO files load into
    (with BatchNorm where torchvision's pre-trained builds freeze it, so that tl's policies decide what it does)."""
    from torchvision.models import get_model

    return get_model(name, weights=None, weights_backbone=None, num_classes=COCO_CATEGORIES)


def _entry(model: CocoModel, tag: str) -> WeightsEntry:
    alias = "" if tag == "COCO_V1" else ", torchvision's DEFAULT: the same file as COCO_V1"
    return WeightsEntry(
        name=tag, architecture=PREFIX + model.name, source="url", location=model.url, sha256=model.sha256,
        licence=LICENCE, mean=model.mean, std=model.std, input_size=model.size,
        training_data="COCO 2017 train (80 classes; 91 category ids with the background and 10 unused)",
        description=f"torchvision {model.enum}.{tag}{alias}: COCO val2017 box mAP {model.box_map} "
                    f"({model.num_params:,} parameters; downloaded on first use)",
    )


def _spec(model: CocoModel) -> BackboneSpec:
    return BackboneSpec(
        name=PREFIX + model.name,
        factory=partial(build_detector, model.name),
        feature_dim=0,
        layer_groups=layer_groups(model),
        weights=(_entry(model, "COCO_V1"), _entry(model, "DEFAULT")),
        input=InputSpec(size=model.size, mean=model.mean, std=model.std),
        tasks=("object-detection",),
        description=f"torchvision's COCO {model.kind} {model.name}, whole (head: {model.kind}; COCO rows kept)",
    )


BACKBONES = tuple(_spec(m) for m in COCO_MODELS)
