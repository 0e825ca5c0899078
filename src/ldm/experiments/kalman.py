"""Stages of the ``kalman`` experiment: predictive LDM with a Kalman filter on dot-motion videos
(paper Sec. 6.1, Fig. 4A-D, Fig. A3, Fig. A4).

    generate_videos -> train -> evaluate -> figures ; summarize (all runs) -> results/kalman/metrics.json

Config (the ``kalman:`` section of a profile)::

    kalman:
      seeds: [1]
      data_seed: 1
      defaults: {...}                      # overrides of ldm.predictive_ssl.DEFAULTS for every run
      datasets: {figure8: {motion: figure8, ...}, ...}   # ldm.videos.VideoConfig fields
      runs: {figure8_knn: {dataset: figure8, loss: knn, model: {...}, optim: {...}}, ...}

Every stage reads and writes files only; ``python -m ldm.experiments.kalman <stage> --config <yaml> ...``
is the command-line entry point used by the pipeline rules.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import torch

from ldm import probes
from ldm.checkpoint import atomic_torch_save
from ldm.predictive_ssl import (
    DEFAULTS, KalmanSSL, build_optimizer, build_scheduler, deep_merge, dominant_rotation_deg, gradient_cosine,
    kalman_nll, rotation_angles_deg, training_loss,
)
from ldm.training import discard_stale_checkpoint, fit
from ldm.videos import VideoConfig, load_npz, write_dataset

EXPERIMENT = "kalman"

#: Run-level settings beyond the model/optimiser (see DEFAULTS in ldm.predictive_ssl).
RUN_DEFAULTS: dict[str, Any] = {
    "fresh_noise": True,  # redraw pixel noise every epoch (the official training loader does)
    "grad_cos_every": 50,  # Fig. 4D: gradient cosine every N steps
    "eval_train_subset": 64,  # per-epoch held-out R^2 proxy: OLS on this many training sequences
    "eval_batch": 256,
    "paper_probe_video": 2,  # the notebook's single test video
    "threads": 1,
    "mlflow": True,
    "progress": True,
}


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------


def kalman_section(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``kalman`` section of a profile (or the mapping itself if it already is one)."""
    if "kalman" in config:
        return dict(config["kalman"])
    if "runs" in config and "datasets" in config:
        return dict(config)
    raise KeyError("config has no 'kalman' section (expected keys: kalman.runs, kalman.datasets)")


