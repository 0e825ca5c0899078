# Included first by workflow/Snakefile: validates the config before any job is planned and binds the
# helpers every rule uses (ldm.pipeline.rules). A rule `<experiment>_<stage>` runs the function
# registered with @stage("<experiment>.<stage>") in src/ldm/experiments/<experiment>/stages.py:
#
#   rule kalman_train:
#       input: **stage_inputs("kalman.train", train=...),   # + the stage's source files as `code`
#       output: ...
#       params: **stage_params("kalman.train"),             # the job's own settings (params trigger)
#       log: "logs/kalman/train_{run}_seed{seed}.log",
#       shell: STAGE
import os

from ldm.pipeline.config import ConfigError, load_schema, validate_config
from ldm.pipeline.rules import STAGE, RuleHelpers

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

HELPERS = RuleHelpers(config, ROOT)
stage_inputs = HELPERS.stage_inputs
stage_params = HELPERS.stage_params
section = HELPERS.section
