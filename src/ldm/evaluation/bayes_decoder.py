"""Bayesian place-cell decoder (the reference bound of the hippocampus experiment, hc11.md §3).

Poisson observation model on a grid of (position, running direction) states: counts n_u ~ Poisson(lambda_u(x,
d) * dt) independently per unit; a causal forward filter (HMM) with a Gaussian step kernel in position
(mean drift d * speed * dt) and a small direction-flip probability. With the simulation's own tuning curves
(:func:`ldm.data.hc11_standin.tuning_curves`) this is the Bayes-optimal causal decoder of the simulated data
up to the motion prior, i.e. the bound a learned causal latent can approach; with tuning curves estimated on
the training block (:func:`empirical_tuning`) it is the classical place-cell decoder, usable on real data.
Estimates: the posterior median of position (it minimises the expected absolute error), the posterior
mode of direction, and the central 95 % credible interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def empirical_tuning(counts: np.ndarray, position: np.ndarray, direction: np.ndarray, grid: np.ndarray,
                     dt: float, smooth_bins: float = 1.5, floor_hz: float = 0.05) -> np.ndarray:
    """Rates [n_grid, 2 (right, left), n_units] in Hz: spikes / occupancy per grid cell and direction,
    Gaussian-smoothed over ``smooth_bins`` grid cells, floored at ``floor_hz``."""
    step = grid[1] - grid[0]
    idx = np.clip(np.round((position - grid[0]) / step).astype(int), 0, len(grid) - 1)
    rates = np.zeros((len(grid), 2, counts.shape[1]))
    k = np.arange(-4 * int(np.ceil(smooth_bins)), 4 * int(np.ceil(smooth_bins)) + 1)
    kern = np.exp(-0.5 * (k / smooth_bins) ** 2)
    kern /= kern.sum()
    for j, d in enumerate((1, -1)):
        sel = (direction == d) & np.isfinite(position)
        occ = np.bincount(idx[sel], minlength=len(grid)).astype(float) * dt
        spk = np.zeros((len(grid), counts.shape[1]))
        np.add.at(spk, idx[sel], counts[sel])
        occ_s = np.convolve(occ, kern, mode="same")
        spk_s = np.stack([np.convolve(spk[:, u], kern, mode="same") for u in range(counts.shape[1])], 1)
        rates[:, j] = spk_s / np.maximum(occ_s, 1e-9)[:, None]
    return np.maximum(rates, floor_hz)


def transition_matrix(grid: np.ndarray, dt: float, speed: float = 0.5, step_sd: float = 0.03,
                      flip_prob: float = 1.0 / 120, jump_prob: float = 1e-3) -> np.ndarray:
    """[2G, 2G] row-stochastic transition over (direction, position) states (right states first)."""
    G = len(grid)
    T = np.zeros((2 * G, 2 * G))
    for j, d in enumerate((1, -1)):
        for j2 in range(2):
            mean = grid[:, None] + d * speed * dt
            K = np.exp(-0.5 * ((grid[None, :] - mean) / step_sd) ** 2)
            K /= K.sum(1, keepdims=True)
            T[j * G:(j + 1) * G, j2 * G:(j2 + 1) * G] = K * ((1 - flip_prob) if j == j2 else flip_prob)
    T = (1 - jump_prob) * T + jump_prob / (2 * G)
    return T


def bayes_filter_decode(counts: np.ndarray, rates: np.ndarray, grid: np.ndarray, dt: float, **transition: Any
                        ) -> dict[str, np.ndarray]:
    """Causal forward filter over (direction, position); returns position (posterior median), lo/hi (95 %
    credible interval), direction (+1/-1, posterior mode) per bin."""
    G = len(grid)
    lam = np.concatenate([rates[:, 0], rates[:, 1]], 0) * dt  # [2G, U]
    loglik = counts @ np.log(lam).T - lam.sum(1)[None, :]  # [T, 2G]
    Tm = transition_matrix(grid, dt, **transition)
    alpha = np.full(2 * G, 1.0 / (2 * G))
    post = np.empty((len(counts), 2 * G))
    for t in range(len(counts)):
        prior = alpha @ Tm
        a = np.log(prior + 1e-300) + loglik[t]
        a = np.exp(a - a.max())
        alpha = a / a.sum()
        post[t] = alpha
    pos_post = post[:, :G] + post[:, G:]
    cdf = np.cumsum(pos_post, 1)
    q = lambda p: grid[np.minimum((cdf < p).sum(1), G - 1)]  # noqa: E731
    right = post[:, :G].sum(1)
    return {"position": q(0.5), "lo": q(0.025), "hi": q(0.975), "direction": np.where(right >= 0.5, 1, -1)}
