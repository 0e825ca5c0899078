"""LDM objectives (alignment + entropy) and the SSL baselines (paper §4–5, App. A.5–A.6, A.8).

Every objective is a callable returning ``(loss, parts)``: ``loss`` is the differentiable
scalar to *minimise*, ``parts`` a dict of detached floats for logging (``loss``,
``alignment``, ``entropy`` and the individual entropy terms).  Pass
``float_parts=False`` to an objective to get detached 0-d tensors instead (no host
synchronisation per step on GPU).

LDM objective (continuous latent spaces):

    J = E log p(z2 | z1) + w · Ĥ      loss = −J
    mi=False (J_LDM):  Ĥ = Ĥ(z1, z2)   joint entropy of [z1 ‖ z2]            (paper Eq. 9)
    mi=True  (J_MI):   Ĥ = Ĥ(z1) + Ĥ(z2)

For LogDet, the joint entropy uses the 2D × 2D covariance of the concatenated vector by
default (paper Eq. 9); ``joint_cov="pooled"`` is the official code's batch-stacked
covariance (the authors' code).
"""

from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import Tensor

from . import entropy as ee
from .latent_models import (
    CategoricalModel,
    LatentModel,
    PlaneModel,
    PredictiveGaussianModel,
    SimplexModel,
    SphereModel,
)

__all__ = [
    "EntropyEstimator",
    "GaussianKDE",
    "VMFKDE",
    "DirichletKDE",
    "KNN",
    "LogDet",
    "Objective",
    "LDMObjective",
    "CategoricalObjective",
    "PredictiveObjective",
    "SimCLRObjective",
    "VICRegObjective",
    "StopgradObjective",
    "InfoNCEObjective",
    "nt_xent",
    "vicreg_loss",
    "info_nce",
]

Parts = dict[str, float]


def _pack(parts: dict[str, Tensor], as_float: bool) -> dict:
    if as_float:
        return {k: float(v.detach()) for k, v in parts.items()}
    return {k: v.detach() for k, v in parts.items()}


