"""Experiment ``hippocampus`` (issue 12): spike-file validation, windows and split, the input-dependent
observation noise for spike inputs, readout intervals, the Bayesian decoder bound, kill/resume and the
stage chain on a tiny simulated place-cell recording."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ldm.data.spike_windows import SpikeFileError, WindowSampler, load_spike_series, time_split
from ldm.pipeline.stages import Job, job_settings, run_stage

GRID = np.linspace(0.0, 1.6, 41)


def _rates(n_units: int, seed: int = 0) -> np.ndarray:
    """Tuning curves [grid, 2, units] (Hz): one Gaussian field per unit and direction, strong enough to decode."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 1.6, size=(2, n_units))
    return 0.5 + 40.0 * np.exp(-0.5 * ((GRID[:, None, None] - c[None]) / 0.12) ** 2)


def write_series(path: Path, n_bins: int = 1600, n_units: int = 24, seed: int = 0, drop: str | None = None) -> Path:
    """A back-and-forth run (80 bins per traversal) with Poisson place-cell counts in 25-ms bins."""
    rng = np.random.default_rng(seed)
    phase = (np.arange(n_bins) % 160) / 80.0
    pos = np.where(phase < 1, phase, 2 - phase) * 1.6
    direction = np.where(phase < 1, 1, -1)
    rates = _rates(n_units, seed)
    gi = np.clip(np.round(pos / 0.04).astype(int), 0, len(GRID) - 1)
    lam = rates[gi, (direction == -1).astype(int)] * 0.025
    arrays = {"counts": rng.poisson(lam).astype(np.int32), "position": pos, "direction": direction.astype(np.int8),
              "time": np.arange(n_bins) * 0.025}
    if drop:
        arrays.pop(drop)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


# ------------------------------------------------------------------------------------------- data


def test_wrong_unit_count_names_file_and_field(tmp_path):
    path = write_series(tmp_path / "spikes.npz", n_units=24)
    with pytest.raises(SpikeFileError) as err:
        load_spike_series(path, n_units=120)
    assert str(path) in str(err.value) and "'counts'" in str(err.value) and "24 units" in str(err.value)


def test_missing_position_names_file_and_field(tmp_path):
    path = write_series(tmp_path / "spikes.npz", drop="position")
    with pytest.raises(SpikeFileError) as err:
        load_spike_series(path, n_units=24)
    assert str(path) in str(err.value) and "'position'" in str(err.value)


