"""Linear ICA as latent distribution matching (paper Sec. 3.1, Eq. 3, Fig. 2).

Data X = A S are unmixed by Y = W X, and W maximises the LDM objective (paper Eq. 3)

    L(W) = mean_n sum_i log p_i(y_i[n]) + log|det W|,

i.e. the log-likelihood of the latents under a factorised source model (alignment) plus the
change-of-variables / entropy term (uniformity). The data-entropy term of Eq. 3 is constant
and omitted. Two set-ups of the paper are covered:

* natural images: full 2x2 ``W``, generalised-Gaussian source model with beta = 4
  (sub-Gaussian, as in the official code: log p(y) = -20 |y|^4 + const);
* Ornstein--Uhlenbeck sources: rotation ``W = expm(K)``, ``K`` skew-symmetric, zero-mean
  Gaussian source model with the sources' known stationary variances v_i.

Deliberate differences from the official scripts (reference spec the authors' code Sec. 6), which
are available as named options:

* ``logdet="slogdet"`` (default) computes log|det W| exactly; ``logdet="gram_eps"`` reproduces
  the code's 0.5 * log det(W W^T + 1e-8), with 1e-8 added to *every* entry.
* The Gaussian log-density uses -y^2 / (2 v) - 0.5 log(2 pi v) (default ``energy="variance"``);
  ``energy="std"`` reproduces the code's unnormalised -y^2 / sqrt(v).
* Optimiser: full-batch L-BFGS (strong-Wolfe line search, float64) instead of 20 000 plain
  SGD steps. It reaches the optimum in ~20 iterations (0.3-5 s on a shared 2-core CPU), see
  :func:`fit_unmixing`. ``optimizer="sgd"`` with ``lr=0.003, n_iter=20_000`` is the official
  images setting, ``lr=0.01, n_iter=1000`` the official OU setting.

Torch (float64) is used for the objective and the optimisation, numpy at the interface.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = [
    "FitResult",
    "GaussianSourceModel",
    "GeneralizedGaussianSourceModel",
    "SourceModel",
    "align_to_sources",
    "amari_index",
    "fit_unmixing",
    "generalized_gaussian_log_density",
    "ldm_ica_objective",
    "make_source_model",
    "matched_correlations",
    "mix",
    "mixing_matrix",
    "rotation_from_skew",
]

DTYPE = torch.float64

#: Scale of the official image source model: -20 |y|^4 = -(|y| / s)^4 with s = 20^(-1/4) ~ 0.473.
OFFICIAL_GG_SCALE: float = 20.0 ** -0.25


# --------------------------------------------------------------------------------------------
# Mixing
# --------------------------------------------------------------------------------------------
def mixing_matrix(kind: str = "symmetric", *, a: float = 0.7, angle_deg: float = 45.0) -> np.ndarray:
    """2x2 mixing matrix A of the Fig. 2 experiments.

    ``kind="symmetric"``: [[1, a], [a, 1]] (images, a = 0.7);
    ``kind="rotation"``: counter-clockwise rotation by ``angle_deg`` degrees
    [[cos, -sin], [sin, cos]] (OU sources, 45 degrees).
    """
    if kind == "symmetric":
        return np.array([[1.0, a], [a, 1.0]])
    if kind == "rotation":
        phi = math.radians(angle_deg)
        c, s = math.cos(phi), math.sin(phi)
        return np.array([[c, -s], [s, c]])
    raise ValueError(f"unknown mixing kind {kind!r}; use 'symmetric' or 'rotation'")


def mix(S: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Mixed data X = A S with every row centred to zero mean, shape ``(d, N)``."""
    S = np.asarray(S, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if S.ndim != 2 or A.shape != (S.shape[0], S.shape[0]):
        raise ValueError(f"expected S (d, N) and A (d, d); got {S.shape} and {A.shape}")
    X = A @ S
    return X - X.mean(axis=1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Source models
# --------------------------------------------------------------------------------------------
def generalized_gaussian_log_density(y: Any, beta: float = 4.0, scale: float = 1.0) -> Any:
    """Normalised generalised-Gaussian log-density, elementwise (numpy array or torch tensor).

    log p(y) = log(beta) - log(2 scale Gamma(1/beta)) - (|y| / scale)^beta.
    beta = 2 is a Gaussian with variance scale^2 / 2, beta = 1 a Laplacian, beta > 2 is
    sub-Gaussian (flatter than a Gaussian), beta -> inf approaches a uniform on [-scale, scale].
    """
    if beta <= 0 or scale <= 0:
        raise ValueError("beta and scale must be positive")
    log_norm = math.log(beta) - math.log(2.0 * scale) - math.lgamma(1.0 / beta)
    return log_norm - (abs(y) / scale) ** beta


class SourceModel(Protocol):
    """Factorised latent model: ``log_density(Y)`` returns log p_i(Y[i, n]) elementwise."""

    def log_density(self, Y: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class GeneralizedGaussianSourceModel:
    """i.i.d. generalised-Gaussian sources (same beta and scale for every source).

    Defaults are the official image setting: beta = 4 and scale = 20^(-1/4), i.e.
    log p(y) = -20 y^4 + const.
    """

    beta: float = 4.0
    scale: float = OFFICIAL_GG_SCALE

    def log_density(self, Y: torch.Tensor) -> torch.Tensor:
        return generalized_gaussian_log_density(Y, self.beta, self.scale)


@dataclass(frozen=True)
class GaussianSourceModel:
    """Independent zero-mean Gaussian sources with known variances v_i (one per row of Y).

    ``energy="variance"`` (default, correct): log p_i(y) = -y^2 / (2 v_i) - 0.5 log(2 pi v_i).
    ``energy="std"``: the official code's quirk -y^2 / sqrt(v_i) (unnormalised).
    """

    variances: tuple[float, ...]
    energy: Literal["variance", "std"] = "variance"

    def __post_init__(self) -> None:
        if any(v <= 0 for v in self.variances):
            raise ValueError("variances must be positive")
        if self.energy not in ("variance", "std"):
            raise ValueError("energy must be 'variance' or 'std'")

    def log_density(self, Y: torch.Tensor) -> torch.Tensor:
        v = torch.as_tensor(self.variances, dtype=Y.dtype, device=Y.device).reshape(-1, 1)
        if v.shape[0] != Y.shape[0]:
            raise ValueError(f"{v.shape[0]} variances for {Y.shape[0]} latent rows")
        if self.energy == "std":
            return -(Y**2) / torch.sqrt(v)
        return -(Y**2) / (2.0 * v) - 0.5 * torch.log(2.0 * math.pi * v)


def make_source_model(name: str, **kwargs: Any) -> SourceModel:
    """Build a source model by name: ``"generalized_gaussian"`` (``beta``, ``scale``) or
    ``"gaussian"`` (``variances``, ``energy``)."""
    if name in ("generalized_gaussian", "gg"):
        return GeneralizedGaussianSourceModel(**kwargs)
    if name == "gaussian":
        if "variances" not in kwargs or kwargs["variances"] is None:
            raise ValueError("the gaussian source model needs `variances`")
        kwargs["variances"] = tuple(float(v) for v in kwargs["variances"])
        return GaussianSourceModel(**kwargs)
    raise ValueError(f"unknown source model {name!r}; use 'generalized_gaussian' or 'gaussian'")


# --------------------------------------------------------------------------------------------
# Objective (paper Eq. 3)
# --------------------------------------------------------------------------------------------
def _as_tensor(a: Any) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.to(DTYPE)
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def ldm_ica_objective(
    W: Any,
    X: Any,
    source_model: SourceModel | str,
    *,
    logdet: Literal["slogdet", "gram_eps"] = "slogdet",
    **source_kwargs: Any,
) -> torch.Tensor:
    """LDM objective of linear ICA (paper Eq. 3), to be *maximised*; returns a torch scalar.

    L(W) = (1/N) sum_n sum_i log p_i((W X)[i, n]) + log|det W|.
    ``W`` (d, d) and ``X`` (d, N) may be numpy arrays or tensors (gradients flow through a
    tensor ``W``). ``source_model`` is a :class:`SourceModel` or a name for
    :func:`make_source_model` (with ``source_kwargs``). ``logdet="gram_eps"`` replaces
    log|det W| by the official code's 0.5 log det(W W^T + 1e-8 * ones).
    """
    if isinstance(source_model, str):
        source_model = make_source_model(source_model, **source_kwargs)
    W_t, X_t = _as_tensor(W), _as_tensor(X)
    Y = W_t @ X_t
    log_lik = source_model.log_density(Y).sum(dim=0).mean()
    if logdet == "slogdet":
        log_det = torch.linalg.slogdet(W_t)[1]
    elif logdet == "gram_eps":
        log_det = 0.5 * torch.logdet(W_t @ W_t.T + 1e-8)
    else:
        raise ValueError("logdet must be 'slogdet' or 'gram_eps'")
    return log_lik + log_det


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    """Result of :func:`fit_unmixing`.

    ``W``: unmixing matrix (d, d); ``history``: (iteration, objective) pairs on the fitting data,
    starting with iteration 0 (the initial W); ``params``: the raw parameters (the full W, or
    the skew-symmetric generator entries for the rotation parametrisation).
    """

    W: np.ndarray
    history: list[tuple[int, float]]
    parametrization: str = "full"
    optimizer: str = "lbfgs"
    n_iter: int = 0
    converged: bool = False
    wall_time_s: float = 0.0
    params: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def objective(self) -> float:
        """Final objective value."""
        return self.history[-1][1]


def rotation_from_skew(params: torch.Tensor, d: int) -> torch.Tensor:
    """Rotation W = expm(K) with K skew-symmetric, upper triangle of K = ``params``.

    For d = 2 and params = [phi]: W = [[cos phi, sin phi], [-sin phi, cos phi]].
    """
    iu = torch.triu_indices(d, d, offset=1)
    K = torch.zeros(d, d, dtype=params.dtype)
    K = K.index_put((iu[0], iu[1]), params)
    return torch.linalg.matrix_exp(K - K.T)


_DEFAULTS: dict[str, dict[str, float]] = {
    # n_iter, lr per optimiser; lr unused by L-BFGS beyond its first step scale (lr=1 standard)
    "lbfgs": {"n_iter": 500, "lr": 1.0},
    "adam": {"n_iter": 3000, "lr": 0.01},
    "sgd": {"n_iter": 20_000, "lr": 0.003},
}


def fit_unmixing(
    X: np.ndarray,
    source_model: str = "generalized_gaussian",
    *,
    parametrization: Literal["full", "rotation"] | None = None,
    variances: Sequence[float] | None = None,
    beta: float = 4.0,
    scale: float = OFFICIAL_GG_SCALE,
    energy: Literal["variance", "std"] = "variance",
    logdet: Literal["slogdet", "gram_eps"] = "slogdet",
    optimizer: Literal["lbfgs", "adam", "sgd"] = "lbfgs",
    n_iter: int | None = None,
    lr: float | None = None,
    n_samples: int | None = None,
    tol: float = 1e-12,
    init: Literal["identity", "random"] = "identity",
    seed: int = 0,
    num_threads: int | None = 1,
) -> FitResult:
    """Unmixing W that maximises the LDM objective (paper Eq. 3) on data X (d, N).

    ``source_model``: ``"generalized_gaussian"`` (images; ``beta``, ``scale``) or
    ``"gaussian"`` (OU; requires ``variances``, ``energy``). ``parametrization`` defaults to
    ``"full"`` for the generalised Gaussian and ``"rotation"`` (W = expm(K), K skew) for the
    Gaussian model, as in the paper. Init: ``"identity"`` (official) for the full W, the skew
    generator entries ~ U(0, 0.01) (official) for the rotation; ``init="random"`` perturbs the
    full W as I + 0.1 N(0, 1). ``seed`` drives the init and the pixel subsample.

    Optimiser (default ``"lbfgs"``): full-batch L-BFGS with strong-Wolfe line search, one
    iteration per history entry, stopped when the objective changes by less than
    ``tol * max(1, |L|)`` or the gradient max-norm falls below 1e-9. On the 120 000-pixel
    image data it converges in ~20 iterations (0.3 s on an idle 2-core CPU, up to ~5 s when
    the cores are shared) versus 20 000 SGD steps (~4 min) in the official code; the OU fit takes
    ~5 iterations (< 0.1 s). SGD approaches the same optimum (objective 0.80 after 2500 steps
    vs 0.914 for L-BFGS on the default images). ``"adam"`` and ``"sgd"``
    run a fixed ``n_iter`` full-batch steps (defaults: adam 3000 x lr 0.01; sgd 20 000 x
    lr 0.003, the official images setting). ``n_samples`` optionally fits on a random subset
    of columns (default: all).

    ``num_threads`` (default 1) temporarily sets ``torch.set_num_threads`` during the fit and
    restores it afterwards: the tensors are tiny (d x N with d = 2), and on a shared 2-core
    machine intra-op threading made each evaluation 5-10x *slower*. ``None`` leaves it alone.
    """
    if optimizer not in _DEFAULTS:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError("X must have shape (d, N)")
    d, N = X.shape
    model = make_source_model(
        source_model,
        **(
            {"variances": variances, "energy": energy}
            if source_model == "gaussian"
            else {"beta": beta, "scale": scale}
        ),
    )
    if parametrization is None:
        parametrization = "rotation" if source_model == "gaussian" else "full"
    if parametrization not in ("full", "rotation"):
        raise ValueError("parametrization must be 'full' or 'rotation'")
    n_iter = int(n_iter if n_iter is not None else _DEFAULTS[optimizer]["n_iter"])
    lr = float(lr if lr is not None else _DEFAULTS[optimizer]["lr"])

    gen = torch.Generator().manual_seed(seed)
    if n_samples is not None and n_samples < N:
        idx = torch.randperm(N, generator=gen)[:n_samples].numpy()
        X = X[:, np.sort(idx)]
    X_t = torch.as_tensor(X)

    if parametrization == "full":
        W0 = torch.eye(d, dtype=DTYPE)
        if init == "random":
            W0 = W0 + 0.1 * torch.randn(d, d, generator=gen, dtype=DTYPE)
        params = W0.clone().requires_grad_(True)

        def build(p: torch.Tensor) -> torch.Tensor:
            return p
    else:
        p0 = 0.01 * torch.rand(d * (d - 1) // 2, generator=gen, dtype=DTYPE)
        params = p0.clone().requires_grad_(True)

        def build(p: torch.Tensor) -> torch.Tensor:
            return rotation_from_skew(p, d)

    def objective() -> torch.Tensor:
        return ldm_ica_objective(build(params), X_t, model, logdet=logdet)

    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [params], lr=lr, max_iter=1, max_eval=30,  # max_eval > 1: room for the line search
            history_size=20, line_search_fn="strong_wolfe",
            tolerance_grad=1e-10, tolerance_change=1e-14,
        )
    elif optimizer == "adam":
        opt = torch.optim.Adam([params], lr=lr)
    else:
        opt = torch.optim.SGD([params], lr=lr)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -objective()
        loss.backward()
        return loss

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _run(opt, closure, objective, params, build, optimizer, n_iter, tol,
                    parametrization)
    finally:
        if num_threads is not None:
            torch.set_num_threads(old_threads)


def _run(
    opt: torch.optim.Optimizer,
    closure: Any,
    objective: Any,
    params: torch.Tensor,
    build: Any,
    optimizer: str,
    n_iter: int,
    tol: float,
    parametrization: str,
) -> FitResult:
    """Optimisation loop of :func:`fit_unmixing` (maximises ``objective``)."""
    t0 = time.perf_counter()
    with torch.no_grad():
        prev = float(objective())
    history: list[tuple[int, float]] = [(0, prev)]
    converged = False
    it = 0
    for it in range(1, n_iter + 1):
        if optimizer == "lbfgs":
            opt.step(closure)
        else:
            closure()
            opt.step()
        with torch.no_grad():
            cur = float(objective())
        if not math.isfinite(cur):
            raise FloatingPointError(f"objective became {cur} at iteration {it}")
        history.append((it, cur))
        if optimizer == "lbfgs":
            grad = params.grad
            small_grad = grad is not None and float(grad.abs().max()) < 1e-9
            if abs(cur - prev) < tol * max(1.0, abs(cur)) or small_grad:
                converged = True
                break
        prev = cur
    wall = time.perf_counter() - t0
    with torch.no_grad():
        W = build(params).detach().numpy().copy()
    return FitResult(
        W=W,
        history=history,
        parametrization=parametrization,
        optimizer=optimizer,
        n_iter=it,
        converged=converged,
        wall_time_s=wall,
        params=params.detach().numpy().copy(),
    )


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def _abs_corr(S: np.ndarray, Y: np.ndarray) -> np.ndarray:
    S = np.asarray(S, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if S.ndim != 2 or Y.shape != S.shape:
        raise ValueError(f"S and Y must both have shape (d, N); got {S.shape} and {Y.shape}")
    d = S.shape[0]
    C = np.corrcoef(S, Y)[:d, d:]
    return C


def _match(S: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    C = _abs_corr(S, Y)
    rows, cols = linear_sum_assignment(-np.abs(C))
    perm = cols[np.argsort(rows)]  # perm[i] = row of Y matched to source i
    signs = np.sign(C[np.arange(C.shape[0]), perm])
    signs[signs == 0] = 1.0
    return perm, signs


def matched_correlations(S: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """|corr(S_i, Y_pi(i))| per source i after the best permutation pi (and sign).

    pi maximises sum_i |corr(S_i, Y_pi(i))| (Hungarian algorithm). Returns shape (d,).
    """
    C = _abs_corr(S, Y)
    perm, _ = _match(S, Y)
    return np.abs(C[np.arange(C.shape[0]), perm])


def align_to_sources(S: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Recovered signals Y reordered and sign-flipped to match the sources S row by row.

    Row i of the result is sign_i * Y[pi(i)] with the permutation of
    :func:`matched_correlations` and sign_i making corr(S_i, result_i) positive.
    """
    perm, signs = _match(S, Y)
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
