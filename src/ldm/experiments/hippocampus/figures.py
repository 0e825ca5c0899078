"""Figures of the ``hippocampus`` experiment (paper Fig. 4E-G, Fig. A4C); every figure as PNG + PDF.

Inputs are the held-out arrays written by the evaluate stage (``latents_test.npz``) and its ``eval.json``;
each function takes an output path without suffix and returns the written paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ldm.pipeline.io import save_figure as save  # noqa: E402


def _bin_axis(lat: Mapping[str, np.ndarray], T: int) -> np.ndarray:
    """Seconds along the held-out bins as they are concatenated (running-only data has gaps in real time)."""
    dt = float(np.median(np.diff(lat["time"][: max(T, 2)]))) if len(lat["time"]) > 1 else 0.025
    return np.arange(T) * dt


def decoded_position(lat: Mapping[str, np.ndarray], ev: Mapping[str, Any], stem: Path | str, n_bins: int = 800) -> list[Path]:
    """Fig. 4E-G style: true position and the decoded position with its 95 % band over a held-out stretch,
    for the MLP readout (sampled interval) and the linear readout (analytic interval)."""
    T = min(int(n_bins), len(lat["position"]))
    t = _bin_axis(lat, T)
    fig, axes = plt.subplots(2, 1, figsize=(11.0, 5.2), sharex=True)
    for ax, key, label in ((axes[0], "mlp", "MLP readout, 95 % from 1000 samples of N(h, P)"),
                           (axes[1], "linear", "linear readout, analytic 95 %")):
        ax.fill_between(t, 100 * lat[f"ours_{key}_lo"][:T], 100 * lat[f"ours_{key}_hi"][:T], color="C0", alpha=0.25,
                        lw=0, label="95 % interval")
        ax.plot(t, 100 * lat[f"ours_{key}_mean"][:T], color="C0", lw=0.9, label="decoded")
        ax.plot(t, 100 * lat["position"][:T], color="k", lw=0.9, ls="--", label="true")
        ax.set_ylabel("position (cm)")
        ax.set_title(f"{label}: median error {ev[f'ours/{key}/median_error_cm']:.1f} cm, "
                     f"coverage {100 * ev[f'ours/{key}/coverage_95']:.1f} % (whole held-out block)", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper right", ncol=3)
    axes[1].set_xlabel("held-out running time (s; bins concatenated, pauses cut as in CEBRA)")
    fig.tight_layout()
    return save(fig, stem)


def latent_trajectory(lat: Mapping[str, np.ndarray], stem: Path | str, n_bins: int = 2000) -> list[Path]:
    """Fig. 4F style: the filtered latent mean projected on its first two principal components, coloured by
    position (left) and by running direction (right)."""
    h = lat["h"][:n_bins]
    hc = h - h.mean(0)
    _, _, vt = np.linalg.svd(hc, full_matrices=False)
    pc = hc @ vt[:2].T
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.0))
    sc = axes[0].scatter(pc[:, 0], pc[:, 1], c=100 * lat["position"][:n_bins], cmap="viridis", s=3)
    axes[0].plot(pc[:, 0], pc[:, 1], color="0.7", lw=0.2, zorder=0)
    fig.colorbar(sc, ax=axes[0], label="position (cm)")
    d = lat["direction"][:n_bins]
    for val, col, lab in ((1, "C3", "rightward"), (-1, "C0", "leftward")):
        axes[1].scatter(pc[d == val, 0], pc[d == val, 1], s=3, color=col, label=lab)
    axes[1].legend(fontsize=7, markerscale=3)
    for ax in axes:
        ax.set_xlabel("latent PC 1")
        ax.set_ylabel("latent PC 2")
    axes[0].set_title("filtered latent mean, coloured by position", fontsize=9)
    axes[1].set_title("coloured by running direction", fontsize=9)
    fig.tight_layout()
    return save(fig, stem)


def noise_panels(lat: Mapping[str, np.ndarray], ev: Mapping[str, Any], stem: Path | str, n_bins: int = 400) -> list[Path]:
    """Fig. A4C style: (a) the input-dependent observation variance (mean diag Sigma_D) against the bin's
    population spike count; (b) calibration: |error| against the predicted standard deviation of the linear
    readout; (c) over a stretch, the decoded position's 95 % half-width and the observation variance."""
    pop = lat["pop_count"]
    ov = lat["obs_var"].mean(-1)
    err = np.abs(lat["ours_linear_mean"] - lat["position"])
    sd = (lat["ours_linear_hi"] - lat["ours_linear_lo"]) / (2 * 1.959963984540054)
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.4))
    ax = axes[0]
    ax.scatter(pop + 0.2 * np.random.default_rng(0).standard_normal(len(pop)), ov, s=3, alpha=0.3)
    ax.set_yscale("log")
    ax.set_xlabel("population spike count in the bin")
    ax.set_ylabel("inferred Σ_D (mean diag)")
    ax.set_title("input-dependent observation noise", fontsize=9)
    ax = axes[1]
    edges = np.quantile(sd, np.linspace(0, 1, 9))
    idx = np.clip(np.searchsorted(edges, sd, side="right") - 1, 0, 7)
    centres = [100 * sd[idx == i].mean() for i in range(8) if np.any(idx == i)]
    q95 = [100 * np.quantile(err[idx == i], 0.95) for i in range(8) if np.any(idx == i)]
    ax.plot(centres, q95, "o-", label="95th pct of |error|")
    lim = max(max(centres), max(q95)) * 1.1
    ax.plot([0, lim / 1.96], [0, lim], "k--", lw=0.8, label="1.96 × predicted σ")
    ax.set_xlabel("predicted σ of position (cm)")
    ax.set_ylabel("|error| (cm)")
    ax.legend(fontsize=7)
    ax.set_title(f"calibration (coverage {100 * ev['ours/linear/coverage_95']:.1f} %)", fontsize=9)
    ax = axes[2]
    T = min(n_bins, len(pop))
    t = _bin_axis(lat, T)
    ax.plot(t, 100 * 1.96 * sd[:T], color="C0", lw=0.8, label="95 % half-width (cm)")
    ax.set_xlabel("held-out running time (s)")
    ax.set_ylabel("95 % half-width (cm)", color="C0")
    ax2 = ax.twinx()
    ax2.plot(t, ov[:T], color="C1", lw=0.6)
    ax2.set_ylabel("Σ_D (mean diag)", color="C1")
    ax.set_title("uncertainty over time", fontsize=9)
    fig.tight_layout()
    return save(fig, stem)
