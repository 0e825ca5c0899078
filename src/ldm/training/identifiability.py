"""Training and evaluation of the identifiability experiment: predictive LDM with an MLP encoder and an
LSTM predictor on the wobbly system (paper Sec. 7.1, Fig. 5, A6, A7; predictive.md §4, §5.2, §5.5).

    model = encoder (MLP, per frame) → z_t;  LSTM(10) + head 10→20→20→d → p_t ≈ z_{t+1};  probe z_t → state
    loss  = one of knn | stopgrad | logdet | kde  (:mod:`ldm.objectives.predictive_losses`)  + online probe MSE

Optimisation (predictive.md §4.3, §4.4): one Adam with parameter groups — every learning rate is scaled
by batch_size/256, then the encoder ×``multipliers.encoder``, the LSTM ×``multipliers.rnn`` and the head
×``multipliers.head`` ("predictor on a faster timescale"); the probe has its own lr (×batch/256). Per-epoch
schedules: ``linear`` (factor 1 → min_lr/lr) and ``warmup_cosine`` (linear warm-up from warmup_start_lr over
warmup_epochs, then cosine to min_lr; both absolute and the same for every group). :data:`LOSS_PRESETS`
holds the four official configs; :func:`resolve_config` merges DEFAULTS ← preset ← overrides.

Training runs through the shared resumable loop (:func:`ldm.training.loop.fit`): a killed run resumes from its
last epoch checkpoint and ends with identical metrics (CPU); a non-finite loss raises
``NonFiniteLossError`` naming the step and the term.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import torch
from torch import Tensor, nn

from ldm.pipeline.io import save_npz, save_torch, write_json
from ldm.training.device import Device
from ldm.data.wobbly import config_from_meta, grid_states, load_split, render
from ldm.evaluation.identifiability import (
    affine_r2, identifiability_r2, notebook_r2, orientation_consistency, pca_fit, pca_transform,
)
from ldm.models.lstm_predictor import LSTMPredictor
from ldm.models.mlp_encoder import build_encoder
from ldm.models.normalisation import BatchWhitening
from ldm.evaluation.probes import r2_score
from ldm.objectives.predictive_losses import (
    LOSS_DEFAULTS, LOSSES, build_objective, predictive_loss, separate_predictor_stopgrad_loss,
)
from ldm.pipeline.config import merge_settings
from ldm.training.checkpoint import load_trained_run
from ldm.training.loop import discard_stale_checkpoint, fit

#: Defaults = the official knn/kde/logdet config with the paper's encoder (10 × 200).
DEFAULTS: dict[str, Any] = {
    "loss": "knn",
    "model": {
        "state_dim": 2,  # latent dimension d (Fig. A7: > 2)
        "encoder": {"preset": "paper", "hidden_layers": None, "hidden_dim": None, "init": None},
        "rnn_hidden": 10,
        "head_hidden": [20, 20],
        "encoding_norm": "none",  # none | whiten | auto (= whiten for stopgrad, none otherwise); see ENCODING_NORMS
        "variance": "unit",  # predictive variance: unit | learned | state (see VARIANCES)
        "target_ema": None,  # None, or the momentum of an EMA target encoder for the alignment targets
        "entropy_predictor": "none",  # stopgrad only: none (official) | unit | learned | state (ENTROPY_PREDICTORS)
    },
    "loss_settings": copy.deepcopy(LOSS_DEFAULTS),
    "optim": {
        "batch_size": 128,
        "lr": 0.002,
        "weight_decay": 1e-6,
        "epochs": 300,
        "lr_scale_batch": 256,
        "multipliers": {"encoder": 1.0, "rnn": 30.0, "head": 30.0, "variance": 20.0},
        "probe_lr": 0.5,
        "scheduler": "linear",  # linear | warmup_cosine | none
        "min_lr": 0.0009,  # before batch scaling; linear: final factor min_lr/lr
        "warmup_epochs": 10,
        "warmup_start_lr": 0.0,
        "max_steps": None,
    },
    "n_train": None,  # use the first n training sequences (None: all)
    "eval": {"every": 1, "train_subset": 256, "max_fit_frames": 100_000, "grid_n": 50, "grid_lim": 2.0,
             "notebook_video": 0, "batch": 512},
    "threads": 1,
    "device": "cpu",  # cpu | cuda | auto
    "progress": True,
}

#: ``model.encoding_norm`` values. ``whiten``: the encodings z_t the predictor sees and predicts are whitened over
#: the pooled B·T encodings (:class:`ldm.models.normalisation.BatchWhitening`; batch statistics in training,
#: running ones in evaluation). Not in the paper: the stopgrad loss ½‖sg(z_t) − p_{t−1}‖² has no marginal-entropy
#: term, so shrinking or collinear encodings lower it; on whitened encodings it becomes the CE of the raw
#: encodings minus ½ log det Cov(Z), conditional entropy minus the Gaussian marginal entropy (App. A.5).
ENCODING_NORMS = ("none", "whiten", "auto")

#: ``model.variance`` values: the variance of the Gaussian predictive model N(p_t, diag v_t) (predictive.md §4.1).
#: ``unit``: v = 1 (every official wobbly config); ``learned``: one learned variance per latent dimension
#: (v = exp(ℓ)); ``state``: v_t = Softplus(Linear(h_t)) of the LSTM state that made the prediction (the
#: official code's ``variance_dependency: state``). Learned variances are trained at lr × ``multipliers.variance``
#: (official default ×20).
VARIANCES = ("unit", "learned", "state")

#: ``model.entropy_predictor`` (stopgrad loss only): ``none`` = the stopgrad conditional-entropy estimate uses the
#: model's own predictor (the official loss); otherwise a second LSTM predictor with that variance kind
#: (see VARIANCES) sees the detached encodings and estimates H(z_t | z_<t) (paper App. A.6.2, last paragraph;
#: :func:`ldm.objectives.predictive_losses.separate_predictor_stopgrad_loss`).
ENTROPY_PREDICTORS = ("none",) + VARIANCES


def resolve_encoding_norm(norm: Optional[str], loss: Optional[str]) -> str:
    """``auto`` → ``whiten`` for the stopgrad loss, ``none`` otherwise; other values are checked and kept."""
    norm = "none" if norm is None else str(norm)
    if norm not in ENCODING_NORMS:
        raise ValueError(f"identifiability: model.encoding_norm must be one of {list(ENCODING_NORMS)}, got {norm!r}")
    if norm == "auto":
        return "whiten" if loss == "stopgrad" else "none"
    return norm


#: The four official wobbly configs (predictive.md §4.4; lr values before the batch/256 scaling).
LOSS_PRESETS: dict[str, dict[str, Any]] = {
    "knn": {"optim": {"lr": 0.002, "multipliers": {"encoder": 1.0, "rnn": 30.0, "head": 30.0},
                      "scheduler": "linear", "min_lr": 0.0009, "epochs": 300}},
    "kde": {"optim": {"lr": 0.002, "multipliers": {"encoder": 1.0, "rnn": 30.0, "head": 30.0},
                      "scheduler": "linear", "min_lr": 0.0009, "epochs": 300}},
    "logdet": {"optim": {"lr": 0.002, "multipliers": {"encoder": 1.0, "rnn": 30.0, "head": 30.0},
                         "scheduler": "linear", "min_lr": 0.0009, "epochs": 300}},
    "stopgrad": {"optim": {"lr": 0.0025, "multipliers": {"encoder": 2.0, "rnn": 20.0, "head": 30.0},
                           "scheduler": "warmup_cosine", "min_lr": 5e-5, "warmup_epochs": 10,
                           "warmup_start_lr": 0.0, "epochs": 20}},
}


def resolve_config(overrides: Optional[Mapping[str, Any]] = None, seed: int = 1) -> dict[str, Any]:
    """Run config: DEFAULTS ← LOSS_PRESETS[loss] ← overrides, plus ``seed``."""
    over = dict(overrides or {})
    loss = over.get("loss", DEFAULTS["loss"])
    if loss not in LOSSES:
        raise ValueError(f"identifiability: loss must be one of {list(LOSSES)}, got {loss!r}")
    cfg = merge_settings(merge_settings(DEFAULTS, LOSS_PRESETS[loss], "identifiability"), over, "identifiability")
    if cfg["optim"]["scheduler"] not in ("linear", "warmup_cosine", "none"):
        raise ValueError(f"identifiability: optim.scheduler must be linear | warmup_cosine | none, "
                         f"got {cfg['optim']['scheduler']!r}")
    cfg["seed"] = int(seed)
    return cfg


# --------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------


class PredictiveLDM(nn.Module):
    """Encoder (+ optional whitening, ``model.encoding_norm``) + LSTM predictor + online linear probe
    (detached z → true state; never shapes z). ``loss`` resolves ``encoding_norm: auto``."""

    def __init__(self, model_cfg: Mapping[str, Any], input_dim: int, target_dim: int, seed: int,
                 loss: Optional[str] = None) -> None:
        super().__init__()
        d = int(model_cfg["state_dim"])
        self.encoding_norm = resolve_encoding_norm(model_cfg.get("encoding_norm"), loss)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            self.encoder = build_encoder(model_cfg.get("encoder") or {}, input_dim, d)
            self.predictor = LSTMPredictor(d, int(model_cfg["rnn_hidden"]), list(model_cfg["head_hidden"]))
            self.probe = nn.Linear(d, target_dim)
        self.norm: Optional[BatchWhitening] = BatchWhitening(d) if self.encoding_norm == "whiten" else None
        self.variance = str(model_cfg.get("variance") or "unit")
        if self.variance not in VARIANCES:
            raise ValueError(f"identifiability: model.variance must be one of {list(VARIANCES)}, got {self.variance!r}")
        self.log_var: Optional[nn.Parameter] = nn.Parameter(torch.zeros(d)) if self.variance == "learned" else None
        self.var_net: Optional[nn.Module] = None
        if self.variance == "state":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed) + 7)
                self.var_net = nn.Sequential(nn.Linear(int(model_cfg["rnn_hidden"]), d), nn.Softplus())
        self.entropy_kind = str(model_cfg.get("entropy_predictor") or "none")
        if self.entropy_kind not in ENTROPY_PREDICTORS:
            raise ValueError(f"identifiability: model.entropy_predictor must be one of {list(ENTROPY_PREDICTORS)}, "
                             f"got {self.entropy_kind!r}")
        if self.entropy_kind != "none" and loss not in (None, "stopgrad"):
            raise ValueError(f"identifiability: model.entropy_predictor={self.entropy_kind!r} is for the stopgrad loss, "
                             f"not {loss!r}")
        self.ent_predictor: Optional[LSTMPredictor] = None
        self.ent_log_var: Optional[nn.Parameter] = None
        self.ent_var_net: Optional[nn.Module] = None
        if self.entropy_kind != "none":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed) + 11)
                self.ent_predictor = LSTMPredictor(d, int(model_cfg["rnn_hidden"]), list(model_cfg["head_hidden"]))
                if self.entropy_kind == "state":
                    self.ent_var_net = nn.Sequential(nn.Linear(int(model_cfg["rnn_hidden"]), d), nn.Softplus())
            if self.entropy_kind == "learned":
                self.ent_log_var = nn.Parameter(torch.zeros(d))
        ema = model_cfg.get("target_ema")
        self.target_ema = None if ema is None else float(ema)
        if self.target_ema is not None and not 0.0 <= self.target_ema < 1.0:
            raise ValueError(f"identifiability: model.target_ema must be None or in [0, 1), got {ema!r}")
        self.target_encoder: Optional[nn.Module] = None
        if self.target_ema is not None:
            self.target_encoder = copy.deepcopy(self.encoder)
            for q in self.target_encoder.parameters():
                q.requires_grad_(False)

    @torch.no_grad()
    def update_target(self) -> None:
        """EMA target encoder: θ' ← m θ' + (1 − m) θ (BYOL-style slow targets, paper App. A.6.2)."""
        if self.target_encoder is None:
            return
        for t, o in zip(self.target_encoder.parameters(), self.encoder.parameters()):
            t.lerp_(o.detach(), 1.0 - float(self.target_ema))

    def targets(self, frames: Tensor) -> Optional[Tensor]:
        """Alignment targets from the EMA target encoder (detached, normalised like :meth:`embed`), or None."""
        if self.target_encoder is None:
            return None
        with torch.no_grad():
            z = self.target_encoder(frames)
            if self.norm is not None:
                shape = z.shape
                was = self.norm.training
                self.norm.eval()
                z = self.norm(z.reshape(-1, shape[-1])).reshape(shape)
                self.norm.train(was)
        return z

    def entropy_prediction(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The separate conditional-entropy predictor on detached encodings: (p^φ [B, T, d], v^φ)."""
        assert self.ent_predictor is not None
        pred, h = self.ent_predictor(z.detach())
        if self.ent_log_var is not None:
            var = self.ent_log_var.exp()
        elif self.ent_var_net is not None:
            var = self.ent_var_net(h) + 1e-6
        else:
            var = torch.ones(1, dtype=z.dtype, device=z.device)
        return pred, var

    def predictive_variance(self, h: Tensor) -> Optional[Tensor]:
        """Variances [B, T, d] (or [d]) of the predictions made from LSTM states h [B, T, H]; None = unit."""
        if self.log_var is not None:
            return self.log_var.exp()
        if self.var_net is not None:
            return self.var_net(h) + 1e-6
        return None

    def embed(self, frames: Tensor) -> Tensor:
        """Encodings z [..., d] of frames [..., P]: the encoder, then the normalisation over all frames of the
        call (training: batch statistics; eval: running statistics), i.e. what the predictor sees."""
        z = self.encoder(frames)
        if self.norm is not None:
            shape = z.shape
            z = self.norm(z.reshape(-1, shape[-1])).reshape(shape)
        return z

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """frames [B, T, P] → (z [B, T, d], predictions p [B, T, d], p_t ≈ z_{t+1})."""
        z = self.embed(frames)
        pred, _ = self.predictor(z)
        return z, pred

    def forward_full(self, frames: Tensor) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """frames → (z, p, predictive variances of p or None for unit variance)."""
        z = self.embed(frames)
        pred, h = self.predictor(z)
        return z, pred, self.predictive_variance(h)


