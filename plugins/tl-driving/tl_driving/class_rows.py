"""Which output row of a COCO-trained head each target class starts from: the one rule of the YOLO path
(:func:`tl_driving.yolo.resize_classes`) and of torchvision's COCO detectors (:mod:`tl_driving.coco_detectors`).

A target class keeps the pre-trained row of the COCO class it names, found by name: its own name, then the names
``data.options.class_map`` renamed into it (``{Pedestrian: person}`` or ``{person: pedestrian}`` - either way the
class is a person), then the few names other data sets give a COCO class (KITTI's and BDD100K's ``pedestrian``,
BDD100K's ``bike`` and ``motor``, Pascal VOC's ``motorbike`` and ``aeroplane``, ...), each compared without case.
Nothing looser: BDD100K's ``traffic sign`` is every sign, not COCO's ``stop sign``, so it starts fresh unless the
recipe's ``class_map`` says otherwise (as ``tl_driving.synthetic``'s does for its drawn stop signs).
Importing this module imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: names other data sets use for a COCO class (lower case)
SYNONYMS = {
    "pedestrian": "person", "rider": "person",  # KITTI, BDD100K, Cityscapes (a rider is a person on a vehicle)
    "bike": "bicycle", "motor": "motorcycle", "motorbike": "motorcycle",  # BDD100K, Pascal VOC
    "aeroplane": "airplane", "sofa": "couch", "tvmonitor": "tv", "diningtable": "dining table",  # Pascal VOC
    "pottedplant": "potted plant",
}
NOT_A_CLASS = {"__background__", "n/a"}  # torchvision's COCO list: row 0 and the gaps of the 91 category ids


def source_rows(classes: Sequence[str], source_names: Sequence[str], class_map: Mapping[str, str | None]
                ) -> dict[int, int]:
    """``{target index: source row}`` for every target class whose COCO class is among ``source_names`` (a row's
    name at its index); classes missing from the answer start fresh."""
    rows = {name.lower(): i for i, name in reversed(list(enumerate(source_names))) if name.lower() not in NOT_A_CLASS}
    renamed: dict[str, list[str]] = {}
    for source, target in class_map.items():
        if target:
            renamed.setdefault(target, []).append(source)
    found = {}
    for j, name in enumerate(classes):
        candidates = [name, *renamed.get(name, [])]
        candidates += [SYNONYMS[c.lower()] for c in candidates if c.lower() in SYNONYMS]
        row = next((rows[c.lower()] for c in candidates if c.lower() in rows), None)
        if row is not None:
            found[j] = row
    return found


def kept_line(where: str, classes: Sequence[str], source_names: Sequence[str], rows: Mapping[int, int],
              also: str = "") -> str:
    """The load report's line for one resized layer: which target classes kept which source row, how many are
    new. ``also`` names rows kept besides the classes' (torchvision's background row)."""
    kept = ", ".join([also] * bool(also) + [f"{classes[j]} (was {source_names[k]})" for j, k in rows.items()])
    return f"{where}: class rows kept for {kept or 'none'}; {len(classes) - len(rows)} new"
