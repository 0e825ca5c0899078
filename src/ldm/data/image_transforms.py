"""Deterministic image preprocessing of the prepared ``images`` arrays (no augmentation).

App. A.8 / images.md §2 (MNIST ``catprob``): grayscale → RGB, resize 28 → 32 (bicubic), scale to
[0, 1], normalise with mean 0.1307 / std 0.3081 on every channel. Applied once to the whole array,
since the categorical model uses no augmentation.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MNIST_MEAN", "MNIST_STD", "preprocess_images"]

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


def preprocess_images(
    images: np.ndarray,
    size: int | None = 32,
    channels: int | None = 3,
    mean: Sequence[float] = MNIST_MEAN,
    std: Sequence[float] = MNIST_STD,
    chunk: int = 4096,
) -> Tensor:
    """uint8 ``images`` (N, H, W, C) → float32 tensor (N, channels, size, size).

    ``channels=3`` from C = 1 repeats the gray channel (torchvision's Grayscale→RGB); ``size`` resizes
    with bicubic interpolation (torch's bicubic kernel, a = −0.75; PIL's uses a = −0.5, so values differ
    slightly from torchvision's PIL path), clamped to [0, 1]; ``None`` keeps the size/channels.
    ``mean``/``std`` hold one value (broadcast) or one per channel.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    n, h, w, c = images.shape
    out_c = c if channels is None else int(channels)
    if out_c != c and c != 1:
        raise ValueError(f"cannot convert {c}-channel images to {out_c} channels")
    m = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
    parts = []
    for i in range(0, n, chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk])).permute(0, 3, 1, 2).float() / 255.0
        if size is not None and (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp_(0.0, 1.0)
        if out_c != c:
            x = x.expand(-1, out_c, -1, -1)
        parts.append((x - m) / s)
    return torch.cat(parts) if parts else torch.zeros((0, out_c, size or h, size or w))
