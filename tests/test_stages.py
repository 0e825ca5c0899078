"""The stage layer: job descriptions, failure cleanup, per-stage code inputs, per-job settings and
the provenance hash that guards checkpoint resumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO
from ldm.pipeline.stages import (
    Job, TracedConfig, code_files, get_stage, job_settings, minimal_keys, plain, run_stage, stage,
)


def _job(tmp_path: Path, name: str = "ica.demo") -> Job:
    return Job.from_json(name, json.dumps({
        "settings": {"n": 1},
        "input": {}, "output": {"a": str(tmp_path / "a.txt"), "b": str(tmp_path / "b.txt")},
        "wildcards": {"part": "x"},
    }))


def test_failed_stage_leaves_no_output(tmp_path: Path) -> None:
    @stage("ica.test_fails_halfway")
    def fails(job: Job) -> None:
        job.output["a"].write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_stage(_job(tmp_path, "ica.test_fails_halfway"))
    assert not (tmp_path / "a.txt").exists() and not (tmp_path / "b.txt").exists()


def test_successful_stage_keeps_outputs(tmp_path: Path) -> None:
    @stage("ica.test_succeeds")
    def works(job: Job) -> None:
        for path in job.output.values():
            path.write_text("done")

    run_stage(_job(tmp_path, "ica.test_succeeds"))
    assert (tmp_path / "a.txt").read_text() == "done"


def test_unknown_stage_and_experiment_are_named() -> None:
    with pytest.raises(KeyError, match="unknown experiment 'cifar'"):
        get_stage("cifar.train")
    with pytest.raises(KeyError, match="unknown stage 'ica.nope' .*ica.fit"):
        get_stage("ica.nope")


def test_job_context_names_rule_wildcards_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LDM_PROFILE", "smoke")
    ctx = _job(tmp_path, "ica.fit").context
    assert ctx["snakemake.rule"] == "ica_fit" and ctx["snakemake.wildcards"] == {"part": "x"}
    assert ctx["profile"] == "smoke" and len(ctx["provenance"]) == 16


def _rel(files: list[str]) -> set[str]:
    return {f.removeprefix("src/ldm/") for f in files}


def test_code_inputs_are_per_stage_and_follow_relative_imports() -> None:
    figures = _rel(code_files("kalman.figures", REPO))
    train = _rel(code_files("kalman.train", REPO))
    videos = _rel(code_files("kalman.videos", REPO))
    assert "experiments/kalman/figures.py" in figures
    assert "experiments/kalman/figures.py" not in train | videos  # a figure edit reruns figures only
    # training: the model, the filter and, through `from .entropy import ...` in latent_models, the estimators
    assert {"training/kalman.py", "models/kalman_ssl.py", "models/kalman_filter.py", "objectives/entropy.py",
            "objectives/latent_models.py", "training/loop.py", "training/device.py"} <= train
    assert "data/videos.py" in videos and "models/kalman_ssl.py" not in videos
    ica_fit = _rel(code_files("ica.fit", REPO))
    assert "models/ica.py" in ica_fit and "models/kalman_filter.py" not in ica_fit  # another experiment's code
    assert "experiments/ica/figures.py" not in ica_fit
    # the image tables and claims are the summary's code only: editing them never retrains a network
    summary = _rel(code_files("images.summarize", REPO))
    image_train = _rel(code_files("images.train", REPO))
    assert {"experiments/images/tables.py", "evaluation/image_claims.py"} <= summary
    assert not {"experiments/images/tables.py", "evaluation/image_claims.py"} & image_train
    assert "data/image_transforms.py" in image_train


def test_code_inputs_do_not_depend_on_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = code_files("kalman.train", REPO)
    monkeypatch.chdir(tmp_path)
    assert code_files("kalman.train", REPO) == here and here


def test_traced_config_records_what_was_read() -> None:
    config = {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "f": 4}
    traced = TracedConfig(config)
    assert traced["a"]["b"] == 1 and plain(traced["a"]["c"]) == {"d": 2, "e": 3}
    assert minimal_keys(traced.seen) == ["a.b", "a.c"]  # "f" was never read


def test_kalman_job_settings_are_per_run() -> None:
    import yaml

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["compute"] = {"device": "auto", "precision": "fp32", "channels_last": False}
    s1, keys = job_settings("kalman.train", config, {"run": "figure8_knn", "seed": "1"})
    assert "kalman.runs.figure8_knn" in keys and "kalman.datasets.figure8" in keys
    assert not any(k.startswith("kalman.runs.square") or k == "kalman.runs" for k in keys)
    config["kalman"]["runs"]["square_stopgrad"]["optim"]["lr"] = 0.001  # another run's lr
    assert job_settings("kalman.train", config, {"run": "figure8_knn", "seed": "1"})[0] == s1
    config["kalman"]["runs"]["figure8_knn"]["optim"]["lr"] = 0.001
    assert job_settings("kalman.train", config, {"run": "figure8_knn", "seed": "1"})[0] != s1


def test_provenance_changes_with_settings_code_and_inputs(tmp_path: Path) -> None:
    code = tmp_path / "mod.py"
    code.write_text("x = 1\n")
    data = tmp_path / "in.npz"
    data.write_bytes(b"abc")
    job = Job("kalman.train", {"lr": 0.1}, input={"train": data}, code=[str(code)])
    base = job.provenance()
    assert Job("kalman.train", {"lr": 0.1}, input={"train": data}, code=[str(code)]).provenance() == base
    assert Job("kalman.train", {"lr": 0.2}, input={"train": data}, code=[str(code)]).provenance() != base
    code.write_text("# a comment\nx   =   1  # another\n\n")
    assert job.provenance() == base  # what the code runs is unchanged
    code.write_text("x = 2\n")
    assert job.provenance() != base
    code.write_text("x = 1\n")
    data.write_bytes(b"abd")
    assert job.provenance() != base


def test_source_digest_counts_what_the_code_runs(tmp_path: Path) -> None:
    from ldm.pipeline.stages import source_digest

    py = tmp_path / "m.py"
    py.write_text('def f(x):\n    """Doc."""\n    return x + 1\n')
    base = source_digest(py)
    py.write_text('# header\n\ndef f( x ):  # comment\n    """Doc."""\n\n    return (x + 1)\n')
    assert source_digest(py) == base
    for changed in ('def f(x):\n    """Doc."""\n    return x + 2\n', 'def f(x):\n    """Other doc."""\n    return x + 1\n'):
        py.write_text(changed)
        assert source_digest(py) != base
    py.write_text("def broken(:\n")  # not Python: byte for byte
    first = source_digest(py)
    py.write_text("def broken(: # \n")
    assert source_digest(py) != first
    other = tmp_path / "m.yaml"
    other.write_text("a: 1\n")
    b = source_digest(other)
    other.write_text("a: 1  # c\n")
    assert source_digest(other) != b


def test_code_digest_file_is_rewritten_only_when_the_code_changes(tmp_path: Path) -> None:
    import os

    from ldm.pipeline.stages import CODE_DIGESTS, code_digest_file, code_source

    src = tmp_path / "src" / "pkg" / "m.py"
    src.parent.mkdir(parents=True)
    src.write_text("x = 1\n")
    os.utime(src, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    rel = code_digest_file("src/pkg/m.py", tmp_path)
    assert rel == str(CODE_DIGESTS / "src/pkg/m.py.md5") and code_source(rel) == "src/pkg/m.py"
    assert code_source(f"../repo/{rel}") == "../repo/src/pkg/m.py" and code_source("data/x.npz") == "data/x.npz"
    digest = tmp_path / rel
    assert digest.stat().st_mtime_ns == src.stat().st_mtime_ns  # older than outputs made after the source
    before = (digest.read_text(), digest.stat().st_mtime_ns)
    src.write_text("x = 1  # a comment\n")
    code_digest_file("src/pkg/m.py", tmp_path)
    assert (digest.read_text(), digest.stat().st_mtime_ns) == before  # untouched: nothing reruns
    src.write_text("x = 2\n")
    code_digest_file("src/pkg/m.py", tmp_path)
    assert digest.read_text() != before[0] and digest.stat().st_mtime_ns == src.stat().st_mtime_ns
