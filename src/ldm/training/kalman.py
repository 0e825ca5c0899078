"""Training of the Kalman predictive-SSL model (paper Sec. 6.1, Fig. 4): data tensors, the training
run through the shared resumable loop and the device layer, and loading a trained model."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch

from ldm.data.videos import VideoConfig, load_npz, render_clean
from ldm.evaluation import probes
from ldm.evaluation.rotation import dominant_rotation_deg, rotation_angles_deg
from ldm.models.kalman_defaults import DEFAULTS
from ldm.pipeline.config import merge_settings
from ldm.models.kalman_ssl import KalmanSSL, gradient_cosine, kalman_nll, training_loss
from ldm.pipeline.io import write_json
from ldm.training.checkpoint import load_trained_run, save_trained_run
from ldm.training.device import Device
from ldm.training.loop import discard_stale_checkpoint, fit
from ldm.training.optim import build_optimizer, build_scheduler

EXPERIMENT = "kalman"
log = logging.getLogger("ldm")


def _video_config(data_cfg: Mapping[str, Any]) -> VideoConfig:
    return VideoConfig.from_dict({k: v for k, v in data_cfg.items() if k not in ("seed", "name")})


def true_rotation_angles(data_cfg: Mapping[str, Any]) -> list[float]:
    """All rotation angles per step of the generating dynamics, fundamental first, derived from the
    motion itself (:func:`ldm.data.motions.rotation_angles_deg`; figure-eight: x at w, y at 2w)."""
    from ldm.data.motions import rotation_angles_deg

    return rotation_angles_deg(_video_config(data_cfg))


def true_rotation_deg(data_cfg: Mapping[str, Any]) -> float:
    """Rotation per step of the motion's fundamental (360 dt / loop time; figure-eight 180 dt / period)."""
    return true_rotation_angles(data_cfg)[0]


def matched_rotation_deg(A: torch.Tensor, true_deg: float) -> float:
    """The learned rotation angle (complex eigenvalue pair of A) closest to ``true_deg``; 0 if none."""
    angles = rotation_angles_deg(A)
    return min(angles, key=lambda a: abs(a - true_deg)) if angles else 0.0


class VideoTensors:
    """A split as torch tensors; optionally keeps the clean frames to redraw pixel noise per epoch."""

    def __init__(self, path: Path, keep_clean: bool, data_cfg: Mapping[str, Any]) -> None:
        arrays, meta = load_npz(path)
        self.path = path
        self.meta = meta
        self.frames = torch.from_numpy(arrays["frames"])
        self.position = torch.from_numpy(arrays["position"])
        self.noise_level = torch.from_numpy(arrays["noise_level"])
        self.jumps = torch.from_numpy(arrays["jumps"]) if "jumps" in arrays else None
        self.n = self.frames.shape[0]
        self.clean: Optional[torch.Tensor] = None
        if keep_clean:
            vc = VideoConfig.from_dict({k: v for k, v in data_cfg.items() if k not in ("seed", "name")})
            self.clean = torch.from_numpy(
                render_clean(arrays["position"].astype(np.float64), vc.image_dim, vc.half_flip).astype(np.float32))
            self.noise_std = self.noise_level.sqrt().unsqueeze(-1)

    def epoch_frames(self, generator: torch.Generator) -> torch.Tensor:
        """Frames with freshly drawn pixel noise (or the stored frames if no clean copy is kept)."""
        if self.clean is None:
            return self.frames
        return self.clean + self.noise_std * torch.randn(self.clean.shape, generator=generator)


def spread_metrics(z: np.ndarray, innov_cov: np.ndarray, pred_mean: np.ndarray) -> dict[str, float]:
    """Collapse diagnostics of the encodings z [N,T,L] (pooled over sequences and time): per-dimension
    standard deviation (mean and min), and the two parts of the Kalman NLL (Eq. 15) per step, the
    log-determinant 1/2 log det S_e and the Mahalanobis term 1/2 e^T S_e^-1 e. A shrinking encoding with
    a shrinking S_e lowers the log-det part without bound (the NLL is scale-covariant)."""
    zf = z.reshape(-1, z.shape[-1])
    sd = zf.std(0)
    Se = innov_cov.reshape(-1, *innov_cov.shape[-2:]).astype(np.float64)
    e = (z - pred_mean).reshape(-1, z.shape[-1]).astype(np.float64)
    Se_b = np.broadcast_to(Se, (e.shape[0], *Se.shape[1:])) if Se.shape[0] == 1 else Se
    logdet = 0.5 * np.linalg.slogdet(Se_b)[1]
    mahal = 0.5 * np.einsum("ni,ni->n", e, np.linalg.solve(Se_b, e[..., None])[..., 0])
    return {"enc/std_mean": float(sd.mean()), "enc/std_min": float(sd.min()),
            "nll/logdet_per_step": float(logdet.mean()), "nll/mahalanobis_per_step": float(mahal.mean())}


