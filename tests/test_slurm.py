"""The smoke profile on a real SLURM cluster through profiles/slurm and the Snakemake SLURM executor
(docs/slurm.md). Runs where `sbatch` is on PATH (e.g. after scripts/slurm/setup-single-node.sh);
skipped otherwise. LDM_SLURM_ACCOUNT / LDM_SLURM_PARTITION from the environment pick the account and
partition, as for users; unset, the cluster's defaults apply."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import copy_repo, run

def _cluster_down_reason() -> str | None:
    """Why the SLURM test cannot run here (None when a cluster answers with a usable node)."""
    if shutil.which("sbatch") is None:
        return "sbatch is not on PATH: no SLURM cluster here (scripts/slurm/setup-single-node.sh sets one up)"
    import importlib.util

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "the Snakemake SLURM executor plugin is not installed (pip install -e '.[slurm]')"
    try:
        nodes = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=20)
        acct = subprocess.run(["sacct", "--noheader", "-X", "-n"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"SLURM is installed but does not answer ({err}); start it with scripts/slurm/setup-single-node.sh"
    if nodes.returncode != 0 or not any(s.strip().rstrip("*") in ("idle", "mix", "alloc") for s in nodes.stdout.split()):
        return f"SLURM is installed but no node is up (sinfo: {(nodes.stdout + nodes.stderr).strip()[:200]!r}); start it with scripts/slurm/setup-single-node.sh"
    if acct.returncode != 0:
        return f"SLURM accounting does not answer (sacct: {acct.stderr.strip()[:200]!r}); the executor needs it"
    return None


_DOWN = _cluster_down_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_DOWN is not None, reason=_DOWN or "")]

# Whole run, SLURM queueing included; the executor ignores SIGTERM, so the run is KILLed at the limit.
LIMIT_S = 1500

# Sized for a compute node with one CPU and 2 GB free (the largest smoke job step peaked at 1.4 GB RSS,
# Snakemake and the stage process together). No GPUs, whatever LDM_SLURM_GPUS says (on the command
# line `--set-resources` replaces the profile's list).
OVERRIDES = [
    "--slurm-init-seconds-before-status-checks", "5",  # default 40 s: ~6 DAG levels would cost minutes
    "--set-resources", "kalman_train:gpu=0", "kalman_train:mem_mb=2000", "kalman_train:runtime=30",
]


def _states(job_ids: list[str]) -> dict[str, str]:
    """{job id: state} from SLURM accounting (the executor itself polls sacct)."""
    out = subprocess.run(
        ["sacct", "-X", "--parsable2", "--noheader", "-j", ",".join(job_ids), "--format=JobIdRaw,State"],
        capture_output=True, text=True, check=True,
    ).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line.strip())


def test_smoke_profile_runs_through_slurm(tmp_path: Path) -> None:
    ws = copy_repo(tmp_path / "repo")
    cmd = [
        "timeout", "-s", "KILL", str(LIMIT_S),
        "snakemake", "--workflow-profile", "profiles/slurm", "--configfile", "config/smoke.yaml", *OVERRIDES,
    ]
    done = run(cmd, ws, check=False, timeout=LIMIT_S + 60)
    log = done.stdout + done.stderr
    (tmp_path / "snakemake-slurm.log").write_text(log)
    assert done.returncode == 0, f"exit {done.returncode} (137: killed after {LIMIT_S} s)\n{log[-6000:]}"

    for experiment in ("ica", "kalman"):
        metrics = json.loads((ws / f"results/{experiment}/metrics.json").read_text())
        assert metrics["profile"] == "smoke", experiment
    assert json.loads((ws / "results/ica/metrics.json").read_text())["ou/min_abs_corr"] >= 0.99

    # "Job 7 has been submitted with SLURM jobid 28 (log: .../slurm_logs/rule_kalman_train/...)"
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+)/", log))
    total = int(re.search(r"^total\s+(\d+)", log, re.M).group(1))
    local = len(re.findall(r"^localrule \w+:", log, re.M))
    assert f"{total} of {total} steps (100%) done" in log
    assert len(submitted) == total - local > 0, f"not every non-local job went through sbatch\n{log[-3000:]}"
    assert {"kalman_train", "ica_fit", "kalman_summarize", "ica_summarize"} <= set(submitted.values())

    states = _states(list(submitted))
    assert sorted(states) == sorted(submitted), f"sacct does not list every submitted job: {states}"
    assert set(states.values()) == {"COMPLETED"}, states
