"""``tl diagnose`` for object detection: one feature vector per ground-truth box, from the detector's backbone.

Each training and validation image (never the test split) goes once through the backbone, preprocessed as the
detector's evaluation preprocesses it, without gradients. The backbone's maps at strides 8, 16 and 32 - the ones
the detector's neck reads - are each RoIAligned over every ground-truth box (``torchvision.ops.roi_align``, one
output cell averaging an adaptive grid of bilinear samples across the box: the mean of the map over the box), each
of the three vectors L2-normalised and the three concatenated. (Without the normalisation the widest, last map -
1280 channels of MobileNetV2, mostly context for boxes this small - outweighs the others: on 40 synthetic scenes
at image size 160, ImageNet MobileNetV2's features then scored below their random-init twin's (gain -0.02 of
k-NN and probe accuracy); normalised, above it (+0.13, 95% interval +0.07 to +0.19), as its stride-8 and
stride-16 maps alone do.) The label of a vector is its box's class.

* torchvision detectors (Faster R-CNN, RetinaNet, FCOS, SSDlite): the images and boxes go through the detector's
  own ``transform`` (normalised by the backbone's mean and std, resized as at evaluation: SSDlite to a square), and
  the maps are the registry backbone's tapped layer groups (:func:`tl_driving.models.taps`); the feature pyramid
  and the heads are new layers, so they are left out.
* torchvision's whole COCO detectors (``torchvision:<model>``): the same transform; their feature pyramid was
  trained on COCO with the body, and it is what their heads read, so the maps are its first three levels (strides 8, 16
  and 32 for the ResNet-50 FPNs; 32, 32 and 64 for the MobileNetV3 FPNs, whose pyramid starts at stride 32;
  SSDlite: its two MobileNetV3 maps at 16 and 32); the heads are left out.
* ultralytics YOLO: the images in [0, 1], the longer side ``data.options.image_size``, padded (right and bottom,
  ultralytics' letterbox grey) to a multiple of 32; the maps are the last backbone layer (stem to stage5, not the
  neck) at each stride, the layers the neck reads (P3, P4, P5).

A box smaller than one pixel (either side) at the model's input is skipped and named: it holds no pixel of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tl_core.api import FeatureSet, Recipe
    from tl_driving.models import Detector

STRIDES = (8, 16, 32)
MIN_SIDE = 1.0  # pixels at the model's input: a smaller box is skipped
LETTERBOX = 114 / 255  # ultralytics' padding grey


def extract(recipe: Recipe, det: Detector, data: Any, progress: Any) -> FeatureSet:
    import torch

    from tl_core.api import FeatureSet, resolve_device
    from tl_driving.data import DetectionDataset
    from tl_driving.yolo import YoloDetector

    device = torch.device(resolve_device(recipe.train.device))
    model = det.model.to(device).eval()
    yolo = isinstance(det, YoloDetector)
    maps_of = _yolo_maps(det) if yolo else _torchvision_maps(model)
    batch = max(1, recipe.train.batch_size)
    rows: list[Any] = []
    labels: list[int] = []
    skipped: list[str] = []
    with torch.no_grad():
        for split in (data.train, data.val):
            if not split:
                continue
            dataset = DetectionDataset(split, det.size, augment=False)
            for start in range(0, len(dataset), batch):
                indices = range(start, min(start + batch, len(dataset)))
                items = [dataset[i] for i in indices]
                images = [x.to(device) for x, _ in items]
                targets = [{k: v.to(device) for k, v in t.items()} for _, t in items]
                tensor, targets, maps = maps_of(images, targets)
                for j, (i, target) in enumerate(zip(indices, targets)):
                    boxes, classes = target["boxes"], target["labels"]
                    if not len(boxes):
                        continue
                    sides = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
                    keep = sides >= MIN_SIDE
                    sample = split.samples[i]
                    for k in (~keep).nonzero().flatten().tolist():
                        w, h = (boxes[k, 2] - boxes[k, 0]).item(), (boxes[k, 3] - boxes[k, 1]).item()
                        box = sample.boxes[k]
                        skipped.append(f"{sample.image}: box #{k} ({data.classes[box.label]}, "
                                       f"{box.width:g}x{box.height:g} at ({box.x1:g}, {box.y1:g})) is {w:.2f}x{h:.2f} "
                                       f"pixels at image size {det.size}: smaller than a pixel, not pooled")
                    if keep.any():
                        rows.append(_pool(maps, j, boxes[keep], tensor.shape[-1]))
                        labels.extend(int(c) for c in classes[keep])
                progress(len(items))
    if not rows:
        from tl_core.api import TLError

        raise TLError(f"{recipe.data.path}: no ground-truth box of the training or validation images is large "
                      f"enough to pool at image size {det.size}; raise data.options.image_size")
    whole = not yolo and not hasattr(model.detector.backbone, "names")  # a COCO detector's pre-trained pyramid
    where = ("the backbone's last layer at strides " if yolo else "the detector's COCO-trained feature pyramid at "
             "strides " if whole else "the backbone's tapped layer groups at strides ")
    strides = ", ".join(str(round(tensor.shape[-1] / m.shape[-1])) for m in maps)
    input_ = ("images in [0, 1], longer side resized, letterboxed" if yolo else
              "the detector's evaluation transform (normalised, resized)")
    how = (f"per-box RoIAlign (mean over the box) of {where}{strides}, each L2-normalised, concatenated; "
           f"{input_}, image size {det.size}")
    return FeatureSet(torch.cat(rows).float().cpu(), labels=torch.tensor(labels, dtype=torch.long),
                      classes=list(data.classes), unit="boxes", how=how, skipped=skipped)


def _pool(maps: list[Any], j: int, boxes: Any, width: int) -> Any:
    """The mean of each map over each box (``boxes`` in input pixels), each map's vector L2-normalised (so that
    every stride counts the same, whatever its width and activation scale), side by side."""
    import torch
    from torch.nn.functional import normalize
    from torchvision.ops import roi_align

    rois = [boxes.float()]
    out = [normalize(roi_align(m[j:j + 1].float(), rois, output_size=1, spatial_scale=m.shape[-1] / width,
                               sampling_ratio=-1, aligned=True).flatten(1), dim=1) for m in maps]
    return torch.cat(out, dim=1)


def _torchvision_maps(model: Any) -> Any:
    """``(images, targets) -> (input tensor, targets in its pixels, backbone maps)`` for a torchvision detector: the
    registry backbone's tapped layer groups, or - for a whole COCO detector, whose pyramid is pre-trained too - the
    first three levels of its own feature pyramid (SSDlite: its feature maps)."""
    from tl_driving.models import _read

    detector = model.detector
    body = detector.backbone

    def run(images: list[Any], targets: list[Any]) -> tuple[Any, list[Any], list[Any]]:
        batch, targets = detector.transform(images, targets)
        if hasattr(body, "names"):  # tl's Body: a registry backbone under a new pyramid
            return batch.tensors, targets, _read(body.module, batch.tensors, body.names)
        width = batch.tensors.shape[-1]
        levels = list(body(batch.tensors).values())
        return batch.tensors, targets, [m for m in levels if round(width / m.shape[-1]) in STRIDES]

    return run


def _yolo_maps(det: Detector) -> Any:
    """``(images, targets) -> (input tensor, targets, backbone maps)`` for an ultralytics DetectionModel: its
    backbone layers (every layer group before the neck) run as ultralytics runs them, and the last output at each
    stride kept."""
    import torch
    import torch.nn.functional as F

    backbone = {int(p.split(".")[1]) for g in det.groups if g.name not in ("neck", "detect") for p in g.prefixes}
    layers = list(det.model.model)[:max(backbone) + 1]

    def run(images: list[Any], targets: list[Any]) -> tuple[Any, list[Any], list[Any]]:
        h = max(x.shape[1] for x in images)
        w = max(x.shape[2] for x in images)
        h, w = -(-h // 32) * 32, -(-w // 32) * 32
        batch = torch.stack([F.pad(im, (0, w - im.shape[2], 0, h - im.shape[1]), value=LETTERBOX)
                             for im in images])
        x: Any = batch
        outputs: list[Any] = []
        found: dict[int, Any] = {}
        for layer in layers:
            f = layer.f
            if f != -1:
                x = outputs[f] if isinstance(f, int) else [x if i == -1 else outputs[i] for i in f]
            x = layer(x)
            outputs.append(x)
            if isinstance(x, torch.Tensor) and x.ndim == 4 and w % x.shape[-1] == 0 and w // x.shape[-1] in STRIDES:
                found[w // x.shape[-1]] = x  # a later layer at the same stride wins
        return batch, targets, [found[s] for s in sorted(found)]

    return run
