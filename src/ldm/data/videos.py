"""Synthetic dot-motion videos for the predictive LDM experiments (paper Sec. 6.1, Fig. 4A, A3, A4).

A video is a sequence of ``seq_len`` frames of ``image_dim x image_dim`` pixels showing a Gaussian blob
at the position of a 2-D latent trajectory, plus per-frame Gaussian pixel noise:

* motions: the trajectory registry :mod:`ldm.data.motions` -- ``circular`` (noisy rotation on the unit
  circle, optional +135 degree jumps), ``figure8`` (``(cos th, sin th cos th)``), ``square``, and further
  shapes (lissajous, ellipse, polygon, epicycle); ``random_phase`` gives every sequence its own phase;
* rendering: blob with sigma = 1 pixel, peak 1, pixel coordinate ``clip((v + 3) * 10/6, 0, 9)`` (visible
  window ``[-3, 2.4]``), optional ``half_flip`` (``y -> -y`` where ``x > 0``: the image map is not
  injective, only temporal context disambiguates);
* noise types (per-frame *variance* ``s_t``): ``gaussian`` (constant), ``random_gaussian``
  (``max(0, E - 0.3 s)`` with ``E ~ Exp(mean s)``), ``state_dependent_gaussian`` (``s |(x+1)/2|``).

Labels: ``position`` [N,T,2], ``noise_level`` [N,T], ``jumps`` [N,T] (1 where a jump happened at that
step) and, for the square, ``sin_pos`` [N,T,2]. Everything is vectorised over sequences (only the
Markov recursion of the circular motion loops over time) and deterministic given the seed. Train and
test sets are drawn from independent seeds (see :func:`split_seeds`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ldm.data.motions import MOTIONS, get_motion, register_motion  # noqa: F401 (part of this module's API)
from ldm.data.video_config import NOISE_TYPES, VideoConfig  # noqa: F401 (part of this module's API)


def split_seeds(seed: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """Independent seed sequences for the train and test split derived from one data seed."""
    root = np.random.SeedSequence(int(seed))
    train, test = root.spawn(2)
    return train, test


# --------------------------------------------------------------------------------------------------
# trajectories
# --------------------------------------------------------------------------------------------------


def _trajectory(motion: str, n: int, seq_len: int, dt: float, period: float, rng: np.random.Generator | None = None,
                **kw) -> dict[str, np.ndarray]:
    cfg = VideoConfig(motion=motion, seq_len=seq_len, dt=dt, period=period, **kw)
    return get_motion(motion).trajectory(cfg, n, rng if rng is not None else np.random.default_rng(0))


def circular_trajectories(
    n: int, seq_len: int, dt: float, period: float, prediction_noise: float, jump_rate: float,
    rng: np.random.Generator, jump_angle_deg: float = 135.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The registered ``circular`` motion (positions [n, T, 2], jump indicators [n, T])."""
    out = _trajectory("circular", n, seq_len, dt, period, rng, prediction_noise=prediction_noise,
                      jump_rate=jump_rate, jump_angle_deg=jump_angle_deg)
    return out["position"], out["jumps"]


def figure8_trajectories(n: int, seq_len: int, dt: float, period: float) -> np.ndarray:
    """The registered ``figure8`` motion with phase 0 (same for all n)."""
    return _trajectory("figure8", n, seq_len, dt, period)["position"]


def square_trajectories(n: int, seq_len: int, dt: float, period: float) -> tuple[np.ndarray, np.ndarray]:
    """The registered ``square`` motion with phase 0 (same for all n): positions and ``sin_pos``."""
    out = _trajectory("square", n, seq_len, dt, period)
    return out["position"], out["sin_pos"]


# --------------------------------------------------------------------------------------------------
# rendering and noise
# --------------------------------------------------------------------------------------------------


def pixel_coordinate(v: np.ndarray, image_dim: int = 10) -> np.ndarray:
    """World -> pixel coordinate ``clip((v + 3) * image_dim / 6, 0, image_dim - 1)``."""
    return np.clip((v + 3.0) * image_dim / 6.0, 0.0, image_dim - 1.0)


def render_clean(position: np.ndarray, image_dim: int = 10, half_flip: bool = False) -> np.ndarray:
    """Noise-free frames [..., image_dim**2] of an unnormalised Gaussian blob (sigma 1 px, peak 1).

    Row index i follows x, column index j follows y; flattened row-major. ``half_flip`` mirrors y where
    x > 0 before rendering.
    """
    x = position[..., 0]
    y = position[..., 1]
    if half_flip:
        y = np.where(x > 0, -y, y)
    cx = pixel_coordinate(x, image_dim)[..., None, None]
    cy = pixel_coordinate(y, image_dim)[..., None, None]
    idx = np.arange(image_dim, dtype=np.float64)
    g = np.exp(-((idx[:, None] - cx) ** 2 + (idx[None, :] - cy) ** 2) / 2.0)
    return g.reshape(*position.shape[:-1], image_dim * image_dim)


