"""Latent models of LDM: the conditional p(z2 | z1) of each latent space (paper §4, App. A.6).

Each model maps raw network outputs into its latent space (:meth:`embed`) and gives the
alignment term E log p(z2 | z1) (to be *maximised*, additive constants dropped unless
stated).  The entropy side lives in :mod:`ldm.objectives.entropy`; the composition in
:mod:`ldm.objectives.objective`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .entropy import diag_gaussian_cross_entropy, gaussian_cross_entropy

__all__ = [
    "LatentModel",
    "PlaneModel",
    "SphereModel",
    "SimplexModel",
    "CategoricalModel",
    "PredictiveGaussianModel",
    "categorical_temperature",
    "categorical_same_probability",
]


class LatentModel:
    """Base class: ``embed`` maps outputs into the latent space, ``alignment`` = E log p(z2|z1)."""

    name: str = "base"

    def embed(self, z: Tensor) -> Tensor:
        return z

    def alignment(self, z1: Tensor, z2: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class PlaneModel(LatentModel):
    """Gaussian conditional on the plane, p(z2 | z1) = N(z1, σ² I) (App. A.6.1).

    ``reduction="mean"`` (default, official ``gaussprob``, the authors' code):
    alignment = −λ · (1/B) Σ_i (1/D) ‖z1_i − z2_i‖²  (Gaussian precision 2λ/D per coordinate).
    ``reduction="sum"``: alignment = −(λ/2) (1/B) Σ_i ‖z1_i − z2_i‖²  (precision λ).
    """

    name = "plane"

    def __init__(self, lam: float = 5.0, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be one of ['mean', 'sum'], got {reduction!r}")
        self.lam = float(lam)
        self.reduction = reduction

    def alignment(self, z1: Tensor, z2: Tensor) -> Tensor:
        sq = (z1 - z2).pow(2)
        if self.reduction == "mean":
            return -self.lam * sq.mean()
        return -0.5 * self.lam * sq.sum(-1).mean()


class SphereModel(LatentModel):
    """von Mises–Fisher conditional on the unit sphere, p(z2 | z1) ∝ exp(λ z1·z2) (App. A.6.1).

    ``embed`` L2-normalises; alignment = λ (1/B) Σ_i z1_i · z2_i (the authors' code).
    """

    name = "sphere"

    def __init__(self, lam: float = 5.0) -> None:
        self.lam = float(lam)

    def embed(self, z: Tensor) -> Tensor:
        return F.normalize(z, dim=-1)

    def alignment(self, z1: Tensor, z2: Tensor) -> Tensor:
        return self.lam * (z1 * z2).sum(-1).mean()


class SimplexModel(LatentModel):
    """Dirichlet conditional on the simplex, p(z2 | z1) = Dir(z2; β z1 + 1) (App. A.6.1, Eq. 49–51).

    Mode z1, mean (β z1 + 1)/(β + K).  alignment = (1/B) Σ_i [log Γ(β + K)
    − Σ_k log Γ(β z1_ik + 1) + β Σ_k z1_ik log z2_ik]  (the last sum is the DINO-style
    cross-entropy term).  ``embed`` applies a softmax when ``from_logits`` (default),
    otherwise expects probabilities.  log z2 is clamped at log(eps).
    """

    name = "simplex"

    def __init__(self, beta: float = 5.0, from_logits: bool = True, eps: float = 1e-8) -> None:
        self.beta = float(beta)
        self.from_logits = bool(from_logits)
        self.eps = float(eps)

    def embed(self, z: Tensor) -> Tensor:
        return torch.softmax(z, dim=-1) if self.from_logits else z

    def alignment(self, z1: Tensor, z2: Tensor) -> Tensor:
        k = z1.shape[-1]
        b = self.beta
        ll = (
            math.lgamma(b + k)
            - torch.lgamma(b * z1 + 1.0).sum(-1)
            + b * (z1 * torch.log(z2.clamp_min(self.eps))).sum(-1)
        )
        return ll.mean()


def categorical_temperature(p: float, n: int = 10) -> float:
    """T = 1 / ln((n − 1) p / (1 − p)) for P(c2 = c1) = p over n categories (App. A.8)."""
    if not (1.0 / n < p < 1.0):
        raise ValueError(f"p must be in (1/n, 1) = ({1.0 / n:g}, 1), got {p}")
    return 1.0 / math.log((n - 1) * p / (1.0 - p))


def categorical_same_probability(temperature: float, n: int = 10) -> float:
    """Inverse of :func:`categorical_temperature`: p = e^{1/T} / (e^{1/T} + n − 1)."""
    a = 1.0 / temperature
    return 1.0 / (1.0 + (n - 1) * math.exp(-a))


class CategoricalModel(LatentModel):
    """Categorical latent model of App. A.8 (MNIST ``catprob``).

    P(c2 = c1) = p, the other n − 1 categories equally likely; written as a softmax with
    temperature T = 1/ln((n−1)p/(1−p)).  With soft assignments s1, s2 (softmax outputs)
    the alignment (already multiplied through by T, as in the official loss) is the
    invariance I = (1/B) Σ_i s1_i · s2_i (probability both views share a category).
    """

    name = "categorical"

    def __init__(self, p: float = 0.8, n: int = 10, from_logits: bool = False) -> None:
        self.n = int(n)
        self.set_p(p)
        self.from_logits = bool(from_logits)

    def set_p(self, p: float) -> None:
        self.p = float(p)
        self.temperature = categorical_temperature(self.p, self.n)

    def set_temperature(self, temperature: float) -> None:
        """Set T directly (annealing: T ← T − (4/E)(T − T_end) per epoch, the authors' code)."""
        self.temperature = float(temperature)
        self.p = categorical_same_probability(self.temperature, self.n)

    def embed(self, z: Tensor) -> Tensor:
        return torch.softmax(z, dim=-1) if self.from_logits else z

    def alignment(self, z1: Tensor, z2: Tensor) -> Tensor:
        return (z1 * z2).sum(-1).mean()


class PredictiveGaussianModel(LatentModel):
    """Gaussian predictive model: p(z_t | past) = N(ẑ_t, Σ_t) (paper §6–7; the authors' code).

    :meth:`log_likelihood` returns −Σ_t mean_batch CE(z_t | ẑ_t, Σ_t) (no 2π constant),
    summed over the time axis (dim 1) when inputs are (B, T, d), averaged over the batch.
    Give either a full covariance ``cov`` (broadcastable to (..., d, d); Cholesky with
    ``jitter``) or diagonal variances ``var`` (broadcastable to (..., d)).
    ``stopgrad_target=True`` detaches z (predictive stopgrad loss).
    """

    name = "predictive"

    def __init__(self, jitter: float = 0.0) -> None:
        self.jitter = float(jitter)

    def cross_entropy(
        self,
        z: Tensor,
        mean: Tensor,
        cov: Tensor | None = None,
        var: Tensor | None = None,
        stopgrad_target: bool = False,
    ) -> Tensor:
        """Per-element CE(z | mean, Σ), shape z.shape[:-1]."""
        if (cov is None) == (var is None):
            raise ValueError("give exactly one of cov (full, (..., d, d)) or var (diagonal, (..., d))")
        target = z.detach() if stopgrad_target else z
        if var is not None:
            v = var + self.jitter if self.jitter else var
            return diag_gaussian_cross_entropy(target, mean, v)
        return gaussian_cross_entropy(target, mean, cov, jitter=self.jitter)

    def log_likelihood(
        self,
        z: Tensor,
        mean: Tensor,
        cov: Tensor | None = None,
        var: Tensor | None = None,
        stopgrad_target: bool = False,
    ) -> Tensor:
        ce = self.cross_entropy(z, mean, cov=cov, var=var, stopgrad_target=stopgrad_target)
        if ce.dim() >= 2:  # (B, T, ...): sum over time, mean over batch (and any further dims)
            return -ce.sum(1).mean()
        return -ce.mean()

    def alignment(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Unit-covariance special case: E log N(z2; z1, I) (up to constants)."""
        return -0.5 * (z1 - z2).pow(2).sum(-1).mean()
