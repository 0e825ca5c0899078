"""Probes and representation diagnostics of the image experiments (paper Table 2 / A1, Fig. 3, Fig. A2;
images.md §3, §5).

* :func:`linear_probe` — offline linear probe on frozen features (multinomial logistic regression,
  full-batch L-BFGS on standardised features), top-1 / top-5 on the test split;
* :func:`knn_probe` — weighted kNN (cosine similarity, k = 200, weights exp(s/T), T = 0.07; Wu et al. 2018);
* :func:`spectrum_stats` — eigenvalues of the test-embedding covariance, participation ratio
  (Σλ)²/Σλ², number of PCs reaching 90 % / 99 % of the variance;
* :func:`jacobian_logdet` — log det(J Jᵀ) = 2 Σ_k log σ_k(J) of the encoder's Jacobian w.r.t. the input
  image (the official notebook plotted a matrix rank instead; images.md §7).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["linear_probe", "knn_probe", "spectrum_stats", "jacobian_logdet", "topk"]


def topk(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """``{"top1": %, "top5": %}`` from class scores (k capped at the number of classes)."""
    kmax = min(max(ks), scores.shape[1])
    pred = scores.topk(kmax, dim=1).indices
    hit = pred == labels.view(-1, 1)
    return {f"top{k}": 100.0 * float(hit[:, :min(k, kmax)].any(1).float().mean()) for k in ks}


def linear_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, n_classes: int | None = None,
                 l2: float = 1e-4, max_iter: int = 200, seed: int = 0) -> dict[str, float]:
    """Offline linear probe: standardised features, softmax regression with L2 weight ``l2`` fitted by
    full-batch L-BFGS (deterministic); returns test top-1/top-5 and the train top-1 (percent)."""
    g = torch.Generator().manual_seed(seed)
    xtr = train_x.double().reshape(len(train_x), -1)
    xte = test_x.double().reshape(len(test_x), -1)
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    k = int(n_classes or int(max(train_y.max(), test_y.max())) + 1)
    W = (torch.randn(xtr.shape[1], k, generator=g, dtype=torch.float64) * 1e-3).requires_grad_(True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)
    ytr = train_y.long()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ W + b, ytr) + l2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        res = topk(xte @ W + b, test_y.long())
        res["train_top1"] = topk(xtr @ W + b, ytr, (1,))["top1"]
    return res


def knn_probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, k: int = 200,
              temperature: float = 0.07, n_classes: int | None = None, chunk: int = 1024) -> dict[str, float]:
    """Weighted kNN on cosine similarity: class score = Σ_{j ∈ top-k} exp(s_j / T) [y_j = c]."""
    a = F.normalize(train_x.float().reshape(len(train_x), -1), dim=1)
    q = F.normalize(test_x.float().reshape(len(test_x), -1), dim=1)
    c = int(n_classes or int(max(train_y.max(), test_y.max())) + 1)
    k = min(k, len(a))
    scores = []
    for i in range(0, len(q), chunk):
        sim = q[i:i + chunk] @ a.T
        s, idx = sim.topk(k, dim=1)
        w = torch.exp(s / temperature)
        onehot = F.one_hot(train_y[idx].long(), c).float()
        scores.append((onehot * w.unsqueeze(-1)).sum(1))
    return topk(torch.cat(scores), test_y.long())


def spectrum_stats(z: np.ndarray | Tensor) -> dict[str, object]:
    """Eigenvalues (descending) of the covariance of ``z`` (N, D), participation ratio and the number of
    principal components reaching 90 % and 99 % of the variance (Fig. 3; images.md §5)."""
    z = np.asarray(z, dtype=np.float64)
    ev = np.clip(np.linalg.eigvalsh(np.cov(z, rowvar=False)), 0.0, None)[::-1]
    total = ev.sum()
    if total <= 0:
        return {"eigenvalues": ev.tolist(), "participation_ratio": 0.0, "pcs_90": 0, "pcs_99": 0}
    frac = np.cumsum(ev) / total
    return {
        "eigenvalues": ev.tolist(),
        "participation_ratio": float(total ** 2 / np.sum(ev ** 2)),
        "pcs_90": int(np.searchsorted(frac, 0.90) + 1),
        "pcs_99": int(np.searchsorted(frac, 0.99) + 1),
    }


def jacobian_logdet(fn, images: Tensor, eps: float = 1e-12) -> np.ndarray:
    """Per image x: log det(J Jᵀ) = 2 Σ_k log σ_k(J), J = ∂fn(x)/∂x (D_out × D_in) via ``jacrev``
    (fn maps one image (C, H, W) to a vector)."""
    from torch.func import jacrev

    out = []
    for x in images:
        J = jacrev(fn)(x).reshape(-1, x.numel()).double()
        s = torch.linalg.svdvals(J)
        out.append(float(2.0 * torch.log(s.detach().clamp_min(eps)).sum()))
    return np.asarray(out)
