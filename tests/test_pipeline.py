"""End to end on the smoke profile: Snakemake runs the DAG; DVC records, pushes, pulls and
reproduces the same DAG; both tools agree on what is up to date."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, git_commit, run

pytestmark = pytest.mark.slow

NOTHING = "Nothing to be done"


def _outs(ws: Path) -> list[str]:
    spec = yaml.safe_load((ws / "dvc.yaml").read_text())
    return sorted(o for stage in spec["stages"].values() for o in stage.get("outs", []))


def _dry_run(ws: Path) -> str:
    done = run(["snakemake", "-n", "--configfile", "config/smoke.yaml"], ws)
    return done.stdout + done.stderr


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


def test_after_snakemake_both_tools_are_up_to_date(smoke_workspace: Path) -> None:
    assert NOTHING in _dry_run(smoke_workspace)
    status = run(["dvc", "status"], smoke_workspace).stdout
    assert "up to date" in status, status


def test_config_change_reruns_exactly_the_affected_jobs(smoke_workspace: Path, tmp_path: Path) -> None:
    changed = (smoke_workspace / "config/smoke.yaml").read_text().replace("lr: 0.005,", "lr: 0.004,", 1)
    assert changed != (smoke_workspace / "config/smoke.yaml").read_text()
    (tmp_path / "changed.yaml").write_text(changed)
    out = run(["snakemake", "-n", "--configfile", str(tmp_path / "changed.yaml")], smoke_workspace)
    planned = out.stdout + out.stderr
    assert "kalman_train" in planned and "Params have changed" in planned
    assert "rule ica_" not in planned


def test_dvc_yaml_matches_snakemake_dag(smoke_workspace: Path) -> None:
    run(["ldm", "dvc-yaml", "--configfile", "config/smoke.yaml", "--check"], smoke_workspace)
    spec = yaml.safe_load((smoke_workspace / "dvc.yaml").read_text())
    jobs = run(["snakemake", "-n", "--forceall", "--configfile", "config/smoke.yaml"], smoke_workspace).stdout
    rule_counts = {}
    for line in jobs.splitlines():
        if line.startswith("rule ") and not line.startswith("rule default"):
            name = line.split()[1].rstrip(":")
            rule_counts[name] = rule_counts.get(name, 0) + 1
    stage_counts = {}
    for stage in spec["stages"].values():
        rule = stage["cmd"].split("--allowed-rules ")[1].split()[0]
        stage_counts[rule] = stage_counts.get(rule, 0) + 1
    assert stage_counts == rule_counts


def test_committed_dvc_yaml_is_generated_from_the_default_dag() -> None:
    run(["ldm", "dvc-yaml", "--check"], REPO)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.is_dir():
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        return files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) and all(
            filecmp.cmp(a / f, b / f, shallow=False) for f in files
        )
    return filecmp.cmp(a, b, shallow=False)


def test_push_then_pull_in_fresh_clone_restores_outputs(smoke_workspace: Path, tmp_path: Path) -> None:
    git_commit(smoke_workspace, "record smoke run")
    run(["dvc", "push"], smoke_workspace)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(smoke_workspace), str(clone)], tmp_path)
    remote = run(["dvc", "remote", "list", "--local"], smoke_workspace).stdout.split()[1]
    run(["dvc", "remote", "modify", "--local", "local", "url", remote], clone)
    run(["dvc", "pull"], clone)
    outs = _outs(smoke_workspace)
    assert outs and any(o.startswith("data/") for o in outs)
    for rel in outs:
        assert _same_bytes(smoke_workspace / rel, clone / rel), rel
    assert "up to date" in run(["dvc", "status"], clone).stdout
    # DVC gives pulled files fresh mtimes in arbitrary order; `make pull` records them for Snakemake
    run(["snakemake", "--cores", "1", "--touch", "--configfile", "config/smoke.yaml"], clone)
    assert NOTHING in _dry_run(clone)
    assert "up to date" in run(["dvc", "status"], clone).stdout
    # ... and Snakemake still notices a config change afterwards
    cfg = (clone / "config/smoke.yaml").read_text().replace("n_steps: 5000", "n_steps: 4000")
    (clone / "config/smoke.yaml").write_text(cfg)
    assert "ica_sources" in _dry_run(clone)


def test_dvc_repro_in_fresh_clone_reproduces_metrics(smoke_workspace: Path, tmp_path: Path) -> None:
    clone = tmp_path / "repro"
    run(["git", "clone", "-q", str(smoke_workspace), str(clone)], tmp_path)
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
    assert NOTHING in _dry_run(clone)
