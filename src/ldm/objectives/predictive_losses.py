"""The four predictive LDM losses of the identifiability experiment (paper Sec. 7.1, Fig. 5, A6;
predictive.md §4.2), built from the objective library (:class:`ldm.objectives.objective.PredictiveObjective` and the
estimators of :mod:`ldm.objectives.entropy`; nothing is re-implemented here).

The predictor output p_t predicts z_{t+1} with a unit-variance Gaussian, so the alignment pairs z_t with
p_{t−1} for t = 1 … T−1 (99 terms, summed over time, mean over the batch):

    A = Σ_{t≥1} mean_b ½‖z_t − p_{t−1}‖²        (cross-entropy without the 2π constant)

* ``stopgrad``: L = A with z_t detached — the plug-in conditional-entropy estimate (App. A.5.4);
* ``knn``:      L = A − T·Ĥ_kNN on a random subset of 5·B of the B·T pooled encodings (k = 3, Euclidean,
  top 10 % of kNN distances clipped at the detached 0.9 quantile). ``knn.scale_by_dim``: True multiplies
  by d (the Kozachenko–Leonenko form, as in the Kalman experiment), False is the released LSTM code
  (no d, predictive.md §8 item 5);
* ``logdet``:   L = A − T·[½ log det(Cov(Z) + 10⁻⁸ I) + const] over all B·T encodings (exact, slogdet);
* ``kde``:      L = A − T·Ĥ_KDE, normalised Gaussian KDE with bandwidth 1 over all B·T encodings (self term
  included). O(N²) memory through a matmul distance matrix, never N×N×d; ``kde.max_points`` subsamples
  (a documented deviation for CPU runs, default off).

T = the sequence length (100) weighs the entropy although the alignment has T − 1 terms, as in the code.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from ldm.objectives.objective import KNN, PredictiveObjective

LOSSES = ("knn", "stopgrad", "logdet", "kde")

#: Loss settings (defaults = the official wobbly configs; ``knn.scale_by_dim`` = the paper's estimator).
LOSS_DEFAULTS: dict[str, Any] = {
    "knn": {"k": 3, "p": 2.0, "clip_quantile": 0.9, "scale_by_dim": True, "subset_factor": 5},
    "logdet": {"jitter": 1e-8},
    "kde": {"bandwidth": 1.0, "max_points": None},
    "entropy_weight": "seq_len",
}


def _merge(base: Mapping[str, Any], over: Mapping[str, Any] | None) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for k, v in (over or {}).items():
        if k not in base:
            raise KeyError(f"loss settings: unknown key {k!r}; known: {sorted(base)}")
        if isinstance(base[k], Mapping):
            if not isinstance(v, Mapping):
                raise TypeError(f"loss settings: {k!r} must be a mapping, got {v!r}")
            unknown = sorted(set(v) - set(base[k]))
            if unknown:
                raise KeyError(f"loss settings: unknown key(s) {unknown} in {k!r}; known: {sorted(base[k])}")
            out[k].update(v)
        else:
            out[k] = v
    return out


def build_objective(name: str, batch_size: int, settings: Mapping[str, Any] | None = None) -> PredictiveObjective:
    """The :class:`PredictiveObjective` of loss ``name`` for training batches of ``batch_size`` sequences."""
    if name not in LOSSES:
        raise ValueError(f"identifiability: unknown loss {name!r}; expected one of {list(LOSSES)}")
    s = _merge(LOSS_DEFAULTS, settings)
    kn = s["knn"]
    subset = None
    if name == "knn":
        subset = int(kn["subset_factor"]) * int(batch_size)
    elif name == "kde" and s["kde"]["max_points"] is not None:
        subset = int(s["kde"]["max_points"])
    return PredictiveObjective(
        estimator=name,
        entropy_weight=s["entropy_weight"],
        knn=KNN(k=int(kn["k"]), p=float(kn["p"]), clip_quantile=kn["clip_quantile"],
                scale_by_dim=bool(kn["scale_by_dim"])),
        logdet_jitter=float(s["logdet"]["jitter"]),
        subset_size=subset,
        kde_bandwidth=float(s["kde"]["bandwidth"]),
        float_parts=False,
    )


def predictive_loss(objective: PredictiveObjective, z: Tensor, pred: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of encodings ``z`` [B, T, d] and predictions ``pred`` [B, T, d] (pred[:, t] predicts z[:, t+1]).

    Returns (loss, terms) with detached terms named for logging and for the non-finite-loss message:
    ``alignment_ce`` (A above) and ``entropy_<estimator>`` (the single-variable estimate Ĥ, not weighted).
    """
    if z.dim() != 3 or z.shape != pred.shape:
        raise ValueError(f"predictive_loss expects z and pred of equal shape [B, T, d], got "
                         f"{tuple(z.shape)} and {tuple(pred.shape)}")
    if z.shape[1] < 2:
        raise ValueError(f"predictive_loss needs sequences of >= 2 frames, got T={z.shape[1]}")
    var = torch.ones(1, dtype=z.dtype, device=z.device)
    loss, parts = objective(z[:, 1:], pred[:, :-1], var=var, z_entropy=z)
    terms = {"alignment_ce": -parts["alignment"]}
    if "entropy" in parts:
        terms[f"entropy_{objective.estimator}"] = parts["entropy"]
    return loss, terms