# ======================================================================================
# Entropy estimators with a single / joint interface
# ======================================================================================
class EntropyEstimator:
    """Wraps an estimator from :mod:`ldm.objectives.entropy` with ``single`` and ``joint``."""

    name = "base"

    def single(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def joint(self, z1: Tensor, z2: Tensor) -> Tensor:
        """Ĥ(z1, z2) on the concatenation [z1 ‖ z2] along the feature axis."""
        return self.single(torch.cat([z1, z2], dim=1))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class GaussianKDE(EntropyEstimator):
    """Gaussian-kernel KDE on the plane (κ on the per-coordinate mean squared distance)."""

    name = "kde"

    def __init__(self, kappa: float = 5.0, eps: float = ee.KDE_EPS) -> None:
        self.kappa = float(kappa)
        self.eps = float(eps)

    def single(self, x: Tensor) -> Tensor:
        return ee.gaussian_kde_entropy(x, kappa=self.kappa, eps=self.eps)


class VMFKDE(EntropyEstimator):
    """vMF-kernel KDE on the sphere (precision γ = 1/τ)."""

    name = "kde"

    def __init__(self, gamma: float = 5.0) -> None:
        self.gamma = float(gamma)

    def single(self, x: Tensor) -> Tensor:
        return ee.vmf_kde_entropy(x, gamma=self.gamma)


class DirichletKDE(EntropyEstimator):
    """Dirichlet-kernel KDE on the simplex (precision β); joint = product kernel."""

    name = "kde"

    def __init__(self, beta: float = 5.0) -> None:
        self.beta = float(beta)

    def single(self, x: Tensor) -> Tensor:
        return ee.dirichlet_kde_entropy(x, beta=self.beta)

    def joint(self, z1: Tensor, z2: Tensor) -> Tensor:
        return ee.dirichlet_kde_entropy(torch.cat([z1, z2], dim=1), beta=self.beta, n_simplices=2)


class KNN(EntropyEstimator):
    """Kozachenko–Leonenko kNN estimator (see :func:`ldm.entropy_estimators.knn_entropy`)."""

    name = "knn"

    def __init__(
        self,
        k: int = 3,
        p: float = 2.0,
        clip_quantile: float | None = 0.9,
        scale_by_dim: bool = False,
        full: bool = False,
    ) -> None:
        self.k = int(k)
        self.p = float(p)
        self.clip_quantile = clip_quantile
        self.scale_by_dim = bool(scale_by_dim)
        self.full = bool(full)

    def single(self, x: Tensor) -> Tensor:
        return ee.knn_entropy(
            x, k=self.k, p=self.p, clip_quantile=self.clip_quantile,
            scale_by_dim=self.scale_by_dim, full=self.full,
        )


class LogDet(EntropyEstimator):
    """Parametric Gaussian (LogDet) estimator, App. A.5.3.

    ``mode="exact"``: ½ log det(C + jitter I) via Cholesky (paper default);
    ``mode="taylor"``: ½ LD(C) with the second-order expansion (``power=2`` correct,
    ``power=4`` official); ``scaling="official"`` returns LD(C)/d (official sphere code).
    ``joint_cov="concat"`` (paper Eq. 9) or ``"pooled"`` (official code: batch-stacked
    views, ``pooled_center`` ``"per_view"`` as sphere ``dual_gauss``).
    ``jitter_all_entries`` reproduces the official "+1e-6 on every entry" (taylor only).
    """

    name = "logdet"

    def __init__(
        self,
        mode: str = "exact",
        power: int = 2,
        jitter: float = 1e-6,
        joint_cov: str = "concat",
        scaling: str = "entropy",
        jitter_all_entries: bool = False,
        pooled_center: str = "per_view",
    ) -> None:
        if mode not in ("exact", "taylor"):
            raise ValueError(f"logdet mode must be one of ['exact', 'taylor'], got {mode!r}")
        if joint_cov not in ("concat", "pooled"):
            raise ValueError(f"joint_cov must be one of ['concat', 'pooled'], got {joint_cov!r}")
        if scaling not in ("entropy", "official"):
            raise ValueError(f"scaling must be one of ['entropy', 'official'], got {scaling!r}")
        if mode == "exact" and jitter_all_entries:
            raise ValueError("jitter_all_entries is only defined for mode='taylor'")
        self.mode = mode
        self.power = int(power)
        self.jitter = float(jitter)
        self.joint_cov = joint_cov
        self.scaling = scaling
        self.jitter_all_entries = bool(jitter_all_entries)
        self.pooled_center = pooled_center

    def _from_cov(self, cov: Tensor) -> Tensor:
        d = cov.shape[-1]
        if self.mode == "taylor":
            return ee.taylor_logdet_entropy(
                None, power=self.power, jitter=self.jitter, jitter_all_entries=self.jitter_all_entries,
                official_scaling=self.scaling == "official", cov=cov,
            )
        h = ee.gaussian_entropy_from_cov(cov.double(), jitter=self.jitter).to(cov.dtype)
        h = h - 0.5 * d * (1.0 + math.log(2.0 * math.pi))  # same convention as single()
        return h * (2.0 / d) if self.scaling == "official" else h

    def single(self, x: Tensor) -> Tensor:
        if self.mode == "taylor":
            return self._from_cov(ee.sample_covariance(x))
        h = ee.logdet_entropy(x, jitter=self.jitter, normalized=False)
        return h * (2.0 / x.shape[1]) if self.scaling == "official" else h

    def joint(self, z1: Tensor, z2: Tensor) -> Tensor:
        if self.joint_cov == "pooled":
            return self._from_cov(ee.pooled_covariance(z1, z2, center=self.pooled_center))
        return self.single(torch.cat([z1, z2], dim=1))


# ======================================================================================
# Objectives
# ======================================================================================
class Objective:
    """Callable ``(z1, z2, **kw) -> (loss, parts)``; ``float_parts`` selects the part type."""

    name = "objective"
    float_parts: bool = True

    def __call__(self, z1: Tensor, z2: Tensor, **kwargs) -> tuple[Tensor, dict]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class LDMObjective(Objective):
    """loss = −[E log p(z2|z1)] − w · Ĥ  with Ĥ = Ĥ(z1,z2) (mi=False) or Ĥ(z1)+Ĥ(z2) (mi=True).

    ``z1``, ``z2`` are raw outputs (B, D); the latent model embeds them (sphere: L2
    normalisation, simplex: softmax) before both terms are computed.
    """

    name = "ldm"

    def __init__(
        self,
        model: LatentModel,
        estimator: EntropyEstimator,
        mi: bool = False,
        entropy_weight: float = 1.0,
        float_parts: bool = True,
    ) -> None:
        self.model = model
        self.estimator = estimator
        self.mi = bool(mi)
        self.entropy_weight = float(entropy_weight)
        self.float_parts = bool(float_parts)

    def __call__(self, z1: Tensor, z2: Tensor, **kwargs) -> tuple[Tensor, dict]:
        z1 = self.model.embed(z1)
        z2 = self.model.embed(z2)
        align = self.model.alignment(z1, z2)
        parts: dict[str, Tensor] = {"alignment": align}
        if self.mi:
            h1 = self.estimator.single(z1)
            h2 = self.estimator.single(z2)
            h = h1 + h2
            parts["entropy_z1"] = h1
            parts["entropy_z2"] = h2
        else:
            h = self.estimator.joint(z1, z2)
            parts["entropy_joint"] = h
        parts["entropy"] = h
        loss = -(align + self.entropy_weight * h)
        parts["loss"] = loss
        return loss, _pack(parts, self.float_parts)


class CategoricalObjective(Objective):
    """Categorical LDM of App. A.8 (the authors' code); inputs are softmax outputs s1, s2 (B, n).

    mode ``"exact"`` (DM, mi=False): loss = −I − T · Ĥ(c1, c2) (plug-in joint entropy);
    ``"approx"`` (DM+MI, mi=True): loss = −I − T · m · Ĥ(c̄) (pooled marginal, m = 2);
    ``"mi"`` (pure MI): loss = −(2 Ĥ(c̄) − Ĥ(c1, c2)).  T from p via the latent model.
    """

    name = "categorical"

    def __init__(
        self,
        model: CategoricalModel,
        mode: str = "exact",
        multiplier: float = 2.0,
        eps: float = 1e-6,
        float_parts: bool = True,
    ) -> None:
        if mode not in ("exact", "approx", "mi"):
            raise ValueError(f"categorical mode must be one of ['exact', 'approx', 'mi'], got {mode!r}")
        self.model = model
        self.mode = mode
        self.multiplier = float(multiplier)
        self.eps = float(eps)
        self.float_parts = bool(float_parts)

    def __call__(self, z1: Tensor, z2: Tensor, **kwargs) -> tuple[Tensor, dict]:
        s1, s2 = self.model.embed(z1), self.model.embed(z2)
        inv = self.model.alignment(s1, s2)
        h_joint = ee.categorical_joint_entropy(s1, s2, eps=self.eps)
        h_single = ee.categorical_entropy(torch.cat([s1, s2], dim=0), eps=self.eps)
        t = self.model.temperature
        if self.mode == "exact":
            h = h_joint
            loss = -inv - t * h_joint
        elif self.mode == "approx":
            h = self.multiplier * h_single
            loss = -inv - t * h
        else:
            h = 2.0 * h_single - h_joint
            loss = -h
        parts = {"loss": loss, "alignment": inv, "entropy": h, "entropy_joint": h_joint,
                 "entropy_single": h_single}
        return loss, _pack(parts, self.float_parts)


class PredictiveObjective(Objective):
    """Predictive LDM losses of the Kalman / LSTM models (the authors' code).

    Call as ``obj(z, mean, cov=..., var=..., z_entropy=None)``:
    z (B, T, d) or (B, d) encodings paired with predictions ``mean`` of the same shape
    (the caller does the time shift), ``cov`` full (broadcastable (..., d, d)) or ``var``
    diagonal.  Alignment A = Σ_t mean_b CE(z_t | ẑ_t, Σ_t).

    * ``estimator="stopgrad"``: loss = A with z detached (plug-in conditional entropy,
      App. A.5.4); no separate entropy term.
    * ``"knn"``, ``"logdet"``, ``"kde"``: loss = A − w · Ĥ(Z) on the encodings pooled over
      batch and time (``z_entropy`` if given, else ``z``); w = number of time steps of the
      pooled tensor when ``entropy_weight="seq_len"`` (official), else the given float.
      ``subset_size`` draws that many pooled encodings without replacement first (LSTM
      knn: 5·B).  kde bandwidth = mean √(predicted variance), detached.
    """

    name = "predictive"

    def __init__(
        self,
        estimator: str = "stopgrad",
        cov_jitter: float = 0.0,
        entropy_weight: float | str = "seq_len",
        knn: KNN | None = None,
        logdet_jitter: float = 1e-8,
        subset_size: int | None = None,
        kde_bandwidth: float | str = "mean_std",
        float_parts: bool = True,
    ) -> None:
        allowed = ("stopgrad", "knn", "logdet", "kde")
        if estimator not in allowed:
            raise ValueError(f"predictive estimator must be one of {list(allowed)}, got {estimator!r}")
        self.estimator = estimator
        self.model = PredictiveGaussianModel(jitter=cov_jitter)
        self.entropy_weight = entropy_weight
        self.knn = knn if knn is not None else KNN()
        self.logdet_jitter = float(logdet_jitter)
        self.subset_size = subset_size
        self.kde_bandwidth = kde_bandwidth
        self.float_parts = bool(float_parts)

    def _bandwidth(self, cov: Tensor | None, var: Tensor | None) -> float | Tensor:
        if self.kde_bandwidth != "mean_std":
            return float(self.kde_bandwidth)
        v = var if var is not None else torch.diagonal(cov, dim1=-2, dim2=-1)
        return v.detach().sqrt().mean()

    def entropy(self, zp: Tensor, cov: Tensor | None = None, var: Tensor | None = None) -> Tensor:
        """Single-timestep entropy estimate of pooled encodings zp (N, d)."""
        if self.subset_size is not None and zp.shape[0] > self.subset_size:
            # drawn from the CPU generator: the same subset on every device, and checkpointed with the run
            idx = torch.randperm(zp.shape[0])[: self.subset_size]
            zp = zp[idx.to(zp.device)]
        if self.estimator == "knn":
            return self.knn.single(zp)
        if self.estimator == "logdet":
            return ee.logdet_entropy(zp, jitter=self.logdet_jitter, method="slogdet", normalized=True)
        return ee.bandwidth_kde_entropy(zp, bandwidth=self._bandwidth(cov, var))

    def __call__(
        self,
        z: Tensor,
        mean: Tensor,
        cov: Tensor | None = None,
        var: Tensor | None = None,
        z_entropy: Tensor | None = None,
        **kwargs,
    ) -> tuple[Tensor, dict]:
        stopgrad = self.estimator == "stopgrad"
        ll = self.model.log_likelihood(z, mean, cov=cov, var=var, stopgrad_target=stopgrad)
        align_loss = -ll
        parts: dict[str, Tensor] = {"alignment": ll}
        if stopgrad:
            parts["conditional_entropy"] = align_loss
            loss = align_loss
        else:
            ze = z if z_entropy is None else z_entropy
            w = (ze.shape[1] if ze.dim() == 3 else 1) if self.entropy_weight == "seq_len" else float(self.entropy_weight)
            h = self.entropy(ze.reshape(-1, ze.shape[-1]), cov=cov, var=var)
            parts["entropy"] = h
            loss = align_loss - w * h
        parts["loss"] = loss
        return loss, _pack(parts, self.float_parts)


# ======================================================================================
# Baselines
# ======================================================================================
def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.2) -> Tensor:
    """SimCLR NT-Xent: 2B anchors, positive = the other view, 2B − 2 negatives (cosine/τ)."""
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=-1)
    logits = z @ z.T / temperature
    eye = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    pos = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, pos)


