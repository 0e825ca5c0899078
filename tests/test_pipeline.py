"""End to end on the smoke profile: Snakemake runs the DAG; DVC records, pushes, pulls and
reproduces it; a change reruns exactly the jobs it affects (asserted as exact job sets); MLflow is
a record, never an input; dvc.lock never calls an outdated output current."""

from __future__ import annotations

import filecmp
import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, git_commit, run

pytestmark = pytest.mark.slow

NOTHING = "Nothing to be done"
TARGETS = {"default", "all", "ica", "kalman"}  # target rules: no outputs of their own


def planned(ws: Path, *args: str, configfile: str | Path = "config/smoke.yaml", cwd: Path | None = None,
            snakefile: Path | None = None) -> set[str]:
    """The jobs `snakemake -n` plans, as 'rule[wildcards]' (target rules left out)."""
    cmd = ["snakemake", "-n", "--configfile", str(configfile), *args]
    if snakefile is not None:
        cmd[1:1] = ["-s", str(snakefile)]
    out = run(cmd, cwd or ws).stdout
    jobs, rule = set(), None
    for line in out.splitlines() + ["rule end:"]:
        m = re.match(r"^(?:local)?rule (\w+):", line)
        if m:
            if rule is not None and rule[0] not in TARGETS:
                jobs.add(f"{rule[0]}[{rule[1]}]")
            rule = (m.group(1), "")
        elif rule is not None and line.strip().startswith("wildcards:"):
            rule = (rule[0], line.split(":", 1)[1].strip())
    return jobs


def kalman_jobs(run_: str, seed: int = 1) -> set[str]:
    wc = f"run={run_}, seed={seed}"
    return {f"kalman_train[{wc}]", f"kalman_evaluate[{wc}]", f"kalman_figures[{wc}]"}


def _edit(path: Path, old: str, new: str) -> str:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))
    return text


def test_smoke_run_outputs(smoke_workspace: Path) -> None:
    metrics = json.loads((smoke_workspace / "results/ica/metrics.json").read_text())
    assert metrics["profile"] == "smoke"
    assert metrics["ou/min_abs_corr"] >= 0.99
    assert metrics["images/min_abs_corr"] >= 0.95
    for part in ("images", "ou"):
        for kind in ("histograms", "recovered", "objective"):
            png = smoke_workspace / f"results/ica/figures/{part}_{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert (smoke_workspace / f"results/ica/figures/{part}_{kind}.pdf").read_bytes()[:5] == b"%PDF-"
    kalman = json.loads((smoke_workspace / "results/kalman/metrics.json").read_text())
    for name in ("figure8_knn", "inferred_sigma"):  # every table carries its baselines
        assert {f"{name}/baseline_raw_pixels_r2_mean", f"{name}/baseline_untrained_r2_mean"} <= kalman.keys()


def test_job_logs_have_one_line_per_epoch(smoke_workspace: Path) -> None:
    log = (smoke_workspace / "logs/kalman/train_figure8_knn_seed1.log").read_text()
    lines = [ln for ln in log.splitlines() if " epoch " in ln]
    assert len(lines) == 2 and all(re.search(r"loss=\S+ .*r2_heldout_subset=\S+ .* s$", ln) for ln in lines), log


def test_finished_training_leaves_no_checkpoint(smoke_workspace: Path) -> None:
    runs = list((smoke_workspace / "results/kalman/runs").glob("*/seed*"))
    assert runs and not any((r / "checkpoints").exists() for r in runs)


def test_after_snakemake_both_tools_are_up_to_date(smoke_workspace: Path) -> None:
    assert planned(smoke_workspace) == set()
    assert "up to date" in run(["dvc", "status"], smoke_workspace).stdout


