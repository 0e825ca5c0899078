"""Offline stand-ins for the image datasets: same shapes and files as the real data, no download.

* CIFAR-10 / CIFAR-100 / SVHN shape (32×32 RGB): random crops of the photographs bundled with
  scikit-image; **the class is the photograph** (or, for more classes than photographs, a region
  of a photograph). Each sample has its own crop position, scale, aspect ratio, flip and a mild
  brightness/contrast change, so a class is an object/scene seen many ways, as in a real dataset
  (natural-image content; not noise, not coloured shapes).
* MNIST shape (28×28×1): scikit-learn's bundled 8×8 handwritten digits (1 797 images), upsampled
  to a 20×20 digit centred in a 28×28 frame like MNIST's.

Generation is seeded and deterministic; train and test draw from independent child seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Photographs bundled with scikit-image (no download), colour photographs first.
PHOTOGRAPHS = (
    "astronaut",
    "chelsea",
    "coffee",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "rocket",
    "motorcycle",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
    "cell",
    "page",
    "text",
)


@lru_cache(maxsize=None)
def load_photograph(name: str) -> np.ndarray:
    """A bundled scikit-image photograph as uint8 [H, W, 3] (grey photographs repeated to RGB)."""
    import skimage.data

    if name == "motorcycle":
        image = skimage.data.stereo_motorcycle()[0]
    elif name in PHOTOGRAPHS:
        image = getattr(skimage.data, name)()
    else:
        raise KeyError(f"unknown stand-in photograph {name!r}; choose from {PHOTOGRAPHS}")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"photograph {name!r} is {image.dtype}, expected uint8")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


@dataclass(frozen=True)
class PhotoClass:
    """One stand-in class: a photograph, or one cell of a grid laid over it."""

    name: str
    photograph: str
    box: tuple[int, int, int, int]  # (top, left, height, width) in the photograph


def _grid(n_cells: int) -> tuple[int, int]:
    rows = int(math.floor(math.sqrt(n_cells)))
    while n_cells % rows:
        rows -= 1
    rows = max(rows, 1)
    cols = math.ceil(n_cells / rows)
    return rows, cols


def photo_classes(
    n_classes: int, photographs: tuple[str, ...] = PHOTOGRAPHS, cells_per_photograph: int | None = None
) -> list[PhotoClass]:
    """``n_classes`` classes: whole photographs while there are enough, else grid cells of them.

    With P photographs and n > P classes every photograph is cut into a grid of
    ``ceil(n / P)`` cells (e.g. 2×3 for CIFAR-100's 100 classes from 18 photographs); the classes
    are taken cell-major (cell 0 of every photograph, then cell 1, ...).
    """
    if n_classes < 2:
        raise ValueError(f"a stand-in needs at least 2 classes, got {n_classes}")
    cells = cells_per_photograph or math.ceil(n_classes / len(photographs))
    if cells == 1:
        if n_classes > len(photographs):
            raise ValueError(f"{n_classes} classes need more than one cell per photograph ({len(photographs)} photographs)")
        return [PhotoClass(p, p, (0, 0, *load_photograph(p).shape[:2])) for p in photographs[:n_classes]]
    if cells * len(photographs) < n_classes:
        raise ValueError(f"{len(photographs)} photographs x {cells} cells < {n_classes} classes")
    rows, cols = _grid(cells)
    out: list[PhotoClass] = []
    for cell in range(rows * cols):
        r, c = divmod(cell, cols)
        for p in photographs:
            h, w = load_photograph(p).shape[:2]
            top, bottom = (r * h) // rows, ((r + 1) * h) // rows
            left, right = (c * w) // cols, ((c + 1) * w) // cols
            out.append(PhotoClass(f"{p}/r{r}c{c}", p, (top, left, bottom - top, right - left)))
            if len(out) == n_classes:
                return out
    raise AssertionError("unreachable")


@lru_cache(maxsize=None)
def _pyramid(name: str) -> tuple:
    """PIL images of a photograph at scales 1, 1/2, 1/4, ... (so each crop resizes cheaply)."""
    from PIL import Image

    levels = [Image.fromarray(load_photograph(name))]
    while min(levels[-1].size) > 64:
        w, h = levels[-1].size
        levels.append(levels[-1].resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BOX))
    return tuple(levels)


def photo_crops(
    n: int,
    n_classes: int = 10,
    *,
    seed: int,
    size: int = 32,
    scale: tuple[float, float] = (0.05, 0.5),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    brightness: float = 0.3,
    contrast: float = 0.3,
    saturation: float = 0.0,
    hue: float = 0.0,
    grayscale: float = 0.0,
    photographs: tuple[str, ...] = PHOTOGRAPHS,
    cells_per_photograph: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` labelled ``size``×``size`` RGB crops: (images uint8 [n, size, size, 3], labels int64, class names).

    Per sample: a class (balanced, shuffled), a crop covering a uniform ``scale`` fraction of the
    class region's area with log-uniform aspect ``ratio`` at a uniform position, a horizontal flip
    with probability 1/2, and brightness/contrast factors uniform in 1 ± ``brightness`` / ``contrast``.
    """
    from PIL import Image

    classes = photo_classes(n_classes, tuple(photographs), cells_per_photograph)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    area = rng.uniform(*scale, size=n)
    log_r = rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=n)
    u_top, u_left = rng.random(n), rng.random(n)
    flips = rng.random(n) < 0.5
    gain = rng.uniform(1 - brightness, 1 + brightness, size=n)
    con = rng.uniform(1 - contrast, 1 + contrast, size=n)
    sat = rng.uniform(1 - saturation, 1 + saturation, size=n)
    angle = rng.uniform(-hue, hue, size=n) * 2 * math.pi
    gray = rng.random(n) < grayscale
    for i in range(n):
        cls = classes[labels[i]]
        top, left, h, w = cls.box
        a = area[i] * h * w
        r = math.exp(log_r[i])
        ch = int(round(min(h, math.sqrt(a / r))))
        cw = int(round(min(w, math.sqrt(a * r))))
        ch, cw = max(ch, 2), max(cw, 2)
        y0 = top + int(u_top[i] * (h - ch))
        x0 = left + int(u_left[i] * (w - cw))
        levels = _pyramid(cls.photograph)
        k = max(0, min(len(levels) - 1, int(math.floor(math.log2(max(1.0, min(ch, cw) / (2 * size)))))))
        f = 2**k
        lw, lh = levels[k].size
        box = (x0 / f, y0 / f, min(lw, (x0 + cw) / f), min(lh, (y0 + ch) / f))
        crop = levels[k].resize((size, size), Image.Resampling.BILINEAR, box=box)
        if flips[i]:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images[i] = np.asarray(crop)
    # photometric change, vectorised: hue rotation about the grey axis and saturation scaling,
    # grayscale, contrast about the per-image mean, then brightness gain
    x = images.astype(np.float32)
    if hue or saturation or grayscale:
        x = np.einsum("nij,nhwj->nhwi", _colour_matrices(angle, np.where(gray, 0.0, sat)), x)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * con[:, None, None, None] + mean
    x *= gain[:, None, None, None]
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return images, labels, [c.name for c in classes]