def _offdiag_sq_sum(xc: Tensor, n: int) -> Tensor:
    """Σ_{i≠j} C_ij² for C = xcᵀ xc / n, computed in the cheaper Gram space (B×B when d > B)."""
    b, d = xc.shape
    g = xc @ xc.T if d > b else xc.T @ xc  # ‖XᵀX‖_F = ‖XXᵀ‖_F
    total = g.pow(2).sum() / n**2
    diag = (xc * xc).sum(0) / n  # C_ii
    return total - diag.pow(2).sum()


def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    cov_mode: str = "per_view",
    eps: float = 1e-4,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """VICReg (Bardes et al.) as in solo-learn; returns (loss, invariance, variance, covariance).

    invariance = MSE(z1, z2) (mean over B·D); variance = Σ_views mean_d relu(1 − √(Var_d + eps))
    (unbiased); covariance = Σ_views Σ_{i≠j} Cov_ij² / D (``cov_mode="per_view"``), or one
    term Σ_{i≠j} Cov([z1; z2])_ij² / D of the 2B batch-stacked samples with pooled mean
    (``"pooled"``, the authors' no-MI ``vicreg2``, the authors' code).
    """
    b, d = z1.shape
    inv = F.mse_loss(z1, z2)
    std1 = torch.sqrt(z1.var(dim=0) + eps)
    std2 = torch.sqrt(z2.var(dim=0) + eps)
    var = F.relu(1.0 - std1).mean() + F.relu(1.0 - std2).mean()
    if cov_mode == "per_view":
        c1 = _offdiag_sq_sum(z1 - z1.mean(0), b - 1)
        c2 = _offdiag_sq_sum(z2 - z2.mean(0), b - 1)
        cov = (c1 + c2) / d
    elif cov_mode == "pooled":
        s = torch.cat([z1, z2], dim=0)
        cov = _offdiag_sq_sum(s - s.mean(0), 2 * b - 1) / d
    else:
        raise ValueError(f"cov_mode must be one of ['per_view', 'pooled'], got {cov_mode!r}")
    loss = sim_weight * inv + var_weight * var + cov_weight * cov
    return loss, inv, var, cov


