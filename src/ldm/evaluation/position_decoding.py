"""Position decoding with 95 % intervals from a Kalman latent (paper Sec. 6.1 / App. B, Fig. 4G, A4C) and
its baselines, on held-out time.

* :class:`LinearReadout`: ridge regression position = w^T h + c on the filtered mean. Its predictive
  distribution is analytic: with h_t ~ N(m_t, P_t), w^T h_t + c ~ N(w^T m_t + c, w^T P_t w); the readout's
  own noise s^2 is what the latent uncertainty leaves of the training residual variance,
  s^2 = max(0, Var_train(y - w^T m - c) - mean_train(w^T P_t w)), so the predictive variance is
  w^T P_t w + s^2 (moment-matched on the training block; without latent covariances s^2 = the residual
  variance).
* :class:`MLPReadout`: an MLP (one hidden layer) trained on the latent *mean*; the 95 % interval is the
  2.5-97.5 % quantile range of the MLP outputs over ``n_samples`` draws of N(m_t, P_t) (paper: 1000).
* :func:`decoding_metrics`: median |error| (cm), R² of position, coverage of the intervals.
* :func:`knn_decoder`: CEBRA's demo decoder (kNN regressor, k = 36, cosine metric; kNN classifier for
  direction, hc11.md §2.3) on any features, e.g. the raw binned spikes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

Z95 = 1.959963984540054


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    return float(1.0 - np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))


def decoding_metrics(y: np.ndarray, pred: np.ndarray, lo: Optional[np.ndarray] = None,
                     hi: Optional[np.ndarray] = None) -> dict[str, float]:
    """median_error_cm, mean_error_cm, r2 and (if an interval is given) coverage_95 and the mean width (cm)."""
    err = np.abs(pred - y)
    out = {"median_error_cm": float(100 * np.median(err)), "mean_error_cm": float(100 * np.mean(err)), "r2": r2(y, pred)}
    if lo is not None and hi is not None:
        out["coverage_95"] = float(np.mean((y >= lo) & (y <= hi)))
        out["interval_width_cm"] = float(100 * np.mean(hi - lo))
    return out


@dataclass
class LinearReadout:
    """Ridge readout on features h (with intercept); ``residual_var`` = training residual variance."""

    w: np.ndarray
    c: float
    residual_var: float
    latent_var_train: float = 0.0

    @property
    def noise_var(self) -> float:
        """Readout noise s^2: the training residual variance not explained by the latent uncertainty."""
        return max(self.residual_var - self.latent_var_train, 0.0)

    @classmethod
    def fit(cls, h: np.ndarray, y: np.ndarray, ridge: float = 1e-3, P: Optional[np.ndarray] = None) -> "LinearReadout":
        """Ridge fit on the means ``h``; ``P`` (training covariances) splits the residual variance."""
        mu, ym = h.mean(0), y.mean()
        hc = h - mu
        w = np.linalg.solve(hc.T @ hc + ridge * len(h) * np.eye(h.shape[1]), hc.T @ (y - ym))
        c = float(ym - mu @ w)
        res = y - (h @ w + c)
        lat = float(np.einsum("i,tij,j->t", w, P, w).mean()) if P is not None else 0.0
        return cls(w=w, c=c, residual_var=float(res.var()), latent_var_train=lat)

    def predict(self, h: np.ndarray) -> np.ndarray:
        return h @ self.w + self.c

    def interval(self, h: np.ndarray, P: Optional[np.ndarray] = None, include_residual: bool = True
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, lo, hi) of the 95 % predictive interval: var = w^T P_t w (+ readout noise s^2)."""
        mean = self.predict(h)
        var = np.zeros(len(h)) if P is None else np.einsum("i,tij,j->t", self.w, P, self.w)
        if include_residual:
            var = var + (self.noise_var if P is not None else self.residual_var)
        sd = np.sqrt(np.maximum(var, 0.0))
        return mean, mean - Z95 * sd, mean + Z95 * sd


