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
from ldm.pipeline.config import merge_settings

LOSSES = ("knn", "stopgrad", "logdet", "kde")

#: Loss settings (defaults = the official wobbly configs; ``knn.scale_by_dim`` = the paper's estimator).
LOSS_DEFAULTS: dict[str, Any] = {
    "knn": {"k": 3, "p": 2.0, "clip_quantile": 0.9, "scale_by_dim": True, "subset_factor": 5},
    "logdet": {"jitter": 1e-8},
    "kde": {"bandwidth": 1.0, "max_points": None},
    "entropy_weight": "seq_len",
}


def build_objective(name: str, batch_size: int, settings: Mapping[str, Any] | None = None) -> PredictiveObjective:
    """The :class:`PredictiveObjective` of loss ``name`` for training batches of ``batch_size`` sequences."""
    if name not in LOSSES:
        raise ValueError(f"identifiability: unknown loss {name!r}; expected one of {list(LOSSES)}")
    s = merge_settings(LOSS_DEFAULTS, settings, "loss settings")
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


def predictive_loss(objective: PredictiveObjective, z: Tensor, pred: Tensor, var: Tensor | None = None,
                    target: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of encodings ``z`` [B, T, d] and predictions ``pred`` [B, T, d] (pred[:, t] predicts z[:, t+1]).

    ``var``: the predictive variances of ``pred`` (broadcastable to [B, T, d]; None: unit variance, the
    official wobbly configs); ``var[:, t]`` belongs to ``pred[:, t]``. ``target``: the encodings the
    alignment pairs with the predictions (default ``z``; e.g. an EMA target encoder's for stopgrad); the
    entropy terms always use ``z``.

    Returns (loss, terms) with detached terms named for logging and for the non-finite-loss message:
    ``alignment_ce`` (A above) and ``entropy_<estimator>`` (the single-variable estimate Ĥ, not weighted).
    """
    if z.dim() != 3 or z.shape != pred.shape:
        raise ValueError(f"predictive_loss expects z and pred of equal shape [B, T, d], got "
                         f"{tuple(z.shape)} and {tuple(pred.shape)}")
    if z.shape[1] < 2:
        raise ValueError(f"predictive_loss needs sequences of >= 2 frames, got T={z.shape[1]}")
    tgt = z if target is None else target
    if tgt.shape != z.shape:
        raise ValueError(f"predictive_loss: target shape {tuple(tgt.shape)} != encodings {tuple(z.shape)}")
    if var is None:
        v = torch.ones(1, dtype=z.dtype, device=z.device)
    else:
        v = var[:, :-1] if var.dim() == 3 else var
    loss, parts = objective(tgt[:, 1:], pred[:, :-1], var=v, z_entropy=z)
    terms = {"alignment_ce": -parts["alignment"]}
    if "entropy" in parts:
        terms[f"entropy_{objective.estimator}"] = parts["entropy"]
    return loss, terms


def separate_predictor_stopgrad_loss(z: Tensor, pred: Tensor, var: Tensor | None, ent_pred: Tensor,
                                     ent_var: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Stopgrad LDM with a separate, less constrained conditional-entropy predictor (paper App. A.6.2, last
    paragraph; the plug-in estimator of App. A.5.4).

    The LDM goal is E log q(z_t | z_<t) + H(z_t | z_<t). The stopgrad loss estimates H with the model's own
    predictor q (the z_t-gradients of the alignment and of the plug-in estimate cancel, leaving the gradient
    through the past only). Here H is estimated with a second predictor q_φ = N(p^φ_t, diag v^φ_t) that sees the
    detached past and has its own (e.g. state-dependent) variance, trained only by its cross-entropy:

        L = A(z, p, v) − Ĥ_φ + CE_φ,   A = Σ_{t≥1} mean_b CE(z_t | p_{t−1}, v_{t−1})         (full gradient)
        Ĥ_φ  = Σ_{t≥1} mean_b CE(z_t | sg p^φ_{t−1}, sg v^φ_{t−1})   (gradient to the encoder through z_t only)
        CE_φ = Σ_{t≥1} mean_b CE(sg z_t | p^φ_{t−1}, v^φ_{t−1})      (trains φ only; p^φ is computed from sg z)

    With q_φ ≡ q this is exactly the stopgrad loss; with a q_φ that fits the true conditional, Ĥ_φ is a tight
    estimate and the loss approaches the LDM goal, whose Gaussian model with fixed variance identifies the
    state up to an affine map (Theorem 1). Shapes: z, pred, ent_pred [B, T, d]; var (None = unit) and ent_var
    broadcastable to [B, T, d]; pred[:, t] predicts z[:, t+1].
    """
    from ldm.objectives.entropy import diag_gaussian_cross_entropy

    if z.dim() != 3 or z.shape != pred.shape or z.shape != ent_pred.shape:
        raise ValueError(f"separate_predictor_stopgrad_loss expects z, pred, ent_pred of equal shape [B, T, d], got "
                         f"{tuple(z.shape)}, {tuple(pred.shape)}, {tuple(ent_pred.shape)}")

    def head(v: Tensor | None) -> Tensor:
        if v is None:
            return torch.ones(1, dtype=z.dtype, device=z.device)
        return v[:, :-1] if v.dim() == 3 else v

    def ce(target: Tensor, mean: Tensor, v: Tensor) -> Tensor:
        return diag_gaussian_cross_entropy(target, mean, v).sum(1).mean()

    tgt = z[:, 1:]
    align = ce(tgt, pred[:, :-1], head(var))
    ev = head(ent_var)
    h_phi = ce(tgt, ent_pred[:, :-1].detach(), ev.detach())
    ce_phi = ce(tgt.detach(), ent_pred[:, :-1], ev)
    loss = align - h_phi + ce_phi
    return loss, {"alignment_ce": align.detach(), "entropy_conditional_phi": h_phi.detach(),
                  "entropy_predictor_ce": ce_phi.detach()}