def info_nce(pred: Tensor, target: Tensor, temperature: float = 1.0, similarity: str = "dot") -> Tensor:
    """InfoNCE (CPC): −mean_i log softmax_j(s(pred_i, target_j)/τ)[i]; negatives = other rows."""
    if similarity == "cosine":
        pred, target = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    elif similarity != "dot":
        raise ValueError(f"similarity must be one of ['dot', 'cosine'], got {similarity!r}")
    logits = pred @ target.T / temperature
    return F.cross_entropy(logits, torch.arange(pred.shape[0], device=pred.device))


class SimCLRObjective(Objective):
    """SimCLR NT-Xent baseline (temperature τ)."""

    name = "simclr"

    def __init__(self, temperature: float = 0.2, float_parts: bool = True) -> None:
        self.temperature = float(temperature)
        self.float_parts = bool(float_parts)

    def __call__(self, z1: Tensor, z2: Tensor, **kwargs) -> tuple[Tensor, dict]:
        loss = nt_xent(z1, z2, self.temperature)
        with torch.no_grad():
            a = F.normalize(z1, dim=-1)
            b = F.normalize(z2, dim=-1)
            align = (a * b).sum(-1).mean() / self.temperature
        # NT-Xent = −alignment + uniformity (mean log-sum-exp over candidates)
        parts = {"loss": loss, "alignment": align, "uniformity": loss.detach() + align}
        return loss, _pack(parts, self.float_parts)


