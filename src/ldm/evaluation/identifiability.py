"""Identifiability metrics of the wobbly experiment (paper Sec. 7.1, Fig. 5C; predictive.md §5.2, §5.5).

* :func:`affine_r2` — the affine R² of the true state from the encoder output: OLS with intercept fitted
  on training-set latents, R² on held-out sequences; optional frame masks (e.g. unclamped frames only).
* :func:`identifiability_r2` — that R² on all frames and on unclamped frames (fit and test restricted to
  frames whose state is visible), plus unclamped test frames under the all-frame fit.
* :func:`notebook_r2` — the notebook's number: the online linear ``pos`` probe (with its bias) applied to
  the encodings of one test video, sklearn-style R² over its frames.
* :func:`orientation_consistency` — how "unfolded" a Fig. 5C latent map is: the fraction of grid
  triangles (two per cell of neighbouring grid points) whose encoded triangle has the majority
  orientation. A smooth injective map of the plane keeps every orientation (→ 1); a folded map flips
  some (a random map ≈ 0.5). Collapsed (zero-area) triangles count as not kept.
* :func:`pca_fit` / :func:`pca_transform` — the unsupervised same-dimension baseline (PCA of the pixels).
* :func:`fit_ols_normal` — OLS with intercept through the normal equations (fast for N ≫ F).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ldm.evaluation.probes import predict, r2_score

__all__ = ["fit_ols_normal", "affine_r2", "identifiability_r2", "notebook_r2", "signed_areas", "orientation_consistency",
           "pca_fit", "pca_transform"]


def fit_ols_normal(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OLS with intercept ``Y ≈ X W + c`` via the normal equations (float64; a least-squares solve of the
    F × F system, so rank-deficient X — e.g. swirled pixels, rank 91 of 100 — is fine). O(N F²), much
    faster than a QR/SVD of the N × F matrix for N ≫ F."""
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    xm, ym = X.mean(0), Y.mean(0)
    Xc = X - xm
    W = np.linalg.lstsq(Xc.T @ Xc, Xc.T @ (Y - ym), rcond=None)[0]
    return W, ym - xm @ W


def _frames(a: np.ndarray, k: int, mask: Optional[np.ndarray]) -> np.ndarray:
    a = np.asarray(a)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape[:-1]:
            raise ValueError(f"mask shape {mask.shape} does not match the frame dims {a.shape[:-1]}")
        return a[mask].reshape(-1, k)
    return a.reshape(-1, k)


def affine_r2(train_z: np.ndarray, train_state: np.ndarray, test_z: np.ndarray, test_state: np.ndarray,
              train_mask: Optional[np.ndarray] = None, test_mask: Optional[np.ndarray] = None,
              max_train_frames: Optional[int] = None) -> dict[str, object]:
    """OLS ``state ≈ z W + c`` on training frames (``train_mask`` True = used), R² on test frames
    (``test_mask``). Leading dims [N, T] are flattened. ``max_train_frames`` takes an evenly strided subset
    of the training frames (deterministic). Returns {r2, r2_train, W [d, k], c [k], n_train, n_test}."""
    d, k = train_z.shape[-1], train_state.shape[-1]
    Xtr, Ytr = _frames(train_z, d, train_mask), _frames(train_state, k, train_mask)
    if max_train_frames is not None and len(Xtr) > max_train_frames:
        idx = np.linspace(0, len(Xtr) - 1, int(max_train_frames)).astype(np.int64)
        Xtr, Ytr = Xtr[idx], Ytr[idx]
    Xte, Yte = _frames(test_z, d, test_mask), _frames(test_state, k, test_mask)
    if len(Xtr) <= d or len(Xte) < 2:
        raise ValueError(f"affine_r2: too few frames (train {len(Xtr)} for {d} features, test {len(Xte)})")
    W, c = fit_ols_normal(Xtr, Ytr)
    return {"r2": r2_score(Yte, predict(Xte, W, c)), "r2_train": r2_score(Ytr, predict(Xtr, W, c)),
            "W": W, "c": c, "n_train": int(len(Xtr)), "n_test": int(len(Xte))}


