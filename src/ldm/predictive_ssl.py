"""Predictive LDM with a Kalman-filter predictor (paper Sec. 6.1, Eq. 15; predictive.md §3).

An MLP encoder F maps every frame x_t to a pseudo-observation z_t = F(x_t) in R^L; a learned Kalman
filter (:mod:`ldm.kalman_filter`) predicts z_t from z_{<t}. Losses (``loss``):

* ``knn`` -- the paper's "CPC (with MI maximisation)" curve (official ``procrustes``):
  ``L = sum_t mean_b CE(z_t | z^_t, S_e(t) + 1e-6 I) - T * H_kNN(Z)``, Z = the B*T pooled encodings
  (k = 3, Euclidean, 0.9-quantile clip, x d), Eq. 15 plus the single-variable entropy (App. A.5.2);
* ``stopgrad`` -- predictive stopgrad (official ``regular``): ``L = T * mean_{b,t} CE(sg(z_t) | z^_t,
  S_e(t))``; the stopgrad conditional-entropy estimator (App. A.5.4, A.6.2), no MI term;
* ``infonce`` -- beyond the paper, a true InfoNCE/CPC baseline over time: for every sequence, the filter's
  prediction z^_t must pick its own z_t among the encodings of all time steps of that sequence.

The Kalman parameters learn on a faster timescale through their own Adam parameter groups
(:func:`build_optimizer`): every learning rate is scaled by ``batch_size / 256`` and multiplied by the
group's multiplier (encoder x1, A/b/l_A/s x100, innovation-driven Sigma_A net x10, inferred Sigma_D net
x0.03, state-dependent Sigma_D net x1). Online linear probes read the detached filtered state and never
shape the representation.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from ldm.entropy_estimators import gaussian_cross_entropy, knn_entropy, stopgrad_conditional_entropy
from ldm.kalman_filter import FilterOutput, KalmanFilter

LOSSES = ("knn", "stopgrad", "infonce")

#: Model and optimisation defaults (predictive.md §3, §7); configs override any of them.
DEFAULTS: dict[str, Any] = {
    "model": {
        "input_dim": 100,
        "hidden_dim": 100,
        "state_dim": 2,
        "latent_dim": 2,
        "obs_noise": "fixed",  # fixed | inferred | state
        "process_noise": "fixed",  # fixed | error | observation+prediction
        "pred_steps": 4,
        "rho_max": 1.02,
        "rho_soft_start": 0.95,  # null: hard rescale W * rho_max / rho(W) (sticks at the boundary)
        "init_log_scale": 1.0,
    },
    "loss": "stopgrad",
    "knn": {"k": 3, "p": 2.0, "clip_quantile": 0.9, "scale_by_dim": True, "jitter": 1e-6},
    "infonce": {"temperature": 1.0, "similarity": "dot"},
    "optim": {
        "batch_size": 8,
        "lr": 0.005,
        "weight_decay": 1e-4,
        "epochs": 20,
        "scheduler": "step",  # step | linear | none
        "min_lr_factor": 0.25,  # linear schedule: final factor
        "lr_scale_batch": 256,
        "multipliers": {"encoder": 1.0, "kalman": 100.0, "process_net": 10.0,
                        "obs_net_inferred": 0.03, "obs_net_state": 1.0},
        "probe_lr": 0.5,
        "noise_probe_lr": 0.5,
        "max_steps": None,  # stop early (smoke profile)
    },
}


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base``."""
    out = copy.deepcopy(dict(base))
    for k, v in (override or {}).items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class Encoder(nn.Module):
    """Per-frame MLP F: input_dim -> hidden_dim (ReLU) -> latent_dim."""

    def __init__(self, input_dim: int = 100, hidden_dim: int = 100, latent_dim: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, latent_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class KalmanSSL(nn.Module):
    """Encoder + Kalman-filter predictor + online probes (position from h_t - b; noise level from Sigma_D)."""

    def __init__(self, model_cfg: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__()
        cfg = deep_merge(DEFAULTS["model"], model_cfg)
        self.cfg = cfg
        g = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.encoder = Encoder(cfg["input_dim"], cfg["hidden_dim"], cfg["latent_dim"])
            self.kalman = KalmanFilter(
                cfg["state_dim"], cfg["latent_dim"], obs_noise=cfg["obs_noise"],
                process_noise=cfg["process_noise"], input_dim=cfg["input_dim"], pred_steps=cfg["pred_steps"],
                rho_max=cfg["rho_max"], rho_soft_start=cfg["rho_soft_start"],
                init_log_scale=cfg["init_log_scale"], generator=g,
            )
            self.pos_probe = nn.Linear(cfg["state_dim"], 2)
            self.noise_probe = nn.Linear(cfg["latent_dim"], 1) if cfg["obs_noise"] != "fixed" else None

    def forward(self, frames: Tensor) -> tuple[Tensor, FilterOutput]:
        """Encode frames [B, T, P] to z [B, T, L] and filter them."""
        z = self.encoder(frames)
        return z, self.kalman(z, frames)

    def centred_state(self, out: FilterOutput) -> Tensor:
        """Filtered state minus the dynamics' fixed point, h_t - b (what the paper's probe reads)."""
        return out.filt_mean - self.kalman.offset


# --------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------


def kalman_nll(z: Tensor, out: FilterOutput, jitter: float = 0.0) -> Tensor:
    """Negative Kalman log-likelihood, Eq. 15 (no 2 pi constant): sum_t mean_b CE(z_t | z^_t, S_e(t))."""
    return gaussian_cross_entropy(z, out.pred_mean, out.innov_cov, jitter=jitter).mean(0).sum()


def knn_marginal_entropy(z: Tensor, knn_cfg: Mapping[str, Any]) -> Tensor:
    """kNN entropy (App. A.5.2) of all B*T encodings pooled (authors' form, x d by default)."""
    return knn_entropy(
        z.reshape(-1, z.shape[-1]), k=int(knn_cfg["k"]), p=float(knn_cfg["p"]),
        clip_quantile=knn_cfg["clip_quantile"], scale_by_dim=bool(knn_cfg["scale_by_dim"]), full=False,
    )


def infonce_over_time(z: Tensor, out: FilterOutput, temperature: float = 1.0, similarity: str = "dot") -> Tensor:
    """CPC/InfoNCE over time: sum_t mean_b -log softmax_{t'}(s(z^_{b,t}, z_{b,t'}) / tau)[t]."""
    from ldm.objectives import info_nce

    T = z.shape[1]
    per_seq = [info_nce(out.pred_mean[b], z[b], temperature=temperature, similarity=similarity)
               for b in range(z.shape[0])]
    return T * torch.stack(per_seq).mean()


def ssl_loss(model: KalmanSSL, z: Tensor, out: FilterOutput, cfg: Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """The representation loss of ``cfg['loss']`` and its named terms (for logging / error messages)."""
    loss_type = cfg["loss"]
    T = z.shape[1]
    if loss_type == "knn":
        nll = kalman_nll(z, out, jitter=float(cfg["knn"]["jitter"]))
        ent = knn_marginal_entropy(z, cfg["knn"])
        return nll - T * ent, {"kalman_nll": nll, "knn_entropy": ent}
    if loss_type == "stopgrad":
        sg = T * stopgrad_conditional_entropy(z, out.pred_mean, out.innov_cov)
        return sg, {"stopgrad_nll": sg}
    if loss_type == "infonce":
        nce = infonce_over_time(z, out, float(cfg["infonce"]["temperature"]), cfg["infonce"]["similarity"])
        return nce, {"infonce": nce}
    raise ValueError(f"kalman: unknown loss {loss_type!r}; expected one of {LOSSES}")


def probe_losses(model: KalmanSSL, z: Tensor, out: FilterOutput, position: Tensor,
                 noise_level: Optional[Tensor]) -> dict[str, Tensor]:
    """Online probe MSEs on detached latents (position from h_t - b; noise level from log Sigma_D)."""
    terms = {}
    pred = model.pos_probe(model.centred_state(out).detach())
    terms["probe_pos_mse"] = ((pred - position) ** 2).mean()
    if model.noise_probe is not None and noise_level is not None:
        feat = out.obs_var.detach().expand(z.shape[0], -1, -1).log()
        terms["probe_noise_mse"] = ((model.noise_probe(feat).squeeze(-1) - noise_level) ** 2).mean()
    return terms


def training_loss(model: KalmanSSL, frames: Tensor, position: Tensor, noise_level: Optional[Tensor],
                  cfg: Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor], Tensor, FilterOutput]:
    """Total loss = SSL loss + online probe losses; returns (total, terms, z, filter output)."""
    z, out = model(frames)
    loss, terms = ssl_loss(model, z, out, cfg)
    for name, val in probe_losses(model, z, out, position, noise_level).items():
        terms[name] = val
        loss = loss + val
    return loss, terms, z, out


def gradient_cosine(model: KalmanSSL, z: Tensor, out: FilterOutput, knn_cfg: Mapping[str, Any]) -> float:
    """Fig. 4D: cosine between the encoder-weight gradients of the kNN single-variable entropy
    ``T * H_kNN(Z)`` and of the stopgrad conditional-entropy estimate
    ``sum_t mean_b CE(z_t | sg(z^_t), sg(S_e(t)) + 1e-6 I)`` (gradient only through the current z_t)."""
    T = z.shape[1]
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    cond = gaussian_cross_entropy(z, out.pred_mean.detach(), out.innov_cov.detach(),
                                  jitter=float(knn_cfg.get("jitter", 1e-6))).mean(0).sum()
    ent = T * knn_marginal_entropy(z, knn_cfg)
    g1 = torch.autograd.grad(cond, params, retain_graph=True)
    g2 = torch.autograd.grad(ent, params, retain_graph=True)
    v1 = torch.cat([g.reshape(-1) for g in g1])
    v2 = torch.cat([g.reshape(-1) for g in g2])
    return float(torch.nn.functional.cosine_similarity(v1, v2, dim=0))


# --------------------------------------------------------------------------------------------------
# optimisation
# --------------------------------------------------------------------------------------------------


def build_optimizer(model: KalmanSSL, optim_cfg: Mapping[str, Any]) -> torch.optim.Adam:
    """Adam with parameter groups: lr_group = lr * batch_size / 256 * multiplier (predictive.md §3.7)."""
    cfg = deep_merge(DEFAULTS["optim"], optim_cfg)
    scale = float(cfg["batch_size"]) / float(cfg["lr_scale_batch"])
    base = float(cfg["lr"]) * scale
    mult = cfg["multipliers"]
    kf = model.kalman
    groups = [
        {"name": "encoder", "params": list(model.encoder.parameters()), "lr": base * mult["encoder"]},
        {"name": "kalman", "params": kf.fast_parameters(), "lr": base * mult["kalman"]},
    ]
    if kf.process_net is not None:
        groups.append({"name": "process_net", "params": list(kf.process_net.parameters()),
                       "lr": base * mult["process_net"]})
    if kf.obs_net is not None:
        key = "obs_net_inferred" if kf.obs_noise == "inferred" else "obs_net_state"
        groups.append({"name": "obs_net", "params": list(kf.obs_net.parameters()), "lr": base * mult[key]})
    groups.append({"name": "pos_probe", "params": list(model.pos_probe.parameters()),
                   "lr": float(cfg["probe_lr"]) * scale})
    if model.noise_probe is not None:
        groups.append({"name": "noise_probe", "params": list(model.noise_probe.parameters()),
                       "lr": float(cfg["noise_probe_lr"]) * scale})
    n_model = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_groups = sum(p.numel() for g in groups for p in g["params"])
    if n_model != n_groups:
        raise RuntimeError(f"kalman: optimiser groups cover {n_groups} of {n_model} parameters")
    return torch.optim.Adam(groups, betas=(0.9, 0.999), weight_decay=float(cfg["weight_decay"]))


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Mapping[str, Any]) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``step`` (x0.5 at int(0.33 E), int(0.66 E)), ``linear`` (1 -> min_lr_factor over
    E epochs) or ``none``."""
    cfg = deep_merge(DEFAULTS["optim"], optim_cfg)
    E = int(cfg["epochs"])
    kind = cfg["scheduler"]
    if kind == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(0.33 * E), int(0.66 * E)], gamma=0.5)
    if kind == "linear":
        return torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, float(cfg["min_lr_factor"]), total_iters=E)
    if kind == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"kalman: optim.scheduler must be step | linear | none, got {kind!r}")


# --------------------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------------------


def rotation_angles_deg(A: Tensor) -> list[float]:
    """Rotation angles per step (degrees, in (0, 180)) of the complex eigenvalue pairs of A, by modulus
    (one entry per pair; real eigenvalues, including negative ones, are not rotations)."""
    ev = torch.linalg.eigvals(A.detach().double())
    order = torch.argsort(ev.abs(), descending=True)
    angles = []
    for lam in ev[order]:
        if float(lam.imag) > 1e-9 * max(1.0, float(lam.abs())):
            angles.append(float(torch.rad2deg(torch.angle(lam))))
    return angles


def dominant_rotation_deg(A: Tensor) -> float:
    """Angle of the largest-modulus complex eigenvalue pair of A (0 if A has only real eigenvalues)."""
    angles = rotation_angles_deg(A)
    return angles[0] if angles else 0.0
