"""Small synthetic street scenes with their true boxes, written in any of the five label formats, so that recipes and
tests run offline.

``python -m tl_driving.synthetic OUT --n 40 --format yolo`` writes 40 scenes to the new folder ``OUT`` and prints
the path to give as ``data.path``.

A scene is drawn with PIL: sky, buildings on the horizon, a road in perspective with dashed lane markings and
pavements; on it cars and trucks (bodies, windows and wheels in random colours and sizes), buses, pedestrians
(small upright figures on the pavements), traffic lights (a dark housing with one lit lamp, on a pole) and stop
signs (red octagons on poles). Objects shrink towards the horizon and are drawn far to near, so nearer ones partly
hide farther ones. Every tenth scene (``i % 10 == 9``) is an empty street (a background image). The boxes are the
objects' pixel extents (poles excluded), always inside the image.

Class names are COCO's - ``car``, ``truck``, ``bus``, ``person``, ``traffic light``, ``stop sign`` - except for:

* KITTI: ``Car``, ``Truck``, ``Pedestrian``; buses as ``Misc``; traffic lights and stop signs as ``DontCare``
  regions (KITTI labels neither).
* BDD100K: ``car``, ``truck``, ``bus``, ``pedestrian``, ``traffic light``, ``traffic sign``; lane markings and the
  drivable area are added as ``poly2d`` labels (which detection ignores).

Layouts (the returned path is ``data.path``); with ``split_val`` the last ``split_val`` scenes form a val split:

* ``yolo``: ``OUT/images/train/``, ``OUT/labels/train/`` (``val`` alike), ``OUT/data.yaml`` (returned).
* ``coco``: ``OUT/images/``, ``OUT/train.json`` (returned), ``OUT/val.json``.
* ``voc``: ``OUT/JPEGImages/``, ``OUT/Annotations/`` (``OUT`` returned); val in ``OUT/val/``, the same layout.
* ``kitti``: ``OUT/image_2/`` (PNG), ``OUT/label_2/`` (``OUT`` returned); val in ``OUT/val/``.
* ``bdd100k``: ``OUT/images/``, ``OUT/det_train.json`` (returned), ``OUT/det_val.json``.

The scenes depend on ``seed`` (and the scene index) only: the same arguments write the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

CLASSES = ("car", "truck", "bus", "person", "traffic light", "stop sign")
COCO_IDS = {"person": 1, "car": 3, "bus": 6, "truck": 8, "traffic light": 10, "stop sign": 13}
COCO_SUPER = {"person": "person", "car": "vehicle", "bus": "vehicle", "truck": "vehicle",
              "traffic light": "outdoor", "stop sign": "outdoor"}
KITTI_NAMES = {"car": "Car", "truck": "Truck", "person": "Pedestrian", "bus": "Misc",
               "traffic light": "DontCare", "stop sign": "DontCare"}
BDD_NAMES = {"car": "car", "truck": "truck", "bus": "bus", "person": "pedestrian",
             "traffic light": "traffic light", "stop sign": "traffic sign"}
# class_map options that read each format's names back as CLASSES (KITTI's DontCare rows are dropped, not mapped)
CLASS_MAPS: dict[str, dict[str, str | None]] = {
    "yolo": {}, "coco": {}, "voc": {},
    "kitti": {"Car": "car", "Truck": "truck", "Pedestrian": "person", "Misc": "bus"},
    "bdd100k": {"pedestrian": "person", "traffic sign": "stop sign"},
}
FORMATS = ("yolo", "coco", "voc", "kitti", "bdd100k")
_BODY_COLOURS = [(200, 30, 35), (30, 60, 160), (235, 235, 230), (25, 25, 28), (150, 150, 155), (20, 110, 60),
                 (230, 190, 40), (110, 60, 30), (90, 20, 90), (60, 140, 190)]
_CLOTHES = [(40, 40, 120), (150, 30, 30), (30, 100, 40), (200, 170, 60), (60, 60, 60), (220, 220, 220)]


@dataclass
class Obj:
    """One drawn object: its COCO class name, its box (integer pixel corners, ``x2``/``y2`` exclusive) and whether a
    nearer object overlaps it."""

    name: str
    x1: int
    y1: int
    x2: int
    y2: int
    occluded: bool = False
    colour: str = "none"  # traffic lights: the lit lamp


@dataclass
class _Street:
    width: int
    height: int
    horizon: int
    vanish_x: float
    near_half: float  # half the road's width at the bottom of the image
    far_half: float

    def scale(self, y: float) -> float:
        """0 at the horizon, 1 at the bottom edge."""
        return max(0.0, (y - self.horizon) / (self.height - self.horizon))

    def road(self, y: float) -> tuple[float, float]:
        s = self.scale(y)
        half = self.far_half + (self.near_half - self.far_half) * s
        return self.vanish_x - half, self.vanish_x + half


# ---------------------------------------------------------------- drawing


def _rect(draw: ImageDraw.ImageDraw, x1: float, y1: float, x2: float, y2: float, fill: tuple[int, ...]) -> None:
    """Fill the pixels of the continuous box (x1, y1)-(x2, y2)."""
    x1, y1, x2, y2 = round(x1), round(y1), round(x2), round(y2)
    if x2 > x1 and y2 > y1:
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=fill)


def _shade(colour: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(max(0, min(255, round(c * f))) for c in colour)  # type: ignore[return-value]


def _wheels(draw: ImageDraw.ImageDraw, o: Obj, h: int, positions: tuple[float, ...]) -> None:
    w = o.x2 - o.x1
    d = max(2, round(h * 0.3))
    for p in positions:
        cx = o.x1 + p * w
        draw.ellipse([round(cx - d / 2), o.y2 - d, round(cx + d / 2) - 1, o.y2 - 1], fill=(15, 15, 15))


def _draw_car(draw: ImageDraw.ImageDraw, o: Obj, rng: random.Random) -> None:
    w, h = o.x2 - o.x1, o.y2 - o.y1
    body = rng.choice(_BODY_COLOURS)
    _rect(draw, o.x1 + 0.2 * w, o.y1, o.x2 - 0.2 * w, o.y1 + 0.45 * h, _shade(body, 0.9))  # cabin
    _rect(draw, o.x1 + 0.26 * w, o.y1 + 0.08 * h, o.x2 - 0.26 * w, o.y1 + 0.4 * h, (150, 190, 215))  # windows
    _rect(draw, o.x1, o.y1 + 0.4 * h, o.x2, o.y2 - 0.15 * h, body)  # body
    _rect(draw, o.x1 + 0.04 * w, o.y1 + 0.5 * h, o.x1 + 0.14 * w, o.y1 + 0.6 * h, (250, 240, 180))  # lights
    _rect(draw, o.x2 - 0.14 * w, o.y1 + 0.5 * h, o.x2 - 0.04 * w, o.y1 + 0.6 * h, (250, 240, 180))
    _wheels(draw, o, h, (0.2, 0.8))


def _draw_truck(draw: ImageDraw.ImageDraw, o: Obj, rng: random.Random) -> None:
    w, h = o.x2 - o.x1, o.y2 - o.y1
    cargo, cab = rng.choice(_BODY_COLOURS), rng.choice(_BODY_COLOURS)
    front_right = rng.random() < 0.5
    cab_x1, cab_x2 = (o.x1 + 0.7 * w, o.x2) if front_right else (o.x1, o.x1 + 0.3 * w)
    box_x1, box_x2 = (o.x1, o.x1 + 0.68 * w) if front_right else (o.x1 + 0.32 * w, o.x2)
    _rect(draw, box_x1, o.y1, box_x2, o.y2 - 0.15 * h, _shade(cargo, 1.05))
    _rect(draw, cab_x1, o.y1 + 0.3 * h, cab_x2, o.y2 - 0.15 * h, cab)
    wx1 = cab_x1 + 0.2 * (cab_x2 - cab_x1)
    _rect(draw, wx1, o.y1 + 0.36 * h, cab_x2 - 0.2 * (cab_x2 - cab_x1), o.y1 + 0.55 * h, (150, 190, 215))
    _wheels(draw, o, h, (0.15, 0.45, 0.85))


def _draw_bus(draw: ImageDraw.ImageDraw, o: Obj, rng: random.Random) -> None:
    w, h = o.x2 - o.x1, o.y2 - o.y1
    body = rng.choice([(230, 180, 30), (200, 40, 40), (40, 90, 170), (240, 240, 240)])
    _rect(draw, o.x1, o.y1, o.x2, o.y2 - 0.12 * h, body)
    n = max(3, round(w / max(4, 0.18 * h)))
    for k in range(n):
        wx = o.x1 + 0.05 * w + k * 0.9 * w / n
        _rect(draw, wx, o.y1 + 0.15 * h, wx + 0.7 * 0.9 * w / n, o.y1 + 0.45 * h, (140, 180, 205))
    _rect(draw, o.x1, o.y1 + 0.6 * h, o.x2, o.y1 + 0.66 * h, _shade(body, 0.6))
    _wheels(draw, o, h, (0.18, 0.82))


def _draw_person(draw: ImageDraw.ImageDraw, o: Obj, rng: random.Random) -> None:
    w, h = o.x2 - o.x1, o.y2 - o.y1
    skin = rng.choice([(240, 200, 170), (200, 150, 110), (140, 95, 60), (90, 60, 40)])
    shirt, trousers = rng.choice(_CLOTHES), rng.choice(_CLOTHES)
    head = max(2.0, 0.18 * h)
    cx = (o.x1 + o.x2) / 2
    draw.ellipse([round(cx - head / 2), o.y1, round(cx + head / 2) - 1, round(o.y1 + head) - 1], fill=skin)
    _rect(draw, o.x1, o.y1 + head, o.x2, o.y1 + 0.6 * h, shirt)  # torso and arms
    _rect(draw, o.x1 + 0.15 * w, o.y1 + 0.58 * h, cx - 0.05 * w, o.y2, trousers)  # legs
    _rect(draw, cx + 0.05 * w, o.y1 + 0.58 * h, o.x2 - 0.15 * w, o.y2, trousers)


def _draw_light(draw: ImageDraw.ImageDraw, o: Obj, ground: int) -> None:
    w, h = o.x2 - o.x1, o.y2 - o.y1
    cx = (o.x1 + o.x2) / 2
    _rect(draw, cx - max(1, w * 0.12), o.y2, cx + max(1, w * 0.12), ground, (70, 70, 75))  # pole
    _rect(draw, o.x1, o.y1, o.x2, o.y2, (30, 30, 32))
    lit = {"red": 0, "yellow": 1, "green": 2}[o.colour]
    colours = [(230, 30, 30), (240, 190, 30), (40, 220, 90)]
    d = min(w * 0.7, h / 3 * 0.7)
    for k in range(3):
        cy = o.y1 + (k + 0.5) * h / 3
        fill = colours[k] if k == lit else _shade(colours[k], 0.25)
        draw.ellipse([round(cx - d / 2), round(cy - d / 2), round(cx + d / 2) - 1, round(cy + d / 2) - 1], fill=fill)


def _octagon(x1: float, y1: float, x2: float, y2: float) -> list[tuple[float, float]]:
    a, b = (x2 - x1) * 0.29, (y2 - y1) * 0.29
    return [(x1 + a, y1), (x2 - a, y1), (x2, y1 + b), (x2, y2 - b), (x2 - a, y2), (x1 + a, y2), (x1, y2 - b),
            (x1, y1 + b)]


def _draw_stop(draw: ImageDraw.ImageDraw, o: Obj, ground: int) -> None:
    w = o.x2 - o.x1
    cx = (o.x1 + o.x2) / 2
    _rect(draw, cx - max(1, w * 0.06), o.y2, cx + max(1, w * 0.06), ground, (140, 140, 145))  # pole
    draw.polygon(_octagon(o.x1, o.y1, o.x2 - 1, o.y2 - 1), fill=(245, 245, 245))
    inset = max(1.0, w * 0.08)
    draw.polygon(_octagon(o.x1 + inset, o.y1 + inset, o.x2 - 1 - inset, o.y2 - 1 - inset), fill=(200, 20, 25))
    _rect(draw, o.x1 + 0.25 * w, o.y1 + 0.45 * w, o.x2 - 0.25 * w, o.y1 + 0.55 * w, (245, 245, 245))  # "STOP"


def _background(draw: ImageDraw.ImageDraw, st: _Street, rng: random.Random) -> None:
    w, h = st.width, st.height
    sky_top = (rng.randint(70, 130), rng.randint(130, 180), rng.randint(200, 240))
    for y in range(st.horizon):
        f = y / max(1, st.horizon)
        draw.line([(0, y), (w, y)], fill=tuple(round(c + (235 - c) * f * 0.7) for c in sky_top))
    x = 0.0
    while x < w:  # buildings along the horizon
        bw = rng.uniform(0.08, 0.2) * w
        bh = rng.uniform(0.1, 0.3) * h
        shade = rng.randint(110, 200)
        colour = (shade, shade - rng.randint(0, 30), shade - rng.randint(0, 50))
        _rect(draw, x, st.horizon - bh, x + bw, st.horizon, colour)
        for wy in range(round(st.horizon - bh + 2), st.horizon - 2, 4):
            for wx in range(round(x + 2), round(x + bw - 2), 4):
                _rect(draw, wx, wy, wx + 2, wy + 2, (60, 70, 90) if rng.random() < 0.7 else (230, 220, 150))
        x += bw + rng.uniform(0, 0.03) * w
    pavement = rng.randint(150, 185)
    _rect(draw, 0, st.horizon, w, h, (pavement, pavement, pavement - 8))
    left_far, right_far = st.road(st.horizon)
    left_near, right_near = st.road(h)
    grey = rng.randint(70, 100)
    draw.polygon([(left_far, st.horizon), (right_far, st.horizon), (right_near, h), (left_near, h)],
                 fill=(grey, grey, grey + 4))
    for frac in (1 / 3, 2 / 3) if rng.random() < 0.5 else (0.5,):  # dashed lane markings
        steps = 12
        for k in range(steps):
            if k % 2:
                continue
            ya, yb = (st.horizon + (h - st.horizon) * (k / steps) ** 1.6,
                      st.horizon + (h - st.horizon) * ((k + 1) / steps) ** 1.6)
            pa = [st.road(ya)[0] + frac * (st.road(ya)[1] - st.road(ya)[0]), ya]
            pb = [st.road(yb)[0] + frac * (st.road(yb)[1] - st.road(yb)[0]), yb]
            draw.line([tuple(pa), tuple(pb)], fill=(235, 235, 225), width=max(1, round(st.scale(yb) * 3)))


# ---------------------------------------------------------------- placing objects


def _overlaps_too_much(box: tuple[int, int, int, int], placed: list[Obj]) -> bool:
    x1, y1, x2, y2 = box
    area = (x2 - x1) * (y2 - y1)
    for o in placed:
        ix = max(0, min(x2, o.x2) - max(x1, o.x1))
        iy = max(0, min(y2, o.y2) - max(y1, o.y1))
        inter = ix * iy
        if inter > 0.5 * area or inter > 0.5 * (o.x2 - o.x1) * (o.y2 - o.y1):
            return True
    return False


def _place(name: str, st: _Street, rng: random.Random) -> tuple[int, int, int, int] | None:
    w, h = st.width, st.height
    if name in ("car", "truck", "bus"):
        bottom = rng.uniform(st.horizon + 0.25 * (h - st.horizon), h)
        s = st.scale(bottom)
        bw = {"car": 0.28, "truck": 0.36, "bus": 0.5}[name] * s * w
        bh = bw * {"car": rng.uniform(0.5, 0.65), "truck": rng.uniform(0.75, 0.9), "bus": rng.uniform(0.45, 0.55)}[name]
        left, right = st.road(bottom)
        cx = rng.uniform(left + bw / 2, right - bw / 2) if right - left > bw else (left + right) / 2
    elif name == "person":
        bottom = rng.uniform(st.horizon + 0.2 * (h - st.horizon), h)
        s = st.scale(bottom)
        bh = 0.42 * s * h
        bw = bh * rng.uniform(0.3, 0.4)
        left, right = st.road(bottom)
        cx = rng.uniform(0, left - bw / 2) if rng.random() < 0.5 else rng.uniform(right + bw / 2, w)
    else:  # traffic light, stop sign: on a pole at the kerb
        bottom = rng.uniform(st.horizon + 0.3 * (h - st.horizon), h)  # the foot of the pole
        s = st.scale(bottom)
        left, right = st.road(bottom)
        cx = left - rng.uniform(2, 6) if rng.random() < 0.5 else right + rng.uniform(2, 6)
        if name == "traffic light":
            bw = max(4.0, 0.045 * s * w)
            bh = bw * 2.6
        else:
            bw = bh = max(6.0, 0.08 * s * w)
        bottom = bottom - s * 0.3 * h  # the top of the pole
    x1, x2 = round(cx - bw / 2), round(cx + bw / 2)
    y1, y2 = round(bottom - bh), round(bottom)
    if x1 < 0 or y1 < 0 or x2 > w or y2 > h or x2 - x1 < 4 or y2 - y1 < 4:
        return None
    return x1, y1, x2, y2


def draw_scene(index: int, width: int = 160, height: int = 96, seed: int = 0) -> tuple[Image.Image, list[Obj]]:
    """Scene ``index`` of the series ``seed``: the RGB image and its objects (in drawing order, far to near)."""
    from PIL import Image, ImageDraw

    rng = random.Random(f"tl-driving-{seed}-{index}")
    st = _Street(width, height, horizon=round(height * rng.uniform(0.36, 0.46)), vanish_x=width * rng.uniform(0.4, 0.6),
                 near_half=width * rng.uniform(0.36, 0.45), far_half=width * rng.uniform(0.03, 0.06))
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    _background(draw, st, rng)
    wanted: list[str] = []
    if index % 10 != 9:
        wanted = [CLASSES[index % len(CLASSES)]]
        wanted += ["car"] * rng.randint(1, 3) + ["truck"] * (rng.random() < 0.4) + ["bus"] * (rng.random() < 0.25)
        wanted += ["person"] * rng.randint(0, 3) + ["traffic light"] * (rng.random() < 0.4)
        wanted += ["stop sign"] * (rng.random() < 0.35)
    placed: list[Obj] = []
    for name in wanted:
        for _ in range(20):
            box = _place(name, st, rng)
            if box is not None and not _overlaps_too_much(box, placed):
                placed.append(Obj(name, *box, colour=rng.choice(["red", "yellow", "green"])
                                  if name == "traffic light" else "none"))
                break
    placed.sort(key=lambda o: (o.y2, o.x1))  # far (higher up) first; nearer objects hide farther ones
    for k, o in enumerate(placed):
        for nearer in placed[k + 1 :]:
            if min(o.x2, nearer.x2) > max(o.x1, nearer.x1) and min(o.y2, nearer.y2) > max(o.y1, nearer.y1):
                o.occluded = True
        ground = min(height, o.y2 + round(st.scale(o.y2) * 0.3 * height) + 2)
        if o.name == "car":
            _draw_car(draw, o, rng)
        elif o.name == "truck":
            _draw_truck(draw, o, rng)
        elif o.name == "bus":
            _draw_bus(draw, o, rng)
        elif o.name == "person":
            _draw_person(draw, o, rng)
        elif o.name == "traffic light":
            _draw_light(draw, o, ground)
        else:
            _draw_stop(draw, o, ground)
    return image, placed


# ---------------------------------------------------------------- writers, one per format


def _yolo_lines(objects: list[Obj], width: int, height: int) -> str:
    return "".join(
        f"{CLASSES.index(o.name)} {(o.x1 + o.x2) / 2 / width:.6f} {(o.y1 + o.y2) / 2 / height:.6f} "
        f"{(o.x2 - o.x1) / width:.6f} {(o.y2 - o.y1) / height:.6f}\n"
        for o in objects
    )


def _voc_xml(filename: str, objects: list[Obj], width: int, height: int) -> str:
    parts = [
        "<annotation>",
        "\t<folder>JPEGImages</folder>",
        f"\t<filename>{filename}</filename>",
        "\t<source>",
        "\t\t<database>tl-driving synthetic street scenes</database>",
        "\t\t<annotation>tl-driving</annotation>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for o in objects:
        parts += [
            "\t<object>",
            f"\t\t<name>{o.name}</name>",
            "\t\t<pose>Unspecified</pose>",
            "\t\t<truncated>0</truncated>",
            f"\t\t<occluded>{int(o.occluded)}</occluded>",
            f"\t\t<difficult>{int(o.y2 - o.y1 < 8)}</difficult>",
            "\t\t<bndbox>",  # VOC: 1-based pixel indices, both ends included
            f"\t\t\t<xmin>{o.x1 + 1}</xmin>",
            f"\t\t\t<ymin>{o.y1 + 1}</ymin>",
            f"\t\t\t<xmax>{o.x2}</xmax>",
            f"\t\t\t<ymax>{o.y2}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


_KITTI_DIMS = {"Car": (1.52, 1.63, 3.88), "Truck": (3.1, 2.5, 8.2), "Pedestrian": (1.76, 0.62, 0.8),
               "Misc": (3.2, 2.6, 11.5)}


def _kitti_lines(objects: list[Obj], width: int, height: int, rng: random.Random) -> str:
    lines = []
    for o in objects:
        name = KITTI_NAMES[o.name]
        corners = f"{o.x1:.2f} {o.y1:.2f} {o.x2:.2f} {o.y2:.2f}"
        if name == "DontCare":
            lines.append(f"DontCare -1 -1 -10 {corners} -1 -1 -1 -1000 -1000 -1000 -10")
            continue
        h3, w3, l3 = _KITTI_DIMS[name]
        z = max(2.0, 1.7 * height / max(1, o.y2 - o.y1) * h3 / 1.5)
        x = ((o.x1 + o.x2) / 2 - width / 2) / width * z
        if name == "Pedestrian":
            ry = rng.uniform(-math.pi, math.pi)
        else:
            ry = rng.choice([-1.57, 1.57]) + rng.uniform(-0.1, 0.1)
        alpha = ry - math.atan2(x, z)
        lines.append(f"{name} 0.00 {int(o.occluded)} {alpha:.2f} {corners} {h3:.2f} {w3:.2f} {l3:.2f} "
                     f"{x:.2f} 1.65 {z:.2f} {ry:.2f}")
    return "".join(line + "\n" for line in lines)


def _bdd_frame(name: str, objects: list[Obj], width: int, height: int, rng: random.Random, index: int) -> dict:
    labels: list[dict] = []
    for o in objects:
        labels.append({
            "id": str(len(labels)),
            "category": BDD_NAMES[o.name],
            "attributes": {"occluded": o.occluded, "truncated": False,
                           "trafficLightColor": o.colour if o.name == "traffic light" else "none"},
            "manualShape": True,
            "manualAttributes": True,
            # BDD100K box2d corners include their last pixel: x2 = x1 + width - 1
            "box2d": {"x1": float(o.x1), "y1": float(o.y1), "x2": float(o.x2 - 1), "y2": float(o.y2 - 1)},
        })
    mid = width * rng.uniform(0.4, 0.6)
    labels.append({
        "id": str(len(labels)), "category": "lane",
        "attributes": {"laneDirection": "parallel", "laneStyle": "dashed", "laneType": "single white"},
        "manualShape": True, "manualAttributes": True,
        "poly2d": [{"vertices": [[mid, height * 0.45], [mid + rng.uniform(-20, 20), height - 1.0]], "types": "LL",
                    "closed": False}],
    })
    labels.append({
        "id": str(len(labels)), "category": "drivable area", "attributes": {"areaType": "direct"},
        "manualShape": True, "manualAttributes": True,
        "poly2d": [{"vertices": [[mid - 6, height * 0.45], [mid + 6, height * 0.45], [width - 1.0, height - 1.0],
                                 [0.0, height - 1.0]], "types": "LLLL", "closed": True}],
    })
    return {
        "name": name,
        "attributes": {"weather": rng.choice(["clear", "overcast", "partly cloudy"]), "scene": "city street",
                       "timeofday": "daytime"},
        "timestamp": 10000,
        "labels": labels,
    }


def _bdd_name(seed: int, index: int) -> str:
    digest = hashlib.sha256(f"{seed}-{index}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:16]}.jpg"


def _coco(images: list[dict], scenes: list[list[Obj]]) -> dict:
    annotations = []
    for info, objects in zip(images, scenes):
        for o in objects:
            w, h = o.x2 - o.x1, o.y2 - o.y1
            annotations.append({
                "id": len(annotations) + 1, "image_id": info["id"], "category_id": COCO_IDS[o.name],
                "bbox": [float(o.x1), float(o.y1), float(w), float(h)], "area": float(w * h), "iscrowd": 0,
                "segmentation": [],
            })
    categories = [{"id": COCO_IDS[c], "name": c, "supercategory": COCO_SUPER[c]}
                  for c in sorted(CLASSES, key=COCO_IDS.get)]
    return {
        "info": {"description": "tl-driving synthetic street scenes", "version": "1.0", "year": 2024},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def _write_split(out: Path, fmt: str, indices: list[int], split: str, width: int, height: int, seed: int) -> Path:
    """Write the scenes ``indices`` as ``split`` of ``fmt`` under ``out``; return the label file or folder."""
    scenes = [(i, *draw_scene(i, width, height, seed)) for i in indices]
    if fmt == "yolo":
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i, image, objects in scenes:
            image.save(out / "images" / split / f"scene_{i:04d}.jpg", quality=92)
            (out / "labels" / split / f"scene_{i:04d}.txt").write_text(_yolo_lines(objects, width, height))
        return out / "images" / split
    if fmt in ("coco", "bdd100k"):
        (out / "images").mkdir(parents=True, exist_ok=True)
        records = []
        for i, image, objects in scenes:
            name = f"scene_{i:04d}.jpg" if fmt == "coco" else _bdd_name(seed, i)
            image.save(out / "images" / name, quality=92)
            records.append((i, name, objects))
        if fmt == "coco":
            infos = [{"id": i + 1, "file_name": name, "width": width, "height": height} for i, name, _ in records]
            file = out / f"{split}.json"
            file.write_text(json.dumps(_coco(infos, [objs for *_, objs in records]), indent=1))
        else:
            frames = [_bdd_frame(name, objs, width, height, random.Random(f"bdd-{seed}-{i}"), i)
                      for i, name, objs in records]
            file = out / f"det_{split}.json"
            file.write_text(json.dumps(frames, indent=1))
        return file
    if fmt == "voc":
        (out / "JPEGImages").mkdir(parents=True, exist_ok=True)
        (out / "Annotations").mkdir(parents=True, exist_ok=True)
        for i, image, objects in scenes:
            image.save(out / "JPEGImages" / f"scene_{i:04d}.jpg", quality=92)
            (out / "Annotations" / f"scene_{i:04d}.xml").write_text(
                _voc_xml(f"scene_{i:04d}.jpg", objects, width, height))
        return out
    (out / "image_2").mkdir(parents=True, exist_ok=True)
    (out / "label_2").mkdir(parents=True, exist_ok=True)
    for i, image, objects in scenes:
        image.save(out / "image_2" / f"{i:06d}.png")
        (out / "label_2" / f"{i:06d}.txt").write_text(
            _kitti_lines(objects, width, height, random.Random(f"kitti-{seed}-{i}")))
    return out


def write_scenes(
    out: Path, n: int, fmt: Literal["yolo", "coco", "voc", "kitti", "bdd100k"], width: int = 160, height: int = 96,
    seed: int = 0, split_val: int = 0,
) -> Path:
    """Write ``n`` street scenes (``width`` x ``height``) in format ``fmt`` to ``out``; the last ``split_val`` of them
    form a val split (see the module's layouts). Return the path to give as ``data.path``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if n < 1 or not 0 <= split_val < n:
        raise ValueError(f"need n >= 1 scenes and 0 <= split_val < n (got n={n}, split_val={split_val})")
    if width < 64 or height < 48:
        raise ValueError(f"scenes need at least 64x48 pixels (got {width}x{height})")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose a new folder (its files would mix with these)")
    out.mkdir(parents=True, exist_ok=True)
    train, val = list(range(n - split_val)), list(range(n - split_val, n))
    if fmt == "yolo":
        _write_split(out, fmt, train, "train", width, height, seed)
        config: dict = {"train": "images/train"}
        if val:
            _write_split(out, fmt, val, "val", width, height, seed)
            config["val"] = "images/val"
        config["names"] = list(CLASSES)
        (out / "data.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return out / "data.yaml"
    path = _write_split(out, fmt, train, "train", width, height, seed)
    if val:
        _write_split(out / "val" if fmt in ("voc", "kitti") else out, fmt, val, "val", width, height, seed)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a new (or empty) folder")
    parser.add_argument("--n", type=int, default=40, help="number of scenes")
    parser.add_argument("--format", choices=FORMATS, default="yolo")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val", type=int, default=0, help="the last VAL scenes form a val split")
    args = parser.parse_args()
    if args.out.exists() and any(args.out.iterdir()):
        parser.exit(2, f"error: {args.out} is not empty; choose a new folder (its files would mix with these)\n")
    try:
        path = write_scenes(args.out, args.n, args.format, args.width, args.height, args.seed, args.val)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {args.n} {args.width}x{args.height} street scenes ({args.format}); data.path: {path}")


if __name__ == "__main__":
    main()
