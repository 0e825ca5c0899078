"""Source signals for the linear-ICA-as-LDM experiment (paper Sec. 3.1, Fig. 2).

Two kinds of independent sources are provided:

* :func:`natural_image_sources` -- natural photographs bundled with scikit-image
  (no download needed), each flattened into one row of a ``(d, N)`` array;
* :func:`simulated_sources` -- i.i.d. samples with known kurtosis (Laplace, uniform, bimodal, ...);
* :func:`ornstein_uhlenbeck_sources` -- Ornstein--Uhlenbeck paths simulated with the
  Euler--Maruyama scheme, with their stationary variance given by
  :func:`ou_stationary_variance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = [
    "DEFAULT_IMAGES",
    "image_shape",
    "load_image",
    "natural_image_sources",
    "ornstein_uhlenbeck_sources",
    "ou_stationary_variance",
    "SIMULATED_KURTOSIS",
    "simulated_sources",
]

#: Default image pair: two RGB photographs that ship inside ``skimage.data`` (no pooch download):
#: ``astronaut`` (portrait of Eileen Collins) and ``chelsea`` (a cat). Both pixel-intensity
#: histograms are sub-Gaussian (excess kurtosis -1.4 and -0.5 at 200x200), matching the beta = 4
#: source model of the paper, and the pair is only weakly correlated (r = 0.18). With the default
#: fit the pair is recovered with min |corr| ~0.99 (other tried pairs: chelsea/coffee 0.987,
#: astronaut/coffee 0.989; camera/chelsea only 0.965).
DEFAULT_IMAGES: tuple[str, str] = ("astronaut", "chelsea")


@lru_cache(maxsize=8)
def _raw_image(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` (cached, read-only)."""
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"skimage.data has no image called {name!r}")
    img = np.asarray(loader())
    img.setflags(write=False)
    return img


def _is_rgb(name: str) -> bool:
    img = _raw_image(name)
    return img.ndim == 3 and img.shape[-1] in (3, 4)


def load_image(name: str, size: int = 200, grayscale: bool = False) -> np.ndarray:
    """Load ``skimage.data.<name>()`` as float64 in [0, 1], centre-cropped to a square and resized.

    The largest centred square is cut out first (so the photo is not distorted), then it is
    resized to ``size x size`` with :func:`skimage.transform.resize` (bilinear, anti-aliased).
    An alpha channel is dropped. With ``grayscale=True`` (or for a grayscale image) the
    result has shape ``(size, size)``, otherwise ``(size, size, 3)``.
    """
    from skimage.color import rgb2gray
    from skimage.transform import resize
    from skimage.util import img_as_float

    img = img_as_float(_raw_image(name)).astype(np.float64)
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if grayscale and img.ndim == 3:
        img = rgb2gray(img)
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = img[top : top + side, left : left + side]
    out = resize(img, (size, size) + img.shape[2:], order=1, anti_aliasing=True, mode="reflect")
    return np.clip(out, 0.0, 1.0)


def image_shape(
    names: Sequence[str] = DEFAULT_IMAGES, size: int = 200, grayscale: bool | None = None
) -> tuple[int, ...]:
    """Shape of one image whose flattened pixels form a row of :func:`natural_image_sources`.

    ``(size, size, 3)`` for colour sources, ``(size, size)`` for grayscale ones; use it to
    reshape a row back into an image (``row.reshape(image_shape(...))``).
    """
    if grayscale is None:
        grayscale = not all(_is_rgb(n) for n in names)
    return (size, size) if grayscale else (size, size, 3)


