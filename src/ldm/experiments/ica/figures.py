"""Fig. 2 of the paper: linear ICA as latent distribution matching (Sec. 3.1).

Every function writes ``<path_stem>.png`` (150 dpi) and ``<path_stem>.pdf`` and returns both
paths. Figures are built with the object-oriented API on an Agg canvas (no pyplot state, no
backend switch, nothing left open). Recovered signals are reordered and sign-flipped to match
the true sources (:func:`ldm.evaluation.ica.align_to_sources`) before plotting, because ICA identifies
sources only up to permutation, sign and scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ldm.evaluation.ica import align_to_sources
from ldm.models.ica import (
    GaussianSourceModel,
    GeneralizedGaussianSourceModel,
    PerSourceGeneralizedGaussianSourceModel,
    generalized_gaussian_log_density,
    make_source_model,
    unit_variance_scale,
)
from ldm.pipeline.io import save_figure as _save

__all__ = [
    "plot_objective_history",
    "plot_ou_paths",
    "plot_recovered_images",
    "plot_scatter_pairs",
    "plot_signal_histograms",
]

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _new_figure(figsize: tuple[float, float]) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _standardise(Z: np.ndarray) -> np.ndarray:
    Z = np.asarray(Z, dtype=np.float64)
    return (Z - Z.mean(axis=1, keepdims=True)) / Z.std(axis=1, keepdims=True)


def _unit_variance_density(source_model: Any, grid: np.ndarray) -> tuple[np.ndarray, str]:
    """Assumed source density rescaled to unit variance (its shape), and a legend label; for a
    per-source model, one density per source (rows)."""
    if isinstance(source_model, str):
        source_model = (
            GaussianSourceModel(variances=(1.0,))
            if source_model == "gaussian"
            else make_source_model(source_model)
        )
    if isinstance(source_model, GeneralizedGaussianSourceModel):
        beta = source_model.beta
        # Var of a generalised Gaussian = scale^2 Gamma(3/beta) / Gamma(1/beta)
        scale = math.sqrt(math.exp(math.lgamma(1.0 / beta) - math.lgamma(3.0 / beta)))
        pdf = np.exp(generalized_gaussian_log_density(grid, beta, scale))
        return pdf, f"assumed source density\n(generalised Gaussian, $\\beta$={beta:g})"
    if isinstance(source_model, PerSourceGeneralizedGaussianSourceModel):
        pdfs = np.stack([np.exp(generalized_gaussian_log_density(grid, b, unit_variance_scale(b)))
                         for b in source_model.betas])
        betas = ", ".join(f"{b:.2g}" for b in source_model.betas)
        return pdfs, f"fitted source densities\n(generalised Gaussian, $\\beta$ = {betas})"
    if isinstance(source_model, GaussianSourceModel):
        return np.exp(-0.5 * grid**2) / math.sqrt(2 * math.pi), "assumed source density\n(Gaussian)"
    raise TypeError(f"cannot plot source model {source_model!r}")


def plot_signal_histograms(
    S: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    source_model: Any,
    path_stem: str | Path,
    *,
    bins: int = 80,
) -> list[Path]:
    """Three panels of standardised histograms: original S, mixed X = A S, recovered Y = W X.

    Each signal is standardised to zero mean and unit variance; the assumed source density of
    the LDM objective (``source_model``: a source model or its name), rescaled to unit
    variance, is overlaid on the recovered panel (Fig. 2B style); a per-source model's densities
    must be in source order (the recovered signals are aligned to the sources).
    """
    Ys = align_to_sources(S, Y)
    panels = [("original sources $s_i$", S), ("mixed signals $x = A s$", X),
              ("recovered signals $y = W x$", Ys)]
    names = [[f"{k} {i + 1}" for i in range(S.shape[0])] for k in ("source", "mixture", "recovered")]
    std_all = [_standardise(Z) for _, Z in panels]
    lim = min(5.0, max(float(np.abs(Z).max()) for Z in std_all))
    edges = np.linspace(-lim, lim, bins + 1)
    grid = np.linspace(-lim, lim, 400)
    fig = _new_figure((11, 3.4))
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    for k, (ax, (title, _), Z) in enumerate(zip(axes, panels, std_all)):
        for i, row in enumerate(Z):
            ax.hist(row, bins=edges, density=True, histtype="stepfilled", alpha=0.35,
                    color=COLORS[i % len(COLORS)], label=names[k][i])
        if k == 2:
            pdf, label = _unit_variance_density(source_model, grid)
            if pdf.ndim == 1:
                ax.plot(grid, pdf, "k--", lw=1.5, label=label)
            else:  # per source, in the colour of the source it was fitted to
                for i, row in enumerate(pdf):
                    ax.plot(grid, row, "--", color=COLORS[i % len(COLORS)], lw=1.5,
                            label=label if i == 0 else None)
        ax.set_title(title)
        ax.set_xlabel("standardised value")
        ax.legend(fontsize=8, loc="upper right", frameon=False)
    axes[0].set_ylabel("probability density")
    top = max(ax.get_ylim()[1] for ax in axes)
    axes[0].set_ylim(0, 1.4 * top)  # shared y: headroom for the legends
    return _save(fig, path_stem)


def _minmax(img: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)


def plot_recovered_images(
    S: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    shape: Sequence[int],
    path_stem: str | Path,
) -> list[Path]:
    """3 x d grid of images: original sources, mixtures, recovered sources (rows) x d (columns).

    Every row of S, X, Y is reshaped to ``shape`` ((h, w) or (h, w, 3)) and min-max rescaled
    to [0, 1] for display; recovered images are matched to the originals in order and sign.
    """
    shape = tuple(int(s) for s in shape)
    Ys = align_to_sources(S, Y)
    rows = [("original", S), ("mixed", X), ("recovered", Ys)]
    d = S.shape[0]
    fig = _new_figure((3.1 * d, 9.0))
    axes = fig.subplots(3, d, squeeze=False)
    for r, (label, Z) in enumerate(rows):
        for c in range(d):
            ax = axes[r, c]
            img = _minmax(np.asarray(Z[c], dtype=np.float64).reshape(shape))
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{label} {c + 1}", fontsize=11)
    fig.suptitle("Linear ICA as LDM on natural images\n(each image min–max rescaled)")
    return _save(fig, path_stem)


def plot_ou_paths(
    S: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    variances: Sequence[float],
    path_stem: str | Path,
    n_show: int = 1000,
    *,
    dt: float = 0.1,
    bins: int = 60,
    source_labels: Sequence[str] | None = None,
) -> list[Path]:
    """3x2 panel for the OU experiment: paths (left) and horizontal histograms (right).

    Rows: original OU sources, rotated mixtures, recovered signals (aligned to the sources).
    The first ``n_show`` steps are drawn against time t = step * dt; histograms use all
    samples. The recovered row overlays the model's N(0, v_i) densities (``variances``,
    in the order of the sources). ``source_labels`` (e.g. ``("θ = 2.0", "θ = 0.2")``) are
    appended to the legend entries of the original and recovered rows.
    """
    Ys = align_to_sources(S, Y)
    rows = [("original sources", S, "source"), ("mixed (rotated) signals", X, "mixture"),
            ("recovered signals", Ys, "recovered")]
    n_show = min(int(n_show), S.shape[1])
    t = np.arange(n_show) * dt
    lim = 1.05 * max(float(np.abs(Z).max()) for _, Z, _ in rows)
    edges = np.linspace(-lim, lim, bins + 1)
    grid = np.linspace(-lim, lim, 400)
    fig = _new_figure((10, 8))
    axes = fig.subplots(3, 2, sharey=True, gridspec_kw={"width_ratios": [4, 1]})
    for r, (title, Z, name) in enumerate(rows):
        ax_p, ax_h = axes[r]
        for i, row in enumerate(np.asarray(Z)):
            color = COLORS[i % len(COLORS)]
            label = f"{name} {i + 1}"
            if source_labels is not None and r != 1 and i < len(source_labels):
                label += f" ({source_labels[i]})"
            ax_p.plot(t, row[:n_show], color=color, lw=0.8, label=label)
            ax_h.hist(row, bins=edges, density=True, orientation="horizontal",
                      histtype="stepfilled", alpha=0.35, color=color)
        if r == 2:
            for i, v in enumerate(variances):
                pdf = np.exp(-0.5 * grid**2 / v) / math.sqrt(2 * math.pi * v)
                ax_h.plot(pdf, grid, "--", color=COLORS[i % len(COLORS)], lw=1.2,
                          label=f"N(0, {v:.3g})")
            ax_h.legend(fontsize=7, loc="upper right", frameon=False, title="model",
                        title_fontsize=7)
        ax_p.set_title(title)
        ax_p.set_ylabel("value")
        ax_p.set_ylim(-lim, lim)
        ax_p.set_xlim(t[0], t[-1])
        ax_p.legend(fontsize=8, loc="upper right", ncol=2, frameon=False)
        ax_h.set_title("distribution (all steps)", fontsize=9)
        ax_h.set_xlabel("density" if r == 2 else "")
    axes[2, 0].set_xlabel(f"time (first {n_show} steps, dt = {dt:g})")
    return _save(fig, path_stem)


def plot_scatter_pairs(
    S: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    path_stem: str | Path,
    n_show: int = 3000,
) -> list[Path]:
    """Joint scatter of the first two signals: original sources, mixtures, recovered signals
    (aligned to the sources, standardised); the first ``n_show`` samples. Independent sources
    fill an axis-aligned shape; mixing shears and rotates it."""
    Ys = align_to_sources(S, Y)
    n_show = min(int(n_show), S.shape[1])
    fig = _new_figure((11, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (title, Z) in zip(axes, [("original sources $s_1, s_2$", S), ("mixed signals $x_1, x_2$", X),
                                     ("recovered signals $y_1, y_2$", Ys)]):
        Z = _standardise(Z)
        ax.plot(Z[0, :n_show], Z[1, :n_show], ".", ms=1.5, alpha=0.4, color="tab:blue")
        ax.set_title(title)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("signal 1 (standardised)")
        ax.set_ylabel("signal 2 (standardised)")
    return _save(fig, path_stem)


def plot_objective_history(
    history: Sequence[tuple[int, float]],
    path_stem: str | Path,
    *,
    reference: float | None = None,
    reference_label: str = "reference",
    title: str = "LDM objective during optimisation",
) -> list[Path]:
    """Objective (paper Eq. 3: mean log-likelihood + log|det W|) against iteration.

    ``history`` is :attr:`ldm.ica.FitResult.history`. An optional ``reference`` value (e.g.
    the objective at the true unmixing A^-1, labelled ``reference_label``) is drawn as a
    dashed horizontal line.
    """
    if len(history) == 0:
        raise ValueError("empty history")
    it = np.array([h[0] for h in history], dtype=float)
    val = np.array([h[1] for h in history], dtype=float)
    fig = _new_figure((5.5, 3.6))
    ax = fig.subplots()
    ax.plot(it, val, "-o" if len(it) <= 60 else "-", ms=3, lw=1.2, label="fitted W")
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label=reference_label)
    if it.max() > 2000:
        ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective  (mean log p(y) + log|det W|)")
    ax.set_title(title)
    ax.legend(frameon=False, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path_stem)