def test_one_runs_lr_reruns_that_run_only(smoke_workspace: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load((smoke_workspace / "config/smoke.yaml").read_text())
    cfg["kalman"]["runs"]["figure8_knn"]["optim"]["lr"] = 0.004
    (tmp_path / "lr.yaml").write_text(yaml.safe_dump(cfg))
    assert planned(smoke_workspace, configfile=tmp_path / "lr.yaml") == kalman_jobs("figure8_knn") | {"kalman_summarize[]"}


def test_one_ica_parts_fit_reruns_that_part_only(smoke_workspace: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load((smoke_workspace / "config/smoke.yaml").read_text())
    cfg["ica"]["images_mixed_kurtosis"]["fit"]["restarts"] = 2
    (tmp_path / "restarts.yaml").write_text(yaml.safe_dump(cfg))
    part = "part=images_mixed_kurtosis"
    assert planned(smoke_workspace, configfile=tmp_path / "restarts.yaml") == {
        f"ica_fit[{part}]", f"ica_evaluate[{part}]", f"ica_figures[{part}]", "ica_summarize[]"}


def test_execution_only_settings_rerun_nothing(smoke_workspace: Path, tmp_path: Path) -> None:
    assert planned(smoke_workspace, "--set-threads", "kalman_train=2", "--cores", "2") == set()


def test_figure_module_edit_reruns_figures_only(smoke_workspace: Path) -> None:
    path = smoke_workspace / "src/ldm/experiments/kalman/figures.py"
    original = _edit(path, '"""Figures of the', '_EDITED = 1\n"""Figures of the')
    try:
        want = {"kalman_figures[run=figure8_knn, seed=1]", "kalman_figures[run=inferred_sigma, seed=1]", "kalman_summarize[]"}
        assert planned(smoke_workspace) == want
    finally:
        path.write_text(original)
    assert planned(smoke_workspace) == set()  # same content again: checksums, not mtimes, decide


def test_video_generator_edit_reruns_videos_and_what_follows(smoke_workspace: Path) -> None:
    path = smoke_workspace / "src/ldm/data/videos.py"
    original = _edit(path, "def render_clean(", "_EDITED = 1\n\n\ndef render_clean(")
    try:
        want = {"kalman_videos[dataset=figure8]", "kalman_videos[dataset=circular_inferred]",
                *kalman_jobs("figure8_knn"), *kalman_jobs("inferred_sigma"), "kalman_summarize[]"}
        assert planned(smoke_workspace) == want
    finally:
        path.write_text(original)


def test_comment_and_formatting_edits_rerun_nothing(smoke_workspace: Path) -> None:
    # videos.py feeds every kalman job; a comment and blank lines change no code that runs
    path = smoke_workspace / "src/ldm/data/videos.py"
    original = _edit(path, "def render_clean(", "# a comment only\n\n\ndef render_clean(")
    try:
        assert planned(smoke_workspace) == set()
    finally:
        path.write_text(original)
    assert planned(smoke_workspace) == set()


def test_catalog_invocation_from_any_directory_plans_the_same(smoke_workspace: Path, tmp_path: Path) -> None:
    cfg = smoke_workspace / "config/smoke.yaml"
    here = run(["snakemake", "-n", "--forceall", "--configfile", str(cfg)], smoke_workspace).stdout
    there = run(["snakemake", "-s", str(smoke_workspace / "workflow/Snakefile"), "-n", "--forceall",
                 "--configfile", str(cfg)], tmp_path).stdout

    def jobs_and_inputs(out: str) -> set[tuple[str, str]]:
        blocks = re.findall(r"^(?:local)?rule (\w+):\n    input: ([^\n]*)", out, flags=re.M)
        return {(r, i) for r, i in blocks if r not in TARGETS}

    a, b = jobs_and_inputs(here), jobs_and_inputs(there)
    assert a == b and len(a) >= 10
    assert all("src/ldm/experiments/" in inputs for rule, inputs in a)  # code inputs are never empty
    assert not (tmp_path / "results").exists()  # outputs go to the repository, not the caller's cwd


def test_dvc_never_records_an_outdated_output(smoke_workspace: Path) -> None:
    cfg = smoke_workspace / "config/smoke.yaml"
    original = _edit(cfg, "lr: 0.005,", "lr: 0.004,")  # figure8_knn
    try:
        # rebuild only the ICA summary (target first: -R takes every name after it)
        run(["snakemake", "results/ica/metrics.json", "--cores", "1", "--configfile", "config/smoke.yaml",
             "-R", "ica_summarize"], smoke_workspace)
        status = run(["dvc", "status"], smoke_workspace).stdout
        assert "kalman_train_figure8_knn_1" in status and "modified" in status, status
        assert "ica_summarize" not in status, status
        assert kalman_jobs("figure8_knn") <= planned(smoke_workspace)
    finally:
        cfg.write_text(original)
    assert "up to date" in run(["dvc", "status"], smoke_workspace).stdout


def _mlflow_runs(ws: Path, name: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{ws / 'results/mlflow/mlflow.db'}")
    exp = client.get_experiment_by_name("kalman")
    return client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'")


def test_mlflow_is_a_record_never_an_input(smoke_workspace: Path) -> None:
    import shutil

    import mlflow

    shutil.rmtree(smoke_workspace / "results/mlflow")  # a fresh clone has no store
    run(["snakemake", "--cores", "2", "--configfile", "config/smoke.yaml", "-R", "ica_evaluate",
         "--until", "ica_evaluate"], smoke_workspace)  # its old MLflow run is gone: nothing needs it
    for _ in range(2):
        run(["snakemake", "--cores", "2", "--configfile", "config/smoke.yaml", "-R", "kalman_train",
             "--until", "kalman_train"], smoke_workspace)
    runs = _mlflow_runs(smoke_workspace, "figure8_knn_seed1_train")
    assert len(runs) == 2  # a rerun is a new run ...
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{smoke_workspace / 'results/mlflow/mlflow.db'}")
    for r in runs:  # ... never appended to the old one
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "train_loss")]
        assert steps == [1, 2], steps
    run(["snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"], smoke_workspace)
    assert planned(smoke_workspace) == set()


def test_dvc_yaml_matches_snakemake_dag(smoke_workspace: Path) -> None:
    run(["ldm", "dvc-yaml", "--configfile", "config/smoke.yaml", "--check"], smoke_workspace)
    spec = yaml.safe_load((smoke_workspace / "dvc.yaml").read_text())
    stages = {name: s for name, s in spec["stages"].items()}
    train = stages["kalman_train_figure8_knn_1"]
    assert train["params"] == [{"config/smoke.yaml": ["compute", "kalman.data_seed", "kalman.datasets.figure8",
                                                      "kalman.defaults", "kalman.runs.figure8_knn"]}]
    assert "src/ldm/training/kalman.py" in train["deps"] and "src/ldm/experiments/kalman/figures.py" not in train["deps"]
    assert spec["metrics"] and spec["plots"]


def test_committed_dvc_yaml_is_generated_from_the_default_dag() -> None:
    run(["ldm", "dvc-yaml", "--check"], REPO)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.is_dir():
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
            filecmp.cmp(a / f, b / f, shallow=False) for f in files
        )
    return filecmp.cmp(a, b, shallow=False)


