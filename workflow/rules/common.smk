# Shared by every rules file: config validation (before any job), the repository root, and the
# two helpers every rule uses. A rule `<experiment>_<stage>` runs the function registered with
# @stage("<experiment>.<stage>") in src/ldm/experiments/<experiment>/stages.py:
#
#   rule kalman_train:
#       input: **stage_inputs("kalman.train", train=...),   # + the stage's source files as `code`
#       output: ...
#       params: **stage_params("kalman.train"),             # the job's own settings (params trigger)
#       log: "logs/kalman/train_{run}_seed{seed}.log",
#       shell: STAGE
import json
import os

from ldm.pipeline.config import ConfigError, load_schema, validate_config
from ldm.pipeline.stages import code_files, job_settings

ROOT = Path(workflow.current_basedir).parents[1]  # the repository root, wherever snakemake was started

try:
    validate_config(config, load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# Provenance for every job's MLflow run (environment, not params: it must not rerun anything).
os.environ.update(LDM_PROFILE=str(config["profile"]))
# Jobs run `python -m ldm`; with `--sdm conda` the per-rule env (workflow/envs/ldm.yaml) has the
# dependencies and the package is imported from the checkout.
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH", "")) if p))

STAGE = "python -m ldm stage {rule} --job {params.job:q} --log {log}"


def stage_inputs(stage_name, **named):
    """Named inputs of a stage's rule plus `code`: every source file the stage runs (so a code
    change reruns exactly the stages that run it, in Snakemake as in DVC)."""
    root = Path(os.path.relpath(ROOT))
    return {"code": [str(root / f) for f in code_files(stage_name, ROOT)], **named}


def stage_params(stage_name):
    """`settings`: the JSON of exactly the config values the job reads (a function of the
    wildcards only, so Snakemake's params trigger sees it); `job`: the payload for `ldm stage`."""

    def settings(wildcards):
        return json.dumps(job_settings(stage_name, config, wildcards)[0], sort_keys=True)

    def job(wildcards, input, output, threads):
        return json.dumps(
            {
                "settings": job_settings(stage_name, config, wildcards)[0],
                "input": {k: v for k, v in input.items() if k != "code"},
                "output": dict(output.items()),
                "wildcards": dict(wildcards.items()),
                "code": list(input.code),
                "threads": threads,
            },
            sort_keys=True,
        )

    return {"settings": settings, "job": job}


def section(name):
    """The config section of an experiment ({} when the profile does not define it)."""
    return config.get(name) or {}


def sync_dvc_lock():
    """After a plain Snakemake run, record in dvc.lock the stages whose outputs Snakemake now
    considers up to date (never one it would rerun); see ldm.pipeline.dvc.commit_up_to_date."""
    if os.environ.get("DVC_STAGE") or not (ROOT / "dvc.yaml").exists() or not (ROOT / ".dvc").is_dir():
        return
    from ldm.pipeline.dvc import commit_up_to_date

    profile = (workflow.overwrite_configfiles or [ROOT / "config" / "config.yaml"])[-1]
    note = commit_up_to_date(Path(profile), ROOT)
    if note:
        print(note)
