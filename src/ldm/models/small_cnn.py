"""A small convolutional encoder: the CPU-profile stand-in for ResNet-18 (images.md §8).

A stem [5×5 conv, stride ``stem_stride`` – BatchNorm – ReLU – 2×2 max-pool] with ``widths[0]`` channels,
then one block [3×3 conv – BatchNorm – ReLU – 2×2 max-pool] per further width, then global average
pooling, so ``out_dim = widths[-1]`` does not depend on the input resolution. The strided stem (like
ResNet's ImageNet stem) keeps the cost low at 32 px: with the defaults a 32×32 input is at 8×8 after the
stem.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """conv-BN-ReLU-pool blocks + global average pool; ``forward`` returns ``(B, widths[-1])``."""

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128), stem_stride: int = 2) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive integers, got {widths!r}")
        if int(in_channels) < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
        if int(stem_stride) < 1:
            raise ValueError(f"stem_stride must be >= 1, got {stem_stride!r}")
        blocks: list[nn.Module] = [nn.Conv2d(int(in_channels), widths[0], 5, stride=int(stem_stride), padding=2, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c = widths[0]
        for w in widths[1:]:
            blocks += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.features(x)).flatten(1)
