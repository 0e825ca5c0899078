"""Figures of the ``kalman`` experiment (paper Fig. 4A-D, Fig. A3, Fig. A4); every figure as PNG + PDF.

All functions take plain arrays / dicts (as written by :func:`ldm.experiments.kalman.evaluate`) and an
output path *without* suffix, and return the written paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ldm.pipeline.io import save_figure as save  # noqa: E402


def example_frames(frames: np.ndarray, position: np.ndarray, stem: Path | str, n: int = 8,
                   title: str = "") -> list[Path]:
    """Fig. 4A / A3: the first ``n`` frames of a video and the latent trajectory that generated it."""
    T, P = frames.shape
    side = int(round(np.sqrt(P)))
    fig = plt.figure(figsize=(1.3 * n + 3.2, 2.2))
    gs = fig.add_gridspec(1, n + 3, width_ratios=[1.0] * n + [0.45, 1.0, 1.0])
    vmax = float(np.percentile(frames[:n], 99.5))
    for i in range(n):
        ax = fig.add_subplot(gs[0, i])
        ax.imshow(frames[i].reshape(side, side), cmap="gray", vmin=min(0.0, frames[:n].min()), vmax=vmax)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"t={i}", fontsize=8)
    ax = fig.add_subplot(gs[0, n + 1:])
    ax.plot(position[:, 0], position[:, 1], color="0.6", lw=0.8)
    ax.scatter(position[:n, 0], position[:n, 1], c=np.arange(n), cmap="viridis", s=14, zorder=3)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("true latent", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, stem)


def latent_trajectories(lat: Mapping[str, np.ndarray], stem: Path | str, seq: int = 0, n_steps: int = 50,
                        title: str = "") -> list[Path]:
    """Fig. 4C / A4B: filtered latents D h_t with +-2 sigma bands (sqrt diag D P_t D^T) and the encodings
    z_t with error bars +-1.8 sqrt(Sigma_D(t)), for the first ``n_steps`` steps of one test video."""
    L = lat["z"].shape[-1]
    T = min(n_steps, lat["z"].shape[1])
    t = np.arange(T)
    h = lat["h"][seq, :T, :L]
    sd = np.sqrt(np.clip(np.diagonal(lat["P"][seq, :T, :L, :L], axis1=-2, axis2=-1), 0, None))
    z = lat["z"][seq, :T]
    zs = np.sqrt(np.clip(lat["obs_var"][seq, :T], 0, None))
    k = min(L, 2)
    fig, axes = plt.subplots(1, k + 1, figsize=(4.2 * (k + 1), 3.0))
    for d in range(k):
        ax = axes[d]
        ax.fill_between(t, h[:, d] - 2 * sd[:, d], h[:, d] + 2 * sd[:, d], color="C0", alpha=0.25, lw=0,
                        label="filtered ±2σ")
        ax.plot(t, h[:, d], color="C0", lw=1.2, label="filtered $Dh_t$")
        ax.errorbar(t, z[:, d], yerr=1.8 * zs[:, d], fmt="o", ms=2.5, color="C1", elinewidth=0.6,
                    label="encoding $z_t$ ±1.8σ$_D$")
        ax.set_xlabel("time step")
        ax.set_ylabel(f"latent {d + 1}")
    axes[0].legend(fontsize=7, loc="upper right")
    ax = axes[-1]
    ax.plot(lat["h"][seq, :, 0], lat["h"][seq, :, 1 if L > 1 else 0], color="C0", lw=0.8)
    sc = ax.scatter(z[:, 0], z[:, 1 if L > 1 else 0], c=t, cmap="viridis", s=10)
    fig.colorbar(sc, ax=ax, label="t")
    ax.set_xlabel("latent 1")
    ax.set_ylabel("latent 2")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, stem)


def position_decoding(lat: Mapping[str, np.ndarray], stem: Path | str, seq: int = 0, n_steps: int = 60,
                      title: str = "") -> list[Path]:
    """Fig. 4C (right) / A4C: position decoded from the filtered state by the linear probe with the
    filter's uncertainty propagated through it (+-2 sqrt diag W^T P W), against the true position."""
    T = min(n_steps, lat["position"].shape[1])
    t = np.arange(T)
    fig, axes = plt.subplots(2, 1, figsize=(7.0, 4.2), sharex=True)
    for d, name in enumerate(("x", "y")):
        ax = axes[d]
        m = lat["pos_hat"][seq, :T, d]
        s = lat["pos_std"][seq, :T, d]
        ax.fill_between(t, m - 2 * s, m + 2 * s, color="C0", alpha=0.25, lw=0, label="decoded ±2σ")
        ax.plot(t, m, color="C0", lw=1.2, label="decoded")
        ax.plot(t, lat["position"][seq, :T, d], color="k", lw=1.0, ls="--", label="true")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=7, ncol=3, loc="upper right")
    axes[-1].set_xlabel("time step")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, stem)


