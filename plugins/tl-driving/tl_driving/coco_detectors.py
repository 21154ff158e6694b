"""torchvision's COCO detectors, whole, fine-tuned on the data's classes: what torchvision's fine-tuning tutorial
does (keep the COCO-trained body, pyramid, RPN and heads; swap the box predictor), with tl's weights machinery,
COCO warm start and freeze policies.

The backbone ``torchvision:<model>`` (:mod:`tl_driving.coco_backbones`) is torchvision's detector with its 91 COCO
outputs, loaded by the core (``backbone.weights``: ``COCO_V1``/``DEFAULT``, a local file mapped like them, or
``none``), so its load report, sha256 check and offline message are every backbone's. Then the class predictor
gets one row per target class plus the background (:func:`resize_classes`): a class that COCO knows keeps its COCO
row (by name, :func:`tl_driving.class_rows.source_rows`, the YOLO path's rule), the others start as torchvision
starts a new head, and the load report names the rows kept.

The core sees the model as ``backbone`` (the body and the feature pyramid, or SSDlite's extra blocks: the layer
groups the policies act on, their BatchNorm included) and ``head`` (the RPN and RoI heads, or the one-stage head:
always trained). ``feature-extraction`` therefore trains the COCO heads on a frozen COCO body, ``fine-tune``'s
``layer_decay`` runs from the pyramid down to the stem, ``freeze-first`` freezes stages from the stem as
torchvision's ``trainable_backbone_layers`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tl_core.api import LayerGroup, TLError
from tl_driving.class_rows import kept_line, source_rows
from tl_driving.coco_backbones import COCO_CATEGORIES, coco_model
from tl_driving.models import Detector, DetectorOptions

if TYPE_CHECKING:
    from tl_core.api import Recipe

BACKBONE = "backbone."  # the policies' groups: the spec's, without the heads, inside the detector's ``backbone``
#: where each kind keeps its class rows (the tensors a file must fill for the COCO rows to be kept)
PREDICTORS = {"faster-rcnn": "roi_heads.box_predictor", "retinanet": "head.classification_head.cls_logits",
              "fcos": "head.classification_head.cls_logits", "ssdlite": "head.classification_head.module_list"}


@dataclass
class CocoDetector(Detector):
    """A whole torchvision COCO detector: its freeze-policy groups are its body's stages and its pyramid."""

    kind: str = ""

    @property
    def groups(self) -> tuple[LayerGroup, ...]:
        """The spec's layer groups without the last (``heads``, the task head), as names inside ``model.backbone``."""
        return tuple(LayerGroup(g.name, tuple(p[len(BACKBONE):] for p in g.prefixes))
                     for g in self.backbone.spec.layer_groups[:-1])


def _model_class() -> type:
    from torch import nn

    class WholeDetector(nn.Module):
        """torchvision's detector, seen by the core as ``backbone`` (body + pyramid) and ``head`` (the rest)."""

        def __init__(self, detector: nn.Module) -> None:
            super().__init__()
            self.detector = detector

        @property
        def backbone(self) -> nn.Module:
            return self.detector.backbone

        @property
        def head(self) -> nn.Module:
            """The RPN and RoI heads, or the one-stage head (and parameter-free parts: anchors)."""
            return nn.ModuleList([m for n, m in self.detector.named_children() if n not in ("backbone", "transform")])

        def forward(self, images: Any, targets: Any = None) -> Any:
            return self.detector(images, targets)

    return WholeDetector


def _pretrained(recipe: Any) -> bool:
    weights = recipe.backbone.weights
    return weights is not None and weights.lower() != "none"