def identifiability_r2(train_z: np.ndarray, train_state: np.ndarray, train_clamped: np.ndarray,
                       test_z: np.ndarray, test_state: np.ndarray, test_clamped: np.ndarray,
                       max_train_frames: Optional[int] = None) -> dict[str, float]:
    """Held-out affine R²: ``r2_all`` (fit/test on all frames), ``r2_unclamped`` (fit/test on unclamped
    frames only: the frames that determine the state), ``r2_unclamped_fit_all`` (all-frame fit, unclamped
    test frames)."""
    all_fit = affine_r2(train_z, train_state, test_z, test_state, max_train_frames=max_train_frames)
    unc = affine_r2(train_z, train_state, test_z, test_state, ~np.asarray(train_clamped, bool),
                    ~np.asarray(test_clamped, bool), max_train_frames=max_train_frames)
    Xte = _frames(test_z, test_z.shape[-1], ~np.asarray(test_clamped, bool))
    Yte = _frames(test_state, test_state.shape[-1], ~np.asarray(test_clamped, bool))
    return {"r2_all": float(all_fit["r2"]), "r2_unclamped": float(unc["r2"]),
            "r2_unclamped_fit_all": r2_score(Yte, predict(Xte, all_fit["W"], all_fit["c"])),
            "r2_unclamped_train": float(unc["r2_train"]),
            "unclamped_fraction_test": float(1.0 - np.mean(test_clamped))}


def notebook_r2(probe_weight: np.ndarray, probe_bias: np.ndarray, z_video: np.ndarray, state_video: np.ndarray) -> float:
    """The notebook's R² (predictive.md §5.2): online probe ``x̂ = W z_t + b`` (torch Linear layout
    W [k, d]) on one test video z [T, d], R² averaged over the k outputs."""
    pred = np.asarray(z_video, np.float64) @ np.asarray(probe_weight, np.float64).T + np.asarray(probe_bias, np.float64)
    return r2_score(np.asarray(state_video, np.float64), pred)


def signed_areas(grid_enc: np.ndarray) -> np.ndarray:
    """Signed areas (×2) of the two triangles of every grid cell after the map: [2, n−1, m−1].

    ``grid_enc`` [n, m, 2] holds the (2-D) encodings of grid points [i, j] = (x_i, y_j). Lower triangle
    (i,j),(i+1,j),(i,j+1); upper triangle (i+1,j+1),(i,j+1),(i+1,j). The identity map gives all positive.
    """
    e = np.asarray(grid_enc, np.float64)
    if e.ndim != 3 or e.shape[-1] != 2:
        raise ValueError(f"grid encodings must be [n, m, 2], got {e.shape}")

    def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]

    p00, p10, p01, p11 = e[:-1, :-1], e[1:, :-1], e[:-1, 1:], e[1:, 1:]
    lower = cross(p10 - p00, p01 - p00)
    upper = cross(p01 - p11, p10 - p11)
    return np.stack([lower, upper])


def orientation_consistency(grid_enc: np.ndarray, rel_tol: float = 1e-6) -> dict[str, float]:
    """Unfoldedness of a latent map (Fig. 5C): fraction of grid triangles with the majority orientation.

    Triangles whose |area| ≤ ``rel_tol`` × the median |area| (or all, if that median is 0) are degenerate
    and count as not kept. Returns {orientation_consistency, fold_fraction (the minority orientation),
    degenerate_fraction}.
    """
    a = signed_areas(grid_enc).ravel()
    scale = float(np.median(np.abs(a)))
    degenerate = np.abs(a) <= rel_tol * scale if scale > 0 else np.ones_like(a, dtype=bool)
    pos = float(np.mean((a > 0) & ~degenerate))
    neg = float(np.mean((a < 0) & ~degenerate))
    return {"orientation_consistency": max(pos, neg), "fold_fraction": min(pos, neg),
            "degenerate_fraction": float(np.mean(degenerate))}


def pca_fit(X: np.ndarray, k: int, max_rows: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and the top-k principal axes [F, k] of rows X [..., F] (eigenvectors of the covariance of a
    strided subset of ``max_rows`` rows, largest eigenvalue first)."""
    X = np.asarray(X).reshape(-1, np.shape(X)[-1])
    if len(X) > max_rows:
        X = X[np.linspace(0, len(X) - 1, max_rows).astype(np.int64)]
    X = X.astype(np.float64)
    mu = X.mean(0)
    Xc = X - mu
    evals, evecs = np.linalg.eigh(Xc.T @ Xc)
    return mu, evecs[:, ::-1][:, :k].copy()


def pca_transform(X: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Project X [..., F] onto the PCA axes: [..., k]."""
    return (np.asarray(X, np.float64) - mean) @ axes