def test_push_commit_lock_then_make_pull_in_fresh_clone(smoke_workspace: Path, tmp_path: Path) -> None:
    """The documented sharing workflow: run, `dvc push`, commit dvc.lock; a fresh clone runs
    `make pull` and is up to date for both tools, and a later config change reruns exactly its jobs."""
    run(["dvc", "push"], smoke_workspace)
    git_commit(smoke_workspace, "record smoke run (dvc.lock)")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(smoke_workspace), str(clone)], tmp_path)
    remote = run(["dvc", "remote", "list", "--local"], smoke_workspace).stdout.split()[1]
    run(["dvc", "remote", "modify", "--local", "local", "url", remote], clone)
    venv = Path(sys.executable).parents[1]
    run(["make", "pull", "PROFILE=config/smoke.yaml", f"VENV={venv}", "-o", f"{venv}/.installed"], clone)
    spec = yaml.safe_load((smoke_workspace / "dvc.yaml").read_text())
    outs = sorted(o for s in spec["stages"].values() for o in s.get("outs", []))
    assert any(o.startswith("data/") for o in outs)
    for rel in outs:
        assert _same_bytes(smoke_workspace / rel, clone / rel), rel
    assert planned(clone) == set()
    assert "up to date" in run(["dvc", "status"], clone).stdout
    _edit(clone / "config/smoke.yaml", "n_train: 16, n_test: 4}\n  ", "n_train: 24, n_test: 4}\n  ")  # figure8 videos
    want = {"kalman_videos[dataset=figure8]", *kalman_jobs("figure8_knn"), "kalman_summarize[]"}
    assert planned(clone) == want