def test_split_by_time_and_seeded_windows():
    tr, te = time_split(1000, 0.8)
    assert (tr.start, tr.stop, te.start, te.stop) == (0, 800, 800, 1000)
    s = WindowSampler(800, 400, 50, seed=3)
    a, b, c = s.starts(0), s.starts(0), s.starts(1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 400
    x = np.arange(800)
    w = s.windows(x, 0)
    assert w.shape == (50, 400) and np.all(np.diff(w, axis=1) == 1)  # contiguous, inside the training block
    with pytest.raises(ValueError, match="fewer than one window"):
        WindowSampler(300, 400, 5, seed=0)


# ------------------------------------------------------------------------------------------- model


def test_input_dependent_observation_noise_for_spikes():
    from ldm.models.kalman_ssl import KalmanSSL

    m = KalmanSSL({"input_dim": 24, "state_dim": 6, "latent_dim": 3, "obs_noise": "input"}, seed=0)
    x = torch.zeros(2, 30, 24)
    x[1, 10:20] = 5.0  # bursts of spikes in the second sequence
    z, out = m(x)
    assert out.obs_var.shape == (2, 30, 3) and torch.all(out.obs_var > 0)
    assert not torch.allclose(out.obs_var[0, 10:20], out.obs_var[1, 10:20])  # depends on the input
    assert torch.allclose(out.obs_var[0, :10], out.obs_var[1, :10])
    out.obs_var.sum().backward()
    assert m.kalman.obs_net.l1.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------- readouts


def test_linear_and_mlp_intervals_cover_when_the_latent_uncertainty_is_right():
    from ldm.evaluation.position_decoding import LinearReadout, MLPReadout

    rng = np.random.default_rng(0)
    T, S = 3000, 3
    m = rng.standard_normal((T, S))
    P = np.repeat((0.3 * np.eye(S))[None], T, 0)
    h_true = m + rng.standard_normal((T, S)) * np.sqrt(0.3)
    w = np.array([1.0, -0.5, 0.25])
    y = h_true @ w
    lin = LinearReadout(w=w, c=0.0, residual_var=0.0)
    _, lo, hi = lin.interval(m, P, include_residual=False)
    cov = np.mean((y >= lo) & (y <= hi))
    assert 0.93 < cov < 0.97, cov
    _, lo0, hi0 = lin.interval(m, P * 0.05, include_residual=False)  # overconfident latent -> undercoverage
    assert np.mean((y >= lo0) & (y <= hi0)) < 0.5
    mlp = MLPReadout(hidden=32, seed=0).fit(m, m @ w)
    _, mlo, mhi = mlp.interval(m[:500], P[:500], n_samples=1000, seed=0)
    cov_mlp = np.mean((y[:500] >= mlo) & (y[:500] <= mhi))
    assert 0.88 < cov_mlp < 0.99, cov_mlp


def test_bayes_filter_with_true_tuning_beats_knn_on_raw_spikes(tmp_path):
    from ldm.evaluation.bayes_decoder import bayes_filter_decode
    from ldm.evaluation.position_decoding import decoding_metrics, knn_decoder

    s = load_spike_series(write_series(tmp_path / "s.npz", n_bins=3200), 24)
    tr, te = time_split(s.n_bins)
    bt = bayes_filter_decode(s.counts[te], _rates(24), GRID, 0.025, speed=0.8)
    bayes = decoding_metrics(s.position[te], bt["position"], bt["lo"], bt["hi"])
    knn = knn_decoder(s.counts[tr], s.position[tr], s.direction[tr], s.counts[te], s.position[te], s.direction[te])
    assert bayes["median_error_cm"] < 0.5 * knn["median_error_cm"], (bayes, knn["median_error_cm"])
    assert bayes["median_error_cm"] < 10.0 and bayes["coverage_95"] > 0.8


# ------------------------------------------------------------------------------------------- training

CFG = {"seed": 1, "name": "tiny", "loss": "knn",
       "model": {"state_dim": 6, "latent_dim": 3, "hidden_dim": 16, "obs_noise": "input"},
       "optim": {"batch_size": 4, "lr": 0.05, "epochs": 3, "scheduler": "none"},
       "data": {"n_units": 24, "window": 40, "windows_per_epoch": 8, "train_fraction": 0.8}}


def test_kill_and_resume_gives_identical_metrics(tmp_path, monkeypatch):
    from ldm.evaluation.kalman_spikes import evaluate
    from ldm.training.kalman_spikes import train

    monkeypatch.setenv("LDM_MLFLOW", "0")
    spikes = write_series(tmp_path / "spikes.npz", n_bins=800)
    train(CFG, spikes, tmp_path / "full", resume_key="k")

    class Killed(RuntimeError):
        pass

    def kill(epoch, _):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(CFG, spikes, tmp_path / "resumed", resume_key="k", _on_epoch_hook=kill)
    assert (tmp_path / "resumed" / "checkpoints" / "last.pt").is_file() and not (tmp_path / "resumed" / "model.pt").exists()
    train(CFG, spikes, tmp_path / "resumed", resume_key="k")
    assert not (tmp_path / "resumed" / "checkpoints").exists()
    h_full = json.loads((tmp_path / "full" / "history.json").read_text())["epochs"]
    h_res = json.loads((tmp_path / "resumed" / "history.json").read_text())["epochs"]
    strip = lambda h: [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in h]  # noqa: E731
    assert strip(h_full) == strip(h_res)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, _ = evaluate(spikes, tmp_path / "full", n_samples=50, knn_k=5)
    rb, _ = evaluate(spikes, tmp_path / "resumed", n_samples=50, knn_k=5)
    drop = ("eval_time_s",)
    assert {k: v for k, v in ra.items() if k not in drop} == {k: v for k, v in rb.items() if k not in drop}


def test_training_rejects_a_file_with_another_unit_count(tmp_path, monkeypatch):
    from ldm.training.kalman_spikes import train

    monkeypatch.setenv("LDM_MLFLOW", "0")
    spikes = write_series(tmp_path / "spikes.npz", n_units=30)
    with pytest.raises(SpikeFileError, match=r"spikes.npz: field 'counts' has 30 units, expected 24"):
        train(CFG, spikes, tmp_path / "run")


# ------------------------------------------------------------------------------------------- stages

SECTION = {"seeds": [1, 2], "variant": "running", **{k: CFG[k] for k in ("model", "loss", "optim", "data")},
           "eval": {"n_samples": 40, "knn_k": 5, "stretch_bins": 100}}


def _config():
    return {"profile": "test", "experiments": ["hippocampus"], "compute": {"device": "cpu"},
            "hippocampus": copy.deepcopy(SECTION), "kalman": {"runs": {}}}


def test_job_settings_read_only_what_the_job_uses():
    tr, _ = job_settings("hippocampus.train", _config(), {"seed": "2"})
    assert tr["run"]["seed"] == 2 and tr["run"]["model"]["state_dim"] == 6 and tr["compute"] == {"device": "cpu"}
    cfg = _config()
    cfg["hippocampus"]["eval"]["n_samples"] = 7  # an evaluation option does not retrain
    assert job_settings("hippocampus.train", cfg, {"seed": "2"})[0] == tr
    assert job_settings("hippocampus.evaluate", cfg, {"seed": "2"})[0]["n_samples"] == 7
    assert job_settings("hippocampus.figures", cfg, {"seed": "2"})[0] == {"stretch_bins": 100}


def test_stage_chain_table_has_every_seed_baselines_and_cebra_band(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_MLFLOW", "0")
    spikes = write_series(tmp_path / "data" / "spikes.npz", n_bins=800)
    meta = tmp_path / "data" / "meta.json"
    meta.write_text(json.dumps({"source": "test", "bin_size": 0.025}))

    def job(stage, wc, inputs, outputs):
        settings, _ = job_settings(stage, _config(), wc)
        return Job(stage=stage, settings=settings, input={k: Path(v) for k, v in inputs.items()},
                   output={k: Path(v) for k, v in outputs.items()}, wildcards=wc)

    evals = {}
    for seed in ("1", "2"):
        run = tmp_path / "runs" / f"seed{seed}"
        run_stage(job("hippocampus.train", {"seed": seed}, {"spikes": spikes, "meta": meta},
                      {"model": run / "model.pt", "history": run / "history.json", "summary": run / "train_metrics.json"}))
        run_stage(job("hippocampus.evaluate", {"seed": seed}, {"spikes": spikes, "meta": meta, "model": run / "model.pt"},
                      {"eval": run / "eval.json", "latents": run / "latents_test.npz"}))
        evals[f"eval_seed{seed}"] = run / "eval.json"
    figs = tmp_path / "figures" / "seed1"
    run_stage(job("hippocampus.figures", {"seed": "1"}, {"eval": evals["eval_seed1"], "latents": tmp_path / "runs/seed1/latents_test.npz"},
                  {"figures": figs}))
    assert {p.name for p in figs.glob("*.png")} == {"fig4g_decoded_position.png", "fig4f_latent_trajectory.png", "figA4c_noise.png"}
    out = tmp_path / "summary"
    run_stage(job("hippocampus.summarize", {}, evals, {"metrics": out / "metrics.json", "table": out / "decoding.csv",
                                                       "paper_table": out / "paper.csv"}))
    rows = list(csv.DictReader((out / "decoding.csv").open()))
    methods = {(r["method"], r["seed"]) for r in rows}
    for seed in ("1", "2"):
        for m in ("ours/mlp", "ours/linear", "random_init/mlp", "pca/linear", "knn_raw", "bayes_empirical"):
            assert (m, seed) in methods
    assert all(r["direction_accuracy"] != "" for r in rows if r["method"] in ("ours/mlp", "ours/linear", "knn_raw"))
    cebra = {r["method"]: float(r["median_error_cm"]) for r in rows if r["method"].startswith("cebra")}
    assert cebra == {"cebra_behavior": 5.4, "cebra_time": 4.7, "cebra_pca": 22.4}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"] == [1, 2] and "ours_mlp_coverage_95_mean" in metrics and "knn_raw_median_error_cm_mean" in metrics


def test_linear_readout_noise_is_what_the_latent_uncertainty_leaves():
    from ldm.evaluation.position_decoding import LinearReadout

    rng = np.random.default_rng(1)
    T = 4000
    m = rng.standard_normal((T, 2))
    P = np.repeat((0.2 * np.eye(2))[None], T, 0)
    h = m + rng.standard_normal((T, 2)) * np.sqrt(0.2)
    y = h @ np.array([1.0, 0.5]) + 0.3 * rng.standard_normal(T)  # readout noise sd 0.3
    lin = LinearReadout.fit(m, y, P=P)
    assert abs(np.sqrt(lin.noise_var) - 0.3) < 0.05, lin.noise_var
    m2 = rng.standard_normal((T, 2))
    y2 = (m2 + rng.standard_normal((T, 2)) * np.sqrt(0.2)) @ np.array([1.0, 0.5]) + 0.3 * rng.standard_normal(T)
    _, lo, hi = lin.interval(m2, P)
    assert 0.93 < np.mean((y2 >= lo) & (y2 <= hi)) < 0.97
