"""The categorical experiment's glue: per-job settings (each job reads only what it uses) and the stage
chain train → evaluate, baselines → figures → summarize on a tiny digits set."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ldm.pipeline.stages import Job, job_settings, run_stage

SECTION = {
    "dataset": "mnist",
    "seeds": [1, 2],
    "defaults": {"encoder": {"name": "small_cnn", "widths": [8, 16]}, "head_hidden": 16, "batch_size": 32,
                 "pairs_per_epoch": 64, "epochs": 2, "lr": 1e-3, "image_size": 16, "channels": 1},
    "runs": {
        "dm": {"objective": "dm", "p_start": 0.8, "p_end": 0.992},
        "mi": {"objective": "mi"},
    },
}


def _config(section=None):
    return {"profile": "test", "experiments": ["categorical"], "compute": {"device": "cpu"},
            "categorical": copy.deepcopy(section or SECTION)}


def test_train_settings_read_only_its_run():
    settings, keys = job_settings("categorical.train", _config(), {"run": "dm", "seed": "2"})
    assert settings["run"]["overrides"] == SECTION["runs"]["dm"] and settings["run"]["seed"] == 2
    assert settings["compute"] == {"device": "cpu"}
    assert not any(".mi" in k or "seeds" in k for k in keys), keys
    other = copy.deepcopy(SECTION)
    other["runs"]["mi"]["p_start"] = 0.9  # another run's change does not touch this job
    other["seeds"] = [1, 2, 3]
    assert job_settings("categorical.train", _config(other), {"run": "dm", "seed": "2"})[0] == settings
    base, _ = job_settings("categorical.baselines", _config(other), {"seed": "3"})
    assert base == {"dataset": "mnist", "defaults": SECTION["defaults"], "seed": 3}


def test_unknown_run_and_missing_runs_are_named():
    with pytest.raises(KeyError, match=r"categorical.runs.vicreg is not defined"):
        job_settings("categorical.train", _config(), {"run": "vicreg", "seed": "1"})
    section = {k: v for k, v in SECTION.items() if k != "runs"}
    with pytest.raises(KeyError, match=r"categorical.runs is missing"):
        job_settings("categorical.train", _config(section), {"run": "dm", "seed": "1"})


def test_bad_run_setting_names_the_run():
    from ldm.experiments.categorical.stages import resolved_run

    settings, _ = job_settings("categorical.train", _config(), {"run": "dm", "seed": "1"})
    settings["run"]["overrides"]["learning_rate"] = 1.0
    with pytest.raises(KeyError, match=r"categorical.runs.dm: unknown key\(s\) \['learning_rate'\]"):
        resolved_run(settings["run"])


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from ldm.data.image_standins import digits_standin

    splits = digits_standin(seed=1)
    folder = tmp_path_factory.mktemp("mnist")
    (tr_x, tr_y), (te_x, te_y) = splits["train"], splits["test"]
    np.savez(folder / "train.npz", images=tr_x[:200], labels=tr_y[:200])
    np.savez(folder / "test.npz", images=te_x[:80], labels=te_y[:80])
    (folder / "meta.json").write_text(json.dumps({"source": "stand-in"}))
    return folder


def _job(stage, wc, inputs, outputs):
    settings, _ = job_settings(stage, _config(), wc)
    return Job(stage=stage, settings=settings, input={k: Path(v) for k, v in inputs.items()},
               output={k: Path(v) for k, v in outputs.items()}, wildcards=wc)


def test_stage_chain_writes_every_seed_and_baselines(tmp_path, monkeypatch, digits):
    monkeypatch.setenv("LDM_MLFLOW", "0")
    monkeypatch.chdir(tmp_path)
    data = {"train": digits / "train.npz", "test": digits / "test.npz"}
    evals, codes, hists, bases = {}, {}, {}, {}
    for run in ("dm", "mi"):
        for seed in (1, 2):
            d = tmp_path / f"runs/{run}/seed{seed}"
            wc = {"run": run, "seed": str(seed)}
            out = {"model": d / "model.pt", "history": d / "history.json", "summary": d / "train_metrics.json",
                   "eval": d / "eval.json", "codes": d / "codes.npz"}
            run_stage(_job("categorical.train", wc, data, out))
            assert out["model"].is_file() and not (d / "checkpoints").exists()
            evals[f"eval_{run}_seed{seed}"], codes[f"codes_{run}_seed{seed}"] = out["eval"], out["codes"]
            hists[f"history_{run}_seed{seed}"] = out["history"]
    for seed in (1, 2):
        b = tmp_path / f"baselines/seed{seed}/eval.json"
        run_stage(_job("categorical.baselines", {"seed": str(seed)}, data, {"eval": b}))
        bases[f"baseline_seed{seed}"] = b
    hist = json.loads(hists["history_dm_seed1"].read_text())["epochs"]
    from ldm.objectives.categorical import CategoricalAnnealing

    # the paper's pace per pair seen: 64-pair epochs move T 64/60000 of a paper epoch (4/30 of the gap each)
    sched = CategoricalAnnealing(0.8, 0.992, epochs=30, pace=64 / 60000)
    assert [e["p"] for e in hist] == pytest.approx([sched.p(0), sched.p(1)]) and hist[1]["p"] > hist[0]["p"]
    ev = json.loads(evals["eval_dm_seed1"].read_text())
    assert ev["p_final"] == pytest.approx(hist[-1]["p"]) and ev["p_end"] == 0.992
    mi = json.loads(evals["eval_mi_seed1"].read_text())
    assert not {"p_start", "p_end", "p_final"} & set(mi)  # pure MI has no p: none recorded
    assert 0 <= ev["accuracy_greedy"] <= ev["accuracy_hungarian"] <= 1
    assert np.asarray(ev["confusion"]).sum() == 80
    z = np.load(codes["codes_dm_seed1"])
    assert z["probs"].shape == (80, 10) and np.allclose(z["probs"].sum(1), 1, atol=1e-4)
    assert np.all((z["entropy_bits"] >= 0) & (z["entropy_bits"] <= np.log2(10) + 1e-6))

    run_stage(_job("categorical.figures", {}, {"test": data["test"], **evals, **codes, **hists},
                   {"figures": tmp_path / "figures"}))
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"entropy_histograms.png", "confusion_matrices.png", "certain_digits_dm.png", "certain_digits_mi.png",
            "annealing_schedule.png", "training_curves.png"} <= names

    outs = {"metrics": tmp_path / "metrics.json", "table": tmp_path / "runs.csv", "paper_table": tmp_path / "paper.csv"}
    run_stage(_job("categorical.summarize", {}, {"meta": digits / "meta.json", **evals, **bases}, outs))
    m = json.loads(outs["metrics"].read_text())
    assert m["profile"] == "test" and m["source"] == "stand-in" and m["dm/seeds"] == [1, 2]
    assert m["dm/accuracy_greedy_mean"] == pytest.approx(np.mean(
        [json.loads(evals[f"eval_dm_seed{s}"].read_text())["accuracy_greedy"] for s in (1, 2)]))
    assert 0 < m["baselines/kmeans_raw_pixels_accuracy_greedy_mean"] <= 1
    assert m["dm_minus_mi_accuracy_greedy_mean"] == pytest.approx(m["dm/accuracy_greedy_mean"] - m["mi/accuracy_greedy_mean"])
    rows = list(csv.DictReader(outs["table"].open()))
    names = [(r["name"], r["seed"]) for r in rows]
    assert names[:4] == [("dm", "1"), ("dm", "2"), ("mi", "1"), ("mi", "2")]
    assert {("baseline_random_init", "1"), ("baseline_kmeans_raw_pixels", "2"),
            ("baseline_random_init_kmeans_features", "1")} <= set(names)
    assert rows[0]["paper_accuracy_greedy"] == "0.989"
    paper = list(csv.DictReader(outs["paper_table"].open()))
    assert paper[0]["metric"] == "dm/accuracy_greedy_mean" and float(paper[0]["paper"]) == 0.989
    assert float(paper[0]["ours"]) == pytest.approx(m["dm/accuracy_greedy_mean"])