def grad_cos(curves: Mapping[str, Sequence[Mapping[str, Any]]], stem: Path | str) -> list[Path]:
    """Fig. 4D: cosine similarity between the kNN single-variable-entropy gradient and the stopgrad
    conditional-entropy gradient on the encoder weights, over training steps, one line per run."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    groups: dict[str, int] = {}
    for name, steps in curves.items():
        pts = [(s["step"], s["grad_cos"]) for s in steps if "grad_cos" in s and np.isfinite(s["grad_cos"])]
        if not pts:
            continue
        group = name.split(" (seed")[0]  # one colour per run, one line per seed
        first = group not in groups
        colour = f"C{groups.setdefault(group, len(groups)) % 10}"
        x, y = np.asarray(pts).T
        ax.plot(x, y, lw=1.0, color=colour, alpha=0.85, label=group if first else None)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel("gradient cosine similarity")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return save(fig, stem)


def rotation_angle(epochs: Sequence[Mapping[str, Any]], true_deg: float, stem: Path | str,
                   title: str = "") -> list[Path]:
    """Rotation angle per step of the learned transition A (dominant complex eigenvalue) over training,
    against the generating dynamics' angle."""
    x = [e["epoch"] for e in epochs if "kalman/rotation_deg" in e]
    y = [e["kalman/rotation_deg"] for e in epochs if "kalman/rotation_deg" in e]
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    ax.plot(x, y, "o-", ms=3, label="learned A")
    ax.axhline(true_deg, color="k", ls="--", lw=1, label=f"true ({true_deg:.1f}°)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("rotation per step (deg)")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, stem)


def noise_panels(lat: Mapping[str, np.ndarray], stem: Path | str, seq: int = 0, n_steps: int = 60,
                 title: str = "") -> list[Path]:
    """Fig. A4: (a) inferred observation variance vs the true per-frame noise level; (b) position error of
    the filtered state vs the encoder alone, per noise-level bin (noise-aware filtering); (c) the true
    noise level and the filter's propagated position uncertainty over time for one video."""
    from ldm.evaluation.probes import binned_error

    level = lat["noise_level"]
    inferred = lat["obs_var"].mean(-1)
    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.3))
    ax = axes[0]
    ax.scatter(level.ravel(), inferred.ravel(), s=4, alpha=0.4)
    ax.set_xlabel("true pixel-noise variance")
    ax.set_ylabel("inferred Σ_D (mean diag)")
    ax.set_yscale("log")
    ax.set_title("inferred sigmas", fontsize=9)
    ax = axes[1]
    for key, lab, col in (("err_encoder", "encoder only", "C1"), ("err_filtered", "Kalman filtered", "C0")):
        c, m = binned_error(level, lat[key])
        ax.plot(c, m, "o-", color=col, label=lab)
    ax.set_xlabel("true pixel-noise variance")
    ax.set_ylabel("position error")
    ax.legend(fontsize=7)
    ax.set_title("noise-aware filtering", fontsize=9)
    ax = axes[2]
    T = min(n_steps, level.shape[1])
    t = np.arange(T)
    ax.bar(t, level[seq, :T], color="0.8", label="noise level")
    ax.set_xlabel("time step")
    ax.set_ylabel("noise variance")
    ax2 = ax.twinx()
    ax2.plot(t, lat["pos_std"][seq, :T].mean(-1), color="C0", label="decoded-position σ")
    ax2.set_ylabel("propagated σ", color="C0")
    ax.set_title("filter uncertainty tracks input noise", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, stem)
