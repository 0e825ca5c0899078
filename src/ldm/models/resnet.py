"""ResNet-18 backbone of the image experiments (paper App. B; images.md §2–3).

The official code uses torchvision's ``resnet18`` with its ``fc`` removed (512-d features) and

* the **ImageNet stem** (7×7 stride-2 conv + 3×3 stride-2 max-pool) for MNIST/ImageNet-100
  (``stem="imagenet"``; on 32-px inputs the last stage then sees a 1×1 map), or
* the **CIFAR stem** (3×3 stride-1 conv, padding 2 as in solo-learn, no max-pool) for CIFAR-10/100
  (``stem="cifar"``; ``stem_padding`` changes the padding).

``width`` scales the four stage widths 64-128-256-512 (``width=0.25`` → 16-32-64-128, the CPU-scale
backbone of images.md §8). With ``width=1`` and ``in_channels=3`` the network *is* torchvision's
ResNet-18 (same modules, parameter names and initialisation) with ``fc = Identity``.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

__all__ = ["STEMS", "ResNetBackbone", "resnet18"]

STEMS = ("imagenet", "cifar")


class ResNetBackbone(ResNet):
    """torchvision ResNet (BasicBlock) with selectable stem and stage widths; ``forward`` returns the
    globally average-pooled features ``(B, out_dim)``."""

    def __init__(
        self,
        layers: tuple[int, int, int, int] = (2, 2, 2, 2),
        stem: str = "imagenet",
        width: float = 1.0,
        in_channels: int = 3,
        stem_padding: int | None = None,
        zero_init_residual: bool = False,
    ) -> None:
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {list(STEMS)}, got {stem!r}")
        if not (width > 0):
            raise ValueError(f"width must be > 0, got {width!r}")
        if int(in_channels) < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
        widths = [max(1, round(c * width)) for c in (64, 128, 256, 512)]
        if width == 1.0 and in_channels == 3:
            # exactly torchvision's network and initialisation
            super().__init__(BasicBlock, list(layers), zero_init_residual=zero_init_residual)
        else:
            # torchvision's construction with scaled widths, through its own _make_layer
            nn.Module.__init__(self)
            self._norm_layer = nn.BatchNorm2d
            self.inplanes, self.dilation, self.groups, self.base_width = widths[0], 1, 1, 64
            self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.layer1 = self._make_layer(BasicBlock, widths[0], layers[0])
            self.layer2 = self._make_layer(BasicBlock, widths[1], layers[1], stride=2)
            self.layer3 = self._make_layer(BasicBlock, widths[2], layers[2], stride=2)
            self.layer4 = self._make_layer(BasicBlock, widths[3], layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self._init_weights(zero_init_residual)
        if stem == "cifar":
            pad = 2 if stem_padding is None else int(stem_padding)
            # PyTorch's default conv initialisation, as the official stem swap leaves it
            self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=pad, bias=False)
            self.maxpool = nn.Identity()
        elif stem_padding is not None:
            raise ValueError("stem_padding is only used with stem='cifar'")
        self.fc = nn.Identity()
        self.stem = stem
        self.width = float(width)
        self.out_dim = widths[3] * BasicBlock.expansion

    def _init_weights(self, zero_init_residual: bool) -> None:
        """torchvision's ResNet initialisation (Kaiming-normal convs, unit BN)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102 - the torchvision forward without fc
        return self._forward_impl(x)


def resnet18(stem: str = "imagenet", width: float = 1.0, in_channels: int = 3,
             stem_padding: int | None = None) -> ResNetBackbone:
    """ResNet-18 feature extractor (fc removed); ``out_dim`` = 512 · width."""
    return ResNetBackbone((2, 2, 2, 2), stem=stem, width=width, in_channels=in_channels, stem_padding=stem_padding)
