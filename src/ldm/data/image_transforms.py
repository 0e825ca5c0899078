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

from dataclasses import dataclass, asdict  # noqa: E402

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


#: ITU-R 601-2 luma weights, as PIL's "L" conversion (the paper's pipeline ran on PIL images).
LUMA = (0.299, 0.587, 0.114)


def _gray(x: Tensor) -> Tensor:
    """ITU-R 601-2 luma (PIL's "L"), keeps a channel dim."""
    return (LUMA[0] * x[:, 0:1] + LUMA[1] * x[:, 1:2] + LUMA[2] * x[:, 2:3])


#: Centre of the plateau of each channel's hue profile, in sextants (torchvision's k = (n + h6) mod 6 with
#: n = 5, 3, 1 peaks where k ∈ [1, 3], i.e. around h6 = 2 − n mod 6).
_HUE_CENTRES = (3.0, 5.0, 1.0)


def _adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue of a float batch (N, 3, H, W) in [0, 1] by ``shift`` (N,) turns, |shift| ≤ ½,
    keeping S and V.

    torchvision's RGB → HSV → RGB round trip in closed form, without materialising H, S, V: with
    M = max(r, g, b), C = M − min(r, g, b) and h = 6·hue + 6·shift in sextants (hue from the standard
    piecewise formula, r > g > b priority), channel k of the result is M − C·clamp(2 − d_k, 0, 1), d_k the
    circular distance (period 6) from h to the channel's plateau centre (3, 5, 1). The circular distance is
    min(a, |a − 6|), a = |h − centre| ≤ 9, so no modulo is needed. The branches are blended with exact 0/1
    float masks, 1 − ceil((M − r)/C), which are cheaper on a CPU than boolean ``where``. Equal to
    torchvision's ``adjust_hue`` to float precision (tested, ties and greys included).
    """
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    inv = chroma.clamp_min(1e-12).reciprocal_()
    is_r = (maxc - r).mul_(inv).ceil_().neg_().add_(1.0)  # 1 where r is the largest channel, else 0
    is_g = (maxc - g).mul_(inv).ceil_().neg_().add_(1.0).mul_(1.0 - is_r)  # g largest and r not
    h_b = (r - g).mul_(inv).add_(4.0)  # the hue (sextants) where b is the largest channel
    to_r = (g - b).mul_(inv).sub_(h_b)  # … and its change where r is, or g is
    to_g = (b - r).mul_(inv).add_(2.0).sub_(h_b)
    h = h_b.addcmul_(is_r, to_r).addcmul_(is_g, to_g)
    h.add_((6.0 * shift).view(-1, 1, 1, 1).to(x.dtype))
    a = (h - torch.tensor(_HUE_CENTRES, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)).abs_()
    f = torch.minimum(a, (a - 6.0).abs_()).neg_().add_(2.0).clamp_(0.0, 1.0)
    return maxc - chroma * f


def _jitter_plan(p: dict[str, Tensor], dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Per-image tensors for :func:`_colour_jitter` (computed once per batch, sliced per chunk).

    Brightness (b·x), contrast (c·x + (1 − c)·mean luma) and saturation (s·x + (1 − s)·luma) are each a
    3×3 colour matrix M = α·I + β·1wᵀ (w = luma weights) plus an offset γ·mean luma. ``mats`` (N, 4, 3, 3)
    and ``gamma`` (N, 4) hold them for each of the four positions of an image's random order — the identity
    where the image has no jitter or its operation there is the hue — and ``op`` (N, 4) the operation.
    """
    device = p["jitter"].device
    op = torch.where(p["jitter"].unsqueeze(1), p["order"], -1)
    bri, con, sat = (p[k].unsqueeze(1).to(dtype) for k in ("brightness", "contrast", "saturation"))
    one = torch.ones((), dtype=dtype, device=device)
    zero = torch.zeros((), dtype=dtype, device=device)
    alpha = torch.where(op == 0, bri, torch.where(op == 1, con, torch.where(op == 2, sat, one)))
    beta = torch.where(op == 2, 1.0 - sat, zero)
    luma_w = torch.tensor(LUMA, device=device, dtype=dtype)
    eye = torch.eye(3, device=device, dtype=dtype)
    return {"jit_op": op, "jit_gamma": torch.where(op == 1, 1.0 - con, zero),
            "jit_mats": alpha[..., None, None] * eye + beta[..., None, None] * luma_w.expand(3, 3)}


