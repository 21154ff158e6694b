"""Hook API 1.1's built-in backbones. They are the image-classification plugin's now
(:mod:`tl_core.builtin.classification.backbones`; a plugin reuses one through ``tl_core.api.core_backbone``); the
old names still import from here, with a :class:`DeprecationWarning`."""

from __future__ import annotations

from tl_core.compat import moved

__getattr__ = moved(__name__, dict.fromkeys((
    "BACKBONES", "IMAGENET", "RESNET_GROUPS", "TORCHVISION_LICENCE", "TV", "mobilenet_v2", "efficientnet_lite0",
    "resnet18", "resnet50", "convnext_tiny", "efficientnet_b0"), "tl_core.builtin.classification.backbones"))
