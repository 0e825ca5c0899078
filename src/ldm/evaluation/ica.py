"""Evaluation of linear ICA (paper Sec. 3.1, Fig. 2): how well an unmixing W recovers the sources.

* :func:`matched_correlations` -- |corr(s_i, y_pi(i))| after the best permutation (and sign);
* :func:`amari_index` -- distance of P = W A from a scaled permutation;
* :func:`pca_unmixing` -- the second-order baselines every ICA table carries: the PCA rotation
  (principal components, whitened) and symmetric (ZCA) whitening. Both decorrelate; neither uses
  the sources' non-Gaussianity, so they separate only when second-order statistics suffice
  (e.g. a symmetric mixing of equal-variance sources for ZCA);
* :func:`source_statistics` -- excess kurtosis of each source and the largest |corr| between two
  sources (ICA assumes independent, non-Gaussian sources);
* :func:`evaluate_unmixings` -- every method's metrics on one source set, one row each.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "BASELINES",
    "align_to_sources",
    "amari_index",
    "evaluate_unmixings",
    "excess_kurtosis",
    "matched_correlations",
    "matched_permutation",
    "pca_unmixing",
    "source_statistics",
]

#: The second-order baselines (name -> kind of :func:`pca_unmixing`).
BASELINES: dict[str, str] = {"pca_rotation": "rotation", "pca_whitening": "whitening"}


def _corr_block(S: np.ndarray, Y: np.ndarray) -> np.ndarray:
    S = np.asarray(S, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if S.ndim != 2 or Y.shape != S.shape:
        raise ValueError(f"S and Y must both have shape (d, N); got {S.shape} and {Y.shape}")
    d = S.shape[0]
    return np.corrcoef(S, Y)[:d, d:]


def _match(S: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    C = _corr_block(S, Y)
    rows, cols = linear_sum_assignment(-np.abs(C))
    perm = cols[np.argsort(rows)]  # perm[i] = row of Y matched to source i
    signs = np.sign(C[np.arange(C.shape[0]), perm])
    signs[signs == 0] = 1.0
    return C, perm, signs


def matched_permutation(S: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """perm[i] = the row of Y matched to source i (the permutation of :func:`matched_correlations`);
    e.g. per-output quantities q (one per row of Y) in source order are ``q[perm]``."""
    return _match(S, Y)[1]


def matched_correlations(S: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """|corr(S_i, Y_pi(i))| per source i after the best permutation pi (and sign).

    pi maximises sum_i |corr(S_i, Y_pi(i))| (Hungarian algorithm). Returns shape (d,).
    """
    C, perm, _ = _match(S, Y)
    return np.abs(C[np.arange(C.shape[0]), perm])


def align_to_sources(S: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Recovered signals Y reordered and sign-flipped to match the sources S row by row.

    Row i of the result is sign_i * Y[pi(i)] with the permutation of
    :func:`matched_correlations` and sign_i making corr(S_i, result_i) positive.
    """
    _, perm, signs = _match(S, Y)
    return signs[:, None] * np.asarray(Y, dtype=np.float64)[perm]


def amari_index(P: np.ndarray) -> float:
    """Normalised Amari index of P = W A, in [0, 1]; 0 iff P is a scaled permutation.

    AI(P) = [sum_i (sum_j |p_ij| / max_k |p_ik| - 1) + sum_j (sum_i |p_ij| / max_k |p_kj| - 1)]
            / (2 d (d - 1)).
    """
    P = np.abs(np.asarray(P, dtype=np.float64))
    if P.ndim != 2 or P.shape[0] != P.shape[1] or P.shape[0] < 2:
        raise ValueError("P must be a square matrix of size >= 2")
    d = P.shape[0]
    row = (P.sum(axis=1) / P.max(axis=1) - 1.0).sum()
    col = (P.sum(axis=0) / P.max(axis=0) - 1.0).sum()
    return float((row + col) / (2.0 * d * (d - 1)))


def pca_unmixing(X: np.ndarray, kind: Literal["rotation", "whitening"] = "rotation") -> np.ndarray:
    """Second-order unmixing of data X (d, N) from its covariance C = E diag(lam) E^T.

    ``"rotation"``: the whitened principal components, W = diag(lam)^(-1/2) E^T (rows sorted by
    decreasing variance). ``"whitening"``: symmetric (ZCA) whitening W = C^(-1/2) = E diag(lam)^(-1/2) E^T.
    Both give W C W^T = I; any rotation of them would too, which is why they cannot identify
    the sources in general.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError("X must have shape (d, N)")
    Xc = X - X.mean(axis=1, keepdims=True)
    lam, E = np.linalg.eigh(Xc @ Xc.T / Xc.shape[1])
    order = np.argsort(lam)[::-1]
    lam, E = lam[order], E[:, order]
    if np.any(lam <= 0):
        raise ValueError("the data covariance is singular; PCA whitening is undefined")
    W = np.diag(lam**-0.5) @ E.T
    if kind == "rotation":
        return W
    if kind == "whitening":
        return E @ W
    raise ValueError(f"unknown PCA baseline {kind!r}; use 'rotation' or 'whitening'")


def excess_kurtosis(S: np.ndarray) -> np.ndarray:
    """Excess kurtosis E[z^4] - 3 of each row (z standardised): > 0 super-Gaussian (peaked,
    heavy-tailed), < 0 sub-Gaussian (flat, bimodal), 0 for a Gaussian. Shape (d,)."""
    S = np.atleast_2d(np.asarray(S, dtype=np.float64))
    Z = (S - S.mean(axis=1, keepdims=True)) / S.std(axis=1, keepdims=True)
    return (Z**4).mean(axis=1) - 3.0


def source_statistics(S: np.ndarray) -> dict[str, Any]:
    """Kurtosis of each source and the largest |Pearson r| between two sources."""
    S = np.asarray(S, dtype=np.float64)
    R = np.corrcoef(S)
    off = np.abs(R[~np.eye(S.shape[0], dtype=bool)])
    return {"kurtosis": [float(k) for k in excess_kurtosis(S)],
            "max_abs_source_corr": float(off.max()) if off.size else 0.0}


def evaluate_unmixings(S: np.ndarray, X: np.ndarray, A: np.ndarray,
                       unmixings: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per method: ``method``, ``min_abs_corr``, ``abs_corr`` (per source),
    ``amari_index`` of W A. ``unmixings`` maps a method name to its W; the PCA baselines of
    :data:`BASELINES` are added (computed from X) unless already given."""
    all_w = {name: pca_unmixing(X, kind) for name, kind in BASELINES.items() if name not in unmixings}
    all_w.update(unmixings)
    rows = []
    for name, W in all_w.items():
        W = np.asarray(W, dtype=np.float64)
        corr = matched_correlations(S, W @ X)
        rows.append({"method": name, "min_abs_corr": float(corr.min()),
                     "abs_corr": [float(c) for c in corr],
                     "amari_index": amari_index(W @ np.asarray(A, dtype=np.float64))})
    return rows
