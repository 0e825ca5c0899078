"""Figures of the identifiability experiment (paper Fig. 5B/C, Fig. A6, Fig. A7); each as PNG + PDF.

Functions take plain arrays (as written by :func:`ldm.experiments.identifiability.train.evaluate` into
``latents.npz`` / ``eval.json``) and an output path without suffix; they return the written paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save(fig: "plt.Figure", stem: Path | str) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` atomically and close it."""
    from ldm.pipeline.io import save_figure

    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, stem)


def grid_colors(grid: np.ndarray) -> np.ndarray:
    """RGB = (x_norm, y_norm, 0.5) of grid positions [n, m, ≥2] (predictive.md §5.5) → [n·m, 3]."""
    g = np.asarray(grid, np.float64).reshape(-1, grid.shape[-1])[:, :2]
    lo, hi = g.min(0), g.max(0)
    xy = (g - lo) / np.where(hi > lo, hi - lo, 1.0)
    return np.concatenate([xy, np.full((len(g), 1), 0.5)], axis=1)


def _map_panel(ax: "plt.Axes", grid: np.ndarray, enc: np.ndarray, title: str) -> None:
    e = np.asarray(enc).reshape(-1, enc.shape[-1])
    ax.scatter(e[:, 0], e[:, 1], c=grid_colors(grid), s=3, linewidths=0)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("$z_1$", fontsize=8)
    ax.set_ylabel("$z_2$", fontsize=8)
    ax.tick_params(labelsize=6)


def _projected(enc: np.ndarray, W: np.ndarray | None, c: np.ndarray | None) -> np.ndarray:
    """Encodings for a 2-D plot: as they are if d = 2, else their affine decoding (first two coords)."""
    if enc.shape[-1] == 2 or W is None:
        return enc[..., :2]
    return (enc @ W + c)[..., :2]


def fig5c_maps(grid: np.ndarray, before: np.ndarray, after: np.ndarray, stem: Path | str,
               orientation: Mapping[str, float] | None = None, title: str = "",
               W_before: np.ndarray | None = None, c_before: np.ndarray | None = None,
               W_after: np.ndarray | None = None, c_after: np.ndarray | None = None) -> list[Path]:
    """Fig. 5C: the true grid of positions and its encodings before and after learning, coloured by
    position. ``orientation`` = {"before": consistency, "after": consistency} goes into the titles."""
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.0))
    _map_panel(axes[0], grid, grid[..., :2], "true positions")
    axes[0].set_xlabel("x", fontsize=8)
    axes[0].set_ylabel("y", fontsize=8)
    o = orientation or {}
    for ax, name, enc, W, c in ((axes[1], "before", before, W_before, c_before),
                                (axes[2], "after", after, W_after, c_after)):
        t = f"{name} learning"
        if name in o:
            t += f"\norientation kept {o[name]:.3f}"
        if enc.shape[-1] > 2:
            t += " (affine-decoded)"
        _map_panel(ax, grid, _projected(enc, W, c), t)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save(fig, stem)


def fig5b_system(state: np.ndarray, clamped: np.ndarray, frames: np.ndarray, stem: Path | str,
                 n_frames: int = 8, window: tuple[float, float] = (-3.0, 2.4)) -> list[Path]:
    """Fig. 5B: one sequence of the wobbly system (clamped frames marked, visible window drawn) and its
    first swirled frames."""
    T, P = frames.shape
    side = int(round(np.sqrt(P)))
    fig = plt.figure(figsize=(1.2 * n_frames + 3.0, 2.4))
    gs = fig.add_gridspec(1, n_frames + 3, width_ratios=[1.0] * n_frames + [0.3, 1.3, 1.3])
    for i in range(n_frames):
        ax = fig.add_subplot(gs[0, i])
        ax.imshow(frames[i].reshape(side, side), cmap="gray")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"t={i}", fontsize=7)
    ax = fig.add_subplot(gs[0, n_frames + 1:])
    ax.plot(state[:, 0], state[:, 1], color="0.6", lw=0.7)
    ok = ~np.asarray(clamped, bool)
    ax.scatter(state[ok, 0], state[ok, 1], s=6, c="tab:blue", label="visible")
    ax.scatter(state[~ok, 0], state[~ok, 1], s=6, c="tab:red", label="clamped")
    lo, hi = window
    ax.add_patch(plt.Rectangle((lo, lo), hi - lo, hi - lo, fill=False, ls="--", lw=0.8))
    ax.set_aspect("equal")
    ax.legend(fontsize=6, loc="best")
    ax.set_title("state (x, y)", fontsize=8)
    ax.tick_params(labelsize=6)
    return save(fig, stem)


def figA6_losses(panels: Mapping[str, Mapping[str, Any]], stem: Path | str) -> list[Path]:
    """Fig. A6: the losses side by side. ``panels[loss]`` = {grid, after, r2_unclamped: [per seed],
    orientation: [per seed]} (maps of the first seed); the R² of every seed goes into the title."""
    names = list(panels)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.1), squeeze=False)
    for ax, name in zip(axes[0], names):
        p = panels[name]
        r2 = ", ".join(f"{v:.3f}" for v in p.get("r2_unclamped", []))
        oc = ", ".join(f"{v:.2f}" for v in p.get("orientation", []))
        _map_panel(ax, p["grid"], _projected(p["after"], p.get("W"), p.get("c")),
                   f"{name}\nR² (unclamped) {r2}\norientation kept {oc}")
    fig.tight_layout()
    return save(fig, stem)


