"""Linear probes of learned latents: held-out least-squares R^2, uncertainty propagation, noise decoding.

* :func:`heldout_r2` -- ordinary least squares with intercept fitted on training-set latents, R^2 on all
  test sequences (the primary number of the ``kalman`` experiment; the authors' code).
* :func:`paper_probe_r2` -- the notebook's number: the online linear probe applied to ``h_t - b`` without
  its bias, on a single test video (the authors' code).
* :func:`propagate_covariance` -- the probe's predictive covariance ``W P W^T`` of a Gaussian state.
* :func:`noise_level_decoding` -- how well the inferred observation variances decode the true noise level.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination averaged uniformly over output columns (sklearn's default)."""
    yt = np.asarray(y_true, dtype=np.float64).reshape(len(y_true), -1)
    yp = np.asarray(y_pred, dtype=np.float64).reshape(len(y_pred), -1)
    ss_res = ((yt - yp) ** 2).sum(0)
    ss_tot = ((yt - yt.mean(0)) ** 2).sum(0)
    ok = ss_tot > 0
    r2 = np.where(ok, 1.0 - ss_res / np.where(ok, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0))
    return float(r2.mean())


def fit_ols(X: np.ndarray, Y: np.ndarray, ridge: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Least squares ``Y ~ X W + c`` (with intercept; optional ridge on W). Returns (W [F, K], c [K])."""
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
    xm, ym = X.mean(0), Y.mean(0)
    Xc, Yc = X - xm, Y - ym
    if ridge > 0:
        W = np.linalg.solve(Xc.T @ Xc + ridge * np.eye(X.shape[1]), Xc.T @ Yc)
    else:
        W = np.linalg.lstsq(Xc, Yc, rcond=None)[0]
    return W, ym - xm @ W


def predict(X: np.ndarray, W: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Linear probe output ``X W + c`` for X [..., F]."""
    return np.asarray(X, dtype=np.float64) @ W + c


def heldout_r2(train_X: np.ndarray, train_Y: np.ndarray, test_X: np.ndarray, test_Y: np.ndarray,
               ridge: float = 0.0) -> dict[str, object]:
    """Fit OLS on (train_X, train_Y) and return R^2 on (test_X, test_Y) pooled over all frames, plus the fit.

    Inputs may carry leading [N, T] dims; they are flattened to frames.
    """
    F = train_X.shape[-1]
    K = train_Y.shape[-1]
    W, c = fit_ols(train_X.reshape(-1, F), train_Y.reshape(-1, K), ridge)
    pred = predict(test_X.reshape(-1, F), W, c)
    return {"r2": r2_score(test_Y.reshape(-1, K), pred), "W": W, "c": c,
            "r2_train": r2_score(train_Y.reshape(-1, K), predict(train_X.reshape(-1, F), W, c))}


def paper_probe_r2(state: np.ndarray, offset: np.ndarray, weight: np.ndarray, position: np.ndarray) -> float:
    """The notebook R^2: online probe ``x^ = W (h_t - b)`` (bias dropped) on one test video.

    ``state`` [T, S], ``offset`` b [S], ``weight`` [2, S] (torch Linear layout), ``position`` [T, 2].
    """
    pred = (np.asarray(state, np.float64) - np.asarray(offset, np.float64)) @ np.asarray(weight, np.float64).T
    return r2_score(position, pred)


def propagate_covariance(W: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Covariance of a linear probe's output ``W^T h`` for h ~ N(m, P): ``W^T P W``.

    ``W`` [F, K] (as returned by :func:`fit_ols`), ``P`` [..., F, F] -> [..., K, K].
    """
    W = np.asarray(W, dtype=np.float64)
    return np.einsum("fk,...fg,gl->...kl", W, np.asarray(P, dtype=np.float64), W)


def probe_std(W: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Per-output standard deviation sqrt(diag(W^T P W)), [..., K]."""
    return np.sqrt(np.clip(np.diagonal(propagate_covariance(W, P), axis1=-2, axis2=-1), 0.0, None))


def noise_level_decoding(train_feat: np.ndarray, train_level: np.ndarray, test_feat: np.ndarray,
                         test_level: np.ndarray) -> dict[str, float]:
    """Decode the per-frame noise level from the inferred observation variances diag Sigma_D (held out).

    OLS on [Sigma_D, log Sigma_D] fitted on training frames, R^2 on test frames; plus the Pearson and
    Spearman correlations between the mean inferred variance and the true level on the test frames.
    """
    def feats(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64).reshape(-1, f.shape[-1])
        return np.concatenate([f, np.log(np.clip(f, 1e-30, None))], -1)

    ftr, fte = feats(train_feat), feats(test_feat)
    ytr = np.asarray(train_level, np.float64).reshape(-1, 1)
    yte = np.asarray(test_level, np.float64).reshape(-1, 1)
    W, c = fit_ols(ftr, ytr)
    r2 = r2_score(yte, predict(fte, W, c))
    m = np.asarray(test_feat, np.float64).reshape(-1, test_feat.shape[-1]).mean(-1)
    pear = float(np.corrcoef(m, yte[:, 0])[0, 1]) if m.std() > 0 and yte.std() > 0 else float("nan")
    spear = _spearman(m, yte[:, 0])
    return {"r2": r2, "pearson": pear, "spearman": spear}


def _rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x))
    # average ranks of ties
    xs = x[order]
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        if j > i:
            ranks[order[i:j + 1]] = 0.5 * (i + j)
        i = j + 1
    return ranks


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _rank(np.asarray(a)), _rank(np.asarray(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def binned_error(level: np.ndarray, err: np.ndarray, n_bins: int = 6,
                 edges: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``err`` within quantile bins of ``level``; returns (bin centres, means)."""
    level = np.asarray(level, np.float64).ravel()
    err = np.asarray(err, np.float64).ravel()
    if edges is None:
        edges = np.unique(np.quantile(level, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, len(edges) - 2)
    centres = np.array([level[idx == i].mean() if (idx == i).any() else np.nan for i in range(len(edges) - 1)])
    means = np.array([err[idx == i].mean() if (idx == i).any() else np.nan for i in range(len(edges) - 1)])
    return centres, means
