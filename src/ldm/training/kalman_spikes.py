"""Kalman LDM on binned spike trains (paper Sec. 6.1 / App. B, hippocampus; Fig. 4E-G): windows of the
training block drawn by :class:`ldm.data.spike_windows.WindowSampler`, the Kalman predictive-SSL model of
:mod:`ldm.models.kalman_ssl` (per-bin MLP encoder, input-dependent observation noise, kNN entropy), trained
through the shared resumable loop and the device layer, and filtering a whole recording with a trained model.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch

from ldm.data.spike_windows import SpikeSeries, WindowSampler, load_spike_series, time_split, transform_counts
from ldm.models.kalman_defaults import DEFAULTS
from ldm.pipeline.config import merge_settings
from ldm.models.kalman_ssl import KalmanSSL, kalman_nll, ssl_loss
from ldm.pipeline.io import write_json
from ldm.training.checkpoint import load_trained_run, save_trained_run
from ldm.training.device import Device
from ldm.training.loop import discard_stale_checkpoint, fit
from ldm.training.optim import build_optimizer, build_scheduler

#: Data / sampling defaults of the hippocampus runs (paper App. B: 10-s windows = 400 bins of 25 ms,
#: 100 000 windows per epoch; CEBRA demo split 80/20 by time).
DATA_DEFAULTS: dict[str, Any] = {"n_units": 120, "window": 400, "windows_per_epoch": 100_000,
                                 "train_fraction": 0.8, "input_transform": "none"}


def resolve(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Kalman DEFAULTS <- cfg (model/loss/knn/optim) with ``data`` filled from :data:`DATA_DEFAULTS`."""
    out = merge_settings({k: DEFAULTS[k] for k in ("model", "loss", "knn", "optim")}, {k: v for k, v in cfg.items() if k != "data"})
    for k, v in cfg.items():
        if k not in out:
            out[k] = v
    out["data"] = merge_settings(DATA_DEFAULTS, cfg.get("data"))
    out["model"]["input_dim"] = int(out["data"]["n_units"])
    return out


def build_model(cfg: Mapping[str, Any]) -> KalmanSSL:
    """The Kalman SSL model of a resolved config at its seed's initialisation (also the random-init baseline)."""
    return KalmanSSL(cfg["model"], seed=int(cfg["seed"]))


def epoch_seed(seed: int, epoch: int) -> int:
    return int(seed) * 1_000_003 + int(epoch) * 7919 + 23


@torch.no_grad()
def filter_series(model: KalmanSSL, x: np.ndarray, chunk: Optional[int] = None) -> dict[str, np.ndarray]:
    """Encode and filter a whole recording x [T, N] as one causal sequence (prior h = 0, P = I).
    Returns z [T, L], h (filtered mean) [T, S], P (filtered covariance) [T, S, S], obs_var [T, L],
    pred_mean [T, L], innov_cov [T, L, L] as numpy arrays. ``chunk``: restart the filter every ``chunk`` bins
    (None: one sequence)."""
    model.eval()
    dev = next(model.parameters()).device
    T = x.shape[0]
    step = chunk or T
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("z", "h", "P", "obs_var", "pred_mean", "innov_cov")}
    for a in range(0, T, step):
        xt = torch.from_numpy(np.ascontiguousarray(x[a:a + step])).float().unsqueeze(0).to(dev)
        z, out = model(xt)
        n = xt.shape[1]
        acc["z"].append(z[0].cpu().numpy())
        acc["h"].append(out.filt_mean[0].cpu().numpy())
        acc["P"].append(out.filt_cov.expand(1, n, -1, -1)[0].cpu().numpy())
        acc["obs_var"].append(out.obs_var.expand(1, n, -1)[0].cpu().numpy())
        acc["pred_mean"].append(out.pred_mean[0].cpu().numpy())
        acc["innov_cov"].append(out.innov_cov.expand(1, n, -1, -1)[0].cpu().numpy())
    return {k: np.concatenate(v, 0).astype(np.float64) for k, v in acc.items()}


