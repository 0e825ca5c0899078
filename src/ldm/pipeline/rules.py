"""What the Snakemake rules files call: the two helpers every rule uses (its code inputs and its
params), and the DVC sync after a run. Kept out of the .smk files so that those hold rules only."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldm.pipeline.stages import code_digest_file, code_files, code_source, job_settings

#: The shell command of every stage rule.
STAGE = "python -m ldm stage {params.stage} --job {params.job:q} --log {log}"


class RuleHelpers:
    """Bound to the workflow's config and the repository root."""

    def __init__(self, config: Mapping[str, Any], root: Path) -> None:
        self.config = config
        self.root = Path(root)

    def section(self, name: str) -> Mapping[str, Any]:
        """The config section of an experiment ({} when the profile does not define it)."""
        return self.config.get(name) or {}

    def stage_inputs(self, stage_name: str, **named: Any) -> dict[str, Any]:
        """Named inputs of a stage's rule plus ``code``: the digest file of every source file the stage
        runs (so a change to what the code runs reruns exactly the stages that run it, and a comment edit
        reruns nothing; DVC lists the source files themselves)."""
        rel = Path(os.path.relpath(self.root))
        return {"code": [str(rel / code_digest_file(f, self.root)) for f in code_files(stage_name, self.root)],
                **named}

    def stage_params(self, stage_name: str) -> dict[str, Any]:
        """``stage``: the stage to run; ``settings``: the JSON of exactly the config values the job reads
        (a function of the wildcards only, so Snakemake's params trigger sees it); ``job``: the payload
        for ``ldm stage`` (settings, named inputs/outputs, wildcards, code files, threads)."""
        config = self.config

        def settings(wildcards: Any) -> str:
            return json.dumps(job_settings(stage_name, config, wildcards)[0], sort_keys=True)

        def job(wildcards: Any, input: Any, output: Any, threads: int) -> str:
            return json.dumps(
                {
                    "settings": job_settings(stage_name, config, wildcards)[0],
                    "input": {k: v for k, v in input.items() if k != "code"},
                    "output": dict(output.items()),
                    "wildcards": dict(wildcards.items()),
                    "code": [code_source(f) for f in input.code],
                    "threads": threads,
                },
                sort_keys=True,
            )

        return {"stage": stage_name, "settings": settings, "job": job}


def sync_dvc_lock(configfiles: list[Any] | None, root: Path) -> None:
    """After a plain Snakemake run, record in dvc.lock the stages whose outputs Snakemake now considers
    up to date (never one it would rerun); see :func:`ldm.pipeline.dvc.commit_up_to_date`."""
    if os.environ.get("DVC_STAGE") or not (root / "dvc.yaml").exists() or not (root / ".dvc").is_dir():
        return
    from ldm.pipeline.dvc import commit_up_to_date

    profile = Path((configfiles or [root / "config" / "config.yaml"])[-1])
    note = commit_up_to_date(profile, root)
    if note:
        print(note)

