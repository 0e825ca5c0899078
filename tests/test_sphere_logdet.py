"""Sphere LogDet rows (issue 9): the paper-variant estimator is the exact Gaussian log-det per dimension,
its value on hand-computable covariances, its independence of the embedding width, and that its gradient
spreads a collapsed (rank-2) spherical embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ldm.objectives import objective as ob
from ldm.objectives.registry import build_objective, table_a1_config


def _known_cov_rows(variances: list[float]) -> torch.Tensor:
    """Rows ±√(v_k (B−1)/2) e_k (B = 2d) whose unbiased sample covariance is exactly diag(v)."""
    d = len(variances)
    rows = []
    for k, v in enumerate(variances):
        e = torch.zeros(d, dtype=torch.float64)
        e[k] = math.sqrt(v * (2 * d - 1) / 2)
        rows += [e, -e]
    return torch.stack(rows)


def test_exact_logdet_per_dim_matches_hand_value():
    x = _known_cov_rows([0.5, 2.0, 0.1])
    assert torch.allclose(torch.cov(x.T), torch.diag(torch.tensor([0.5, 2.0, 0.1], dtype=torch.float64)))
    per_dim = ob.LogDet(mode="exact", jitter=0.0, scaling="official").single(x)
    nats = ob.LogDet(mode="exact", jitter=0.0, scaling="entropy").single(x)
    hand = math.log(0.5) + math.log(2.0) + math.log(0.1)  # log det diag(v)
    assert abs(float(per_dim) - hand / 3) < 1e-10
    assert abs(float(nats) - hand / 2) < 1e-10


def test_per_dim_scaling_is_independent_of_width_and_nats_are_not():
    """Isotropic covariance s·I_d: per-dimension Ĥ = log s for every d (so λ keeps its meaning when the
    projector is narrowed or widened); ½ log det grows with d/2."""
    s = 0.03
    per_dim, nats = [], []
    for d in (4, 16):
        x = _known_cov_rows([s] * d)
        per_dim.append(float(ob.LogDet(mode="exact", jitter=0.0, scaling="official").single(x)))
        nats.append(float(ob.LogDet(mode="exact", jitter=0.0).single(x)))
    assert all(abs(h - math.log(s)) < 1e-10 for h in per_dim)
    assert abs(nats[1] / nats[0] - 4.0) < 1e-10


def _collapsed_sphere(b: int = 64, d: int = 16, seed: int = 0) -> torch.Tensor:
    """Unit vectors on a circle (rank 2 after centring) plus 1e-3 noise: the state the images-cpu runs
    collapsed to (participation ratio ≈ 2)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(b, generator=g) * 2 * math.pi
    a, c = torch.linalg.qr(torch.randn(d, 2, generator=g))[0].T
    x = torch.cos(t)[:, None] * a + torch.sin(t)[:, None] * c + 0.5 / math.sqrt(d) + 1e-3 * torch.randn(b, d, generator=g)
    return x.double()


def _participation_ratio(z: torch.Tensor) -> float:
    ev = torch.linalg.eigvalsh(torch.cov(z.T)).clamp_min(0)
    return float(ev.sum() ** 2 / (ev ** 2).sum())


def test_paper_sphere_logdet_gradient_spreads_collapsed_embedding():
    """Normalised-gradient steps on the paper-variant loss (both rows) take a rank-2 spherical embedding
    to a spread one while the two views stay aligned."""
    for row in ("Sphere LogDet", "Sphere LogDet + MI"):
        obj = build_objective(table_a1_config(row, variant="paper"))
        x = _collapsed_sphere().requires_grad_(True)
        g = torch.Generator().manual_seed(1)
        n1, n2 = 0.05 * torch.randn(x.shape, generator=g).double(), 0.05 * torch.randn(x.shape, generator=g).double()
        pr0 = _participation_ratio(F.normalize(x.detach(), dim=1))
        for _ in range(100):
            loss, _ = obj(x + n1, x + n2)
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x -= 0.05 * x.norm() * grad / grad.norm()
        _, parts = obj(x + n1, x + n2)
        pr1 = _participation_ratio(F.normalize(x.detach(), dim=1))
        assert pr0 < 2.2 and pr1 > 10.0, (row, pr0, pr1)
        assert float(parts["alignment"]) > 0.8 * obj.model.lam, row