def test_fresh_clone_of_the_repository_itself(tmp_path: Path) -> None:
    """As shipped (no dvc.lock, no outputs): DVC knows every stage and would run it; nothing errors."""
    clone = tmp_path / "shipped"
    run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path)
    status = run(["dvc", "status"], clone).stdout
    assert "kalman_train_figure8_knn_1" in status and "ica_sources_images" in status
    dag = run(["dvc", "dag", "--dot"], clone).stdout
    assert '"ica_sources_images" -> "ica_mixtures_images"' in dag and '"kalman_summarize"' in dag


def test_dvc_repro_in_fresh_clone_reproduces_metrics(smoke_workspace: Path, tmp_path: Path) -> None:
    clone = tmp_path / "repro"
    run(["git", "clone", "-q", str(smoke_workspace), str(clone)], tmp_path)
    (clone / "dvc.lock").unlink(missing_ok=True)
    run(["dvc", "repro"], clone, timeout=1500)
    for experiment in ("ica", "kalman"):
        expected = json.loads((smoke_workspace / f"results/{experiment}/metrics.json").read_text())
        got = json.loads((clone / f"results/{experiment}/metrics.json").read_text())
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            if "time_s" in key:  # wall-clock times differ between runs
                continue
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
            else:
                assert got[key] == value, key
    assert "up to date" in run(["dvc", "status"], clone).stdout
    assert planned(clone) == set()


def test_report_holds_every_figure_and_the_paper_tables(smoke_workspace: Path) -> None:
    import base64

    run(["snakemake", "--configfile", "config/smoke.yaml", "--report", "report.html"], smoke_workspace)
    text = (smoke_workspace / "report.html").read_text()
    figures = [p for p in (smoke_workspace / "results").rglob("*.png")]
    assert len(figures) >= 10
    for png in figures:  # every PNG the pipeline made is in the report, by name and bytes
        assert png.name in text, png
    sample = base64.b64encode((smoke_workspace / "results/ica/figures/ou_recovered.png").read_bytes()[:600]).decode()
    assert sample[:200] in text
    tables = [base64.b64decode(b).decode() for b in re.findall(r"paper_comparison\.csv;base64,([A-Za-z0-9+/=]+)", text)]
    assert len(tables) == 2  # ica and kalman: the paper's value beside ours
    assert any("figure8_knn/r2_heldout_mean" in t and "paper Fig. 4B" in t for t in tables)


def test_killed_training_after_a_settings_change_reruns_with_what_reads_it(smoke_workspace: Path, tmp_path: Path) -> None:
    """A training killed after its lr changed: Snakemake has removed its model before the job ran; the
    next run must retrain it and rerun everything that reads it, never report the old evaluation as
    current."""
    import shutil
    import signal
    import subprocess
    import time

    from conftest import tool_env

    ws = tmp_path / "ws"
    shutil.copytree(smoke_workspace, ws, symlinks=True)
    cfg = yaml.safe_load((ws / "config/smoke.yaml").read_text())
    cfg["kalman"]["runs"]["figure8_knn"]["optim"].update(lr=0.004, epochs=500)  # long enough to be killed
    (tmp_path / "lr.yaml").write_text(yaml.safe_dump(cfg))
    model = ws / "results/kalman/runs/figure8_knn/seed1/model.pt"
    log = ws / "logs/kalman/train_figure8_knn_seed1.log"
    before = log.read_text()

    proc = subprocess.Popen(["snakemake", "--cores", "1", "kalman", "--configfile", str(tmp_path / "lr.yaml")], cwd=ws,
                            env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and (not log.exists() or log.read_text() == before
                                                              or "epoch" not in log.read_text()):
        time.sleep(0.5)
    trainer = subprocess.run(["pgrep", "-f", "-s", str(proc.pid), "ldm stage kalman.train"], capture_output=True, text=True)
    assert trainer.stdout.split(), "the training job did not start"
    os.kill(int(trainer.stdout.split()[0]), signal.SIGKILL)  # the training dies; Snakemake sees a failed job
    proc.wait(timeout=120)
    assert proc.returncode != 0 and not model.exists()

    assert planned(ws, configfile=tmp_path / "lr.yaml") == kalman_jobs("figure8_knn") | {"kalman_summarize[]"}