class MLPReadout:
    """MLP position readout on the latent mean (sklearn MLPRegressor, ReLU, one hidden layer), with
    sampling-based 95 % intervals from N(m_t, P_t) (paper App. B)."""

    def __init__(self, hidden: int = 100, seed: int = 0, max_iter: int = 300) -> None:
        from sklearn.neural_network import MLPRegressor

        self.net = MLPRegressor(hidden_layer_sizes=(hidden,), activation="relu", alpha=1e-4, max_iter=max_iter,
                                early_stopping=True, n_iter_no_change=20, random_state=seed)
        self.mu: Optional[np.ndarray] = None
        self.sd: Optional[np.ndarray] = None

    def fit(self, h: np.ndarray, y: np.ndarray) -> "MLPReadout":
        import warnings

        self.mu, self.sd = h.mean(0), h.std(0) + 1e-8
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net.fit((h - self.mu) / self.sd, y)
        return self

    def predict(self, h: np.ndarray) -> np.ndarray:
        return self.net.predict((h - self.mu) / self.sd)

    def interval(self, h: np.ndarray, P: np.ndarray, n_samples: int = 1000, seed: int = 0, chunk: int = 256
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(MLP(m_t), 2.5 % and 97.5 % quantiles of MLP(h) over ``n_samples`` h ~ N(m_t, P_t))."""
        rng = np.random.default_rng(seed)
        T, S = h.shape
        L = np.linalg.cholesky(0.5 * (P + P.transpose(0, 2, 1)) + 1e-9 * np.eye(S))
        lo, hi = np.empty(T), np.empty(T)
        for a in range(0, T, chunk):
            b = min(T, a + chunk)
            eps = rng.standard_normal((b - a, n_samples, S))
            samples = h[a:b, None, :] + np.einsum("tij,tnj->tni", L[a:b], eps)
            out = self.predict(samples.reshape(-1, S)).reshape(b - a, n_samples)
            lo[a:b], hi[a:b] = np.quantile(out, [0.025, 0.975], axis=1)
        return self.predict(h), lo, hi


def direction_accuracy(h_train: np.ndarray, d_train: np.ndarray, h_test: np.ndarray, d_test: np.ndarray) -> float:
    """Held-out accuracy of a logistic-regression direction readout (running bins only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    tr, te = d_train != 0, d_test != 0
    sc = StandardScaler().fit(h_train[tr])
    clf = LogisticRegression(max_iter=1000).fit(sc.transform(h_train[tr]), d_train[tr])
    return float(np.mean(clf.predict(sc.transform(h_test[te])) == d_test[te]))


def knn_decoder(f_train: np.ndarray, y_train: np.ndarray, d_train: np.ndarray, f_test: np.ndarray,
                y_test: np.ndarray, d_test: np.ndarray, k: int = 36, metric: str = "cosine") -> dict[str, Any]:
    """CEBRA's demo decoder (hc11.md §2.3): kNN regression of position and kNN classification of direction."""
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    reg = KNeighborsRegressor(n_neighbors=k, metric=metric).fit(f_train, y_train)
    pred = reg.predict(f_test)
    tr, te = d_train != 0, d_test != 0
    clf = KNeighborsClassifier(n_neighbors=k, metric=metric).fit(f_train[tr], d_train[tr])
    out: dict[str, Any] = decoding_metrics(y_test, pred)
    out["direction_accuracy"] = float(np.mean(clf.predict(f_test[te]) == d_test[te]))
    out["pred"] = pred
    return out


def latent_readouts(h_tr: np.ndarray, y_tr: np.ndarray, d_tr: np.ndarray, h_te: np.ndarray, y_te: np.ndarray,
                    d_te: np.ndarray, P_te: Optional[np.ndarray], n_samples: int = 1000, seed: int = 0,
                    mlp_hidden: int = 100, P_tr: Optional[np.ndarray] = None) -> dict[str, Any]:
    """Linear (analytic interval) and MLP (sampled interval) readouts of position plus the direction
    readout, fitted on the training block and scored on the held-out block. ``P_te`` None: no latent
    uncertainty (baselines such as PCA) -- the intervals then come from the readout residual only (linear)
    or are absent (MLP). ``P_tr``: training covariances for the linear readout's noise split."""
    lin = LinearReadout.fit(h_tr, y_tr, P=P_tr)
    m, lo, hi = lin.interval(h_te, P_te, include_residual=True)
    res: dict[str, Any] = {f"linear/{k}": v for k, v in decoding_metrics(y_te, m, lo, hi).items()}
    res["linear/residual_sd_cm"] = float(100 * np.sqrt(lin.residual_var))
    res["linear/readout_noise_sd_cm"] = float(100 * np.sqrt(lin.noise_var if P_te is not None else lin.residual_var))
    res["arrays"] = {"linear_mean": m, "linear_lo": lo, "linear_hi": hi}
    if P_te is not None:
        _, lo0, hi0 = lin.interval(h_te, P_te, include_residual=False)
        res["linear/coverage_95_latent_only"] = float(np.mean((y_te >= lo0) & (y_te <= hi0)))
        res["linear/interval_width_cm_latent_only"] = float(100 * np.mean(hi0 - lo0))
    mlp = MLPReadout(hidden=mlp_hidden, seed=seed).fit(h_tr, y_tr)
    if P_te is not None:
        mm, mlo, mhi = mlp.interval(h_te, P_te, n_samples=n_samples, seed=seed)
        res.update({f"mlp/{k}": v for k, v in decoding_metrics(y_te, mm, mlo, mhi).items()})
        res["arrays"].update(mlp_mean=mm, mlp_lo=mlo, mlp_hi=mhi)
    else:
        mm = mlp.predict(h_te)
        res.update({f"mlp/{k}": v for k, v in decoding_metrics(y_te, mm).items()})
        res["arrays"].update(mlp_mean=mm)
    res["direction_accuracy"] = direction_accuracy(h_tr, d_tr, h_te, d_te)
    return res
