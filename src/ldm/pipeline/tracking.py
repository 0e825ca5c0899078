"""MLflow tracking: one sqlite store under ``results/mlflow/``, runs tagged with their provenance.

The tracking URI is absolute (computed from the repository root), so every job writes to the same
store whatever its working directory. The store and experiments are created under a file lock,
because several processes creating a fresh sqlite store at once crash MLflow's migrations.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ldm.pipeline.paths import mlflow_dir, repo_root


def enabled() -> bool:
    """MLflow tracking is on unless ``LDM_MLFLOW=0`` (an execution switch, never a job setting)."""
    return os.environ.get("LDM_MLFLOW", "1") not in ("0", "false", "no")


def tracking_uri(root: Path | None = None) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:////<repo>/results/mlflow/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(mlflow_dir(root) / 'mlflow.db').resolve()}"


def artifact_root(root: Path | None = None) -> Path:
    """Folder holding every run's artifacts (``results/mlflow/artifacts``)."""
    return (mlflow_dir(root) / "artifacts").resolve()


def git_state(root: Path | None = None) -> dict[str, str]:
    """Current git commit and whether tracked files differ from it (``git_dirty`` 'true'/'false')."""
    root = root or repo_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
        return {"git_commit": commit, "git_dirty": str(bool(status)).lower()}
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}


@contextmanager
def _store_lock(root: Path | None = None) -> Iterator[None]:
    folder = mlflow_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".init.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_experiment(name: str, root: Path | None = None) -> str:
    """Create the store (once) and the experiment ``name`` if needed; return its id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    with _store_lock(root):
        client = mlflow.MlflowClient()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(name, artifact_location=(artifact_root(root) / name).as_uri())


def run_tags(context: Mapping[str, Any] | None = None, root: Path | None = None) -> dict[str, str]:
    """Provenance tags of a run: git commit/dirty plus the pipeline context (rule, wildcards,
    profile, config hash) passed by the Snakemake rule."""
    tags = git_state(root)
    for key, value in (context or {}).items():
        if isinstance(value, Mapping):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        tags[key if "." in key else f"ldm.{key}"] = str(value)
    return tags


@contextmanager
def mlflow_run(
    experiment: str,
    run_name: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Iterator[Any]:
    """Start an MLflow run in ``experiment`` and yield it (None when tracking is off, see :func:`enabled`).

    ``run_id`` continues an interrupted run (a resumed training); if the store does not have it, a new
    run is started. MLflow only records: no stage reads it back to compute an output.

    ``params`` are flattened to dotted keys; ``tags`` are the pipeline context (see :func:`run_tags`).
    A failing block marks the run FAILED.
    """
    if not enabled():
        yield None
        return
    import mlflow

    experiment_id = ensure_experiment(experiment)
    active = None
    if run_id is not None:
        try:
            active = mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            active = None  # the store no longer has it (a fresh clone): record a new run instead
    if active is None:
        active = mlflow.start_run(experiment_id=experiment_id, run_name=run_name)
    try:
        mlflow.set_tags(run_tags(tags))
        if params:
            mlflow.log_params({k: _short(v) for k, v in flatten(params).items()})
        yield active
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ``{"a.b": value}``."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


def log_history(run_id: str, key: str, steps: Any, values: Any, batch: int = 1000) -> None:
    """Log a whole metric history (``values`` at ``steps``) to a run in batches of ``batch``."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now, int(s)) for s, v in zip(steps, values)]
    client = mlflow.MlflowClient()
    for start in range(0, len(metrics), batch):
        client.log_batch(run_id, metrics=metrics[start : start + batch])