def build_optimizer(model: PredictiveLDM, optim: Mapping[str, Any]) -> torch.optim.Adam:
    """Adam with groups encoder / rnn / head / probe; lr_g = lr · B/256 · multiplier_g (probe: probe_lr · B/256)."""
    scale = float(optim["batch_size"]) / float(optim["lr_scale_batch"])
    base = float(optim["lr"]) * scale
    m = optim["multipliers"]
    groups = [
        {"name": "encoder", "params": list(model.encoder.parameters()), "lr": base * float(m["encoder"])},
        {"name": "rnn", "params": list(model.predictor.rnn.parameters()), "lr": base * float(m["rnn"])},
        {"name": "head", "params": list(model.predictor.head.parameters()), "lr": base * float(m["head"])},
        {"name": "probe", "params": list(model.probe.parameters()), "lr": float(optim["probe_lr"]) * scale},
    ]
    var_params = ([model.log_var] if model.log_var is not None else []) + \
        (list(model.var_net.parameters()) if model.var_net is not None else [])
    if model.ent_predictor is not None:
        groups += [{"name": "entropy_rnn", "params": list(model.ent_predictor.rnn.parameters()), "lr": base * float(m["rnn"])},
                   {"name": "entropy_head", "params": list(model.ent_predictor.head.parameters()),
                    "lr": base * float(m["head"])}]
        var_params += ([model.ent_log_var] if model.ent_log_var is not None else []) + \
            (list(model.ent_var_net.parameters()) if model.ent_var_net is not None else [])
    if var_params:
        groups.append({"name": "variance", "params": var_params, "lr": base * float(m.get("variance", 20.0))})
    return torch.optim.Adam(groups, betas=(0.9, 0.999), weight_decay=float(optim["weight_decay"]))


