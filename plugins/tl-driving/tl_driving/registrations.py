"""What tl-driving registers, as data: its data formats and detector heads, naming their readers, options and
factories by reference (``"module:attribute"``), so that registering them - every ``tl`` command does - imports
nothing of the readers or the detectors."""

from __future__ import annotations

from tl_core.api import DataFormat, HeadSpec

TASK = "object-detection"
OPTIONS = "tl_driving.options:DrivingOptions"


def _format(name: str, description: str, read_split: str = "") -> DataFormat:
    return DataFormat(name, TASK, read=f"tl_driving.data:read_{name}_data",
                      read_split=f"tl_driving.formats:{read_split or f'read_{name}'}", options=OPTIONS,
                      description=description)


DATA_FORMATS: tuple[DataFormat, ...] = (
    _format("yolo", "an ultralytics data YAML (train/val/test, names) or images/ + labels/ + classes.txt; lines "
                    "'class cx cy w h' normalised to [0, 1]"),
    _format("coco", "a COCO JSON file (images, annotations with bbox [x, y, w, h], categories); images beside it "
                    "or in images/ (or data.options.images)"),
    _format("voc", "a Pascal VOC folder: Annotations/*.xml and JPEGImages/ (or images/); a year folder's "
                   "ImageSets/Main/train.txt, val.txt, trainval.txt and test.txt pick the splits", "read_voc_new"),
    _format("kitti", "a KITTI object folder: image_2/ and label_2/ (DontCare regions dropped)"),
    _format("bdd100k", "a BDD100K label JSON (frames with box2d labels) with its images in images/ beside it"),
)


def _detector(name: str, factory: str, description: str) -> HeadSpec:
    return HeadSpec(name, f"tl_driving.models:{factory}", tasks=(TASK,), options="tl_driving.models:DetectorOptions",
                    description=description)


HEADS = (
    HeadSpec("yolo", "tl_driving.models:yolo_head", tasks=(TASK,), options="tl_driving.options:YoloOptions",
             description="the ultralytics model's own Detect head, trained by ultralytics' trainer (its "
                         "integrations and analytics off unless head.integrations names them)"),
    _detector("faster-rcnn", "faster_rcnn",
              "torchvision Faster R-CNN (RPN + RoI heads) on an FPN over the backbone's strides 8-32"),
    _detector("retinanet", "retinanet", "torchvision RetinaNet (focal loss, one stage) on an FPN"),
    _detector("fcos", "fcos", "torchvision FCOS (anchor-free, one stage) on an FPN"),
    _detector("ssdlite", "ssdlite",
              "torchvision SSDlite (strides 16, 32 and four new blocks; depthwise-separable head)"),
)
