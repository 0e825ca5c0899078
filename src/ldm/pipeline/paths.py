"""Where the project lives on disk: the repository root and the stable output paths."""

from __future__ import annotations

import os
from pathlib import Path

_MARKERS = ("Snakefile", "pyproject.toml")


def repo_root(start: Path | None = None) -> Path:
    """Return the repository root: ``$LDM_ROOT`` if set, else the nearest parent of ``start``
    (default: the working directory, then this file) that holds both ``Snakefile`` and
    ``pyproject.toml``."""
    env = os.environ.get("LDM_ROOT")
    if env:
        return Path(env).resolve()
    candidates = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve()]
    for origin in candidates:
        for folder in (origin, *origin.parents):
            if all((folder / m).exists() for m in _MARKERS):
                return folder
    raise FileNotFoundError(
        "cannot find the ldm repository root (a folder with Snakefile and pyproject.toml); "
        "run from inside the repository or set LDM_ROOT"
    )


def results_dir(experiment: str, root: Path | None = None) -> Path:
    """``results/<experiment>/`` under the repository root."""
    return (root or repo_root()) / "results" / experiment


def mlflow_dir(root: Path | None = None) -> Path:
    """The MLflow tracking store folder ``results/mlflow/`` (sqlite DB + artifacts)."""
    return (root or repo_root()) / "results" / "mlflow"
