"""Command line: ``ldm stage`` (run one pipeline stage), ``ldm validate`` (check a profile),
``ldm dvc-yaml`` (write dvc.yaml from the Snakemake DAG)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ldm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_stage = sub.add_parser("stage", help="run one pipeline stage from a JSON job description")
    p_stage.add_argument("name", help="<experiment>.<stage>, e.g. ica.fit")
    p_stage.add_argument("--job", required=True, help="JSON job description (written by the Snakemake rule)")
    p_stage.add_argument("--settings", help="JSON of the config section the job reads (overrides the job's)")

    p_val = sub.add_parser("validate", help="validate a config profile against the schema")
    p_val.add_argument("profile", type=Path)

    p_dvc = sub.add_parser("dvc-yaml", help="generate dvc.yaml from the Snakemake DAG")
    p_dvc.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    p_dvc.add_argument("--output", type=Path, default=Path("dvc.yaml"))
    p_dvc.add_argument("--check", action="store_true", help="exit 1 if the file differs instead of writing it")

    args = parser.parse_args(argv)
    if args.command == "stage":
        from ldm.stages import Job, run_stage

        job = Job.from_json(args.job)
        if args.settings is not None:
            job.settings = json.loads(args.settings)
        run_stage(args.name, job)
        return 0
    if args.command == "validate":
        from ldm.config import ConfigError, load_profile, validate_config

        try:
            validate_config(load_profile(args.profile))
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 1
        print(f"{args.profile}: valid")
        return 0
    if args.command == "dvc-yaml":
        from ldm.dvc_stages import write_dvc_yaml

        changed = write_dvc_yaml(args.configfile, args.output, check=args.check)
        if args.check and changed:
            print(f"{args.output} is out of date with the Snakemake DAG; run `ldm dvc-yaml`", file=sys.stderr)
            return 1
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