def build(recipe: Recipe, data: Any, weights: str | None = None) -> CocoDetector:
    """The recipe's ``torchvision:<model>`` detector for ``data.classes``, its COCO weights (``backbone.weights``, or
    ``weights``: ``"none"`` to rebuild a finished run's architecture) loaded and its class rows resized."""
    from torch import nn

    from tl_core.api import backbone_for

    model = coco_model(recipe.backbone.name)
    assert model is not None, recipe.backbone.name
    if recipe.head.name != model.kind:
        raise TLError(f"head {recipe.head.name!r} does not fit backbone {recipe.backbone.name!r}, a whole COCO "
                      f"{model.kind} detector with its own heads: set head.name to {model.kind}")
    options = DetectorOptions(**recipe.head.options)
    if tuple(options.anchor_sizes) != DetectorOptions().anchor_sizes:
        raise TLError(f"head.anchor_sizes: {recipe.backbone.name} keeps the anchors its COCO heads were trained "
                      "with; remove head.anchor_sizes")
    built = backbone_for(recipe, weights=weights)
    detector = built.module
    # by the recipe, so that a rebuilt run (weights "none") matches; only where BatchNorm keeps its running
    # statistics (torchvision sets eps = 0 on frozen BatchNorm only): batch statistics with eps = 0 divide a channel
    # that is constant over the batch (a dead ReLU's zeros) by zero
    frozen_bn = recipe.policy.name == "feature-extraction" or recipe.policy.options.get("bn") in ("freeze",
                                                                                                  "freeze-stats")
    if model.eps_zero and _pretrained(recipe) and frozen_bn:
        for module in detector.backbone.body.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eps = 0.0
    size = recipe.data.image_size or data.options.image_size
    transform = detector.transform
    transform.min_size, transform.max_size = (size,), size
    if model.kind == "ssdlite":
        transform.fixed_size = (size, size)
    postprocess = detector.roi_heads if model.kind == "faster-rcnn" else detector  # where torchvision keeps them
    postprocess.score_thresh, postprocess.detections_per_img = options.score_threshold, options.detections_per_image
    categories = None
    if built.report is not None and _predictor_loaded(built.report, model.kind):
        from torchvision.models import get_model_weights

        categories = list(get_model_weights(model.name)["COCO_V1"].meta["categories"])
    classes = list(data.classes)
    lines = resize_classes(detector, model.kind, classes, categories, data.options.class_map)
    if built.report is not None:
        built.report.reshaped.extend(lines or [f"{PREDICTORS[model.kind]}: the file's class rows do not fit COCO's "
                                               f"{COCO_CATEGORIES}; all {len(classes)} class rows new"])
    return CocoDetector(_model_class()(detector), built, classes, size, kind=model.kind)


def _predictor_loaded(report: Any, kind: str) -> bool:
    """True when the weights file filled the class predictor (a file of another class count leaves it as built)."""
    prefix = PREDICTORS[kind]
    fresh = report.missing + [r.split(":")[0] for r in report.reinitialised]
    return not any(k.startswith(prefix) for k in fresh)


def resize_classes(detector: Any, kind: str, classes: list[str], categories: list[str] | None,
                   class_map: dict[str, str | None]) -> list[str]:
    """Give the detector's class predictor ``len(classes) + 1`` outputs (the background first, as torchvision's
    detectors count). With ``categories`` (the names of the loaded rows, torchvision's 91), the background row and
    the rows of the COCO classes the target classes name are copied; every other row starts as torchvision starts a
    new predictor. Faster R-CNN's class-specific box regression rows follow their class. Returns the load report's
    lines (none without ``categories``)."""
    import math

    import torch
    from torch import nn

    n = len(classes) + 1
    rows = source_rows(classes, categories, class_map) if categories is not None else {}
    pairs = ([(0, 0)] + [(j + 1, k) for j, k in rows.items()]) if categories is not None else []
    lines: list[str] = []

    def note(where: str) -> None:
        if categories is not None:
            lines.append(kept_line(where, classes, categories, rows, also="background"))

    def conv(old: nn.Conv2d, std: float, bias: float) -> nn.Conv2d:
        """``old``'s class outputs (anchor-major: output ``a * K + k``) for ``n`` classes, initialised as torchvision
        initialises this layer, the kept rows copied for every anchor."""
        anchors = old.out_channels // COCO_CATEGORIES
        new = nn.Conv2d(old.in_channels, anchors * n, old.kernel_size, old.stride, old.padding)
        with torch.no_grad():
            nn.init.normal_(new.weight, std=std)
            nn.init.constant_(new.bias, bias)
            for a in range(anchors):
                for r, k in pairs:
                    new.weight[a * n + r] = old.weight[a * COCO_CATEGORIES + k]
                    new.bias[a * n + r] = old.bias[a * COCO_CATEGORIES + k]
        return new

    if kind == "faster-rcnn":
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

        old = detector.roi_heads.box_predictor
        new = FastRCNNPredictor(old.cls_score.in_features, n)  # the tutorial's new predictor
        with torch.no_grad():
            for r, k in pairs:
                new.cls_score.weight[r], new.cls_score.bias[r] = old.cls_score.weight[k], old.cls_score.bias[k]
                new.bbox_pred.weight[4 * r:4 * r + 4] = old.bbox_pred.weight[4 * k:4 * k + 4]
                new.bbox_pred.bias[4 * r:4 * r + 4] = old.bbox_pred.bias[4 * k:4 * k + 4]
        detector.roi_heads.box_predictor = new
        note("roi_heads.box_predictor (cls_score, bbox_pred)")
    elif kind in ("retinanet", "fcos"):
        head = detector.head.classification_head
        prior = -math.log((1 - 0.01) / 0.01)  # torchvision's prior probability 0.01 for a new class
        head.cls_logits = conv(head.cls_logits, 0.01, prior)
        head.num_classes = n
        note("head.classification_head.cls_logits")
    else:  # ssdlite: one predictor per feature map, the last layer of each block
        head = detector.head.classification_head
        for i, block in enumerate(head.module_list):
            block[-1] = conv(block[-1], 0.03, 0.0)
            note(f"head.classification_head.module_list.{i}.{len(block) - 1}")
        head.num_columns = n
    return lines
