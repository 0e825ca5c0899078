"""Shared fixtures: a throw-away copy of the repository, and one smoke-profile pipeline run in it
that the end-to-end tests (DVC, MLflow, Snakemake) share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this interpreter's tools first on PATH, no inherited
    MLflow/LDM overrides."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "LDM_ROOT", "PYTHONPATH")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run(cmd: list[str] | str, cwd: Path, check: bool = True, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """Run a command in ``cwd`` and return it; on failure the assertion shows its output."""
    done = subprocess.run(
        cmd, cwd=cwd, env=tool_env(**env), capture_output=True, text=True, timeout=timeout,
        shell=isinstance(cmd, str),
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{cmd} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def copy_repo(dest: Path) -> Path:
    """Copy the project's files (tracked + untracked-not-ignored) into a fresh git repo at ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        if rel == "dvc.lock":  # the copy records its own runs
            continue
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    run(["git", "init", "-q"], dest)
    run([*git, "add", "-A"], dest)
    run([*git, "commit", "-qm", "snapshot"], dest)
    return dest


def git_commit(repo: Path, message: str) -> None:
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "add", "-A"], repo)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "--allow-empty", "-qm", message], repo)


@pytest.fixture(scope="session")
def smoke_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository copy whose dvc.yaml follows the smoke profile, with a local DVC remote in a
    temp dir, after one full `snakemake` run of the smoke profile."""
    ws = copy_repo(tmp_path_factory.mktemp("smoke") / "repo")
    remote = tmp_path_factory.mktemp("dvc-remote")
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], ws)
    run(["ldm", "dvc-yaml", "--configfile", "config/smoke.yaml"], ws)
    git_commit(ws, "dvc.yaml for the smoke profile")
    run(["snakemake", "--cores", "2", "--configfile", "config/smoke.yaml"], ws)
    return ws