def train(cfg: Mapping[str, Any], spikes_path: Path | str, out_dir: Path | str,
          tags: Optional[Mapping[str, Any]] = None, resume_key: Optional[str] = None,
          device: Optional[Device] = None, threads: int = 1, progress: bool = False,
          experiment: str = "hippocampus", _on_epoch_hook: Optional[Any] = None) -> dict[str, Any]:
    """Train one seed on the training block of ``spikes_path`` (see module doc).

    Per epoch: ``windows_per_epoch`` windows of ``window`` bins, batches of ``optim.batch_size``; the loss is
    the Kalman NLL minus T x the kNN entropy (``loss: knn``, Eq. 15 + App. A.5.2). Evaluation per epoch:
    the Kalman NLL per bin on the held-out block (filtered as one sequence). Writes ``out_dir/model.pt``,
    ``history.json``, ``train_metrics.json``; checkpoints under ``out_dir/checkpoints`` are resumed only under
    the same ``resume_key`` and deleted at the end. MLflow records params and per-epoch metrics."""
    from ldm.pipeline.tracking import mlflow_run

    cfg = resolve(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(threads))
    device = device or Device.from_settings({"device": "cpu"})
    seed = int(cfg["seed"])
    dcfg, ocfg = cfg["data"], cfg["optim"]
    series = load_spike_series(spikes_path, dcfg["n_units"])
    tr_sl, te_sl = time_split(series.n_bins, float(dcfg["train_fraction"]))
    x = transform_counts(series.counts, dcfg["input_transform"])
    x_train, x_test = x[tr_sl], x[te_sl]
    B = int(ocfg["batch_size"])
    n_win = int(dcfg["windows_per_epoch"])
    if n_win < B:
        raise ValueError(f"{experiment}: windows_per_epoch {n_win} < batch_size {B}")
    sampler = WindowSampler(x_train.shape[0], int(dcfg["window"]), n_win, seed)

    model = device.model(build_model(cfg))
    optimizer = build_optimizer(model, ocfg)
    scheduler = build_scheduler(optimizer, ocfg)

    def batches(epoch: int) -> Iterable[Any]:
        wins = torch.from_numpy(sampler.windows(x_train, epoch))
        perm = torch.randperm(n_win, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch)))
        for i in range(n_win // B):
            yield device.batch(wins[perm[i * B:(i + 1) * B]])

    def step_fn(batch: torch.Tensor, step: int):
        z, out = model(batch)
        loss, terms = ssl_loss(model, z, out, cfg)
        return loss, terms, {}

    def end_epoch(epoch: int, step: int, history: Mapping[str, Any]) -> dict[str, float]:
        xt = torch.from_numpy(x_test).unsqueeze(0).to(device.device)
        z, out = model(xt)
        return {"test/kalman_nll_per_bin": float(kalman_nll(z, out)) / x_test.shape[0],
                "kalman/log_scale": float(model.kalman.log_scale),
                "kalman/spectral_radius": float(torch.linalg.eigvals(model.kalman.transition()).abs().max()),
                "kalman/mean_obs_var": float(out.obs_var.mean())}

    ckpt_dir = out_dir / "checkpoints"
    resume_key = resume_key or json.dumps(cfg, sort_keys=True, default=str)
    discard_stale_checkpoint(ckpt_dir, {"provenance": resume_key})
    run_file = ckpt_dir / "mlflow_run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if (ckpt_dir / "last.pt").is_file() and run_file.is_file() else None
    name = f"{cfg.get('name', 'kalman')}_seed{seed}"
    t0 = time.perf_counter()
    with mlflow_run(experiment, f"{name}_train", params=cfg, tags={"experiment_part": name, "seed": seed, **dict(tags or {})},
                    run_id=run_id) as run:
        if run is not None:
            write_json(run_file, {"run_id": run.info.run_id})

        def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
            if run is not None:
                import mlflow

                mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in metrics.items()
                                    if isinstance(v, (int, float)) and math.isfinite(float(v))}, step=epoch)
            if _on_epoch_hook is not None:
                _on_epoch_hook(epoch, metrics)

        history = fit(model=model, optimizer=optimizer, scheduler=scheduler, epochs=int(ocfg["epochs"]),
                      batches=batches, step_fn=step_fn, ckpt_dir=ckpt_dir, end_epoch=end_epoch, on_epoch=on_epoch,
                      max_steps=ocfg.get("max_steps"), progress=progress, desc=f"{experiment} {name}",
                      extra={"config": cfg}, resume_key={"provenance": resume_key}, device=device)
        wall = time.perf_counter() - t0
        final = dict(history["epochs"][-1]) if history["epochs"] else {}
        summary = {"name": cfg.get("name"), "seed": seed, "steps": final.get("step", 0), "epochs": len(history["epochs"]),
                   "wall_time_this_call_s": wall,
                   "train_time_total_s": float(sum(e.get("epoch_time_s", 0.0) for e in history["epochs"])),
                   "final": final, "n_train_bins": int(x_train.shape[0]), "n_test_bins": int(x_test.shape[0])}
        save_trained_run(out_dir, model, cfg, history, summary, run, wall_time_s=wall)
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary


def load_model(run_dir: Path | str) -> tuple[KalmanSSL, dict[str, Any]]:
    """The trained model of ``run_dir/model.pt`` and its resolved config."""
    return load_trained_run(run_dir, build_model, "hippocampus")


__all__ = ["DATA_DEFAULTS", "SpikeSeries", "build_model", "filter_series", "load_model", "resolve", "train"]
