"""The stage layer: job descriptions, failure cleanup, code dependencies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO
from ldm.pipeline.stages import Job, code_files, get_stage, run_stage, stage


def _job(tmp_path: Path) -> Job:
    return Job.from_json(json.dumps({
        "rule": "demo", "settings": {"n": 1}, "settings_key": "demo",
        "input": {}, "output": {"a": str(tmp_path / "a.txt"), "b": str(tmp_path / "b.txt")},
        "wildcards": {"part": "x"},
    }))


def test_failed_stage_leaves_no_output(tmp_path: Path) -> None:
    @stage("ica.test_fails_halfway")
    def fails(job: Job) -> None:
        job.output["a"].write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_stage("ica.test_fails_halfway", _job(tmp_path))
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "b.txt").exists()


def test_successful_stage_keeps_outputs(tmp_path: Path) -> None:
    @stage("ica.test_succeeds")
    def works(job: Job) -> None:
        for path in job.output.values():
            path.write_text("done")

    run_stage("ica.test_succeeds", _job(tmp_path))
    assert (tmp_path / "a.txt").read_text() == "done"


def test_unknown_stage_and_experiment_are_named() -> None:
    with pytest.raises(KeyError, match="unknown experiment 'cifar'"):
        get_stage("cifar.train")
    with pytest.raises(KeyError, match="unknown stage 'ica.nope' .*ica.fit"):
        get_stage("ica.nope")


def test_job_context_carries_provenance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LDM_PROFILE", "smoke")
    monkeypatch.setenv("LDM_CONFIG_HASH", "abc123")
    ctx = _job(tmp_path).context
    assert ctx["snakemake.rule"] == "demo" and ctx["snakemake.wildcards"] == {"part": "x"}
    assert ctx["profile"] == "smoke" and ctx["config_hash"] == "abc123"


def test_code_files_follow_imports() -> None:
    files = code_files("ica", REPO)
    assert "src/ldm/experiments/ica.py" in files
    assert "src/ldm/ica.py" in files and "src/ldm/tracking.py" in files  # imported directly
    assert "src/ldm/figures/ica.py" in files  # imported inside a function
    assert "src/ldm/kalman_filter.py" not in files  # another experiment's code
    kalman = code_files("kalman", REPO)
    assert {"src/ldm/kalman_filter.py", "src/ldm/entropy_estimators.py"} <= set(kalman)