def _colour_jitter(x: Tensor, p: dict[str, Tensor], hue: bool) -> Tensor:
    """torchvision's ColorJitter on a float batch, each image's four operations in its own order: per
    position one batched colour-matrix product over all images (:func:`_jitter_plan`), then the hue rotation
    of the images whose operation there is the hue."""
    n, c, h, w = x.shape
    luma_w = torch.tensor(LUMA, device=x.device, dtype=x.dtype)
    flat = x.reshape(n, c, h * w)
    for k in range(4):
        gamma = p["jit_gamma"][:, k]
        offset = (gamma * (flat.mean(2) @ luma_w)).view(n, 1, 1)
        flat = torch.bmm(p["jit_mats"][:, k], flat)
        if bool(gamma.any()):  # a contrast at this position: + (1 − c)·mean luma
            flat.add_(offset)
        flat.clamp_(0.0, 1.0)
        if hue:
            sel = torch.nonzero(p["jit_op"][:, k] == 3).flatten()
            if sel.numel():
                flat[sel] = _adjust_hue(flat[sel].view(-1, c, h, w), p["hue"][sel]).view(-1, c, h * w)
    return flat.view(n, c, h, w)


def _crop_matrices(c: Tensor, w: Tensor, size: int, length: int, interpolation: str) -> Tensor:
    """Per-image 1-D resampling matrices (N, size, length) of an axis-aligned crop.

    Output pixel i samples the source at u = ((c − w/2 + w·(i + ½)/size)·length − ½) (centre ``c`` and
    width ``w`` as fractions, ``w < 0`` flips), with bilinear or bicubic (Keys, a = −0.75) weights and
    border clamping: exactly ``F.grid_sample`` of the matching ``affine_grid`` (align_corners=False),
    written as a matrix so the 2-D crop is two small batched matmuls instead of a per-pixel gather.
    """
    n = c.shape[0]
    i = (torch.arange(size, device=c.device, dtype=torch.float32) + 0.5) / size  # (S,)
    g = (2 * c.view(-1, 1) - 1) + w.view(-1, 1) * (2 * i.view(1, -1) - 1)  # normalised grid coordinate
    u = ((g + 1) * length - 1) / 2
    u0 = torch.floor(u)
    t = u - u0
    if interpolation == "bilinear":
        offsets, weights = (0, 1), (1 - t, t)
    elif interpolation == "bicubic":
        a = -0.75
        def near(d: Tensor) -> Tensor:  # |d| <= 1
            return ((a + 2) * d - (a + 3)) * d * d + 1
        def far(d: Tensor) -> Tensor:  # 1 < |d| < 2
            return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        offsets, weights = (-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))
    else:
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
    m = torch.zeros(n, size, length, device=c.device, dtype=torch.float32)
    for off, wt in zip(offsets, weights):
        idx = (u0 + off).clamp_(0, length - 1).long()
        m.scatter_add_(2, idx.unsqueeze(-1), wt.unsqueeze(-1))
    return m


