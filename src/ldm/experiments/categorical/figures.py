"""Figures of the ``categorical`` experiment (App. A.8, Fig. A8/A9).

Each function returns a matplotlib Figure; the stage saves it (png + pdf).

* :func:`entropy_histograms` — Fig. A9: histograms of ln(H + 1e-6) of the per-image entropy H (bits),
  30 bins on [−14, 0], log-count axis, one panel per run.
* :func:`certain_digits` — Fig. A8C/D: the k most certain (lowest entropy) and k least certain
  (highest entropy) test digits with their category probabilities (categories ordered by the digit
  they were assigned to).
* :func:`annealing_schedule` — p and T per epoch of each run.
* :func:`confusion_matrices` — cluster × digit counts, clusters re-ordered by the greedy assignment.
* :func:`training_curves` — test clustering accuracy and mean entropy per epoch.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["LN_RANGE", "ln_entropy", "entropy_histograms", "certain_digits", "annealing_schedule",
           "confusion_matrices", "training_curves"]

#: x range and bins of the ln-entropy histograms (images.md §2)
LN_RANGE = (-14.0, 0.0)
LN_BINS = 30


def ln_entropy(entropy_bits: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """ln(H + eps) of entropies in bits (the Fig. A9 x axis)."""
    return np.log(np.asarray(entropy_bits, dtype=float) + eps)


def entropy_histograms(entropies: Mapping[str, np.ndarray], bins: int = LN_BINS,
                       value_range: tuple[float, float] = LN_RANGE) -> Figure:
    """Fig. A9: per run, the histogram of ln(entropy + 1e-6) (entropy in bits), log-scaled counts.
    Values outside ``value_range`` are clipped into the edge bins (and counted)."""
    names = list(entropies)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.2 * max(1, len(names)), 2.8), sharey=True,
                             squeeze=False)
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    for ax, name in zip(axes[0], names):
        v = np.clip(ln_entropy(entropies[name]), value_range[0], value_range[1])
        ax.hist(v, bins=edges, color="0.3")
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("ln(entropy [bits])")
        med = float(np.median(entropies[name])) if len(entropies[name]) else float("nan")
        ax.text(0.02, 0.95, f"median {med:.2g} bits", transform=ax.transAxes, fontsize=7, va="top")
    axes[0][0].set_ylabel("images")
    fig.tight_layout()
    return fig


def _order_by_assignment(n: int, assignment: Mapping[int, int] | None) -> tuple[list[int], list[str]]:
    if not assignment:
        return list(range(n)), [str(c) for c in range(n)]
    order = sorted(range(n), key=lambda c: (assignment.get(c, n + c)))
    return order, [str(assignment[c]) if c in assignment else f"c{c}" for c in order]


def certain_digits(images: np.ndarray, probs: np.ndarray, entropy_bits: np.ndarray, labels: np.ndarray,
                   assignment: Mapping[int, int] | None = None, k: int = 6, title: str = "") -> Figure:
    """The ``k`` lowest-entropy (top rows) and ``k`` highest-entropy (bottom rows) images, each above a bar
    chart of its category probabilities; categories ordered and named by their assigned digit."""
    images = np.asarray(images)
    h = np.asarray(entropy_bits)
    k = int(min(k, len(h)))
    lo = np.argsort(h, kind="stable")[:k]
    hi = np.argsort(-h, kind="stable")[:k]
    order, names = _order_by_assignment(probs.shape[1], assignment)
    cols = max(k, 1)
    # fixed margins, no tight layout, y labels on the first column only: 24 axes draw in a fraction of the
    # time tight_layout needs to measure every tick label of every axis
    fig, axes = plt.subplots(4, cols, figsize=(1.5 * cols, 6.2), squeeze=False,
                             gridspec_kw={"height_ratios": [1.2, 0.8, 1.2, 0.8], "hspace": 0.55, "wspace": 0.15,
                                          "left": 0.09, "right": 0.99, "bottom": 0.04, "top": 0.9 if title else 0.95})
    for row, (sel, what) in enumerate(((lo, "most certain"), (hi, "least certain"))):
        for j in range(cols):
            ax_img, ax_bar = axes[2 * row, j], axes[2 * row + 1, j]
            if j >= len(sel):
                ax_img.axis("off"), ax_bar.axis("off")
                continue
            i = int(sel[j])
            img = images[i]
            ax_img.imshow(img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img, cmap="gray_r")
            ax_img.set_xticks([]), ax_img.set_yticks([])
            ax_img.set_title(f"digit {int(labels[i])}\nH={h[i]:.2g} bits", fontsize=7)
            ax_bar.bar(range(len(order)), probs[i][order], color="0.3")
            ax_bar.set_ylim(0, 1)
            ax_bar.set_xticks(range(len(order)), names, fontsize=5)
            ax_bar.set_yticks([0, 0.5, 1], ["0", ".5", "1"] if j == 0 else [], fontsize=6)
        axes[2 * row, 0].set_ylabel(what, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def annealing_schedule(schedules: Mapping[str, tuple[Sequence[int], Sequence[float], Sequence[float]]]) -> Figure:
    """p (left) and temperature T (right) per epoch; ``schedules[name] = (epochs, p, T)`` (runs with the
    pure MI objective do not use T and are best left out)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    styles = ["-", "--", ":", "-."]
    for i, (name, (ep, p, t)) in enumerate(schedules.items()):
        a.plot(ep, p, styles[i % 4], marker=".", label=name)
        b.plot(ep, t, styles[i % 4], marker=".", label=name)
    a.set_xlabel("epoch"), a.set_ylabel("p = P(c2 = c1)")
    b.set_xlabel("epoch"), b.set_ylabel("temperature T")
    a.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: Mapping[str, np.ndarray], accuracies: Mapping[str, float] | None = None) -> Figure:
    """Heat maps of cluster × digit counts (rows: clusters re-ordered so that row y is the cluster assigned
    to digit y)."""
    names = list(matrices)
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(3.0 * max(1, len(names)), 3.0), squeeze=False)
    for ax, name in zip(axes[0], names):
        cm = np.asarray(matrices[name])
        ax.imshow(np.log1p(cm), cmap="viridis")
        ax.set_xlabel("digit"), ax.set_ylabel("cluster (assigned order)")
        acc = (accuracies or {}).get(name)
        ax.set_title(name + (f"\nacc {100 * acc:.1f} %" if acc is not None else ""), fontsize=9)
        ax.set_xticks(range(cm.shape[1])), ax.set_yticks(range(cm.shape[0]))
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def training_curves(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> Figure:
    """Test clustering accuracy (greedy) and mean entropy (bits) per epoch from fit histories."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3))
    for name, epochs in histories.items():
        rows = [e for e in epochs if "test/accuracy_greedy" in e]
        a.plot([e["epoch"] for e in rows], [e["test/accuracy_greedy"] for e in rows], label=name)
        b.plot([e["epoch"] for e in rows], [e["test/mean_entropy_bits"] for e in rows], label=name)
    a.set_xlabel("epoch"), a.set_ylabel("clustering accuracy (greedy)")
    b.set_xlabel("epoch"), b.set_ylabel("mean entropy [bits]")
    a.legend(fontsize=7)
    fig.tight_layout()
    return fig