def _colour_matrices(angle: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """[n, 3, 3] RGB maps: rotate chroma by ``angle`` about the grey axis, scale it by ``saturation``."""
    g = np.full((3, 3), 1.0 / 3.0)  # projection onto the grey axis
    eye = np.eye(3)
    k = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]]) / math.sqrt(3.0)  # cross-product with grey axis
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    rot = g + cos * (eye - g) + sin * k
    return g + saturation[:, None, None] * (rot - g)


def digits_standin(seed: int, test_fraction: float = 0.2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 8×8 digits as MNIST-shaped uint8 [N, 28, 28, 1]: a 20×20 digit in a 28×28 frame.

    The 1 797 digits are split into train/test by a seeded, class-stratified permutation.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    big = np.zeros((len(raw), 28, 28, 1), dtype=np.uint8)
    for i, img in enumerate(raw):
        big[i, 4:24, 4:24, 0] = np.asarray(Image.fromarray(img).resize((20, 20), Image.Resampling.BICUBIC))
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = rng.permutation(idx)
        test_idx.append(idx[: int(round(test_fraction * len(idx)))])
    test_mask = np.zeros(len(labels), dtype=bool)
    test_mask[np.concatenate(test_idx)] = True
    train = np.flatnonzero(~test_mask)
    test = np.flatnonzero(test_mask)
    train, test = rng.permutation(train), rng.permutation(test)
    return {"train": (big[train], labels[train]), "test": (big[test], labels[test])}
