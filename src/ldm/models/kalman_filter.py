"""Batched, differentiable Kalman filter used as the latent predictor of predictive LDM (paper Sec. 6.1).

Model (the authors' code-3.3): hidden state h in R^S, pseudo-observations (encodings) z in R^L read out by
the fixed D = [I_L 0],

    h_t = A (h_{t-1} - b) + b + eps_t,  eps_t ~ N(0, Sigma_A(t)),     z_t = D h_t + eta_t,  eta_t ~ N(0, Sigma_D(t)),

with a learned full transition A (spectral radius kept <= ``rho_max`` by a differentiable rescale in the
forward pass), offset b, diagonal process noise ``Sigma_A = e^s diag(exp l_A) (+ input-driven term)`` and
observation noise ``Sigma_D = e^s I`` (fixed), ``e^s diag(g(x_t) + 1e-5)`` (inferred from the frame by a
variance network, Fig. A4), ``e^s (softplus(MLP(x_t)) + 1e-5)`` (``input``: inferred from a non-image input
such as a bin of spike counts, Sec. 6.1 hippocampus) or ``e^s exp(MLP(h_{t-1}))`` (state-dependent). One scalar s scales both.

The filter runs on whole batches of sequences as tensors ([B, T, L] in, [B, T, S] out). Gains and
log-determinants use Cholesky factorisations (``cholesky_solve``), never explicit inverses. When neither
covariance depends on the filter's own trajectory, the covariance recursion (P, S_e, K) is computed once
per step for the batch -- once in total if the covariances are input-independent -- and the mean recursion
is a single ``addmm``/``baddbmm`` per step. Process noise driven by recent innovations (the jump configs)
and state-dependent observation noise need the interleaved recursion (:meth:`KalmanFilter._interleaved`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

OBS_NOISE_MODES = ("fixed", "inferred", "input", "state")
PROCESS_NOISE_MODES = ("fixed", "error", "observation+prediction")


def spectral_radius(a: Tensor) -> Tensor:
    """Largest eigenvalue modulus of a square matrix (differentiable through ``eigvals``)."""
    return torch.linalg.eigvals(a).abs().max()


class StableTransition(nn.Module):
    """Transition matrix A = W * f(rho(W)) / rho(W) with a smooth saturating radius map f.

    f(r) = r for r <= r0 (A = W exactly) and f(r) = r0 + (rho_max - r0) tanh((r - r0) / (rho_max - r0))
    above: C^1, strictly increasing, f(r) < rho_max. So rho(A) < rho_max always, the raw parameter W is
    never edited, and -- unlike a hard rescale ``W * rho_max / rho(W)``, whose gradient has no radial
    component beyond the boundary -- the loss can always pull the spectral radius back inside. (With the
    hard rescale, W drifts outside and A sticks at rho_max; for the predictive-stopgrad loss an
    over-unit predictor shrinks the encodings and the representation collapses.)
    ``soft_start=None`` gives the hard rescale (for comparison). Initialisation as in the official code:
    W = I + 0.1 N(0, 1), divided by 1.1 rho(W).
    """

    def __init__(self, dim: int, rho_max: float = 1.02, generator: Optional[torch.Generator] = None,
                 soft_start: Optional[float] = 0.95) -> None:
        super().__init__()
        w = torch.eye(dim) + 0.1 * torch.randn(dim, dim, generator=generator)
        w = w / (1.1 * spectral_radius(w))
        self.weight = nn.Parameter(w)
        self.rho_max = float(rho_max)
        if soft_start is not None and not 0 < soft_start < rho_max:
            raise ValueError(f"kalman: soft_start must be in (0, rho_max={rho_max}), got {soft_start}")
        self.soft_start = None if soft_start is None else float(soft_start)

    def radius_map(self, r: Tensor) -> Tensor:
        """f(r): the spectral radius of A as a function of the spectral radius r of W."""
        if self.soft_start is None:
            return torch.clamp(r, max=self.rho_max)
        r0, width = self.soft_start, self.rho_max - self.soft_start
        return torch.where(r <= r0, r, r0 + width * torch.tanh((r - r0) / width))

    def forward(self) -> Tensor:
        rho = spectral_radius(self.weight)
        return self.weight * (self.radius_map(rho) / rho)


class PositiveLinear(nn.Module):
    """Linear map with non-negative weights |W| (used by the variance network)."""

    def __init__(self, n_in: int, n_out: int, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        w = (0.5 + torch.rand(n_out, n_in, generator=generator)) / n_in  # mean 1/n_in, symmetry broken
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(x, self.weight.abs(), self.bias)


class VarianceNet(nn.Module):
    """'Inferred sigmas' network g(x) >= 0 (Fig. A4): gain -> squared deviation from the frame mean ->
    positive linear -> ReLU -> positive linear -> ReLU. At initialisation g(x) ~ the frame's pixel variance,
    a proxy of the pixel-noise level."""

    def __init__(self, input_dim: int, latent_dim: int, hidden_dim: int = 100,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(input_dim))
        self.l1 = PositiveLinear(input_dim, hidden_dim, generator)
        self.l2 = PositiveLinear(hidden_dim, latent_dim, generator)

    def forward(self, x: Tensor) -> Tensor:
        y = self.gain * x
        y = (y - y.mean(-1, keepdim=True)) ** 2
        return torch.relu(self.l2(torch.relu(self.l1(y))))


class InputVarianceNet(nn.Module):
    """Input-dependent observation variance for non-image inputs (spike counts; paper Sec. 6.1 hippocampus):
    g(x) = softplus(W2 ReLU(W1 log(1 + x) + b1) + b2) >= 0, one variance per latent dimension. log(1 + x)
    tames the skewed count distribution; the output bias starts at softplus^-1(1) so that g ~ 1 at init."""

    def __init__(self, input_dim: int, latent_dim: int, hidden_dim: int = 100,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.l1 = nn.Linear(input_dim, hidden_dim)
        self.l2 = nn.Linear(hidden_dim, latent_dim)
        with torch.no_grad():
            bound = 1.0 / hidden_dim ** 0.5
            self.l2.weight.uniform_(-0.1 * bound, 0.1 * bound, generator=generator)
            self.l2.bias.fill_(0.5413)  # softplus(0.5413) = 1

    def forward(self, x: Tensor) -> Tensor:
        y = torch.log1p(torch.clamp(x, min=0.0))
        return torch.nn.functional.softplus(self.l2(torch.relu(self.l1(y))))


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))


def spd_solve(Se: Tensor, Y: Tensor) -> Tensor:
    """Solve S_e X = Y for symmetric positive definite S_e [..., L, L] (Y [..., L, K]) via Cholesky.

    For L <= 2 the Cholesky factorisation and the two triangular solves are written out elementwise
    (identical arithmetic, far fewer autograd nodes for batches of tiny matrices); otherwise
    ``torch.linalg.cholesky`` + ``torch.cholesky_solve``.
    """
    L = Se.shape[-1]
    if L == 1:
        return Y / Se
    if L == 2:
        a, b, c = Se[..., 0, 0:1], Se[..., 1, 0:1], Se[..., 1, 1:2]
        l11 = a.sqrt()
        l21 = b / l11
        l22 = (c - l21 * l21).sqrt()
        y1, y2 = Y[..., 0, :], Y[..., 1, :]
        u1 = y1 / l11
        u2 = (y2 - l21 * u1) / l22
        x2 = u2 / l22
        x1 = (u1 - l21 * x2) / l11
        return torch.stack([x1, x2], -2)
    return torch.cholesky_solve(Y, torch.linalg.cholesky(Se))


@dataclass
class FilterOutput:
    """Everything the filter computes. Covariance tensors have a leading dim of 1 (shared by the batch)
    or B. Shapes: pred_mean [B,T,L], innov_cov [Bc,T,L,L], pred_cov [Bc,T,L,L] (= D P^- D^T, without
    Sigma_D), obs_var [Bc,T,L] (diag Sigma_D), filt_mean [B,T,S], filt_cov [Bc,T,S,S], prior_mean
    [B,T,S] (h^-_t), process_var [Bc,T,S] (diag Sigma_A)."""

    pred_mean: Tensor
    innov_cov: Tensor
    pred_cov: Tensor
    obs_var: Tensor
    filt_mean: Tensor
    filt_cov: Tensor
    prior_mean: Tensor
    process_var: Tensor


class KalmanFilter(nn.Module):
    """Learned linear-Gaussian latent dynamics with a differentiable, batched Kalman filter (Eq. 15).

    Parameters: ``transition`` (A), ``offset`` (b), ``log_process`` (l_A), ``log_scale`` (s); optional
    ``obs_net`` (inferred / state-dependent Sigma_D) and ``process_net`` (innovation-driven Sigma_A).
    """

    def __init__(
        self,
        state_dim: int,
        latent_dim: int,
        obs_noise: str = "fixed",
        process_noise: str = "fixed",
        input_dim: int = 100,
        pred_steps: int = 4,
        rho_max: float = 1.02,
        rho_soft_start: Optional[float] = 0.95,
        init_log_scale: float = 1.0,
        obs_var_floor: float = 1e-5,
        jitter: float = 1e-6,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        super().__init__()
        if latent_dim > state_dim:
            raise ValueError(f"kalman: latent_dim ({latent_dim}) must be <= state_dim ({state_dim})")
        if obs_noise not in OBS_NOISE_MODES:
            raise ValueError(f"kalman: obs_noise must be one of {OBS_NOISE_MODES}, got {obs_noise!r}")
        if process_noise not in PROCESS_NOISE_MODES:
            raise ValueError(f"kalman: process_noise must be one of {PROCESS_NOISE_MODES}, got {process_noise!r}")
        self.S, self.L = int(state_dim), int(latent_dim)
        self.obs_noise, self.process_noise = obs_noise, process_noise
        self.pred_steps = int(pred_steps)
        self.obs_var_floor = float(obs_var_floor)
        self.jitter = float(jitter)
        self.transition = StableTransition(self.S, rho_max, generator, soft_start=rho_soft_start)
        self.offset = nn.Parameter(torch.zeros(self.S))
        self.log_process = nn.Parameter(torch.zeros(self.S))
        self.log_scale = nn.Parameter(torch.tensor(float(init_log_scale)))
        self.register_buffer("D", torch.eye(self.L, self.S))
        self.obs_net: Optional[nn.Module] = None
        self.process_net: Optional[nn.Module] = None
        if obs_noise == "inferred":
            self.obs_net = VarianceNet(input_dim, self.L, generator=generator)
        elif obs_noise == "input":
            self.obs_net = InputVarianceNet(input_dim, self.L, generator=generator)
        elif obs_noise == "state":
            self.obs_net = _mlp(self.S, 100, self.L)
        if process_noise != "fixed":
            n_in = self.pred_steps * (self.L if process_noise == "error" else 2 * self.L)
            self.process_net = nn.Sequential(_mlp(n_in, 20, self.S), nn.Sigmoid())

    # ----------------------------------------------------------------------------------------------
    def fast_parameters(self) -> list[nn.Parameter]:
        """A, b, l_A and s: the parameters learned on the fast timescale (x100 learning rate)."""
        return [self.transition.weight, self.offset, self.log_process, self.log_scale]

    @property
    def shared_covariance(self) -> bool:
        """True when P_t, S_e(t), K_t are the same for every sequence (fixed Sigma_A, Sigma_D)."""
        return self.obs_noise == "fixed" and self.process_noise == "fixed"

    def observation_variance(self, frames: Optional[Tensor], T: int) -> Tensor:
        """diag Sigma_D(t) as [Bc, T, L] for the modes that do not depend on the filter state."""
        scale = self.log_scale.exp()
        if self.obs_noise == "fixed":
            return (scale * torch.ones(1, T, self.L, dtype=scale.dtype, device=scale.device))
        if self.obs_noise in ("inferred", "input"):
            if frames is None:
                raise ValueError(f"kalman: obs_noise={self.obs_noise!r} needs the inputs (`frames`: the video frames or "
                                 "spike counts the noise is computed from)")
            return scale * (self.obs_net(frames) + self.obs_var_floor)
        raise RuntimeError("state-dependent observation noise is computed inside the recursion")

    def forward(self, z: Tensor, frames: Optional[Tensor] = None) -> FilterOutput:
        """Filter encodings z [B, T, L] (frames [B, T, P] for inferred Sigma_D); prior h = 0, P = I."""
        if z.dim() != 3 or z.shape[-1] != self.L:
            raise ValueError(f"kalman: z must be [B, T, {self.L}], got {tuple(z.shape)}")
        A = self.transition()
        if self.obs_noise == "state" or self.process_noise != "fixed":
            return self._interleaved(z, A, frames)
        T = z.shape[1]
        R = self.observation_variance(frames, T)  # [Bc, T, L]
        Q = (self.log_scale.exp() * self.log_process.exp()).expand(R.shape[0], T, self.S)
        return self._precomputed(z, A, Q, R, constant=self.obs_noise == "fixed")

    # ----------------------------------------------------------------------------------------------
    def _precomputed(self, z: Tensor, A: Tensor, Q: Tensor, R: Tensor, constant: bool = False) -> FilterOutput:
        """Covariance recursion first (batch-free when Bc = 1), then the affine mean recursion
        h_t = M_t h_{t-1} + u_t with M_t = (I - K_t D) A and u_t = (I - K_t D) c + K_t z_t, c = (I - A) b.
        ``constant``: Q and R are the same at every step (the diagonal matrices are built once)."""
        B, T, L = z.shape
        S = self.S
        Bc = R.shape[0]
        eye_s = torch.eye(S, dtype=z.dtype, device=z.device)
        Pm_l, Se_l, KT_l, P_l = [], [], [], []
        if Bc == 1:
            # one covariance recursion for the whole batch, on plain 2-D matrices
            AT = A.T
            P = eye_s
            Qd, Rd = torch.diag(Q[0, 0]), torch.diag(R[0, 0])
            for t in range(T):
                if not constant:
                    Qd, Rd = torch.diag(Q[0, t]), torch.diag(R[0, t])
                Pm = torch.addmm(Qd, A @ P, AT)
                PmL = Pm[:L]
                Se = PmL[:, :L] + Rd
                KT = torch.cholesky_solve(PmL, torch.linalg.cholesky(Se))  # K^T = S_e^{-1} D P^-
                P = torch.addmm(Pm, KT.T, PmL, alpha=-1.0)
                Pm_l.append(Pm)
                Se_l.append(Se)
                KT_l.append(KT)
                P_l.append(P)
            Pm_all, Se_all, KT_all, P_all = (torch.stack(x, 0).unsqueeze(0) for x in (Pm_l, Se_l, KT_l, P_l))
        else:
            P = eye_s.expand(Bc, S, S)
            for t in range(T):
                Pm = A @ P @ A.T + torch.diag_embed(Q[:, t])
                Se = Pm[:, :L, :L] + torch.diag_embed(R[:, t])
                KT = spd_solve(Se, Pm[:, :L, :])  # K^T = S_e^{-1} D P^-   [Bc, L, S]
                P = Pm - KT.mT @ Pm[:, :L, :]
                P = 0.5 * (P + P.mT)  # per-sequence covariances: keep them symmetric in float32
                Pm_l.append(Pm)
                Se_l.append(Se)
                KT_l.append(KT)
                P_l.append(P)
            Pm_all = torch.stack(Pm_l, 1)  # [Bc,T,S,S]
            Se_all = torch.stack(Se_l, 1)
            KT_all = torch.stack(KT_l, 1)  # [Bc,T,L,S]
            P_all = torch.stack(P_l, 1)
        c = self.offset - self.offset @ A.T  # (I - A) b as a row vector
        # I - K D applied to row vectors: v (I - K D)^T = v - (v D^T) K^T = v - v[:, :L] K^T
        IKD_T = eye_s - torch.nn.functional.pad(KT_all, (0, 0, 0, S - L))  # [Bc,T,S,S] = (I - K D)^T
        MT = A.T @ IKD_T  # (M_t)^T = A^T (I - K D)^T
        u = c @ IKD_T + z.unsqueeze(-2).matmul(KT_all).squeeze(-2) if Bc > 1 else (
            (c @ IKD_T[0]).unsqueeze(0) + torch.einsum("btl,tls->bts", z, KT_all[0]))
        h = z.new_zeros(B, S)
        hs = []
        if Bc == 1:
            MT0 = MT[0]
            for t in range(T):
                h = torch.addmm(u[:, t], h, MT0[t])
                hs.append(h)
        else:
            for t in range(T):
                h = torch.baddbmm(u[:, t].unsqueeze(1), h.unsqueeze(1), MT[:, t]).squeeze(1)
                hs.append(h)
        filt = torch.stack(hs, 1)  # [B,T,S]
        prev = torch.cat([z.new_zeros(B, 1, S), filt[:, :-1]], 1)
        prior = prev @ A.T + c
        return FilterOutput(
            pred_mean=prior[..., :L], innov_cov=Se_all, pred_cov=Pm_all[..., :L, :L], obs_var=R,
            filt_mean=filt, filt_cov=P_all, prior_mean=prior, process_var=Q,
        )

    # ----------------------------------------------------------------------------------------------
    def _interleaved(self, z: Tensor, A: Tensor, frames: Optional[Tensor]) -> FilterOutput:
        """General recursion with per-sequence covariances, for Sigma_D(h_{t-1}) or Sigma_A driven by
        the recent (detached) encodings/predictions or innovations over ``pred_steps`` steps."""
        B, T, L = z.shape
        S = self.S
        scale = self.log_scale.exp()
        eye_s = torch.eye(S, dtype=z.dtype, device=z.device)
        R_pre = None if self.obs_noise == "state" else self.observation_variance(frames, T).expand(B, T, L)
        q_base = self.log_process.exp()
        c = self.offset - self.offset @ A.T
        h = z.new_zeros(B, S)
        P = eye_s.expand(B, S, S)
        K = self.pred_steps
        width = L if self.process_noise == "error" else 2 * L
        buf = z.new_zeros(B, K * width)
        out = {k: [] for k in ("zh", "Se", "Sz", "R", "h", "P", "hm", "Q")}
        for t in range(T):
            hm = h @ A.T + c
            zh = hm[:, :L]
            if self.process_noise == "fixed":
                q = (scale * q_base).expand(B, S)
            else:
                new = (z[:, t] - zh) if self.process_noise == "error" else torch.cat([z[:, t], zh], -1)
                buf = torch.cat([buf[:, width:], new.detach()], -1)
                q = scale * (q_base + 10.0 * self.process_net(buf))
            if self.obs_noise == "state":
                r = scale * self.obs_net(h).exp()
            else:
                r = R_pre[:, t]
            Pm = A @ P @ A.T + torch.diag_embed(q)
            Sz = Pm[:, :L, :L]
            Se = Sz + torch.diag_embed(r)
            KT = spd_solve(Se, Pm[:, :L, :])  # [B, L, S]
            e = z[:, t] - zh
            h = hm + (e.unsqueeze(1) @ KT).squeeze(1)
            P = Pm - KT.mT @ Pm[:, :L, :]
            P = 0.5 * (P + P.mT)
            for k, v in (("zh", zh), ("Se", Se), ("Sz", Sz), ("R", r), ("h", h), ("P", P), ("hm", hm), ("Q", q)):
                out[k].append(v)
        st = {k: torch.stack(v, 1) for k, v in out.items()}
        return FilterOutput(
            pred_mean=st["zh"], innov_cov=st["Se"], pred_cov=st["Sz"], obs_var=st["R"],
            filt_mean=st["h"], filt_cov=st["P"], prior_mean=st["hm"], process_var=st["Q"],
        )


# --------------------------------------------------------------------------------------------------
# straightforward reference (tests and benchmark only)
# --------------------------------------------------------------------------------------------------


def reference_filter_loglik(
    z: Tensor, A: Tensor, b: Tensor, Q: Tensor, R: Tensor, state_dim: int
) -> tuple[Tensor, Tensor]:
    """Per-sequence, per-time-step Kalman filter with explicit inverses (the official code's way).

    ``Q`` [S] and ``R`` [B, T, L] or [L] are diagonal variances. Returns (log-likelihood without the
    2 pi constant, i.e. -sum_t CE(z_t | z^_t, S_e(t)), shape [B]; filtered means [B, T, S]).
    """
    B, T, L = z.shape
    S = state_dim
    D = torch.eye(L, S, dtype=z.dtype)
    lls, hs_all = [], []
    for i in range(B):
        h = torch.zeros(S, dtype=z.dtype)
        P = torch.eye(S, dtype=z.dtype)
        ll = z.new_zeros(())
        hs = []
        for t in range(T):
            hm = A @ (h - b) + b
            Pm = A @ P @ A.T + torch.diag(Q)
            r = R[i, t] if R.dim() == 3 else R
            Se = D @ Pm @ D.T + torch.diag(r)
            Se_inv = torch.inverse(Se)
            e = z[i, t] - D @ hm
            ll = ll - 0.5 * torch.logdet(Se) - 0.5 * e @ Se_inv @ e
            K = Pm @ D.T @ Se_inv
            h = hm + K @ e
            P = (torch.eye(S, dtype=z.dtype) - K @ D) @ Pm
            hs.append(h)
        lls.append(ll)
        hs_all.append(torch.stack(hs))
    return torch.stack(lls), torch.stack(hs_all)