#: Collapse thresholds (issue 13): the encodings' spread fell below this fraction of its peak over the
#: epochs, or the per-epoch held-out R^2 fell this far below its peak; A within this of its radius bound.
COLLAPSE_SPREAD_RATIO = 0.2
COLLAPSE_R2_DROP = 0.05
BOUND_TOL = 0.005


def collapse_flags(m: Mapping[str, Any], previous: list[Mapping[str, Any]], rho_max: float) -> dict[str, Any]:
    """Collapse diagnostics of one epoch from its metrics ``m`` and the earlier epochs' ``previous``:
    ``collapse/spread_ratio`` (encoding std / its peak so far), ``collapse/r2_drop`` (peak held-out R^2 so
    far minus now), ``collapse/a_at_bound`` (rho(A) >= rho_max - BOUND_TOL; a warning sign -- a healthy
    kNN run can sit there too) and ``collapse/flag`` (spread ratio < COLLAPSE_SPREAD_RATIO or R^2 drop >
    COLLAPSE_R2_DROP)."""
    stds = [float(e["enc/std_mean"]) for e in previous if "enc/std_mean" in e] + [float(m["enc/std_mean"])]
    r2s = [float(e["test/r2_heldout_subset"]) for e in previous if "test/r2_heldout_subset" in e]
    r2s.append(float(m["test/r2_heldout_subset"]))
    ratio = stds[-1] / max(max(stds), 1e-30)
    drop = max(r2s) - r2s[-1]
    at_bound = float(m["kalman/spectral_radius"]) >= float(rho_max) - BOUND_TOL
    return {"collapse/spread_ratio": ratio, "collapse/r2_drop": drop, "collapse/a_at_bound": bool(at_bound),
            "collapse/flag": bool(ratio < COLLAPSE_SPREAD_RATIO or drop > COLLAPSE_R2_DROP)}


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) * 7919 + 17)


@torch.no_grad()
def filter_all(model: KalmanSSL, frames: torch.Tensor, batch: int = 256) -> dict[str, np.ndarray]:
    """Run encoder + filter over all sequences in chunks (no gradients). Returns numpy arrays: encodings z,
    filtered states h and covariances P, diag Sigma_D (obs_var), predictions z^, S_e (innov_cov), diag Sigma_A."""
    model.eval()
    keys = ("z", "h", "P", "obs_var", "pred_mean", "innov_cov", "process_var")
    acc: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    dev = next(model.parameters()).device
    for i in range(0, frames.shape[0], batch):
        x = frames[i:i + batch].to(dev)
        z, out = model(x)
        B = x.shape[0]
        acc["z"].append(z.cpu().numpy())
        acc["h"].append(out.filt_mean.cpu().numpy())
        acc["P"].append(out.filt_cov.expand(B, -1, -1, -1).cpu().numpy())
        acc["obs_var"].append(out.obs_var.expand(B, -1, -1).cpu().numpy())
        acc["pred_mean"].append(out.pred_mean.cpu().numpy())
        acc["innov_cov"].append(out.innov_cov.expand(B, -1, -1, -1).cpu().numpy())
        acc["process_var"].append(out.process_var.expand(B, -1, -1).cpu().numpy())
    return {k: np.concatenate(v, 0) for k, v in acc.items()}