def noise_levels(
    noise_type: str, observation_noise: float, position: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per-frame pixel-noise variance s_t [N, T] for the given noise type (applied at every frame)."""
    shape = position.shape[:-1]
    if noise_type == "gaussian":
        return np.full(shape, float(observation_noise))
    if noise_type == "random_gaussian":
        e = rng.exponential(scale=float(observation_noise), size=shape) if observation_noise > 0 else np.zeros(shape)
        return np.maximum(0.0, e - 0.3 * observation_noise)
    if noise_type == "state_dependent_gaussian":
        return observation_noise * np.abs((position[..., 0] + 1.0) / 2.0)
    raise ValueError(f"videos: unknown noise_type {noise_type!r}")


def add_pixel_noise(clean: np.ndarray, noise_level: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Frames + i.i.d. N(0, s_t) noise on every pixel (``noise_level`` is a variance per frame)."""
    return clean + np.sqrt(noise_level)[..., None] * rng.standard_normal(clean.shape)


# --------------------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------------------


def generate_split(cfg: VideoConfig, n: int, seed: np.random.SeedSequence | int) -> dict[str, np.ndarray]:
    """Generate ``n`` videos: frames [n,T,P] float32 and labels (position, noise_level, jumps, sin_pos);
    the trajectory comes from the motion registered under ``cfg.motion`` (:mod:`ldm.data.motions`)."""
    rng = np.random.default_rng(seed)
    T = cfg.seq_len
    labels = get_motion(cfg.motion).trajectory(cfg, n, rng)
    pos = np.asarray(labels["position"], dtype=np.float64)
    if pos.shape != (n, T, 2):
        raise ValueError(f"videos: motion {cfg.motion!r} returned positions of shape {pos.shape}, expected {(n, T, 2)}")
    jumps = labels.get("jumps", np.zeros((n, T), dtype=np.int8))
    sin_pos = labels.get("sin_pos")
    s = noise_levels(cfg.noise_type, cfg.observation_noise, pos, rng)
    frames = add_pixel_noise(render_clean(pos, cfg.image_dim, cfg.half_flip), s, rng)
    out = {
        "frames": frames.astype(np.float32),
        "position": pos.astype(np.float32),
        "noise_level": s.astype(np.float32),
        "jumps": jumps,
    }
    if sin_pos is not None:
        out["sin_pos"] = sin_pos.astype(np.float32)
    return out


def generate_dataset(cfg: VideoConfig, seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Train and test splits from independent child seeds of ``seed``."""
    s_train, s_test = split_seeds(seed)
    return generate_split(cfg, cfg.n_train, s_train), generate_split(cfg, cfg.n_test, s_test)


def renoise(
    split: Mapping[str, np.ndarray], cfg: VideoConfig, seed: int | np.random.SeedSequence
) -> np.ndarray:
    """Re-render the frames of a split with fresh pixel noise (trajectories and noise levels kept).

    This reproduces the official training loader, which draws new pixel noise at every epoch.
    """
    rng = np.random.default_rng(seed)
    clean = render_clean(split["position"].astype(np.float64), cfg.image_dim, cfg.half_flip)
    return add_pixel_noise(clean, split["noise_level"].astype(np.float64), rng).astype(np.float32)


def save_npz(path: Path | str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> None:
    """Write arrays (+ a JSON ``meta`` entry) to ``path`` atomically."""
    import json

    from ldm.pipeline import io

    payload = dict(arrays)
    if meta is not None:
        payload["meta"] = np.array(json.dumps(dict(meta), sort_keys=True))
    io.save_npz(path, **payload)


def load_npz(path: Path | str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a split saved by :func:`save_npz`; returns (arrays, meta). A missing array or a truncated
    file raises an error naming the file and how to regenerate it."""
    import json

    from ldm.pipeline import io

    path = Path(path)
    data = io.load_npz(path)
    meta = json.loads(str(data.pop("meta"))) if "meta" in data else {}
    for key in ("frames", "position", "noise_level"):
        if key not in data:
            raise io.CorruptFileError(f"videos: data file {path} lacks array {key!r}; {io.regenerate_hint(path)}")
    return data, meta


def write_dataset(cfg: VideoConfig, seed: int, out_dir: Path | str) -> dict[str, Path]:
    """Generate and save ``train.npz`` and ``test.npz`` under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    train, test = generate_dataset(cfg, seed)
    paths = {}
    for name, split in (("train", train), ("test", test)):
        meta = {"config": cfg.to_dict(), "seed": int(seed), "split": name}
        p = out_dir / f"{name}.npz"
        save_npz(p, split, meta)
        paths[name] = p
    return paths
