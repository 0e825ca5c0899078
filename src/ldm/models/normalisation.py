"""Normalisation of encodings over the pooled batch (shared by the predictive models: the Kalman experiment,
:mod:`ldm.models.kalman_ssl`, and the identifiability experiment, :mod:`ldm.training.identifiability`).

Why: a predictive loss with a stop-gradient and no marginal-entropy term (the stopgrad conditional-entropy
estimator, paper App. A.5.4 / A.6.2) can be lowered by shrinking the encodings or collapsing them onto fewer
dimensions. Whitening z~ = L^-1 (z - mu), L L^T = Cov(Z), fixes Cov(Z~) = I: the Gaussian CE of the whitened
encodings equals the CE of the raw ones minus 1/2 log det Cov(Z), i.e. conditional entropy minus the Gaussian
marginal entropy (the logdet estimator, App. A.5), the two terms of the LDM objective.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BatchWhitening(nn.Module):
    """Whiten d-dim encodings over the pooled batch: z~ = L^-1 (z - mu), L L^T = Cov(z) + eps tr(Cov)/d I (Cholesky,
    differentiable through the batch statistics); running mean/covariance (momentum) in eval mode.
    The Gaussian counterpart of the marginal entropy: log det of the map is -1/2 log det Cov(Z)."""

    def __init__(self, dim: int, momentum: float = 0.1, eps: float = 1e-6) -> None:
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_cov", torch.eye(dim))

    def forward(self, z: Tensor) -> Tensor:
        eye = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device)
        if self.training:
            mu = z.mean(0)
            zc = z - mu
            cov = zc.T @ zc / max(z.shape[0] - 1, 1)
            with torch.no_grad():
                self.running_mean.lerp_(mu.detach(), self.momentum)
                self.running_cov.lerp_(cov.detach(), self.momentum)
        else:
            mu, cov = self.running_mean, self.running_cov
            zc = z - mu
        # jitter relative to the mean variance keeps the map exactly scale-invariant
        # (cholesky_ex: a non-finite batch gives non-finite encodings, reported by the training loop by step)
        L, _ = torch.linalg.cholesky_ex(cov + self.eps * torch.diagonal(cov).mean().clamp_min(1e-12) * eye)
        return torch.linalg.solve_triangular(L, zc.T, upper=False).T
