"""Pipeline stages: the unit of work a Snakemake rule (or DVC stage) runs through ``ldm stage``.

Every rule passes one JSON job description (settings section of the config, named inputs and
outputs, wildcards, rule name); experiments register their stage functions here by name.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

StageFn = Callable[["Job"], None]
_STAGES: dict[str, StageFn] = {}
EXPERIMENTS = ("ica", "kalman")


@dataclass
class Job:
    """One pipeline job: what a stage function reads, writes and tags its MLflow run with."""

    rule: str
    settings: dict[str, Any]
    input: dict[str, Path] = field(default_factory=dict)
    output: dict[str, Path] = field(default_factory=dict)
    wildcards: dict[str, str] = field(default_factory=dict)
    settings_key: str = ""

    @classmethod
    def from_json(cls, text: str) -> "Job":
        data = json.loads(text)
        return cls(
            rule=data["rule"],
            settings=data.get("settings", {}),
            input={k: Path(v) for k, v in data.get("input", {}).items()},
            output={k: Path(v) for k, v in data.get("output", {}).items()},
            wildcards=dict(data.get("wildcards", {})),
            settings_key=data.get("settings_key", ""),
        )

    @property
    def context(self) -> dict[str, Any]:
        """Provenance tags for MLflow: rule, wildcards, config profile and hash."""
        return {
            "snakemake.rule": self.rule,
            "snakemake.wildcards": self.wildcards,
            "profile": os.environ.get("LDM_PROFILE", "unknown"),
            "config_hash": os.environ.get("LDM_CONFIG_HASH", "unknown"),
            "settings_key": self.settings_key,
        }


def stage(name: str) -> Callable[[StageFn], StageFn]:
    """Decorator registering ``fn`` as the stage ``name`` (``<experiment>.<stage>``)."""

    def register(fn: StageFn) -> StageFn:
        _STAGES[name] = fn
        return fn

    return register


def get_stage(name: str) -> StageFn:
    """Look up a stage, importing its experiment module on demand."""
    experiment = name.split(".", 1)[0]
    if experiment not in EXPERIMENTS:
        raise KeyError(f"unknown experiment '{experiment}' in stage '{name}' (known: {', '.join(EXPERIMENTS)})")
    importlib.import_module(f"ldm.experiments.{experiment}")
    if name not in _STAGES:
        known = sorted(s for s in _STAGES if s.startswith(experiment + "."))
        raise KeyError(f"unknown stage '{name}' (known: {', '.join(known)})")
    return _STAGES[name]


def run_stage(name: str, job: Job) -> None:
    """Run stage ``name``; on failure remove its declared outputs so no rerun mistakes them for done."""
    fn = get_stage(name)
    try:
        fn(job)
    except BaseException:
        for path in job.output.values():
            if Path(path).is_file():
                Path(path).unlink()
        raise


def code_files(experiment: str, root: Path | None = None) -> list[str]:
    """Source files (relative to the repo root) of ``ldm.experiments.<experiment>`` and of every
    ``ldm`` module it imports, transitively (static parse of the import statements).

    Rules list them as inputs, so Snakemake and DVC both rerun a step when its code changes.
    """
    from ldm.paths import repo_root

    root = (root or repo_root()).resolve()
    src = root / "src"
    seen: dict[str, Path] = {}
    todo = [f"ldm.experiments.{experiment}"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = src / Path(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if not path.exists():
            continue
        seen[name] = path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ldm"):
                todo.append(node.module)
                todo.extend(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.startswith("ldm"))
    return sorted(str(p.relative_to(root)) for p in seen.values())
