"""Settings of the ``kalman`` experiment's jobs, resolved from the ``kalman:`` config section.

Each function reads only what its job uses, so (through :func:`ldm.pipeline.stages.job_settings`)
changing one run's learning rate reruns that run only, and changing a data set reruns its videos and
the runs that train on them. Torch-free: Snakemake calls these while it builds the DAG.
"""

from __future__ import annotations

from typing import Any, Mapping

from ldm.data.video_config import VideoConfig
from ldm.models.kalman_defaults import DEFAULTS
from ldm.pipeline.config import merge_settings


def kalman_section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``kalman`` section of a profile (or the mapping itself if it already is one), with the
    generalisation set expanded (:func:`expand_generalisation`)."""
    if "kalman" in config:
        return expand_generalisation(config["kalman"])
    if "datasets" in config:
        return expand_generalisation(config)
    raise KeyError("config has no 'kalman' section (expected keys: kalman.runs, kalman.datasets)")


class _Merged(Mapping):
    """``base`` (a config mapping, possibly traced) with ``extra`` entries added; reads ``base`` lazily so
    that a job's recorded config keys stay the ones it uses."""

    def __init__(self, base: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        self._base, self._extra = base, extra

    def __getitem__(self, key: str) -> Any:
        return self._extra[key] if key in self._extra else self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._extra or key in self._base

    def __iter__(self) -> Any:
        yield from self._base
        yield from (k for k in self._extra if k not in self._base)

    def __len__(self) -> int:
        return len(set(self._base) | set(self._extra))


class _Section(Mapping):
    """A ``kalman`` section whose ``datasets`` and ``runs`` include the generated generalisation set."""

    def __init__(self, base: Mapping[str, Any], datasets: Mapping[str, Any], runs: Mapping[str, Any]) -> None:
        self._base = base
        self._extra = {"datasets": datasets, "runs": runs}

    def __getitem__(self, key: str) -> Any:
        if key in self._extra:
            return _Merged(self._base[key] if key in self._base else {}, self._extra[key])
        return self._base[key]

    def __contains__(self, key: object) -> bool:
        return key in self._extra or key in self._base

    def __iter__(self) -> Any:
        yield from self._base
        yield from (k for k in self._extra if k not in self._base)

    def __len__(self) -> int:
        return len(set(self._base) | set(self._extra))


def generalisation_set(gen: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Data sets ``gen<i>`` and runs ``gen<i>_<loss>`` of the test-time generalisation set (issue 13):
    ``n_motions`` motions drawn from ``seed`` (:func:`ldm.data.motions.draw_motions`: shape, period,
    random phase per sequence) on top of ``dataset`` (noise, sizes), each trained with ``run``. With
    ``size_by_harmonics`` every run's latent/state size is :func:`ldm.data.motions.harmonic_model_size` of
    the highest harmonic any draw can contain (:func:`ldm.data.motions.draw_max_harmonic`): one rule for
    all motions, not a per-motion choice."""
    from ldm.data.motions import draw_max_harmonic, draw_motions, harmonic_model_size

    base_data = dict(gen["dataset"]) if "dataset" in gen else {}
    run = merge_settings({}, gen["run"]) if "run" in gen else {}
    if gen.get("size_by_harmonics", False):
        # one size for every drawn motion: latent 2K, state 4K, K = the highest harmonic any draw can have
        given = sorted(k for k in ("state_dim", "latent_dim") if k in (run.get("model") or {}))
        if given:
            raise KeyError(f"kalman.generalisation.run.model.{given[0]} is set together with "
                           "kalman.generalisation.size_by_harmonics (which sets state_dim and latent_dim); drop one")
        run["model"] = {**(run.get("model") or {}), **harmonic_model_size(draw_max_harmonic())}
    loss = run.get("loss", DEFAULTS["loss"])
    datasets, runs = {}, {}
    for i, motion in enumerate(draw_motions(int(gen["seed"]), int(gen["n_motions"]),
                                            dt=float(base_data.get("dt", 0.1))), 1):
        datasets[f"gen{i}"] = {**base_data, **motion}
        runs[f"gen{i}_{loss}"] = {**run, "dataset": f"gen{i}"}
    return datasets, runs


def expand_generalisation(section: Mapping[str, Any]) -> Mapping[str, Any]:
    """``section`` with the generalisation set (``section.generalisation``, if any) added to its data sets
    and runs; unchanged without one. A generated name that a configured one already uses is an error."""
    if "generalisation" not in section:
        return section
    datasets, runs = generalisation_set(section["generalisation"])
    for key, new in (("datasets", datasets), ("runs", runs)):
        clash = sorted(k for k in new if key in section and k in section[key])
        if clash:
            raise KeyError(f"kalman.{key}: {clash} clash with the generalisation set's generated names")
    return _Section(section, datasets, runs)


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
    base = merge_settings(DEFAULTS, section.get("defaults") or {})
    cfg = merge_settings(base, runs[run])
    if "dataset" not in cfg:
        raise KeyError(f"kalman.runs.{run}.dataset is missing")
    unknown = sorted(set(cfg) - set(base) - {"dataset"})
    if unknown:
        raise KeyError(f"kalman.runs.{run}: unknown key(s) {unknown}")
    cfg["data"] = dataset_config(section, cfg["dataset"])
    if cfg["model"].get("encoding_norm") == "auto":
        cfg["model"]["encoding_norm"] = "whiten" if cfg["loss"] == "stopgrad" else "none"
    cfg["name"] = run
    cfg["seed"] = int(seed)
    return cfg


def videos(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the videos job of data set ``{dataset}``."""
    return dataset_config(kalman_section(config), wc["dataset"])


def run(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the evaluate/figures jobs of ``{run}`` × ``{seed}``."""
    return resolve_run(kalman_section(config), wc["run"], int(wc["seed"]))


def training(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the train job: the run's settings and where/how it computes (``compute``)."""
    return {"run": run(config, wc), "compute": config["compute"]}


def summary(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the summarize job: the profile name, the runs and seeds it aggregates."""
    section = kalman_section(config)
    return {"profile": config["profile"], "runs": sorted(section["runs"]), "seeds": list(section["seeds"])}


def runs_and_seeds(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(run, seed) pairs of the experiment: every run of ``kalman.runs`` × ``kalman.seeds`` ([] without a section)."""
    if not config.get("kalman"):
        return []
    section = kalman_section(config)
    return [(run, seed) for run in section.get("runs", {}) for seed in section.get("seeds", [1])]


def videos_of(config: Mapping[str, Any], split: str) -> Any:
    """Input function: the ``split`` videos of the data set a run trains on."""
    runs = kalman_section(config)["runs"]
    return lambda wc: f"data/kalman/{runs[wc.run]['dataset']}/{split}.npz"