def _gaussian_blur(x: Tensor, sigma: Tensor, sigma_max: float) -> Tensor:
    """Per-image Gaussian blur, separable, reflect padding; kernel radius ceil(3 σ_max) from the
    pipeline's largest σ (not the batch's), so an image's result never depends on its batch."""
    n, c, h, w = x.shape
    radius = max(1, int(math.ceil(3.0 * sigma_max)))
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

    CPU_CHUNK = 64

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
    def __call__(self, images: Tensor, generator: torch.Generator, channels_last_input: bool = True,
                 out: Tensor | None = None) -> Tensor:
        """Both the parameters and the views of ``images``; ``out`` (float (N, 3, size, size), optional)
        receives the result, e.g. a shared-memory tensor in a DataLoader worker (as torch's default collate
        allocates its batches there), so the views are never copied again."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"BatchAugment expects a uint8 batch (N, H, W, C), got {images.dtype} {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2) if channels_last_input else images
        n, c, h, w = x.shape
        if c == 1:
            x = x.expand(-1, 3, -1, -1)
        p = {k: v.to(x.device, non_blocking=True) for k, v in self.sample(n, h, w, generator).items()}
        return self.apply(x, p, out)

    def apply(self, x: Tensor, p: dict[str, Tensor], out: Tensor | None = None) -> Tensor:
        """Apply sampled parameters ``p`` to a uint8 (N, 3, H, W) batch.

        The per-image matrices (crop, colour jitter, grayscale) are built once for the batch; on a CPU the
        images then go through in chunks of ``CPU_CHUNK``, so that the element-wise passes over one chunk
        stay in the core's cache (measured faster than whole-batch passes through memory). Every operation
        is per image, so the result does not depend on the chunking (tested). It always computes in fp32:
        under an ambient fp16 autocast on CUDA the views came out NaN (seen on an H200 at 32×32).
        """
        with torch.autocast(x.device.type, enabled=False):
            return self._apply_fp32(x, p, out)

    def _apply_fp32(self, x: Tensor, p: dict[str, Tensor], out: Tensor | None) -> Tensor:
        cfg = self.cfg
        n, _, h, w = x.shape
        p = dict(p)
        p["rows"] = _crop_matrices(p["cy"], p["ch"], cfg.size, h, cfg.interpolation).div_(255.0)  # (N, S, H)
        p["cols"] = _crop_matrices(p["cx"], p["cw"] * torch.where(p["flip"], -1.0, 1.0), cfg.size, w,
                                   cfg.interpolation).transpose(1, 2)  # (N, W, S); a negative width flips
        if bool(p["jitter"].any()):
            p.update(_jitter_plan(p))
        shape = (n, 3, cfg.size, cfg.size)
        if out is not None and (tuple(out.shape) != shape or out.device != x.device):
            raise ValueError(f"out must have shape {shape} on {x.device}, got {tuple(out.shape)} on {out.device}")
        if x.device.type != "cpu" or n <= self.CPU_CHUNK:
            return self._apply(x, p, out)
        out = torch.empty(shape) if out is None else out
        for i in range(0, n, self.CPU_CHUNK):
            part = slice(i, i + self.CPU_CHUNK)
            self._apply(x[part], {k: v[part] for k, v in p.items()}, out[part])
        return out

    def _apply(self, x: Tensor, p: dict[str, Tensor], out: Tensor | None = None) -> Tensor:
        """The augmentation of one chunk, written into ``out`` when given (a contiguous slice)."""
        cfg = self.cfg
        n, c, h, w = x.shape
        # RandomResizedCrop (+ horizontal flip; the rows matrix also carries the 1/255): two small matrix
        # products per image, columns then rows, on contiguous NCHW floats (no layout copies in between)
        x = x.to(torch.float32, memory_format=torch.contiguous_format)
        x = torch.bmm(x.view(n, c * h, w), p["cols"]).view(n, c, h, -1)
        x = torch.matmul(p["rows"].unsqueeze(1), x).clamp_(0, 1)
        # colour jitter, operations in a per-image random order
        if "jit_op" in p:
            x = _colour_jitter(x, p, hue=cfg.hue > 0)
        sel = torch.nonzero(p["gray"]).flatten()
        if sel.numel():
            x[sel] = _gray(x[sel]).expand(-1, 3, -1, -1)
        sel = torch.nonzero(p["blur"]).flatten()
        if sel.numel():
            x[sel] = _gaussian_blur(x[sel], p["sigma"][sel], max(cfg.blur_sigma))
        sel = torch.nonzero(p["solarize"]).flatten()
        if sel.numel():
            xs = x[sel]
            x[sel] = torch.where(xs >= cfg.solarize_threshold - 1e-5, 1.0 - xs, xs)
        scale = 1.0 / torch.as_tensor(cfg.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        shift = -torch.as_tensor(cfg.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) * scale
        # (x − mean) / std as x·(1/std) + (−mean/std): two in-place broadcasts (measured ~5× faster on a CPU
        # than one broadcasting addcmul), the first writing into ``out`` when given
        return (x.mul_(scale) if out is None else torch.mul(x, scale, out=out)).add_(shift)


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