def dataset_config(section: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Resolved dataset config ``kalman.datasets.<name>`` (+ ``seed`` = ``kalman.data_seed``)."""
    datasets = section.get("datasets") or {}
    if name not in datasets:
        raise KeyError(f"kalman.datasets.{name} is not defined (known: {sorted(datasets)})")
    cfg = VideoConfig.from_dict(datasets[name]).to_dict()
    cfg["seed"] = int(section.get("data_seed", 1))
    cfg["name"] = name
    return cfg


def resolve_run(section: Mapping[str, Any], run: str, seed: int) -> dict[str, Any]:
    """Full config of run ``run`` with model seed ``seed``: DEFAULTS <- kalman.defaults <- kalman.runs.<run>."""
    runs = section.get("runs") or {}
    if run not in runs:
        raise KeyError(f"kalman.runs.{run} is not defined (known: {sorted(runs)})")
    base = deep_merge(deep_merge(DEFAULTS, RUN_DEFAULTS), section.get("defaults") or {})
    cfg = deep_merge(base, runs[run])
    if "dataset" not in cfg:
        raise KeyError(f"kalman.runs.{run}.dataset is missing")
    unknown = sorted(set(cfg) - set(base) - {"dataset"})
    if unknown:
        raise KeyError(f"kalman.runs.{run}: unknown key(s) {unknown}")
    cfg["data"] = dataset_config(section, cfg["dataset"])
    cfg["name"] = run
    cfg["seed"] = int(seed)
    return cfg


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML profile and return its ``kalman`` section."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config profile {path} does not exist")
    return kalman_section(yaml.safe_load(path.read_text()) or {})


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


def generate_videos(cfg: Mapping[str, Any], out_dir: Path | str) -> dict[str, Path]:
    """Stage 1: write ``train.npz`` and ``test.npz`` (independent seeds) for one dataset config."""
    vc = VideoConfig.from_dict({k: v for k, v in cfg.items() if k not in ("seed", "name")})
    return write_dataset(vc, int(cfg.get("seed", 1)), out_dir)


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
            from ldm.videos import render_clean

            self.clean = torch.from_numpy(
                render_clean(arrays["position"].astype(np.float64), vc.image_dim, vc.half_flip).astype(np.float32))
            self.noise_std = self.noise_level.sqrt().unsqueeze(-1)

    def epoch_frames(self, generator: torch.Generator) -> torch.Tensor:
        """Frames with freshly drawn pixel noise (or the stored frames if no clean copy is kept)."""
        if self.clean is None:
            return self.frames
        return self.clean + self.noise_std * torch.randn(self.clean.shape, generator=generator)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch) * 7919 + 17)


@torch.no_grad()
def filter_all(model: KalmanSSL, frames: torch.Tensor, batch: int = 256) -> dict[str, np.ndarray]:
    """Run encoder + filter over all sequences in chunks (no gradients). Returns numpy arrays: encodings z,
    filtered states h and covariances P, diag Sigma_D (obs_var), predictions z^, S_e (innov_cov), diag Sigma_A."""
    model.eval()
    keys = ("z", "h", "P", "obs_var", "pred_mean", "innov_cov", "process_var")
    acc: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for i in range(0, frames.shape[0], batch):
        x = frames[i:i + batch]
        z, out = model(x)
        B = x.shape[0]
        acc["z"].append(z.numpy())
        acc["h"].append(out.filt_mean.numpy())
        acc["P"].append(out.filt_cov.expand(B, -1, -1, -1).numpy())
        acc["obs_var"].append(out.obs_var.expand(B, -1, -1).numpy())
        acc["pred_mean"].append(out.pred_mean.numpy())
        acc["innov_cov"].append(out.innov_cov.expand(B, -1, -1, -1).numpy())
        acc["process_var"].append(out.process_var.expand(B, -1, -1).numpy())
    return {k: np.concatenate(v, 0) for k, v in acc.items()}


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------


def _mlflow_context(cfg: Mapping[str, Any], run_id: Optional[str], tags: Optional[Mapping[str, Any]] = None):
    if not cfg.get("mlflow", True):
        return nullcontext(None)
    from ldm.tracking import mlflow_run

    params = {k: v for k, v in cfg.items() if k not in ("progress",)}
    tags = {"experiment_part": cfg["name"], "seed": cfg["seed"], **dict(tags or {})}
    return mlflow_run(EXPERIMENT, f"{cfg['name']}_seed{cfg['seed']}", params=None if run_id else params,
                      tags=tags, run_id=run_id)


def _run_id_from_checkpoint(out_dir: Path) -> Optional[str]:
    p = out_dir / "mlflow_run.json"
    if p.is_file():
        try:
            return json.loads(p.read_text()).get("run_id")
        except (OSError, json.JSONDecodeError):
            return None
    return None


def _log_to_run(cfg: Mapping[str, Any], run_dir: Path, metrics: Optional[Mapping[str, Any]] = None,
                artifacts: Iterable[Path] = ()) -> None:
    """Add evaluation metrics / figure files to the run's MLflow run (reopened by its stored id)."""
    run_id = _run_id_from_checkpoint(run_dir)
    if not cfg.get("mlflow", True) or run_id is None:
        return
    import mlflow

    with _mlflow_context(cfg, run_id):
        if metrics:
            mlflow.log_metrics({f"eval_{k}": float(v) for k, v in metrics.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))})
        for p in artifacts:
            mlflow.log_artifact(str(p), artifact_path="figures")


def _write_json(path: Path, obj: Any) -> None:
    from ldm.io import write_json

    write_json(path, obj)


