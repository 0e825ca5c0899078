"""Training of the Kalman predictive-SSL model (paper Sec. 6.1, Fig. 4): data tensors, the training
run through the shared resumable loop and the device layer, and loading a trained model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch

from ldm.data.videos import VideoConfig, load_npz, render_clean
from ldm.evaluation import probes
from ldm.evaluation.rotation import dominant_rotation_deg, rotation_angles_deg
from ldm.models.kalman_defaults import DEFAULTS, deep_merge
from ldm.models.kalman_ssl import KalmanSSL, gradient_cosine, kalman_nll, training_loss
from ldm.pipeline.io import save_torch, write_json
from ldm.training.device import Device
from ldm.training.loop import discard_stale_checkpoint, fit
from ldm.training.optim import build_optimizer, build_scheduler

EXPERIMENT = "kalman"


def true_rotation_deg(data_cfg: Mapping[str, Any]) -> float:
    """Rotation per step of the generating hidden dynamics: 360 dt / period (circular, square); the
    figure-eight's x component turns by 180 dt / period (its y component twice as fast)."""
    if data_cfg["motion"] == "figure8":
        return 180.0 * float(data_cfg["dt"]) / float(data_cfg["period"])
    return 360.0 * float(data_cfg["dt"]) / float(data_cfg["period"])


def true_rotation_angles(data_cfg: Mapping[str, Any]) -> list[float]:
    """All rotation angles per step of the generating dynamics (figure-eight: x at w, y at 2w)."""
    a = true_rotation_deg(data_cfg)
    return [a, 2 * a] if data_cfg["motion"] == "figure8" else [a]


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
    optim_cfg = deep_merge(DEFAULTS["optim"], cfg.get("optim"))
    train_set = VideoTensors(videos_dir / "train.npz", bool(cfg.get("fresh_noise", True)), cfg["data"])
    test_set = VideoTensors(videos_dir / "test.npz", False, cfg["data"])
    B = int(optim_cfg["batch_size"])
    if train_set.n < B:
        raise ValueError(f"kalman: {train_set.n} training sequences < batch_size {B}")
    if train_set.frames.shape[-1] != int(cfg["model"].get("input_dim", 100)):
        raise ValueError(f"kalman: frames have {train_set.frames.shape[-1]} pixels, model.input_dim is "
                         f"{cfg['model'].get('input_dim')}")

    model = device.model(KalmanSSL(cfg["model"], seed=seed))
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
        }
        save_torch({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "config": cfg}, out_dir / "model.pt")
        write_json(out_dir / "history.json", {"epochs": history["epochs"], "steps": history["steps"]})
        write_json(out_dir / "train_metrics.json", summary)
        if run is not None:
            import mlflow

            mlflow.log_metrics({"wall_time_s": wall, "train_time_total_s": summary["train_time_total_s"]})
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary



def load_model(run_dir: Path | str) -> tuple[KalmanSSL, dict[str, Any]]:
    """Load ``run_dir/model.pt`` (written at the end of :func:`train`)."""
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"kalman: no trained model at {path} (run the train stage first)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = state["config"]
    model = KalmanSSL(cfg["model"], seed=int(cfg["seed"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, cfg

