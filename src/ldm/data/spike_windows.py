"""Binned spike trains as model input (paper Sec. 6.1 / App. B, hippocampus): a validated reader of the
prepared hc-11 artifact, the time split of CEBRA's demo protocol and a seeded window sampler.

* :func:`load_spike_series` reads ``spikes.npz`` (counts int [T, n_units], position float [T] in m,
  direction int [T], time [T]) and checks every field; an error names the file and the field.
* :func:`time_split`: first ``train_fraction`` of the bins for training, the rest held out (CEBRA
  ``Demo_hippocampus``: ``split_data(..., 0.2)``, hc11.md §2.3).
* :class:`WindowSampler`: ``n`` windows of ``length`` bins per epoch with uniformly drawn starts inside
  the training block; the draw depends only on (seed, epoch), so a resumed training sees the same windows
  (paper: 100 000 windows of 10 s = 400 bins per epoch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

REQUIRED = ("counts", "position", "direction", "time")
INPUT_TRANSFORMS = ("none", "sqrt", "log1p")


class SpikeFileError(ValueError):
    """A prepared spike file is missing a field or has a field of the wrong shape / type."""


@dataclass
class SpikeSeries:
    """One recording in bins: counts [T, N], position [T] (m; NaN where unknown), direction [T]
    (+1 right, -1 left, 0 not running), time [T] (s)."""

    counts: np.ndarray
    position: np.ndarray
    direction: np.ndarray
    time: np.ndarray
    path: str = ""

    @property
    def n_bins(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_units(self) -> int:
        return int(self.counts.shape[1])

    def part(self, sl: slice) -> "SpikeSeries":
        return SpikeSeries(self.counts[sl], self.position[sl], self.direction[sl], self.time[sl], self.path)


def load_spike_series(path: str | os.PathLike, n_units: Optional[int] = None) -> SpikeSeries:
    """Read and validate a prepared spike file; ``n_units`` (if given) must match the counts' columns.

    Raises :class:`SpikeFileError` naming the file and the field (missing ``position``, wrong unit count
    of ``counts``, mismatching lengths, non-integer or negative counts)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: spike file does not exist (run the datasets rule that writes it)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # zipfile / ValueError on a corrupt file
        raise SpikeFileError(f"{path}: not a readable .npz file ({type(err).__name__}: {err})") from err
    for name in REQUIRED:
        if name not in arrays:
            raise SpikeFileError(f"{path}: field '{name}' is missing (fields present: {sorted(arrays)}; "
                                 f"required: {list(REQUIRED)})")
    counts = arrays["counts"]
    if counts.ndim != 2:
        raise SpikeFileError(f"{path}: field 'counts' must be 2-D [bins, units], got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.integer):
        raise SpikeFileError(f"{path}: field 'counts' must hold integer spike counts, got dtype {counts.dtype}")
    if counts.size and counts.min() < 0:
        raise SpikeFileError(f"{path}: field 'counts' has negative entries")
    if n_units is not None and counts.shape[1] != int(n_units):
        raise SpikeFileError(f"{path}: field 'counts' has {counts.shape[1]} units, expected {int(n_units)} "
                             f"(setting hippocampus.data.n_units)")
    T = counts.shape[0]
    for name in ("position", "direction", "time"):
        a = arrays[name]
        if a.ndim != 1 or a.shape[0] != T:
            raise SpikeFileError(f"{path}: field '{name}' must have shape ({T},) like counts' bins, got {a.shape}")
    position = arrays["position"].astype(np.float64)
    if not np.isfinite(position).any():
        raise SpikeFileError(f"{path}: field 'position' has no finite value")
    return SpikeSeries(counts=counts, position=position, direction=arrays["direction"].astype(np.int64),
                       time=arrays["time"].astype(np.float64), path=str(path))


def time_split(n_bins: int, train_fraction: float = 0.8) -> tuple[slice, slice]:
    """(train, test) slices: the first ``train_fraction`` of the bins and the rest (split by time)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    cut = int(round(n_bins * train_fraction))
    return slice(0, cut), slice(cut, n_bins)


def transform_counts(counts: np.ndarray, kind: str = "none") -> np.ndarray:
    """Encoder input from counts: ``none`` (the counts as float32), ``sqrt`` or ``log1p``."""
    if kind not in INPUT_TRANSFORMS:
        raise ValueError(f"input_transform must be one of {INPUT_TRANSFORMS}, got {kind!r}")
    x = counts.astype(np.float32)
    if kind == "sqrt":
        return np.sqrt(x)
    if kind == "log1p":
        return np.log1p(x)
    return x


class WindowSampler:
    """Seeded sampler of windows [length] from a series of ``n_bins`` bins: per epoch ``n`` starts drawn
    uniformly (with replacement) from [0, n_bins - length], from a generator of (seed, epoch) only."""

    def __init__(self, n_bins: int, length: int, n: int, seed: int) -> None:
        if length < 2:
            raise ValueError(f"window length must be >= 2 bins, got {length}")
        if n_bins < length:
            raise ValueError(f"the training block has {n_bins} bins, fewer than one window of {length}")
        self.n_bins, self.length, self.n, self.seed = int(n_bins), int(length), int(n), int(seed)

    def starts(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(epoch), 7919])
        return rng.integers(0, self.n_bins - self.length + 1, size=self.n)

    def windows(self, x: np.ndarray, epoch: int) -> np.ndarray:
        """The epoch's windows of ``x`` [T, ...] as [n, length, ...] (a copy)."""
        idx = self.starts(epoch)[:, None] + np.arange(self.length)[None, :]
        return x[idx]