def train(cfg: Mapping[str, Any], videos_dir: Path | str, out_dir: Path | str,
          tags: Optional[Mapping[str, Any]] = None, _on_epoch_hook: Optional[Any] = None,
          resume_key: Optional[str] = None, device: Optional[Device] = None, threads: int = 1,
          progress: bool = False) -> dict[str, Any]:
    """Train one run (resolved settings, see ``ldm.experiments.kalman.settings.resolve_run``) on
    ``videos_dir/{train,test}.npz``.

    Writes ``out_dir/checkpoints/last.pt`` every epoch and resumes from it only if it was written under
    the same ``resume_key`` (the job's provenance: settings, code and input files; default: the
    settings). At the end writes ``model.pt`` (weights + config), ``history.json`` (per-epoch metrics,
    per-step gradient cosines) and ``train_metrics.json``, then deletes the checkpoints (a finished run
    is never resumed). Per-epoch metrics go to MLflow (a resumed run continues its MLflow run).
    Raises ``NonFiniteLossError`` naming the step and the loss term if the loss becomes non-finite (the
    last good checkpoint is kept).
    """
    import json
    import math
    import shutil

    from ldm.pipeline.tracking import mlflow_run

    cfg = dict(cfg)
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(threads))
    device = device or Device.from_settings({"device": "cpu"})
    seed = int(cfg["seed"])
    optim_cfg = merge_settings(DEFAULTS["optim"], cfg.get("optim"))
    train_set = VideoTensors(videos_dir / "train.npz", bool(cfg.get("fresh_noise", True)), cfg["data"])
    test_set = VideoTensors(videos_dir / "test.npz", False, cfg["data"])
    B = int(optim_cfg["batch_size"])
    if train_set.n < B:
        raise ValueError(f"kalman: {train_set.n} training sequences < batch_size {B}")
    if train_set.frames.shape[-1] != int(cfg["model"].get("input_dim", 100)):
        raise ValueError(f"kalman: frames have {train_set.frames.shape[-1]} pixels, model.input_dim is "
                         f"{cfg['model'].get('input_dim')}")

    model = device.model(KalmanSSL(cfg["model"], seed=seed, loss=cfg.get("loss")))
    optimizer = build_optimizer(model, optim_cfg)
    scheduler = build_scheduler(optimizer, optim_cfg)
    every = int(cfg.get("grad_cos_every", 0) or 0)
    use_noise = model.noise_probe is not None
    n_sub = min(int(cfg.get("eval_train_subset", 64)), train_set.n)
    sub_frames = train_set.frames[:n_sub]
    sub_pos = train_set.position[:n_sub].numpy()
    vid = min(int(cfg.get("paper_probe_video", 2)), test_set.n - 1)
    true_angle = true_rotation_deg(cfg["data"])

    def batches(epoch: int) -> Iterable[tuple[torch.Tensor, ...]]:
        g = epoch_generator(seed, epoch)
        frames = train_set.epoch_frames(g)
        perm = torch.randperm(train_set.n, generator=g)
        for i in range(train_set.n // B):
            idx = perm[i * B:(i + 1) * B]
            yield device.batch((frames[idx], train_set.position[idx], train_set.noise_level[idx]))

    def step_fn(batch, step):
        frames, pos, level = batch
        loss, terms, z, out = training_loss(model, frames, pos, level if use_noise else None, cfg)
        extra = {}
        if every and step % every == 0:
            extra["grad_cos"] = gradient_cosine(model, z, out, cfg["knn"])
        return loss, terms, extra

    def end_epoch(epoch: int, step: int, history: Mapping[str, Any]) -> dict[str, float]:
        tr = filter_all(model, sub_frames, int(cfg.get("eval_batch", 256)))
        te = filter_all(model, test_set.frames, int(cfg.get("eval_batch", 256)))
        pos_te = test_set.position.numpy()
        r2 = probes.heldout_r2(tr["h"], sub_pos, te["h"], pos_te)["r2"]
        dev = device.device
        W = model.pos_probe.weight.detach().cpu().numpy()
        b = model.kalman.offset.detach().cpu().numpy()
        A = model.kalman.transition().detach().cpu()
        zt = torch.from_numpy(te["z"]).to(dev)
        _, out = model(test_set.frames.to(dev))
        m = {
            "test/r2_heldout_subset": r2,
            "test/r2_heldout_encoder_subset": probes.heldout_r2(tr["z"], sub_pos, te["z"], pos_te)["r2"],
            "test/r2_online_paper": probes.paper_probe_r2(te["h"][vid], b, W, pos_te[vid]),
            "test/r2_online_bias": probes.r2_score(
                pos_te.reshape(-1, 2), model.pos_probe(torch.from_numpy(te["h"] - b).to(dev)).cpu().numpy().reshape(-1, 2)),
            "test/kalman_nll": float(kalman_nll(zt, out)),
            "kalman/spectral_radius": float(torch.linalg.eigvals(A).abs().max()),
            "kalman/rotation_deg": matched_rotation_deg(A, true_angle),
            "kalman/rotation_dominant_deg": dominant_rotation_deg(A),
            "kalman/rotation_true_deg": true_angle,
            "kalman/log_scale": float(model.kalman.log_scale),
            "kalman/mean_obs_var": float(te["obs_var"].mean()),
        }
        m.update(spread_metrics(te["z"], te["innov_cov"], te["pred_mean"]))
        m.update(collapse_flags(m, history["epochs"], model.kalman.transition.rho_max))
        if m["collapse/flag"]:
            log.warning(f"kalman {cfg['name']} seed {seed} epoch {epoch}: COLLAPSE suspected "
                        f"(encoding spread {m['enc/std_mean']:.3g} = {m['collapse/spread_ratio']:.2f} x its peak, "
                        f"held-out R2 {r2:.3f}, {m['collapse/r2_drop']:.3f} below its peak, "
                        f"rho(A) {m['kalman/spectral_radius']:.4f})")
        cos = [s["grad_cos"] for s in history["steps"] if s.get("epoch") == epoch and "grad_cos" in s]
        if cos:
            m["grad_cos_mean"] = float(np.mean(cos))
        return m

    ckpt_dir = out_dir / "checkpoints"
    resume_key = resume_key or json.dumps(cfg, sort_keys=True, default=str)
    discard_stale_checkpoint(ckpt_dir, {"provenance": resume_key})
    run_file = ckpt_dir / "mlflow_run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if (ckpt_dir / "last.pt").is_file() and run_file.is_file() else None
    t_start = time.perf_counter()
    mlflow_tags = {"experiment_part": f"{cfg['name']}_seed{seed}", "seed": seed, **dict(tags or {})}
    with mlflow_run(EXPERIMENT, f"{cfg['name']}_seed{seed}_train", params=cfg, tags=mlflow_tags, run_id=run_id) as run:
        if run is not None:
            write_json(run_file, {"run_id": run.info.run_id})

        def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
            if run is not None:
                import mlflow

                mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in metrics.items()
                                    if isinstance(v, (int, float)) and math.isfinite(float(v))}, step=epoch)
            if _on_epoch_hook is not None:
                _on_epoch_hook(epoch, metrics)

        history = fit(
            model=model, optimizer=optimizer, scheduler=scheduler, epochs=int(optim_cfg["epochs"]),
            batches=batches, step_fn=step_fn, ckpt_dir=ckpt_dir, end_epoch=end_epoch,
            on_epoch=on_epoch, max_steps=optim_cfg.get("max_steps"), progress=progress,
            desc=f"{cfg['name']} seed {seed}", extra={"config": cfg},
            resume_key={"provenance": resume_key}, device=device,
        )
        wall = time.perf_counter() - t_start
        final = dict(history["epochs"][-1]) if history["epochs"] else {}
        cos = [s["grad_cos"] for s in history["steps"] if "grad_cos" in s]
        summary = {
            "name": cfg["name"], "seed": seed, "steps": final.get("step", 0), "epochs": len(history["epochs"]),
            "wall_time_this_call_s": wall,
            "train_time_total_s": float(sum(e.get("epoch_time_s", 0.0) for e in history["epochs"])),
            "final": final,
            "grad_cos_min": float(np.min(cos)) if cos else float("nan"),
            "grad_cos_max": float(np.max(cos)) if cos else float("nan"),
            "grad_cos_mean": float(np.mean(cos)) if cos else float("nan"),
            "collapsed": bool(final.get("collapse/flag", False)),
            "collapse_epochs": [int(e["epoch"]) for e in history["epochs"] if e.get("collapse/flag")],
            "a_at_bound": bool(final.get("collapse/a_at_bound", False)),
        }
        if summary["collapsed"]:
            log.warning(f"kalman {cfg['name']} seed {seed}: the final model is flagged as COLLAPSED "
                        f"(epochs flagged: {summary['collapse_epochs']})")
        save_trained_run(out_dir, model, cfg, history, summary, run, wall_time_s=wall)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary



def load_model(run_dir: Path | str) -> tuple[KalmanSSL, dict[str, Any]]:
    """Load ``run_dir/model.pt`` (written at the end of :func:`train`)."""
    return load_trained_run(run_dir, lambda cfg: KalmanSSL(cfg["model"], seed=int(cfg["seed"]), loss=cfg.get("loss")),
                            "kalman")