class VICRegObjective(Objective):
    """VICReg baseline (25/25/1, per-view covariance) or the authors' no-MI variant
    (``vicreg2``: 25/17.5/0.75 with pooled covariance)."""

    name = "vicreg"

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        cov_mode: str = "per_view",
        float_parts: bool = True,
    ) -> None:
        if cov_mode not in ("per_view", "pooled"):
            raise ValueError(f"cov_mode must be one of ['per_view', 'pooled'], got {cov_mode!r}")
        self.sim_weight = float(sim_weight)
        self.var_weight = float(var_weight)
        self.cov_weight = float(cov_weight)
        self.cov_mode = cov_mode
        self.float_parts = bool(float_parts)

    def __call__(self, z1: Tensor, z2: Tensor, **kwargs) -> tuple[Tensor, dict]:
        loss, inv, var, cov = vicreg_loss(
            z1, z2, self.sim_weight, self.var_weight, self.cov_weight, cov_mode=self.cov_mode
        )
        parts = {"loss": loss, "alignment": -self.sim_weight * inv, "invariance": inv,
                 "variance": var, "covariance": cov,
                 "entropy": -(self.var_weight * var + self.cov_weight * cov)}
        return loss, _pack(parts, self.float_parts)


class StopgradObjective(Objective):
    """BYOL / SimSiam-style predictor + stopgrad loss (App. A.6.2).

    Call ``obj(z1, z2, p1=None, p2=None)`` with predictor outputs p_v (identity if None).
    ``kind="simsiam"``: −½[cos(p1, sg z2) + cos(p2, sg z1)];
    ``kind="byol"``: Σ_v mean(2 − 2 cos(p_v, sg z_other)).
    No explicit entropy term: collapse is avoided only by the training dynamics, so a
    collapsed batch does *not* score worse under this loss.
    """

    name = "stopgrad"

    def __init__(self, kind: str = "simsiam", float_parts: bool = True) -> None:
        if kind not in ("simsiam", "byol"):
            raise ValueError(f"kind must be one of ['simsiam', 'byol'], got {kind!r}")
        self.kind = kind
        self.float_parts = bool(float_parts)

    def __call__(self, z1: Tensor, z2: Tensor, p1: Tensor | None = None, p2: Tensor | None = None,
                 **kwargs) -> tuple[Tensor, dict]:
        p1 = z1 if p1 is None else p1
        p2 = z2 if p2 is None else p2
        c1 = F.cosine_similarity(p1, z2.detach(), dim=-1).mean()
        c2 = F.cosine_similarity(p2, z1.detach(), dim=-1).mean()
        loss = -0.5 * (c1 + c2) if self.kind == "simsiam" else (2 - 2 * c1) + (2 - 2 * c2)
        return loss, _pack({"loss": loss, "alignment": 0.5 * (c1 + c2)}, self.float_parts)


class InfoNCEObjective(Objective):
    """InfoNCE / CPC baseline: ``obj(pred, target)``; positives on the diagonal."""

    name = "infonce"

    def __init__(self, temperature: float = 1.0, similarity: str = "dot", float_parts: bool = True) -> None:
        if similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be one of ['dot', 'cosine'], got {similarity!r}")
        self.temperature = float(temperature)
        self.similarity = similarity
        self.float_parts = bool(float_parts)

    def __call__(self, z1: Tensor, z2: Tensor, **kwargs) -> tuple[Tensor, dict]:
        loss = info_nce(z1, z2, self.temperature, self.similarity)
        return loss, _pack({"loss": loss}, self.float_parts)