def figA7_dims(rows: Sequence[Mapping[str, Any]], stem: Path | str, key: str = "learned/r2_unclamped",
               baselines: Sequence[str] = ("random_init/r2_unclamped", "pixels_pca_unsupervised/r2_unclamped",
                                           "pixels_ols_supervised/r2_unclamped")) -> list[Path]:
    """Fig. A7: held-out affine R² against the latent (state) dimension; one dot per run and seed, lines
    through the seed means; baselines dashed. ``rows`` = eval.json dicts (with ``state_dim``)."""
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    dims = sorted({int(r["state_dim"]) for r in rows})
    losses = sorted({r["loss"] for r in rows})
    for li, loss in enumerate(losses):
        rs = [r for r in rows if r["loss"] == loss]
        xs = [int(r["state_dim"]) + 0.06 * (li - (len(losses) - 1) / 2) for r in rs]
        line = ax.plot(xs, [r[key] for r in rs], "o", ms=4, label=f"{loss} (each seed)")[0]
        means = [np.mean([r[key] for r in rs if int(r["state_dim"]) == d]) for d in dims if
                 any(int(r["state_dim"]) == d for r in rs)]
        ax.plot([d for d in dims if any(int(r["state_dim"]) == d for r in rs)], means, "-", color=line.get_color())
    for b in baselines:
        vals = [(int(r["state_dim"]), r[b]) for r in rows if b in r]
        if vals:
            ds = sorted({d for d, _ in vals})
            ax.plot(ds, [np.mean([v for d2, v in vals if d2 == d]) for d in ds], "--", lw=0.8,
                    label=b.split("/")[0].replace("_", " "))
    ax.set_xticks(dims)
    ax.set_xlabel("latent / state dimension")
    ax.set_ylabel("held-out affine R² (unclamped)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return save(fig, stem)


def training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], stem: Path | str,
                    key: str = "test/r2_unclamped_subsetfit") -> list[Path]:
    """R² (subset fit, held-out) against training step for several runs."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    for name, epochs in histories.items():
        pts = [(e["step"], e[key]) for e in epochs if key in e]
        if pts:
            ax.plot(*zip(*pts), label=name, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return save(fig, stem)


def figures_from_runs(run_dirs: Sequence[Path | str], fig_dir: Path | str) -> list[Path]:
    """All figures from evaluated runs (each with ``eval.json`` + ``latents.npz``): Fig. 5C per run (named by
    the run's ``name`` if the stage wrote one, else its loss), Fig. 5B (first run), Fig. A6 over the losses
    of the 2-D runs on the paper's swirled frames (maps of each loss's first seed), Fig. A7 over the state
    dimensions of the runs on the random-MLP observation (predictive.md §1.1, §5.6), if any. Runs on data
    without a ``renderer`` entry count as the paper's swirled frames."""
    import json

    fig_dir = Path(fig_dir)
    runs = []
    for rd in run_dirs:
        rd = Path(rd)
        ev = json.loads((rd / "eval.json").read_text())
        with np.load(rd / "latents.npz") as z:
            lat = {k: z[k] for k in z.files}
        runs.append((ev, lat))
    runs.sort(key=lambda r: (r[0]["state_dim"], r[0].get("name", r[0]["loss"]), r[0]["seed"]))
    paths: list[Path] = []
    for ev, lat in runs:
        name = f"{ev.get('name', ev['loss'])}_d{ev['state_dim']}_seed{ev['seed']}"
        paths += fig5c_maps(lat["grid"], lat["grid_before"], lat["grid_after"], fig_dir / f"fig5c_{name}",
                            {"before": ev["grid_before/orientation_consistency"],
                             "after": ev["grid_after/orientation_consistency"]},
                            title=f"{name}: R² unclamped {ev['learned/r2_unclamped']:.3f}",
                            W_before=lat["W_before"], c_before=lat["c_before"], W_after=lat["W_after"],
                            c_after=lat["c_after"])
    if runs:
        lat = runs[0][1]
        paths += fig5b_system(lat["state_test"][0], lat["clamped_test"][0], lat["frames_test"][0], fig_dir / "fig5b")
    panels: dict[str, dict[str, Any]] = {}
    swirled = [(ev, lat) for ev, lat in runs if ev.get("renderer", "swirl_dot") == "swirl_dot"]
    for ev, lat in swirled:
        if ev["state_dim"] != 2:
            continue
        p = panels.setdefault(ev["loss"], {"grid": lat["grid"], "after": lat["grid_after"], "r2_unclamped": [],
                                           "orientation": []})
        p["r2_unclamped"].append(ev["learned/r2_unclamped"])
        p["orientation"].append(ev["grid_after/orientation_consistency"])
    if panels:
        order = [k for k in ("knn", "stopgrad", "logdet", "kde") if k in panels]
        paths += figA6_losses({k: panels[k] for k in order}, fig_dir / "figA6_losses")
    a7 = [ev for ev, _ in runs if ev.get("renderer") == "random_mlp"]
    if a7:
        paths += figA7_dims(a7, fig_dir / "figA7_dims")
    return paths
