# Shared helpers: config validation (before any job), provenance for MLflow, the job payload
# every rule hands to `ldm stage`.
import json
import os

from ldm.config import ConfigError, config_hash, load_schema, validate_config
from ldm.stages import code_files

try:
    validate_config(config, load_schema(Path(workflow.current_basedir).parent / "schemas" / "config.schema.yaml"))
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# Provenance for every job's MLflow run; environment, not params, so changing one experiment's
# settings does not invalidate the others.
os.environ.update(LDM_PROFILE=str(config["profile"]), LDM_CONFIG_HASH=config_hash(config))
# Jobs run `python -m ldm.cli`; with `--sdm conda` the per-rule env (workflow/envs/ldm.yaml) has the
# dependencies and the package is imported from the checkout.
_src = str(Path(workflow.basedir) / "src")
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (_src, os.environ.get("PYTHONPATH", "")) if p))

# Figures of paper Fig. 2 per ICA part, made by ica_figures: signal histograms, the recovered
# signals (images, or OU paths) and the objective during fitting.
ICA_PARTS = ["images", "ou"]
ICA_FIGURES = ["histograms", "recovered", "objective"]


def ica_parts():
    """ICA parts enabled in config['ica']['parts']."""
    return [p for p in ICA_PARTS if p in config["ica"]["parts"]]


def ica_targets():
    """Final outputs of the `ica` experiment: metrics.json and every figure (PNG + PDF)."""
    figs = [
        f"results/ica/figures/{part}_{kind}.{ext}"
        for part in ica_parts()
        for kind in ICA_FIGURES
        for ext in ("png", "pdf")
    ]
    return ["results/ica/metrics.json", *figs]


def kalman_runs():
    """(run, seed) pairs of the `kalman` experiment: every run of config['kalman']['runs'] × seed."""
    kalman = config.get("kalman") or {}
    return [(run, seed) for run in kalman.get("runs", {}) for seed in kalman.get("seeds", [1])]


def kalman_videos_of(split):
    """Input function: the `split` videos of the data set a Kalman run trains on."""
    return lambda wc: f"data/kalman/{config['kalman']['runs'][wc.run]['dataset']}/{split}.npz"


def kalman_run_files(name):
    """Named inputs: `name` (e.g. eval.json) of every (run, seed)."""
    stem = name.split(".")[0]
    return {f"{stem}_{run}_seed{seed}": f"results/kalman/runs/{run}/seed{seed}/{name}" for run, seed in kalman_runs()}


def kalman_targets():
    """Final outputs of the `kalman` experiment: metrics, run table, Fig. 4D and per-run figures."""
    return [
        "results/kalman/metrics.json",
        "results/kalman/tables/runs.csv",
        "results/kalman/figures/fig4d_grad_cos.png",
        *(f"results/kalman/figures/{run}_seed{seed}" for run, seed in kalman_runs()),
    ]


EXPERIMENT_TARGETS = {"ica": ica_targets, "kalman": kalman_targets}


def experiment_targets():
    """Final outputs of the experiments enabled in config['experiments']."""
    return [path for name in config["experiments"] for path in EXPERIMENT_TARGETS[name]()]


def stage_code(experiment):
    """The ldm source files an experiment's stages run (an input of every rule, so that a code
    change reruns the step in Snakemake as in DVC)."""
    return code_files(experiment, Path(workflow.basedir))


def stage_settings(settings_key):
    """Params function (of the wildcards only, so Snakemake's params trigger sees it): the JSON of
    the config section a job reads, e.g. `ica.{part}`."""

    def make(wildcards):
        node = config
        for part in settings_key.format(**wildcards).split("."):
            node = node[part]
        return json.dumps(node, sort_keys=True)

    return make


def stage_job(rule_name, settings_key):
    """Params function: the JSON job description passed to `ldm stage` (rule, config key, named
    inputs/outputs, wildcards); the settings themselves travel in `stage_settings`."""

    def make(wildcards, input, output):
        return json.dumps(
            {
                "rule": rule_name,
                "settings_key": settings_key.format(**wildcards),
                "wildcards": dict(wildcards.items()),
                "input": {k: v for k, v in input.items() if k != "code"},
                "output": dict(output.items()),
            },
            sort_keys=True,
        )

    return make


def sync_dvc_lock():
    """Run `dvc commit -f` after a successful run of the profile dvc.yaml was generated for."""
    import subprocess

    if os.environ.get("DVC_STAGE"):
        return
    dvc_yaml = Path("dvc.yaml")
    if not dvc_yaml.exists() or not Path(".dvc").is_dir():
        return
    profile = os.path.relpath((workflow.overwrite_configfiles or ["config/config.yaml"])[-1])
    if f"({profile})" not in dvc_yaml.read_text().split("\n", 1)[0]:
        return
    # --no-relink: leave the workspace files (and their timestamps) as Snakemake wrote them
    done = subprocess.run(["dvc", "commit", "--force", "--no-relink", "--quiet"], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"note: `dvc commit` did not record this run in dvc.lock:\n{done.stderr.strip()}")
