"""Settings of the ``kalman`` experiment's jobs, resolved from the ``kalman:`` config section.

Each function reads only what its job uses, so (through :func:`ldm.pipeline.stages.job_settings`)
changing one run's learning rate reruns that run only, and changing a data set reruns its videos and
the runs that train on them. Torch-free: Snakemake calls these while it builds the DAG.
"""

from __future__ import annotations

from typing import Any, Mapping

from ldm.data.video_config import VideoConfig
from ldm.models.kalman_defaults import DEFAULTS, deep_merge


def kalman_section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``kalman`` section of a profile (or the mapping itself if it already is one)."""
    if "kalman" in config:
        return config["kalman"]
    if "runs" in config and "datasets" in config:
        return config
    raise KeyError("config has no 'kalman' section (expected keys: kalman.runs, kalman.datasets)")


def dataset_config(section: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Resolved data set ``kalman.datasets.<name>`` (VideoConfig fields) + ``seed`` = ``kalman.data_seed``."""
    datasets = section["datasets"]
    if name not in datasets:
        raise KeyError(f"kalman.datasets.{name} is not defined (known: {sorted(datasets)})")
    cfg = VideoConfig.from_dict(dict(datasets[name])).to_dict()
    cfg["seed"] = int(section.get("data_seed", 1))
    cfg["name"] = name
    return cfg


def resolve_run(section: Mapping[str, Any], run: str, seed: int) -> dict[str, Any]:
    """Full settings of run ``run`` with model seed ``seed``: DEFAULTS <- kalman.defaults <- kalman.runs.<run>,
    plus its data set's settings under ``data``."""
    runs = section["runs"]
    if run not in runs:
        raise KeyError(f"kalman.runs.{run} is not defined (known: {sorted(runs)})")
    base = deep_merge(DEFAULTS, section.get("defaults") or {})
    cfg = deep_merge(base, runs[run])
    if "dataset" not in cfg:
        raise KeyError(f"kalman.runs.{run}.dataset is missing")
    unknown = sorted(set(cfg) - set(base) - {"dataset"})
    if unknown:
        raise KeyError(f"kalman.runs.{run}: unknown key(s) {unknown}")
    cfg["data"] = dataset_config(section, cfg["dataset"])
    cfg["name"] = run
    cfg["seed"] = int(seed)
    return cfg


def videos(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the videos job of data set ``{dataset}``."""
    return dataset_config(config["kalman"], wc["dataset"])


def run(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the evaluate/figures jobs of ``{run}`` × ``{seed}``."""
    return resolve_run(config["kalman"], wc["run"], int(wc["seed"]))


def training(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the train job: the run's settings and where/how it computes (``compute``)."""
    return {"run": run(config, wc), "compute": config["compute"]}


def summary(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the summarize job: the profile name, the runs and seeds it aggregates."""
    section = config["kalman"]
    return {"profile": config["profile"], "runs": sorted(section["runs"]), "seeds": list(section["seeds"])}


def runs_and_seeds(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(run, seed) pairs of the experiment: every run of ``kalman.runs`` × ``kalman.seeds`` ([] without a section)."""
    section = config.get("kalman") or {}
    return [(run, seed) for run in section.get("runs", {}) for seed in section.get("seeds", [1])]


def videos_of(config: Mapping[str, Any], split: str) -> Any:
    """Input function: the ``split`` videos of the data set a run trains on."""
    return lambda wc: f"data/kalman/{config['kalman']['runs'][wc.run]['dataset']}/{split}.npz"