def natural_image_sources(
    names: Sequence[str] = DEFAULT_IMAGES, size: int = 200, grayscale: bool | None = None
) -> np.ndarray:
    """Natural images as independent sources S, shape ``(len(names), N)``, float64 in [0, 1].

    Each image is loaded from ``skimage.data`` (bundled files, works offline), centre-cropped
    to a square, resized to ``size x size`` (see :func:`load_image`) and flattened in C order.
    Like the official code (which flattens 200x200 RGB PNGs, N = 120 000), colour channels are
    kept and flattened together, so N = 3 * size**2 for colour and size**2 for grayscale.
    ``grayscale=None`` uses colour when every image is RGB and grayscale otherwise.
    Rows are *not* centred (centring happens in :func:`ldm.models.ica.mix`).
    """
    names = tuple(names)
    if len(names) < 2:
        raise ValueError(f"ICA needs at least two source images, got {list(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"source images must differ, got {list(names)}")
    if grayscale is None:
        grayscale = not all(_is_rgb(n) for n in names)
    rows = [load_image(n, size=size, grayscale=grayscale).ravel() for n in names]
    return np.stack(rows).astype(np.float64)


#: Distributions of :func:`simulated_sources` and their exact excess kurtosis (E[z^4] - 3 of the
#: standardised variable): > 0 super-Gaussian, < 0 sub-Gaussian.
SIMULATED_KURTOSIS: dict[str, float] = {
    "laplace": 3.0,
    "student_t5": 6.0,  # t with 5 degrees of freedom: 6 / (nu - 4)
    "gaussian": 0.0,
    "uniform": -1.2,
    # 1/2 N(-1, 0.3^2) + 1/2 N(1, 0.3^2): (mu^4 + 6 mu^2 s^2 + 3 s^4) / (mu^2 + s^2)^2 - 3
    "bimodal": (1.0 + 6 * 0.09 + 3 * 0.0081) / 1.09**2 - 3.0,
}


def simulated_sources(distributions: Sequence[str], n_samples: int = 20_000, seed: int = 0) -> np.ndarray:
    """i.i.d. samples of independent sources, one row per name in ``distributions``, each
    standardised in distribution (mean 0, variance 1); shape ``(len(distributions), n_samples)``.

    Names and their excess kurtosis: :data:`SIMULATED_KURTOSIS` (``laplace`` +3, ``student_t5``
    +6, ``gaussian`` 0, ``uniform`` -1.2, ``bimodal`` -1.68: two Gaussians at +-1 with std 0.3).
    Row i uses an independent child seed of ``seed`` (numpy SeedSequence).
    """
    names = list(distributions)
    if len(names) < 2:
        raise ValueError(f"ICA needs at least two sources, got {names}")
    unknown = [n for n in names if n not in SIMULATED_KURTOSIS]
    if unknown:
        raise ValueError(f"unknown simulated source(s) {unknown}; use {sorted(SIMULATED_KURTOSIS)}")
    if n_samples < 2:
        raise ValueError("n_samples must be >= 2")
    rows = []
    for name, child in zip(names, np.random.SeedSequence(seed).spawn(len(names))):
        rng = np.random.default_rng(child)
        if name == "laplace":
            row = rng.laplace(0.0, 1.0 / np.sqrt(2.0), n_samples)
        elif name == "student_t5":
            row = rng.standard_t(5, n_samples) / np.sqrt(5.0 / 3.0)
        elif name == "gaussian":
            row = rng.standard_normal(n_samples)
        elif name == "uniform":
            row = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), n_samples)
        else:  # bimodal
            row = (rng.choice([-1.0, 1.0], n_samples) + 0.3 * rng.standard_normal(n_samples)) / np.sqrt(1.09)
        rows.append(row)
    return np.stack(rows)


def ornstein_uhlenbeck_sources(
    thetas: Sequence[float] = (2.0, 0.2),
    sigma: float = 0.3,
    dt: float = 0.1,
    n_steps: int = 50_000,
    seed: int = 1,
) -> np.ndarray:
    """Independent zero-mean Ornstein--Uhlenbeck paths, shape ``(len(thetas), n_steps)``.

    Euler--Maruyama for dx = -theta x dt + sigma dW, started at x_0 = 0 (column 0):
    x_{t+1} = x_t - theta x_t dt + sigma sqrt(dt) xi_t with xi_t ~ N(0, 1) i.i.d.
    The update is vectorised over sources (one loop over time). Deterministic given ``seed``
    (``numpy.random.default_rng(seed)``). Defaults follow the paper/official code:
    theta = 2.0 (fast) and 0.2 (slow), sigma = 0.3, dt = 0.1, T = 5000 -> 50 000 steps.
    """
    theta = np.asarray(thetas, dtype=np.float64)
    if theta.ndim != 1 or np.any(theta <= 0):
        raise ValueError("thetas must be a 1-d sequence of positive numbers")
    if n_steps < 1:
        raise ValueError("n_steps must be >= 1")
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n_steps - 1, theta.size)) * (sigma * np.sqrt(dt))
    decay = 1.0 - theta * dt
    x = np.zeros((n_steps, theta.size))
    for t in range(n_steps - 1):
        x[t + 1] = decay * x[t] + noise[t]
    return np.ascontiguousarray(x.T)


def ou_stationary_variance(theta: float, sigma: float, dt: float | None = None) -> float:
    """Stationary variance of an Ornstein--Uhlenbeck process.

    ``dt=None`` gives the continuous-time value sigma^2 / (2 theta). With ``dt`` it gives the
    exact stationary variance of the Euler--Maruyama chain simulated by
    :func:`ornstein_uhlenbeck_sources`, an AR(1) with coefficient 1 - theta dt:
    sigma^2 dt / (1 - (1 - theta dt)^2) = sigma^2 / (theta (2 - theta dt)).
    For theta = 2, dt = 0.1 these differ by 11 % (0.0225 vs 0.025); the official code used the
    measured variances (~0.025, ~0.227), i.e. the discrete-time values.
    """
    if theta <= 0 or sigma < 0:
        raise ValueError("theta must be > 0 and sigma >= 0")
    if dt is None:
        return float(sigma**2 / (2.0 * theta))
    if not 0 < theta * dt < 2:
        raise ValueError("Euler-Maruyama OU chain is not stationary unless 0 < theta*dt < 2")
    return float(sigma**2 / (theta * (2.0 - theta * dt)))
