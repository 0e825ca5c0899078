"""Figures of the ``images`` experiment (PNG + PDF each), one set per dataset:

* Fig. 3 — ``<dataset>_spectrum``: eigenvalues of the test-embedding covariance (log-log; plane solid,
  sphere dashed; one colour per row, every seed drawn), participation ratio and #PCs for 90 % of the
  variance per seed in the legend;
  ``<dataset>_tsne``: t-SNE of the test embeddings coloured by class, one panel per row (seed = first);
  ``<dataset>_accuracy_vs_dim``: offline linear-probe top-1 vs dimensionality (participation ratio and
  #PCs for 90 %), one marker per row × seed.
* Fig. A2 — ``<dataset>_grad_cos``: cosine between the gradients of the entropy terms of the MI and
  no-MI variants over training; ``<dataset>_jacobian_logdet``: histograms of log det(J Jᵀ) = 2 Σ log σ_k(J)
  of the encoder (backbone + projector, before any normalisation) per model. The official notebook
  plotted ``matrix_rank(J Jᵀ)`` here instead of the log-determinant (images.md §7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ESTIMATOR_ORDER = ["kde", "kde_mi", "knn", "knn_mi", "logdet", "logdet_mi"]


def save(fig: "plt.Figure", stem: Path | str) -> list[Path]:
    from ldm.pipeline.io import save_figure

    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, stem)


def _style(row: str) -> dict[str, Any]:
    space, _, rest = row.partition("_")
    idx = ESTIMATOR_ORDER.index(rest) if rest in ESTIMATOR_ORDER else 0
    color = plt.get_cmap("twilight")(0.1 + 0.8 * idx / max(1, len(ESTIMATOR_ORDER) - 1))
    return {"color": color, "linestyle": {"plane": "-", "sphere": "--"}.get(space, ":"),
            "marker": {"plane": "o", "sphere": "s"}.get(space, "^")}


def _by_row(evals: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Runs grouped by row (seeds in order): one colour and one legend entry per row, every seed drawn."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for ev in sorted(evals, key=lambda e: (e["row"], e["seed"])):
        out.setdefault(ev["row"], []).append(ev)
    return out


def _per_seed(runs: Sequence[Mapping[str, Any]], key: str, fmt: str = "{:.0f}") -> str:
    return "/".join(fmt.format(r[key]) for r in runs)


def _legend_outside(ax: "plt.Axes", title: str) -> None:
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=title, title_fontsize=6,
              frameon=False)


def spectrum(evals: Sequence[Mapping[str, Any]], stem: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for row, runs in _by_row(evals).items():
        st = _style(row)
        for i, ev in enumerate(runs):
            lam = np.asarray(ev["eigenvalues"], float)
            lam = lam[lam > 0]
            if lam.size == 0:
                continue
            ax.loglog(np.arange(1, lam.size + 1), lam, color=st["color"], linestyle=st["linestyle"], lw=1,
                      label=None if i else f"{row}: PR {_per_seed(runs, 'participation_ratio')}, "
                                           f"#PCs 90% {_per_seed(runs, 'pcs_90')}")
    ax.set_xlabel("principal component")
    ax.set_ylabel("eigenvalue of test-embedding covariance")
    ax.set_title("Fig. 3: embedding spectra (PR = participation ratio; #PCs reaching 90 % of the variance)",
                 fontsize=9)
    _legend_outside(ax, "row: value per seed")
    return save(fig, stem)


def tsne(embs: Mapping[tuple, Mapping[str, np.ndarray]], stem: Path, points: int = 1000, max_iter: int = 1000) -> list[Path]:
    from sklearn.manifold import TSNE

    keys = sorted({(ds, row) for ds, row, _ in embs})
    first = {k: min(s for ds, row, s in embs if (ds, row) == k) for k in keys}
    n = len(keys)
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        e = embs[(*key, first[key])]
        z, y = np.asarray(e["z"])[:points], np.asarray(e["labels"])[:points]
        if e.get("space") == "sphere":
            z = z / np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
        xy = TSNE(2, perplexity=min(30, max(2, len(z) // 4)), max_iter=max(250, max_iter), random_state=42,
                  init="pca").fit_transform(z)
        ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="tab10" if y.max() < 10 else "tab20", s=3)
        ax.set_title(f"{key[1]} (seed {first[key]})", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Fig. 3: t-SNE of test embeddings, coloured by class", fontsize=9)
    return save(fig, stem)


def accuracy_vs_dim(evals: Sequence[Mapping[str, Any]], stem: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ev in evals:
        st = _style(ev["row"])
        for ax, key in zip(axes, ("participation_ratio", "pcs_90")):
            ax.scatter(ev[key], ev["linear_top1"], color=st["color"], marker=st["marker"], label=ev["row"])
    for ax, lab in zip(axes, ("participation ratio", "#PCs for 90 % variance")):
        ax.set_xscale("log")
        ax.set_xlabel(f"dimensionality ({lab})")
        ax.set_ylabel("offline linear probe top-1 (%)")
    h, lab = axes[0].get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    axes[1].legend(uniq.values(), uniq.keys(), fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                   frameon=False, title="row (one marker per seed)", title_fontsize=6)
    fig.suptitle("Fig. 3: accuracy vs dimensionality of the test embeddings", fontsize=9)
    return save(fig, stem)


def grad_cos(evals: Sequence[Mapping[str, Any]], stem: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6, 4))
    for row, runs in _by_row(evals).items():
        runs = [ev for ev in runs if ev.get("grad_cos")]
        st = _style(row)
        for i, ev in enumerate(runs):
            ax.plot(ev["grad_cos_steps"], ev["grad_cos"], color=st["color"], linestyle=st["linestyle"], lw=1,
                    label=None if i else f"{row}: mean {_per_seed(runs, 'grad_cos_mean', '{:.2f}')}")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("training step")
    ax.set_ylabel("cos(∇H_optimised, ∇H_counterpart)")
    ax.set_title("Fig. A2: gradient cosine between the entropy terms of the MI and no-MI variants", fontsize=9)
    _legend_outside(ax, "row: mean per seed")
    return save(fig, stem)


def jacobian_hist(evals: Sequence[Mapping[str, Any]], stem: Path) -> list[Path]:
    have = [ev for ev in evals if ev.get("jacobian_logdet")]
    fig, ax = plt.subplots(figsize=(6, 4))
    finite = [v for ev in have for v in ev["jacobian_logdet"] if np.isfinite(v)]
    bins = np.linspace(min(finite), max(finite), 30) if finite else 10
    for row, runs in _by_row(have).items():
        st = _style(row)
        vals = np.asarray([v for ev in runs for v in ev["jacobian_logdet"] if np.isfinite(v)])
        ax.hist(vals, bins=bins, histtype="step", color=st["color"], linestyle=st["linestyle"],
                label=f"{row} (seeds {_per_seed(runs, 'seed')})")
    ax.set_xlabel("log det(J Jᵀ) = 2 Σ log σ_k(J)")
    ax.set_ylabel("test images (all seeds of a row)")
    ax.set_title("Fig. A2: encoder Jacobian log-determinants (the official code plotted a matrix rank)", fontsize=8)
    _legend_outside(ax, "row")
    return save(fig, stem)


def all_figures(evals: Sequence[Mapping[str, Any]], embs: Mapping[tuple, Mapping[str, np.ndarray]], out: Path,
                tsne_points: int = 1000, tsne_iter: int = 1000) -> list[Path]:
    """Every figure for every dataset in ``evals``."""
    paths: list[Path] = []
    for ds in sorted({ev["dataset"] for ev in evals}):
        es = sorted([ev for ev in evals if ev["dataset"] == ds], key=lambda e: (e["row"], e["seed"]))
        paths += spectrum(es, out / f"{ds}_spectrum")
        paths += accuracy_vs_dim(es, out / f"{ds}_accuracy_vs_dim")
        paths += grad_cos(es, out / f"{ds}_grad_cos")
        paths += jacobian_hist(es, out / f"{ds}_jacobian_logdet")
        space = {(ev["dataset"], ev["row"]): ev.get("jacobian_space") for ev in es}
        sub = {k: {**v, "space": space.get(k[:2])} for k, v in embs.items() if k[0] == ds}
        paths += tsne(sub, out / f"{ds}_tsne", tsne_points, tsne_iter)
    return paths