def build_scheduler(optimizer: torch.optim.Optimizer, optim: Mapping[str, Any]) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch schedule (see module doc). Absolute lrs (min_lr, warmup_start_lr) are scaled by B/256."""
    E = int(optim["epochs"])
    kind = optim["scheduler"]
    scale = float(optim["batch_size"]) / float(optim["lr_scale_batch"])
    if kind == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 1.0)
    if kind == "linear":
        end = float(optim["min_lr"]) / float(optim["lr"])

        def lin(e: int) -> float:
            return 1.0 + (end - 1.0) * min(e, E) / max(E, 1)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, lin)
    W = int(optim["warmup_epochs"])
    lo, start = float(optim["min_lr"]) * scale, float(optim["warmup_start_lr"]) * scale

    def make(base: float) -> Callable[[int], float]:
        def f(e: int) -> float:
            if e < W:
                lr = start + e * (base - start) / max(1, W - 1)
            else:
                lr = lo + 0.5 * (base - lo) * (1.0 + math.cos(math.pi * (e - W) / max(1, E - W)))
            return lr / base if base > 0 else 0.0
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [make(g["lr"]) for g in optimizer.param_groups])


def resolve_device(name: str) -> Device:
    """``cpu`` | ``cuda`` | ``auto`` (CUDA if available) as a :class:`ldm.training.device.Device` (fp32)."""
    return Device.from_settings({"device": name})


@torch.no_grad()
def encode(model: PredictiveLDM, frames: np.ndarray | Tensor, batch: int = 512, raw: bool = False) -> np.ndarray:
    """Encodings (:meth:`PredictiveLDM.embed` in eval mode: the normalised output the predictor saw, running
    statistics) of frames [..., P] (any leading dims), in chunks of ``batch`` × T frames; ``raw=True``: the
    encoder output before the normalisation."""
    model.eval()
    x = torch.as_tensor(frames)
    dev = next(model.parameters()).device
    flat = x.reshape(-1, x.shape[-1])
    step = batch * (x.shape[1] if x.dim() == 3 else 1)
    f = model.encoder if raw else model.embed
    out = [f(flat[i:i + step].to(dev)).cpu() for i in range(0, flat.shape[0], step)]
    return torch.cat(out).reshape(*x.shape[:-1], -1).numpy()


def encoding_spread(z: np.ndarray) -> dict[str, float]:
    """Spread of encodings [..., d] (the raw encoder output: shrinking / collinearity diagnostics):
    ``enc/std_min``, ``enc/std_max`` (per-dimension std), ``enc/cov_eig_min``, ``enc/cov_eig_max`` (eigenvalues
    of their covariance) and ``enc/cov_eig_ratio`` = min/max (→ 0: collinear encodings)."""
    flat = np.asarray(z, dtype=np.float64).reshape(-1, z.shape[-1])
    std = flat.std(0)
    eig = np.linalg.eigvalsh(np.atleast_2d(np.cov(flat, rowvar=False)))
    return {"enc/std_min": float(std.min()), "enc/std_max": float(std.max()), "enc/cov_eig_min": float(eig[0]),
            "enc/cov_eig_max": float(eig[-1]), "enc/cov_eig_ratio": float(eig[0] / max(eig[-1], 1e-300))}


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) * 7919 + 29)


def _load_data(data_dir: Path, n_train: Optional[int]) -> tuple[dict, dict, dict]:
    train, meta = load_split(data_dir / "train.npz")
    test, _ = load_split(data_dir / "test.npz")
    if n_train is not None:
        if int(n_train) > train["frames"].shape[0]:
            raise ValueError(f"identifiability: n_train={n_train} > {train['frames'].shape[0]} sequences in "
                             f"{data_dir / 'train.npz'}")
        train = {k: v[:int(n_train)] for k, v in train.items()}
    return train, test, meta


def train(cfg: Mapping[str, Any], data_dir: Path | str, out_dir: Path | str,
          on_epoch: Optional[Callable[[int, Mapping[str, float]], None]] = None,
          resume_key: Optional[str] = None, device: Optional[Device] = None) -> dict[str, Any]:
    """Train one run (config from :func:`resolve_config`) on ``data_dir/{train,test}.npz``.

    Writes ``out_dir/checkpoints/last.pt`` every epoch and resumes from it only if it was written under
    the same ``resume_key`` (the job's provenance hash: settings, code and input files; default: the
    settings); at the end ``model.pt`` (weights + config), ``history.json`` and ``train_metrics.json``,
    then deletes the checkpoints (a finished run is never resumed). ``on_epoch(epoch, metrics)`` is called
    after each epoch's checkpoint (MLflow). ``device`` defaults to ``cfg["device"]``.
    """
    import shutil

    cfg = dict(cfg)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.get("threads", 1)))
    device = device or resolve_device(str(cfg.get("device", "cpu")))
    seed = int(cfg["seed"])
    optim = cfg["optim"]
    ev = cfg["eval"]
    tr, te, _ = _load_data(data_dir, cfg.get("n_train"))
    frames = torch.from_numpy(tr["frames"])
    N, T, P = frames.shape
    B = int(optim["batch_size"])
    if N < B:
        raise ValueError(f"identifiability: {N} training sequences < optim.batch_size {B}")
    model = device.model(PredictiveLDM(cfg["model"], P, tr["state"].shape[-1], seed, cfg["loss"]))
    optimizer = build_optimizer(model, optim)
    scheduler = build_scheduler(optimizer, optim)
    objective = build_objective(cfg["loss"], B, cfg.get("loss_settings"))
    state_t = torch.from_numpy(tr["state"])
    n_sub = min(int(ev["train_subset"]), N)
    every = max(1, int(ev.get("every", 1)))
    vid = min(int(ev["notebook_video"]), te["frames"].shape[0] - 1)
    torch.manual_seed(seed)  # the kNN subset draws (global RNG; restored from checkpoints on resume)

    def batches(epoch: int) -> Iterable[tuple[Tensor, Tensor]]:
        perm = torch.randperm(N, generator=_epoch_generator(seed, epoch))
        for i in range(N // B):
            idx = perm[i * B:(i + 1) * B]
            yield device.batch((frames[idx], state_t[idx]))

    def step_fn(batch: tuple[Tensor, Tensor], step: int):
        x, s = batch
        model.update_target()
        z, pred, var = model.forward_full(x)
        if model.ent_predictor is not None:
            ep, ev = model.entropy_prediction(z)
            loss, terms = separate_predictor_stopgrad_loss(z, pred, var, ep, ev)
            terms["entropy_pred_var_mean"] = ev.detach().mean()
        else:
            loss, terms = predictive_loss(objective, z, pred, var=var, target=model.targets(x))
        probe = ((model.probe(z.detach()) - s) ** 2).mean()
        terms["probe_mse"] = probe.detach()
        if var is not None:
            terms["pred_var_mean"] = var.detach().mean()
        return loss + probe, terms, {}

    def end_epoch(epoch: int, step: int, history: Mapping[str, Any]) -> dict[str, float]:
        if (epoch + 1) % every and epoch + 1 != int(optim["epochs"]):
            return {}
        z_tr = encode(model, tr["frames"][:n_sub], int(ev["batch"]))
        z_te = encode(model, te["frames"], int(ev["batch"]))
        r = identifiability_r2(z_tr, tr["state"][:n_sub], tr["clamped"][:n_sub], z_te, te["state"], te["clamped"])
        W = model.probe.weight.detach().cpu().numpy()
        b = model.probe.bias.detach().cpu().numpy()
        return {"test/r2_all_subsetfit": r["r2_all"], "test/r2_unclamped_subsetfit": r["r2_unclamped"],
                "test/r2_notebook": notebook_r2(W, b, z_te[vid], te["state"][vid]),
                **encoding_spread(encode(model, tr["frames"][:n_sub], int(ev["batch"]), raw=True))}

    if resume_key is None:
        resume_key = json.dumps({k: v for k, v in cfg.items() if k not in ("progress", "threads", "device")},
                                sort_keys=True, default=str)
    key = {"provenance": resume_key}
    ckpt_dir = out_dir / "checkpoints"
    discard_stale_checkpoint(ckpt_dir, key)
    t0 = time.perf_counter()
    history = fit(model=model, optimizer=optimizer, scheduler=scheduler, epochs=int(optim["epochs"]),
                  batches=batches, step_fn=step_fn, ckpt_dir=ckpt_dir, end_epoch=end_epoch,
                  on_epoch=on_epoch, max_steps=optim.get("max_steps"), extra={"config": cfg},
                  resume_key=key, progress=bool(cfg.get("progress", True)),
                  desc=f"{cfg['loss']} s{seed}", device=device)
    wall = time.perf_counter() - t0
    final = dict(history["epochs"][-1]) if history["epochs"] else {}
    summary = {"loss": cfg["loss"], "seed": seed, "steps": final.get("step", 0), "epochs": len(history["epochs"]),
               "wall_time_this_call_s": wall,
               "train_time_total_s": float(sum(e.get("epoch_time_s", 0.0) for e in history["epochs"])),
               "final": final}
    save_torch({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "config": cfg}, out_dir / "model.pt")
    write_json(out_dir / "history.json", {"epochs": history["epochs"]})
    write_json(out_dir / "train_metrics.json", summary)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary


def load_model(run_dir: Path | str, input_dim: int, target_dim: int) -> tuple[PredictiveLDM, dict[str, Any]]:
    """The trained model of ``run_dir/model.pt`` (on CPU) and its config."""
    return load_trained_run(
        run_dir, lambda cfg: PredictiveLDM(cfg["model"], input_dim, target_dim, int(cfg["seed"]), cfg["loss"]),
        "identifiability")


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------


def _grid_2d(enc: np.ndarray, W: np.ndarray, c: np.ndarray) -> np.ndarray:
    """2-D coordinates of grid encodings for the orientation metric: the encodings themselves if d = 2,
    else their affine decoding into the first two state coordinates."""
    if enc.shape[-1] == 2:
        return enc
    return (enc @ W + c)[..., :2]


def data_baselines(tr: Mapping[str, np.ndarray], te: Mapping[str, np.ndarray], d: int,
                   max_fit_frames: Optional[int] = 100_000) -> dict[str, float]:
    """Baselines that depend on the data only, each ``r2_all`` / ``r2_unclamped``:

    * ``pixels_pca_unsupervised`` — PCA of the pixels to d components (no labels), then the same affine
      read-out as the encoder: the unsupervised linear map from raw pixels with the encoder's bottleneck;
      the baseline the learned encoder has to beat.
    * ``pixels_ols_supervised`` — OLS from all P pixels to the state (the labels choose P·k + k weights): a
      supervised linear *ceiling*, not a baseline. With the paper's frames it is ≈ 1 on unclamped frames
      because the swirl is a fixed linear map of the image (predictive.md §1.1) and a σ = 1 px blob's
      centre is nearly linear in its pixels (``benchmarks/identifiability_pixel_baselines.py``: the same
      R² with and without the swirl).
    """
    args = (tr["state"], tr["clamped"])
    pixels = identifiability_r2(tr["frames"], *args, te["frames"], te["state"], te["clamped"],
                                max_train_frames=max_fit_frames)
    mu, axes = pca_fit(tr["frames"], d, max_rows=max_fit_frames or 200_000)
    pca = identifiability_r2(pca_transform(tr["frames"], mu, axes), *args, pca_transform(te["frames"], mu, axes),
                             te["state"], te["clamped"], max_train_frames=max_fit_frames)
    return {"pixels_ols_supervised/r2_all": pixels["r2_all"],
            "pixels_ols_supervised/r2_unclamped": pixels["r2_unclamped"],
            "pixels_pca_unsupervised/r2_all": pca["r2_all"], "pixels_pca_unsupervised/r2_unclamped": pca["r2_unclamped"]}


def evaluate(run_dir: Path | str, data_dir: Path | str, include_data_baselines: bool = True) -> dict[str, Any]:
    """Held-out identifiability numbers of a trained run and its baselines; writes ``eval.json`` and
    ``latents.npz`` (grid encodings before/after, a test video's latents) in ``run_dir``.

    Rows: the learned encoder; the same encoder at random init (same seed); ``pixels_pca_unsupervised``
    (PCA of the pixels to d components + affine: the unsupervised linear pixel baseline) and
    ``pixels_ols_supervised`` (OLS on all P pixels: a supervised linear ceiling), see :func:`data_baselines`. Each: ``r2_all``,
    ``r2_unclamped``; the learned one also the notebook-style R² and the orientation consistency of the
    Fig. 5C grid map before/after learning. ``include_data_baselines=False`` skips the two pixel
    rows (they depend on the data only; see :func:`data_baselines`).
    """
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)["config"]
    torch.set_num_threads(int(saved.get("threads", 1)))
    tr, te, meta = _load_data(data_dir, saved.get("n_train"))
    P, k = tr["frames"].shape[-1], tr["state"].shape[-1]
    model, cfg = load_model(run_dir, P, k)
    ev = cfg["eval"]
    mx = int(ev["max_fit_frames"])
    rand = PredictiveLDM(cfg["model"], P, k, int(cfg["seed"]), cfg["loss"]).eval()
    dcfg = config_from_meta(meta)
    out: dict[str, Any] = {"loss": cfg["loss"], "seed": int(cfg["seed"]), "state_dim": int(cfg["model"]["state_dim"]),
                           "data_state_dim": int(dcfg.state_dim), "renderer": dcfg.renderer,
                           "encoding_norm": model.encoding_norm, "encoder_layers": model.encoder.hidden_layers, "encoder_width": model.encoder.hidden_dim,
                           "n_train_sequences": int(tr["frames"].shape[0]), "n_test_sequences": int(te["frames"].shape[0]),
                           "clamped_fraction_train": float(tr["clamped"].mean()),
                           "clamped_fraction_test": float(te["clamped"].mean())}
    bs = int(ev["batch"])
    z_tr, z_te = encode(model, tr["frames"], bs), encode(model, te["frames"], bs)
    r_tr, r_te = encode(rand, tr["frames"], bs), encode(rand, te["frames"], bs)
    args = (tr["state"], tr["clamped"])
    learned = identifiability_r2(z_tr, *args, z_te, te["state"], te["clamped"], max_train_frames=mx)
    random_init = identifiability_r2(r_tr, *args, r_te, te["state"], te["clamped"], max_train_frames=mx)
    for name, r in (("learned", learned), ("random_init", random_init)):
        out[f"{name}/r2_all"] = r["r2_all"]
        out[f"{name}/r2_unclamped"] = r["r2_unclamped"]
    if include_data_baselines:
        out.update(data_baselines(tr, te, int(cfg["model"]["state_dim"]), mx))
    out["learned/r2_unclamped_fit_all"] = learned["r2_unclamped_fit_all"]
    vid = min(int(ev["notebook_video"]), te["frames"].shape[0] - 1)
    out["learned/r2_notebook"] = notebook_r2(model.probe.weight.detach().numpy(), model.probe.bias.detach().numpy(),
                                             z_te[vid], te["state"][vid])
    # Fig. 5C: a grid of positions rendered noise-free, encoded before (random init) and after learning
    grid = grid_states(int(ev["grid_n"]), float(ev["grid_lim"]), dcfg.state_dim)
    gframes = render(grid, dcfg, int(meta["seed"]))
    g_after, g_before = encode(model, gframes, bs), encode(rand, gframes, bs)
    fit_after = affine_r2(z_tr, tr["state"], z_te, te["state"], ~tr["clamped"], ~te["clamped"], mx)
    fit_before = affine_r2(r_tr, tr["state"], r_te, te["state"], ~tr["clamped"], ~te["clamped"], mx)
    for name, g, f in (("after", g_after, fit_after), ("before", g_before, fit_before)):
        oc = orientation_consistency(_grid_2d(g, f["W"], f["c"]))
        out[f"grid_{name}/orientation_consistency"] = oc["orientation_consistency"]
        out[f"grid_{name}/fold_fraction"] = oc["fold_fraction"]
        out[f"grid_{name}/degenerate_fraction"] = oc["degenerate_fraction"]
        # R² of the grid positions (the two varied coordinates) from the grid encodings, through the
        # affine map fitted on the training data
        gp = (g @ f["W"] + f["c"])[..., :2].reshape(-1, 2)
        out[f"grid_{name}/r2"] = r2_score(grid[..., :2].reshape(-1, 2), gp)
    tm = run_dir / "train_metrics.json"
    if tm.is_file():
        out["train_time_s"] = json.loads(tm.read_text()).get("train_time_total_s")
    save_npz(run_dir / "latents.npz", grid=grid, grid_after=g_after, grid_before=g_before,
             z_test=z_te[:4], state_test=te["state"][:4], clamped_test=te["clamped"][:4],
             frames_test=te["frames"][:1], W_after=fit_after["W"], c_after=fit_after["c"],
             W_before=fit_before["W"], c_before=fit_before["c"])
    write_json(run_dir / "eval.json", out)
    return out
