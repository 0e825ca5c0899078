"""Image preprocessing: the deterministic MNIST preprocessing and the batched two-view augmentation.

App. A.8 / images.md §2 (MNIST ``catprob``): grayscale → RGB, resize 28 → 32 (bicubic), scale to
[0, 1], normalise with mean 0.1307 / std 0.3081 on every channel. Applied once to the whole array,
since the categorical model uses no augmentation.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MNIST_MEAN", "MNIST_STD", "preprocess_images", "AugmentConfig", "BatchAugment", "PIPELINES",
           "NORMALISATION", "pipeline_config", "normalise_batch"]

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


# ==============================================================================================
# Batched two-view augmentation on the training device (paper App. B; images.md §3)
# ==============================================================================================

from dataclasses import dataclass, field, asdict  # noqa: E402

#: Normalisation constants (images.md §3). CIFAR-100 uses its own statistics for training *and* test here
#: (the official code normalised the CIFAR-100 test set with CIFAR-10's constants, §7).
NORMALISATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "imagenet100": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


@dataclass(frozen=True)
class AugmentConfig:
    """One augmentation pipeline (images.md §3 table); every probability is per image and per view.

    Order as in the official pipelines: RandomResizedCrop → colour jitter (p = ``jitter_p``, the four
    operations in a random order per image, as torchvision's ColorJitter) → grayscale → Gaussian blur →
    solarise → horizontal flip → normalise.
    """

    size: int = 32
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.1
    solarize_threshold: float = 128 / 255
    flip_p: float = 0.5
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = NORMALISATION["cifar10"][0]
    std: tuple[float, float, float] = NORMALISATION["cifar10"][1]

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise KeyError(f"augmentation: unknown key(s) {unknown}; known: {sorted(known)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        if kw.get("interpolation", "bicubic") not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"augmentation.interpolation must be bilinear | bicubic | nearest, got {kw['interpolation']!r}")
        return cls(**kw)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


#: The paper's pipelines (images.md §3): ``vicreg`` for the plane rows (gaussprob / vicreg / vicreg2),
#: ``symmetric`` for the sphere rows; ``*_imagenet`` the 224-px ImageNet-100 versions (blur 0.5 in both).
PIPELINES: dict[str, dict] = {
    "vicreg": dict(scale=(0.2, 1.0), brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, grayscale_p=0.2,
                   blur_p=0.0, solarize_p=0.1, flip_p=0.5),
    "symmetric": dict(scale=(0.08, 1.0), brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, grayscale_p=0.2,
                      blur_p=0.5, solarize_p=0.0, flip_p=0.5),
    "vicreg_imagenet": dict(size=224, scale=(0.2, 1.0), brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                            grayscale_p=0.2, blur_p=0.5, solarize_p=0.1, flip_p=0.5),
    "symmetric_imagenet": dict(size=224, scale=(0.08, 1.0), brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
                               grayscale_p=0.2, blur_p=0.5, solarize_p=0.0, flip_p=0.5),
}


def pipeline_config(name: str, dataset: str = "cifar10", **overrides) -> AugmentConfig:
    """The named pipeline with the dataset's normalisation and ``overrides`` (e.g. ``size``)."""
    if name not in PIPELINES:
        raise KeyError(f"unknown augmentation pipeline {name!r}; known: {sorted(PIPELINES)}")
    mean, std = NORMALISATION.get(dataset, NORMALISATION["cifar10"])
    return AugmentConfig.from_dict({**PIPELINES[name], "mean": mean, "std": std, **overrides})


def _gray(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma (torchvision's rgb_to_grayscale), keeps a channel dim."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _blend(a: Tensor, b: Tensor, f: Tensor) -> Tensor:
    return (f * a + (1 - f) * b).clamp_(0.0, 1.0)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    crd = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return h, s, maxc


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV → RGB, channel c = v − v·s·clamp(min(k, 4 − k), 0, 1) with k = (n_c + 6h) mod 6, n = (5, 3, 1)
    (the standard conversion, equal to torchvision's piecewise form)."""
    n = torch.tensor([5.0, 3.0, 1.0], device=h.device, dtype=h.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h.unsqueeze(1), 6.0)
    f = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    vs = (v * s).unsqueeze(1)
    return v.unsqueeze(1) - vs * f


def _adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    h, s, v = _rgb_to_hsv(x)
    h = torch.remainder(h + shift.view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(h, s, v)


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Per-image Gaussian blur, separable, reflect padding; kernel radius ceil(3 σ_max)."""
    n, c, h, w = x.shape
    radius = max(1, int(math.ceil(3.0 * float(sigma.max()))))
    radius = min(radius, (min(h, w) - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t.view(1, -1) / sigma.view(-1, 1).to(x.dtype)) ** 2)
    k = k / k.sum(1, keepdim=True)  # (N, K)
    k = k.repeat_interleave(c, 0)  # (N*C, K)
    y = x.reshape(1, n * c, h, w)
    y = F.pad(y, (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.pad(y, (0, 0, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


class BatchAugment:
    """Augment a whole uint8 batch (N, H, W, C) or (N, C, H, W) on its device in one go.

    All random parameters are drawn from a CPU ``torch.Generator`` (``generator``), so the result depends
    only on the generator state (same numbers on CPU and GPU up to floating point), then moved to the
    batch's device. Output: float (N, 3, size, size), normalised.
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.cfg = config

    # --- parameters ---------------------------------------------------------------------------
    def _crop_params(self, n: int, h: int, w: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """torchvision's RandomResizedCrop sampling, vectorised: 10 tries per image, else the
        central crop with the ratio clamped. Returns (cx, cy, cw, ch) as fractions of the image."""
        cfg, tries = self.cfg, 10
        area = torch.empty(n, tries).uniform_(cfg.scale[0], cfg.scale[1], generator=g)
        logr = torch.empty(n, tries).uniform_(math.log(cfg.ratio[0]), math.log(cfg.ratio[1]), generator=g)
        r = torch.exp(logr)
        cw = torch.round(torch.sqrt(area * h * w * r)) / w
        ch = torch.round(torch.sqrt(area * h * w / r)) / h
        ok = (cw <= 1) & (ch <= 1) & (cw > 0) & (ch > 0)
        first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
        # fallback: central crop, aspect ratio clamped into `ratio`
        in_ratio = w / h
        if in_ratio < min(cfg.ratio):
            fw, fh = 1.0, (w / min(cfg.ratio)) / h
        elif in_ratio > max(cfg.ratio):
            fw, fh = (h * max(cfg.ratio)) / w, 1.0
        else:
            fw, fh = 1.0, 1.0
        idx = first.clamp(min=0).view(-1, 1)
        cw_s = torch.where(first >= 0, cw.gather(1, idx)[:, 0], torch.full((n,), fw))
        ch_s = torch.where(first >= 0, ch.gather(1, idx)[:, 0], torch.full((n,), fh))
        u = torch.rand(n, 2, generator=g)
        cx = cw_s / 2 + u[:, 0] * (1 - cw_s)
        cy = ch_s / 2 + u[:, 1] * (1 - ch_s)
        return cx, cy, cw_s, ch_s

    def sample(self, n: int, h: int, w: int, g: torch.Generator) -> dict[str, Tensor]:
        """All random parameters of ``n`` augmentations (a dict of CPU tensors)."""
        cfg = self.cfg
        cx, cy, cw, ch = self._crop_params(n, h, w, g)
        u = lambda: torch.rand(n, generator=g)  # noqa: E731
        return {
            "cx": cx, "cy": cy, "cw": cw, "ch": ch,
            "flip": u() < cfg.flip_p,
            "jitter": u() < cfg.jitter_p,
            "order": torch.argsort(torch.rand(n, 4, generator=g), dim=1),
            "brightness": 1 + (2 * u() - 1) * cfg.brightness,
            "contrast": 1 + (2 * u() - 1) * cfg.contrast,
            "saturation": 1 + (2 * u() - 1) * cfg.saturation,
            "hue": (2 * u() - 1) * cfg.hue,
            "gray": u() < cfg.grayscale_p,
            "blur": u() < cfg.blur_p,
            "sigma": cfg.blur_sigma[0] + u() * (cfg.blur_sigma[1] - cfg.blur_sigma[0]),
            "solarize": u() < cfg.solarize_p,
        }

    # --- application --------------------------------------------------------------------------
    def __call__(self, images: Tensor, generator: torch.Generator, channels_last_input: bool = True) -> Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"BatchAugment expects a uint8 batch (N, H, W, C), got {images.dtype} {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2) if channels_last_input else images
        n, c, h, w = x.shape
        if c == 1:
            x = x.expand(-1, 3, -1, -1)
        p = {k: v.to(x.device, non_blocking=True) for k, v in self.sample(n, h, w, generator).items()}
        return self.apply(x, p)

    def apply(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Apply sampled parameters ``p`` to a uint8 (N, 3, H, W) batch."""
        cfg = self.cfg
        n = x.shape[0]
        x = x.float().div_(255.0)
        # RandomResizedCrop (+ horizontal flip folded into the sampling grid)
        sx = p["cw"] * torch.where(p["flip"], -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=x.device)
        theta[:, 0, 0] = sx
        theta[:, 0, 2] = 2 * p["cx"] - 1
        theta[:, 1, 1] = p["ch"]
        theta[:, 1, 2] = 2 * p["cy"] - 1
        grid = F.affine_grid(theta, (n, 3, cfg.size, cfg.size), align_corners=False)
        x = F.grid_sample(x, grid, mode=cfg.interpolation, padding_mode="border", align_corners=False).clamp_(0, 1)
        # colour jitter, operations in a per-image random order
        jit = p["jitter"]
        if bool(jit.any()):
            for k in range(4):
                for op in range(4):
                    sel = torch.nonzero(jit & (p["order"][:, k] == op)).flatten()
                    if sel.numel() == 0:
                        continue
                    xs = x[sel]
                    if op == 0:
                        xs = (xs * p["brightness"][sel].view(-1, 1, 1, 1)).clamp_(0, 1)
                    elif op == 1:
                        m = _gray(xs).mean((1, 2, 3), keepdim=True)
                        xs = _blend(xs, m, p["contrast"][sel].view(-1, 1, 1, 1))
                    elif op == 2:
                        xs = _blend(xs, _gray(xs), p["saturation"][sel].view(-1, 1, 1, 1))
                    elif cfg.hue > 0:
                        xs = _adjust_hue(xs, p["hue"][sel])
                    x[sel] = xs
        gray = p["gray"]
        if bool(gray.any()):
            x = torch.where(gray.view(-1, 1, 1, 1), _gray(x).expand(-1, 3, -1, -1), x)
        blur = p["blur"]
        if bool(blur.any()):
            sel = torch.nonzero(blur).flatten()
            x[sel] = _gaussian_blur(x[sel], p["sigma"][sel])
        sol = p["solarize"]
        if bool(sol.any()):
            x = torch.where(sol.view(-1, 1, 1, 1) & (x >= cfg.solarize_threshold - 1e-5), 1.0 - x, x)
        mean = torch.as_tensor(cfg.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.as_tensor(cfg.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


def normalise_batch(images: Tensor, mean: Sequence[float], std: Sequence[float], size: int | None = None) -> Tensor:
    """Un-augmented evaluation view: uint8 (N, H, W, C) → float (N, 3, size, size), normalised
    (resized with antialiasing when ``size`` differs)."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    m = torch.as_tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s