def train(cfg: Mapping[str, Any], videos_dir: Path | str, out_dir: Path | str,
          tags: Optional[Mapping[str, Any]] = None, _on_epoch_hook: Optional[Any] = None) -> dict[str, Any]:
    """Stage 2: train one run (resolved config from :func:`resolve_run`) on ``videos_dir/{train,test}.npz``.

    Writes ``out_dir/checkpoints/last.pt`` every epoch (resumed automatically), and at the end
    ``model.pt`` (weights + config), ``history.json`` (per-epoch metrics, per-step gradient cosines) and
    ``train_metrics.json``. Per-epoch metrics go to MLflow. Raises ``NonFiniteLossError`` naming the step
    and the loss term if the loss becomes non-finite (the last good checkpoint is kept).
    """
    cfg = dict(cfg)
    videos_dir, out_dir = Path(videos_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(cfg.get("threads", 1)))
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

    model = KalmanSSL(cfg["model"], seed=seed)
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
        g = _epoch_generator(seed, epoch)
        frames = train_set.epoch_frames(g)
        perm = torch.randperm(train_set.n, generator=g)
        for i in range(train_set.n // B):
            idx = perm[i * B:(i + 1) * B]
            yield frames[idx], train_set.position[idx], train_set.noise_level[idx]

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
        W = model.pos_probe.weight.detach().numpy()
        b = model.kalman.offset.detach().numpy()
        A = model.kalman.transition().detach()
        zt = torch.from_numpy(te["z"])
        _, out = model(test_set.frames)
        m = {
            "test/r2_heldout_subset": r2,
            "test/r2_online_paper": probes.paper_probe_r2(te["h"][vid], b, W, pos_te[vid]),
            "test/r2_online_bias": probes.r2_score(
                pos_te.reshape(-1, 2), model.pos_probe(torch.from_numpy(te["h"] - b)).numpy().reshape(-1, 2)),
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

    resume_key = {k: v for k, v in cfg.items() if k not in ("progress", "mlflow")}
    if discard_stale_checkpoint(out_dir / "checkpoints", resume_key):
        (out_dir / "mlflow_run.json").unlink(missing_ok=True)  # the old run belongs to the old settings
    run_id = _run_id_from_checkpoint(out_dir)
    t_start = time.perf_counter()
    with _mlflow_context(cfg, run_id, tags) as run:
        if run is not None and run_id is None:
            _write_json(out_dir / "mlflow_run.json", {"run_id": run.info.run_id})

        def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
            if run is not None:
                import mlflow

                mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in metrics.items()
                                    if isinstance(v, (int, float)) and math.isfinite(float(v))}, step=epoch)
            if _on_epoch_hook is not None:
                _on_epoch_hook(epoch, metrics)

        history = fit(
            model=model, optimizer=optimizer, scheduler=scheduler, epochs=int(optim_cfg["epochs"]),
            batches=batches, step_fn=step_fn, ckpt_dir=out_dir / "checkpoints", end_epoch=end_epoch,
            on_epoch=on_epoch, max_steps=optim_cfg.get("max_steps"), progress=bool(cfg.get("progress", True)),
            desc=f"{cfg['name']} s{seed}", extra={"config": cfg},
            resume_key=resume_key,
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
        atomic_torch_save({"model": model.state_dict(), "config": cfg}, out_dir / "model.pt")
        _write_json(out_dir / "history.json", {"epochs": history["epochs"], "steps": history["steps"]})
        _write_json(out_dir / "train_metrics.json", summary)
        if run is not None:
            import mlflow

            mlflow.log_metrics({"wall_time_s": wall, "train_time_total_s": summary["train_time_total_s"]})
    return summary


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


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------


def evaluate(cfg: Optional[Mapping[str, Any]], videos_dir: Path | str, run_dir: Path | str) -> dict[str, Any]:
    """Stage 3: held-out OLS R^2 (train latents -> all test sequences; primary), the paper's online-probe
    R^2, noise-level decoding and noise-aware filtering (inferred Sigma_D), learned rotation angle.

    Writes ``run_dir/eval.json`` and ``run_dir/latents_test.npz`` (what the figures need).
    """
    run_dir = Path(run_dir)
    videos_dir = Path(videos_dir)
    model, saved_cfg = load_model(run_dir)
    cfg = dict(saved_cfg if cfg is None else cfg)
    torch.set_num_threads(int(cfg.get("threads", 1)))
    train_arr, _ = load_npz(videos_dir / "train.npz")
    test_arr, _ = load_npz(videos_dir / "test.npz")
    bs = int(cfg.get("eval_batch", 256))
    tr = filter_all(model, torch.from_numpy(train_arr["frames"]), bs)
    te = filter_all(model, torch.from_numpy(test_arr["frames"]), bs)
    pos_tr, pos_te = train_arr["position"], test_arr["position"]
    fitres = probes.heldout_r2(tr["h"], pos_tr, te["h"], pos_te)
    W, c = fitres["W"], fitres["c"]
    enc_fit = probes.heldout_r2(tr["z"], pos_tr, te["z"], pos_te)
    skip = 10
    fit_skip = probes.heldout_r2(tr["h"][:, skip:], pos_tr[:, skip:], te["h"][:, skip:], pos_te[:, skip:])
    b = model.kalman.offset.detach().numpy()
    Wp = model.pos_probe.weight.detach().numpy()
    vid = min(int(cfg.get("paper_probe_video", 2)), pos_te.shape[0] - 1)
    A = model.kalman.transition().detach()
    hist_path = run_dir / "history.json"
    hist = json.loads(hist_path.read_text()) if hist_path.is_file() else {"steps": [], "epochs": []}
    cos = [s["grad_cos"] for s in hist["steps"] if "grad_cos" in s]
    res: dict[str, Any] = {
        "name": cfg["name"], "seed": int(cfg["seed"]), "loss": cfg["loss"], "dataset": cfg["dataset"],
        "r2_heldout": fitres["r2"],
        "r2_heldout_train_fit": fitres["r2_train"],
        "r2_heldout_skip10": fit_skip["r2"],
        "r2_heldout_encoder": enc_fit["r2"],
        "r2_online_paper": probes.paper_probe_r2(te["h"][vid], b, Wp, pos_te[vid]),
        "r2_online_bias_all_test": probes.r2_score(
            pos_te.reshape(-1, 2), ((te["h"] - b) @ Wp.T + model.pos_probe.bias.detach().numpy()).reshape(-1, 2)),
        "rotation_deg": matched_rotation_deg(A, true_rotation_deg(cfg["data"])),
        "rotation_dominant_deg": dominant_rotation_deg(A),
        "rotation_angles_deg": rotation_angles_deg(A),
        "rotation_true_deg": true_rotation_deg(cfg["data"]),
        "rotation_true_angles_deg": true_rotation_angles(cfg["data"]),
        "spectral_radius": float(torch.linalg.eigvals(A).abs().max()),
        "grad_cos_min": float(np.min(cos)) if cos else float("nan"),
        "grad_cos_max": float(np.max(cos)) if cos else float("nan"),
        "grad_cos_mean": float(np.mean(cos)) if cos else float("nan"),
        "grad_cos_positive_fraction": float(np.mean(np.asarray(cos) > 0)) if cos else float("nan"),
        "n_train_sequences": int(pos_tr.shape[0]), "n_test_sequences": int(pos_te.shape[0]),
    }
    tm = run_dir / "train_metrics.json"
    if tm.is_file():
        tmj = json.loads(tm.read_text())
        res["train_time_s"] = tmj.get("train_time_total_s")
    # uncertainty of the decoded position, propagated through the OLS probe: W^T P W
    pos_std = probes.probe_std(W, te["P"])
    pos_hat = probes.predict(te["h"], W, c)
    res["position_coverage_2sd"] = float(np.mean(np.abs(pos_hat - pos_te) <= 2 * pos_std))
    extra_arrays: dict[str, np.ndarray] = {}
    if model.kalman.obs_noise != "fixed":
        nl = probes.noise_level_decoding(tr["obs_var"], train_arr["noise_level"], te["obs_var"], test_arr["noise_level"])
        res.update({f"noise_decoding_{k}": v for k, v in nl.items()})
        # noise-aware filtering: position error of the filtered state vs the raw encoding, per noise bin
        err_f = np.linalg.norm(pos_hat - pos_te, axis=-1)
        z_hat = probes.predict(te["z"], enc_fit["W"], enc_fit["c"])
        err_z = np.linalg.norm(z_hat - pos_te, axis=-1)
        extra_arrays.update({"err_filtered": err_f, "err_encoder": err_z})
        res["err_filtered_mean"] = float(err_f.mean())
        res["err_encoder_mean"] = float(err_z.mean())
    if model.kalman.process_noise != "fixed" and "jumps" in train_arr and train_arr["jumps"].any():
        # jump configs: does the innovation-driven process noise rise at the jumps?
        q = tr["process_var"].mean(-1)
        jm = train_arr["jumps"].astype(bool)
        res["process_var_at_jumps"] = float(q[jm].mean())
        res["process_var_elsewhere"] = float(q[~jm].mean())
        res["process_var_jump_ratio"] = res["process_var_at_jumps"] / res["process_var_elsewhere"]
    np_b = {"offset": b, "D": model.kalman.D.numpy(), "A": A.numpy(), "W_ols": W, "c_ols": c,
            "W_enc": enc_fit["W"], "c_enc": enc_fit["c"]}
    from ldm.io import save_npz

    save_npz(run_dir / "latents_test.npz", position=pos_te, noise_level=test_arr["noise_level"],
             frames=test_arr["frames"], pos_hat=pos_hat, pos_std=pos_std, **te, **np_b, **extra_arrays)
    _write_json(run_dir / "eval.json", res)
    _log_to_run(cfg, run_dir, metrics=res)
    return res


# --------------------------------------------------------------------------------------------------
# figures and summary
# --------------------------------------------------------------------------------------------------


def figures(cfg: Optional[Mapping[str, Any]], videos_dir: Path | str, run_dir: Path | str,
            fig_dir: Path | str) -> list[Path]:
    """Stage 4: per-run figures (example frames, latent trajectories +-2 sigma, decoded position with
    propagated uncertainty, gradient cosine, rotation angle, Fig. A4 panels) as PNG + PDF."""
    from ldm.figures import kalman as kfig

    run_dir, fig_dir = Path(run_dir), Path(fig_dir)
    ev = json.loads((run_dir / "eval.json").read_text())
    from ldm.io import load_npz as _load

    lat = _load(run_dir / "latents_test.npz")
    hist = json.loads((run_dir / "history.json").read_text())
    name = f"{ev['name']}_seed{ev['seed']}"
    paths = []
    paths += kfig.example_frames(lat["frames"][0], lat["position"][0], fig_dir / f"frames_{name}",
                                 title=f"{ev['dataset']} (test video 0)")
    paths += kfig.latent_trajectories(lat, fig_dir / f"latents_{name}", title=name)
    paths += kfig.position_decoding(lat, fig_dir / f"position_{name}", title=f"{name}  R²={ev['r2_heldout']:.3f}")
    paths += kfig.grad_cos({name: hist["steps"]}, fig_dir / f"grad_cos_{name}")
    paths += kfig.rotation_angle(hist["epochs"], ev["rotation_true_deg"], fig_dir / f"rotation_{name}", title=name)
    if "err_filtered" in lat:
        paths += kfig.noise_panels(lat, fig_dir / f"noise_{name}", title=name)
    _log_to_run(dict(cfg) if cfg is not None else {"mlflow": True, "name": ev["name"], "seed": ev["seed"]},
                run_dir, artifacts=paths)
    return paths


def summarize(run_dirs: Iterable[Path | str], out: Path | str, profile: Optional[str] = None,
              fig_dir: Optional[Path | str] = None) -> dict[str, Any]:
    """Stage 5: aggregate eval.json of all runs -> flat ``metrics.json`` (mean/std over seeds),
    ``tables/runs.csv`` (one row per run and seed) and the combined Fig. 4D gradient-cosine figure."""
    out = Path(out)
    rows = []
    steps_by_run: dict[str, list] = {}
    for rd in run_dirs:
        rd = Path(rd)
        ev_path = rd / "eval.json"
        if not ev_path.is_file():
            raise FileNotFoundError(f"kalman: {ev_path} missing (run evaluate first)")
        ev = json.loads(ev_path.read_text())
        rows.append(ev)
        hp = rd / "history.json"
        if hp.is_file():
            steps_by_run[f"{ev['name']} (seed {ev['seed']})"] = json.loads(hp.read_text())["steps"]
    keys = ["r2_heldout", "r2_online_paper", "r2_heldout_encoder", "r2_heldout_skip10", "grad_cos_min",
            "grad_cos_max", "grad_cos_mean", "rotation_deg", "rotation_true_deg", "spectral_radius",
            "train_time_s", "noise_decoding_r2", "noise_decoding_spearman", "err_filtered_mean",
            "err_encoder_mean", "position_coverage_2sd", "process_var_jump_ratio"]
    metrics: dict[str, Any] = {"experiment": EXPERIMENT, "profile": profile or os.environ.get("LDM_PROFILE", "unknown"),
                               "r2_method": "held-out OLS with intercept: fit on filtered states of all training "
                                            "sequences, R2 on all test sequences (independent seed)"}
    names = sorted({r["name"] for r in rows})
    all_seeds = sorted({int(r["seed"]) for r in rows})
    metrics["seeds"] = all_seeds
    for name in names:
        rs = [r for r in rows if r["name"] == name]
        metrics[f"{name}/seeds"] = sorted(int(r["seed"]) for r in rs)
        metrics[f"{name}/loss"] = rs[0]["loss"]
        for k in keys:
            vals = [float(r[k]) for r in rs if r.get(k) is not None and not (isinstance(r[k], float) and math.isnan(r[k]))]
            if not vals:
                continue
            metrics[f"{name}/{k}_mean"] = float(np.mean(vals))
            metrics[f"{name}/{k}_std"] = float(np.std(vals))
        mins = [r["grad_cos_min"] for r in rs if not math.isnan(r.get("grad_cos_min", float("nan")))]
        if mins:
            metrics[f"{name}/grad_cos_all_positive"] = bool(min(mins) > 0)
    _write_json(out, metrics)
    table = out.parent / "tables" / "runs.csv"
    table.parent.mkdir(parents=True, exist_ok=True)
    cols = ["name", "seed", "loss", "dataset"] + keys
    tmp = table.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in sorted(rows, key=lambda r: (r["name"], r["seed"])):
            w.writerow([r.get(c, "") for c in cols])
    os.replace(tmp, table)
    if steps_by_run:
        from ldm.figures import kalman as kfig

        fd = Path(fig_dir) if fig_dir is not None else out.parent / "figures"
        kfig.grad_cos(steps_by_run, fd / "fig4d_grad_cos")
    return metrics


# --------------------------------------------------------------------------------------------------
# pipeline stages (``python -m ldm.cli stage kalman.<name> --job <json>``)
# --------------------------------------------------------------------------------------------------
# Job conventions: ``settings`` = the ``kalman`` config section (settings_key "kalman");
#   kalman.videos    wildcards {dataset};     output {train: data/kalman/<dataset>/train.npz, test: .../test.npz}
#   kalman.train     wildcards {run, seed};   input {train: data/kalman/<dataset>/train.npz};
#                    output {model: results/kalman/runs/<run>/seed<seed>/model.pt, ...}  (run dir = its folder)
#   kalman.evaluate  wildcards {run, seed};   input {train, model}; output {eval: <run dir>/eval.json, ...}
#   kalman.figures   wildcards {run, seed};   input {train, eval};  output: figure files, all in one folder
#   kalman.summarize input: every run's eval.json (any key names); output {metrics: results/kalman/metrics.json}

try:
    from ldm.stages import Job, stage
except ImportError:  # pragma: no cover - the library works without the pipeline layer
    Job, stage = None, None

if stage is not None:

    def _job_run(job: "Job") -> dict[str, Any]:
        return resolve_run(kalman_section(job.settings), job.wildcards["run"], int(job.wildcards["seed"]))

    @stage("kalman.videos")
    def videos_stage(job: "Job") -> None:
        """Generate one dataset's train/test videos."""
        generate_videos(dataset_config(kalman_section(job.settings), job.wildcards["dataset"]),
                        Path(job.output["train"]).parent)

    @stage("kalman.train")
    def train_stage(job: "Job") -> None:
        """Train one run x seed (resumes from its checkpoint)."""
        cfg = _job_run(job)
        cfg["progress"] = sys.stderr.isatty()
        train(cfg, Path(job.input["train"]).parent, Path(job.output["model"]).parent, tags=job.context)

    @stage("kalman.evaluate")
    def evaluate_stage(job: "Job") -> None:
        """Held-out R^2 and the other evaluation numbers of one run x seed."""
        evaluate(_job_run(job), Path(job.input["train"]).parent, Path(job.input["model"]).parent)

    @stage("kalman.figures")
    def figures_stage(job: "Job") -> None:
        """Per-run figures into the folder of the declared outputs."""
        fig_dir = Path(job.output["figures"])  # a directory output: this run's figures
        figures(_job_run(job), Path(job.input["train"]).parent, Path(job.input["eval"]).parent, fig_dir)

    @stage("kalman.summarize")
    def summarize_stage(job: "Job") -> None:
        """metrics.json + tables/runs.csv + Fig. 4D over all runs."""
        run_dirs = sorted({Path(p).parent for p in job.input.values() if Path(p).name == "eval.json"})
        summarize(run_dirs, job.output["metrics"], profile=os.environ.get("LDM_PROFILE"))


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m ldm.experiments.kalman <stage> --config <yaml> ...`` (stages: videos, train, evaluate,
    figures, summarize, list)."""
    p = argparse.ArgumentParser(prog="python -m ldm.experiments.kalman", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="stage", required=True)
    s = sub.add_parser("videos", help="generate data/<dataset>/{train,test}.npz")
    s.add_argument("--config", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True, help="output folder")
    for name, hlp in (("train", "train one run"), ("evaluate", "evaluate one trained run"),
                      ("figures", "figures of one run")):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--config", required=True)
        s.add_argument("--run", required=True)
        s.add_argument("--seed", type=int, required=True)
        s.add_argument("--videos", required=True, help="folder with train.npz / test.npz")
        s.add_argument("--out", required=True, help="run folder")
        if name == "train":
            s.add_argument("--no-mlflow", action="store_true")
            s.add_argument("--no-progress", action="store_true")
        if name == "figures":
            s.add_argument("--fig-dir", required=True)
    s = sub.add_parser("summarize", help="aggregate runs into metrics.json + tables/runs.csv")
    s.add_argument("--out", required=True, help="results/kalman/metrics.json")
    s.add_argument("--profile", default=None)
    s.add_argument("--fig-dir", default=None)
    s.add_argument("run_dirs", nargs="+")
    s = sub.add_parser("list", help="print the run list (run seed dataset) of a config")
    s.add_argument("--config", required=True)
    a = p.parse_args(argv)

    if a.stage == "videos":
        sec = load_config(a.config)
        generate_videos(dataset_config(sec, a.dataset), a.out)
    elif a.stage in ("train", "evaluate", "figures"):
        sec = load_config(a.config)
        cfg = resolve_run(sec, a.run, a.seed)
        if a.stage == "train":
            if a.no_mlflow:
                cfg["mlflow"] = False
            if a.no_progress:
                cfg["progress"] = False
            res = train(cfg, a.videos, a.out)
        elif a.stage == "evaluate":
            res = evaluate(cfg, a.videos, a.out)
        else:
            res = [str(x) for x in figures(cfg, a.videos, a.out, a.fig_dir)]
        print(json.dumps(res, indent=1, default=str)[:4000])
    elif a.stage == "summarize":
        res = summarize(a.run_dirs, a.out, profile=a.profile, fig_dir=a.fig_dir)
        print(json.dumps(res, indent=1))
    elif a.stage == "list":
        sec = load_config(a.config)
        for run in sec.get("runs", {}):
            for seed in sec.get("seeds", [1]):
                print(run, seed, sec["runs"][run].get("dataset"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
