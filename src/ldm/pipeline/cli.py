"""Command line: ``ldm stage`` (run one pipeline job), ``ldm validate`` (check a profile),
``ldm dvc-yaml`` (write dvc.yaml from the Snakemake DAG), ``ldm code`` (list a stage's code inputs)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _setup_logging(log: Path | None) -> None:
    """One line per message to stderr and, when the rule names one, to the job's log file."""
    logger = logging.getLogger("ldm")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log, mode="a"))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ldm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p_stage = sub.add_parser("stage", help="run one pipeline job from a JSON job description")
    p_stage.add_argument("rule", help="the rule <experiment>_<stage> (or stage <experiment>.<stage>), e.g. ica_fit")
    p_stage.add_argument("--job", required=True, help="JSON job description (written by the Snakemake rule)")
    p_stage.add_argument("--log", type=Path, default=None, help="also write the job's messages to this file")

    p_val = sub.add_parser("validate", help="validate a config profile against the schema")
    p_val.add_argument("profile", type=Path)

    p_dvc = sub.add_parser("dvc-yaml", help="generate dvc.yaml from the Snakemake DAG")
    p_dvc.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))
    p_dvc.add_argument("--output", type=Path, default=Path("dvc.yaml"))
    p_dvc.add_argument("--check", action="store_true", help="exit 1 if the file differs instead of writing it")

    p_commit = sub.add_parser("dvc-commit", help="record in dvc.lock the stages Snakemake considers up to date")
    p_commit.add_argument("--configfile", type=Path, default=Path("config/config.yaml"))

    p_code = sub.add_parser("code", help="print the source files a stage runs (its code inputs)")
    p_code.add_argument("stage", help="<experiment>.<stage>, e.g. kalman.train")

    args = parser.parse_args(argv)
    if args.command == "stage":
        from ldm.pipeline.stages import Job, run_stage

        name = args.rule if "." in args.rule else args.rule.replace("_", ".", 1)
        _setup_logging(args.log)
        try:
            run_stage(Job.from_json(name, args.job))
        except Exception as err:
            log = logging.getLogger("ldm")
            if type(err).__module__.startswith("ldm."):
                # the project's own errors say what is wrong and what to do: the message, no traceback
                log.error(f"{name} failed: {err}")
            else:
                log.exception(f"{name} failed")
            return 1
        return 0
    if args.command == "validate":
        from ldm.pipeline.config import ConfigError, load_profile, validate_config

        try:
            validate_config(load_profile(args.profile))
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 1
        print(f"{args.profile}: valid")
        return 0
    if args.command == "dvc-yaml":
        from ldm.pipeline.config import ConfigError, load_profile, validate_config
        from ldm.pipeline.dvc import write_dvc_yaml

        try:
            validate_config(load_profile(args.configfile))
        except ConfigError as err:
            print(err, file=sys.stderr)
            return 1
        changed = write_dvc_yaml(args.configfile, args.output, check=args.check)
        if args.check and changed:
            print(f"{args.output} is out of date with the Snakemake DAG; run `ldm dvc-yaml`", file=sys.stderr)
            return 1
        return 0
    if args.command == "dvc-commit":
        from ldm.pipeline.dvc import commit_stages

        committed, outdated = commit_stages(args.configfile)
        print(f"dvc.lock: recorded {len(committed)} up-to-date stages" +
              (f"; {len(outdated)} outdated stages left for `snakemake`/`dvc repro`: {', '.join(outdated)}" if outdated else ""))
        return 0
    if args.command == "code":
        from ldm.pipeline.stages import code_files

        print("\n".join(code_files(args.stage)))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
