"""The identifiability experiment's glue: per-job settings (each job reads only what it uses) and the
stage chain data → train → evaluate → figures → summarize on a tiny wobbly data set."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

from ldm.pipeline.stages import Job, job_settings, run_stage

SECTION = {
    "seeds": [1, 2],
    "data_seed": 3,
    "datasets": {"tiny": {"seq_len": 20, "n_train": 32, "n_test": 4}},
    "defaults": {"model": {"encoder": {"hidden_layers": 1, "hidden_dim": 16}},
                 "eval": {"train_subset": 16, "grid_n": 8, "max_fit_frames": 10000}},
    "runs": {
        "knn": {"dataset": "tiny", "loss": "knn", "optim": {"batch_size": 8, "epochs": 2}},
        "stopgrad": {"dataset": "tiny", "loss": "stopgrad", "optim": {"batch_size": 8, "epochs": 1}},
    },
}


def _config(section=None):
    return {"profile": "test", "experiments": ["identifiability"], "compute": {"device": "cpu"},
            "identifiability": copy.deepcopy(section or SECTION)}


def test_train_settings_read_only_its_run():
    settings, keys = job_settings("identifiability.train", _config(), {"run": "knn", "seed": "2"})
    assert settings["run"]["overrides"]["loss"] == "knn" and settings["run"]["seed"] == 2
    assert settings["run"]["dataset"] == "tiny" and settings["compute"] == {"device": "cpu"}
    assert not any("stopgrad" in k or "datasets" in k for k in keys), keys
    other = copy.deepcopy(SECTION)
    other["runs"]["stopgrad"]["optim"]["epochs"] = 7  # another run's change does not touch this job
    other["datasets"]["tiny"]["n_train"] = 64  # nor the data (an input file, not a setting)
    assert job_settings("identifiability.train", _config(other), {"run": "knn", "seed": "2"})[0] == settings
    data, _ = job_settings("identifiability.data", _config(), {"dataset": "tiny"})
    assert data == {"wobbly": SECTION["datasets"]["tiny"], "seed": 3}


def test_unknown_run_and_dataset_are_named():
    with pytest.raises(KeyError, match=r"identifiability.runs.vicreg is not defined"):
        job_settings("identifiability.train", _config(), {"run": "vicreg", "seed": "1"})
    with pytest.raises(KeyError, match=r"identifiability.datasets.big is not defined"):
        job_settings("identifiability.data", _config(), {"dataset": "big"})


def _job(stage, wc, inputs, outputs):
    settings, _ = job_settings(stage, _config(), wc)
    return Job(stage=stage, settings=settings, input={k: Path(v) for k, v in inputs.items()},
               output={k: Path(v) for k, v in outputs.items()}, wildcards=wc)


def test_stage_chain_writes_every_seed_and_baselines(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_MLFLOW", "0")
    monkeypatch.chdir(tmp_path)
    data = {"train": tmp_path / "data/tiny/train.npz", "test": tmp_path / "data/tiny/test.npz"}
    run_stage(_job("identifiability.data", {"dataset": "tiny"}, {}, data))
    evals = {}
    for run in ("knn", "stopgrad"):
        for seed in (1, 2):
            d = tmp_path / f"runs/{run}/seed{seed}"
            wc = {"run": run, "seed": str(seed)}
            out = {"model": d / "model.pt", "history": d / "history.json", "summary": d / "train_metrics.json"}
            run_stage(_job("identifiability.train", wc, data, out))
            assert out["model"].is_file() and not (d / "checkpoints").exists()
            ev = {"eval": d / "eval.json", "latents": d / "latents.npz"}
            run_stage(_job("identifiability.evaluate", wc, {**data, "model": out["model"]}, ev))
            evals[f"eval_{run}_seed{seed}"] = ev["eval"]
    hist = {k.replace("eval_", "history_"): Path(v).with_name("history.json") for k, v in evals.items()}
    run_stage(_job("identifiability.figures", {}, {**evals, **hist}, {"figures": tmp_path / "figures"}))
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert {"fig5b.png", "fig5c_knn_d2_seed1.png", "fig5c_stopgrad_d2_seed2.png", "figA6_losses.png",
            "training_curves.png"} <= set(names)
    outs = {"metrics": tmp_path / "metrics.json", "table": tmp_path / "runs.csv", "paper_table": tmp_path / "paper.csv"}
    run_stage(_job("identifiability.summarize", {}, evals, outs))
    m = json.loads(outs["metrics"].read_text())
    assert m["profile"] == "test" and m["seeds"] == [1, 2] and m["knn/seeds"] == [1, 2]
    for row in ("learned", "random_init", "pixels_pca_unsupervised", "pixels_ols_supervised"):
        assert -10 < m[f"stopgrad/{row}_r2_unclamped_mean"] <= 1
    assert m["knn/encoder"] == "1x16" and m["knn/loss"] == "knn"
    rows = list(csv.DictReader(outs["table"].open()))
    assert [(r["name"], r["seed"]) for r in rows] == [("knn", "1"), ("knn", "2"), ("stopgrad", "1"), ("stopgrad", "2")]
    assert all(r["random_init_r2_unclamped"] and r["pixels_ols_supervised_r2_all"] for r in rows)
    paper = list(csv.DictReader(outs["paper_table"].open()))
    assert paper[0]["metric"] == "knn/learned_r2_unclamped_mean" and float(paper[0]["ours"]) == pytest.approx(
        m["knn/learned_r2_unclamped_mean"])
