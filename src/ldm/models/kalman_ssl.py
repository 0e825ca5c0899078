"""Predictive LDM with a Kalman-filter predictor (paper Sec. 6.1, Eq. 15; the authors' code).

An MLP encoder F maps every frame x_t to a pseudo-observation z_t = F(x_t) in R^L; a learned Kalman
filter (:mod:`ldm.models.kalman_filter`) predicts z_t from z_{<t}. Losses (``loss``):

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

from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from ldm.models.kalman_filter import FilterOutput, KalmanFilter
from ldm.objectives.entropy import gaussian_cross_entropy
from ldm.objectives.latent_models import PredictiveGaussianModel
from ldm.objectives.objective import KNN, PredictiveObjective, info_nce

from ldm.models.kalman_defaults import DEFAULTS, LOSSES
from ldm.pipeline.config import merge_settings
from ldm.models.normalisation import BatchWhitening  # noqa: F401  (moved to a shared module; re-exported)


class Encoder(nn.Module):
    """Per-frame MLP F: input_dim -> hidden_dim (ReLU) -> latent_dim, optionally followed by a
    normalisation over the pooled batch x time encodings: ``norm="whiten"`` (:class:`BatchWhitening`) or
    ``"batch"`` (per-dimension standardisation); batch statistics in training, running ones in eval.

    Why (issue 13): the Kalman NLL (Eq. 15) with the learned noise scale e^s is scale-covariant --
    z -> a z, s -> s + 2 log a lowers it by L log(1/a) per step -- and the stopgrad loss has no marginal-
    entropy term to cancel that, so the encodings shrink (or, with per-dimension standardisation only,
    become collinear) while A runs to its radius bound. With whitened encodings the stopgrad NLL becomes
    ``CE(z_t | z^_t) - 1/2 log det Cov(Z)``: the conditional entropy minus the Gaussian marginal entropy,
    the LDM objective's two terms (the logdet estimator of App. A.5), so neither shrinking nor collapsing
    onto fewer dimensions is a descent direction.
    """

    def __init__(self, input_dim: int = 100, hidden_dim: int = 100, latent_dim: int = 2,
                 norm: Optional[str] = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, latent_dim))
        if norm not in (None, "none", "batch", "whiten"):
            raise ValueError(f"kalman: model.encoding_norm must be 'whiten', 'batch', 'none' or 'auto' (resolved by "
                             f"the loss), got {norm!r}")
        self.norm: Optional[nn.Module] = None
        if norm == "batch":
            self.norm = nn.BatchNorm1d(latent_dim, eps=1e-8, affine=False)
        elif norm == "whiten":
            self.norm = BatchWhitening(latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        z = self.net(x)
        if self.norm is not None:
            shape = z.shape
            z = self.norm(z.reshape(-1, shape[-1])).reshape(shape)
        return z


class KalmanSSL(nn.Module):
    """Encoder + Kalman-filter predictor + online probes (position from h_t - b; noise level from Sigma_D)."""

    def __init__(self, model_cfg: Mapping[str, Any], seed: int = 0, loss: Optional[str] = None) -> None:
        super().__init__()
        cfg = merge_settings(DEFAULTS["model"], model_cfg)
        if cfg.get("encoding_norm") == "auto":  # the stopgrad loss needs the scale fixed (see Encoder)
            cfg["encoding_norm"] = "whiten" if loss == "stopgrad" else "none"
        self.cfg = cfg
        g = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.encoder = Encoder(cfg["input_dim"], cfg["hidden_dim"], cfg["latent_dim"], cfg.get("encoding_norm"))
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
    return -PredictiveGaussianModel(jitter=jitter).log_likelihood(z, out.pred_mean, cov=out.innov_cov)


def knn_estimator(knn_cfg: Mapping[str, Any]) -> KNN:
    """The kNN entropy estimator (App. A.5.2) of the ``knn`` config (authors' form, x d by default)."""
    return KNN(k=int(knn_cfg["k"]), p=float(knn_cfg["p"]), clip_quantile=knn_cfg["clip_quantile"],
               scale_by_dim=bool(knn_cfg["scale_by_dim"]), full=False)


def knn_marginal_entropy(z: Tensor, knn_cfg: Mapping[str, Any]) -> Tensor:
    """kNN entropy of all B*T encodings pooled."""
    return knn_estimator(knn_cfg).single(z.reshape(-1, z.shape[-1]))


def ldm_objective(cfg: Mapping[str, Any]) -> PredictiveObjective:
    """The predictive LDM objective of ``cfg['loss']`` from the objective library: ``knn`` = Eq. 15
    minus T x the kNN entropy of the pooled encodings; ``stopgrad`` = the stopgrad conditional entropy."""
    if cfg["loss"] == "knn":
        return PredictiveObjective("knn", cov_jitter=float(cfg["knn"]["jitter"]), knn=knn_estimator(cfg["knn"]),
                                   entropy_weight="seq_len", float_parts=False)
    return PredictiveObjective("stopgrad", float_parts=False)


def infonce_over_time(z: Tensor, out: FilterOutput, temperature: float = 1.0, similarity: str = "dot") -> Tensor:
    """CPC/InfoNCE over time: sum_t mean_b -log softmax_{t'}(s(z^_{b,t}, z_{b,t'}) / tau)[t]."""
    T = z.shape[1]
    per_seq = [info_nce(out.pred_mean[b], z[b], temperature=temperature, similarity=similarity)
               for b in range(z.shape[0])]
    return T * torch.stack(per_seq).mean()


def ssl_loss(model: KalmanSSL, z: Tensor, out: FilterOutput, cfg: Mapping[str, Any]) -> tuple[Tensor, dict[str, Tensor]]:
    """The representation loss of ``cfg['loss']`` and its named terms (for logging / error messages)."""
    loss_type = cfg["loss"]
    if loss_type in ("knn", "stopgrad"):
        loss, parts = ldm_objective(cfg)(z, out.pred_mean, cov=out.innov_cov)
        if loss_type == "knn":
            return loss, {"kalman_nll": -parts["alignment"], "knn_entropy": parts["entropy"]}
        return loss, {"stopgrad_nll": loss}
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
