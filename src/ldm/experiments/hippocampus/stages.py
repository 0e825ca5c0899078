"""Stages of the ``hippocampus`` experiment: the Kalman LDM on 25-ms spike counts of hc-11 (rat Achilles;
offline: simulated place cells in the same NWB layout), decoding the rat's position with 95 % intervals
(paper Sec. 6.1 / App. B, Fig. 4E-G, A4C; reference/hc11.md).

    data/hc11/<variant>/spikes.npz (datasets rule) -> train -> evaluate -> figures (per seed) ; summarize

Glue only: windows and split in :mod:`ldm.data.spike_windows`, the model in :mod:`ldm.models.kalman_ssl`
(obs_noise ``input``), training in :mod:`ldm.training.kalman_spikes`, readouts and baselines in
:mod:`ldm.evaluation.kalman_spikes`, figures in :mod:`ldm.experiments.hippocampus.figures`. Library modules
are imported inside each stage; the settings resolvers are torch-free and read only what their job uses.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldm.pipeline.stages import Job, stage

EXPERIMENT = "hippocampus"

#: Reference numbers (hc11.md §2.3): CEBRA on Achilles, 3-fold trial split, median over 10 seeds (Nature
#: 2023 Fig. 2d, recomputed from cebra-figures). The LDM paper publishes no error number (Fig. 4G shows the
#: 95 % band only), so these are a reference band, not the paper's value for our protocol (80/20 time split).
REFERENCE = {
    "cebra_behavior": (5.4, "CEBRA-Behavior, Achilles, Schneider et al. 2023 Fig. 2d (hc11.md §2.3)"),
    "cebra_time": (4.7, "CEBRA-Time, Achilles, Schneider et al. 2023 Fig. 2d (hc11.md §2.3)"),
    "cebra_pca": (22.4, "PCA + kNN, Achilles, Schneider et al. 2023 Fig. 2d (hc11.md §2.3)"),
}

#: Decoders in the table: (key prefix in eval.json, label).
METHODS = [
    ("ours/mlp", "Kalman LDM + MLP readout (95 % from 1000 samples of N(h_t, P_t))"),
    ("ours/linear", "Kalman LDM + linear readout (analytic 95 %)"),
    ("random_init/mlp", "random-init Kalman LDM + MLP readout"),
    ("random_init/linear", "random-init Kalman LDM + linear readout"),
    ("pca/mlp", "PCA of binned spikes + MLP readout"),
    ("pca/linear", "PCA of binned spikes + linear readout (residual 95 %)"),
    ("knn_raw", "kNN (k=36, cosine) on raw binned spikes (CEBRA demo decoder)"),
    ("bayes_empirical", "Bayesian filter, tuning curves from the training block"),
    ("bayes_true", "Bayesian filter, the simulation's true tuning curves (bound)"),
]
METRICS = ["median_error_cm", "mean_error_cm", "r2", "coverage_95", "interval_width_cm", "direction_accuracy"]


def _section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    if "hippocampus" not in config:
        raise KeyError("config has no 'hippocampus' section (expected keys: hippocampus.model, hippocampus.optim, ...)")
    return config["hippocampus"]


def run_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """The model, loss, optimiser and data settings of seed ``{seed}`` (what the trained model depends on)."""
    s = _section(config)
    out = {k: s[k] for k in ("model", "loss", "knn", "optim", "data") if k in s}
    out.update(name="hippocampus", seed=int(wc["seed"]), variant=s.get("variant", "running"))
    return out


def train_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the train job: the run and where/how it computes (``compute``)."""
    return {"run": run_settings(config, wc), "compute": config["compute"]}


def eval_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the evaluate job: the evaluation options (the model's own settings come with model.pt)."""
    ev = dict(_section(config).get("eval") or {})
    return {"n_samples": int(ev.get("n_samples", 1000)), "knn_k": int(ev.get("knn_k", 36))}


def figure_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the figures job: the length of the held-out stretch shown."""
    ev = dict(_section(config).get("eval") or {})
    return {"stretch_bins": int(ev.get("stretch_bins", 800))}


def summary_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the summarize job: the profile, the seeds and the data variant."""
    s = _section(config)
    return {"profile": config["profile"], "seeds": list(s.get("seeds", [1])), "variant": s.get("variant", "running")}


@stage("hippocampus.train", settings=train_settings)
def train(job: Job) -> None:
    """Train one seed; an interrupted training resumes only under the same provenance."""
    from ldm.training import kalman_spikes
    from ldm.training.device import Device

    device = Device.from_settings(job.settings["compute"])
    kalman_spikes.train(job.settings["run"], job.input["spikes"], Path(job.output["model"]).parent, tags=job.context,
                        resume_key=job.provenance(), device=device, threads=job.threads, progress=sys.stderr.isatty())


@stage("hippocampus.evaluate", settings=eval_settings)
def evaluate(job: Job) -> None:
    """Held-out decoding of ours, the random-init model, PCA, kNN on raw spikes and the Bayesian decoders."""
    from ldm.evaluation.kalman_spikes import evaluate as evaluate_run
    from ldm.pipeline.io import save_npz, write_json

    res, arrays = evaluate_run(job.input["spikes"], Path(job.input["model"]).parent, job.input["meta"],
                               n_samples=job.settings["n_samples"], knn_k=job.settings["knn_k"])
    write_json(job.output["eval"], res)
    save_npz(job.output["latents"], **arrays)
    _record(job, "evaluate", metrics=res)


@stage("hippocampus.figures", settings=figure_settings)
def figures(job: Job) -> None:
    """Fig. 4E-G-style decoded position with 95 % band, latent trajectory, A4C noise panels."""
    from ldm.experiments.hippocampus import figures as hfig
    from ldm.pipeline.io import load_npz, read_json

    ev = read_json(job.input["eval"])
    lat = load_npz(job.input["latents"])
    out = Path(job.output["figures"])
    n = job.settings["stretch_bins"]
    paths = []
    paths += hfig.decoded_position(lat, ev, out / "fig4g_decoded_position", n)
    paths += hfig.latent_trajectory(lat, out / "fig4f_latent_trajectory")
    paths += hfig.noise_panels(lat, ev, out / "figA4c_noise")
    _record(job, "figures", artifacts=paths)


@stage("hippocampus.summarize", settings=summary_settings)
def summarize(job: Job) -> None:
    """metrics.json (mean/std/min over seeds), tables/decoding.csv (every seed x decoder + the CEBRA
    reference rows), tables/paper_comparison.csv."""
    from ldm.pipeline.io import read_json, write_json
    from ldm.pipeline.summary import aggregate, write_csv, write_paper_table

    evals = [read_json(p) for k, p in sorted(job.input.items()) if k.startswith("eval_")]
    rows = []
    for ev in evals:
        for key, label in METHODS:
            if f"{key}/median_error_cm" not in ev:
                continue
            rows.append({"method": key, "description": label, "seed": ev["seed"], "split": "80/20 by time",
                         "data": ev.get("source", ""),
                         **{m: ev.get(f"{key}/{m}", ev.get(f"{key.split('/')[0]}/{m}", "")) for m in METRICS}})
    for key, (value, source) in REFERENCE.items():
        rows.append({"method": key, "description": source, "seed": "", "split": "3-fold trial split (published)",
                     "data": "real Achilles", "median_error_cm": value})
    write_csv(job.output["table"], rows, ["method", "description", "seed", "split", "data", *METRICS])
    metrics: dict[str, Any] = {"experiment": EXPERIMENT, "profile": job.settings["profile"], "seeds": job.settings["seeds"],
                               "variant": job.settings["variant"], "source": evals[0].get("source") if evals else None,
                               "protocol": "readouts fitted on the first 80 % of bins, scored on the last 20 % "
                                           "(CEBRA demo split); the model filters the whole recording causally"}
    per_seed = [{"name": "all", "seed": ev["seed"], **{k.replace("/", "_"): v for k, v in ev.items()}} for ev in evals]
    keys = sorted({k for r in per_seed for k in r if k not in ("name", "seed", "source")})
    metrics.update({k.removeprefix("all/"): v for k, v in aggregate(per_seed, keys, by="name").items()})
    ours = [ev["ours/mlp/median_error_cm"] for ev in evals]
    knn = [ev["knn_raw/median_error_cm"] for ev in evals]
    cov = [ev["ours/mlp/coverage_95"] for ev in evals] + [ev["ours/linear/coverage_95"] for ev in evals]
    metrics["target_below_knn_raw"] = bool(all(a < b for a, b in zip(ours, knn)))
    metrics["target_coverage_90_99"] = bool(all(0.90 <= c <= 0.99 for c in cov))
    write_json(job.output["metrics"], metrics)
    write_paper_table(job.output["paper_table"], metrics, {
        "ours_mlp_median_error_cm_mean": (REFERENCE["cebra_behavior"][0], "CEBRA-Behavior 5.4 cm (CEBRA-Time 4.7 cm) on "
                                          "real Achilles, 3-fold trial split (hc11.md §2.3): a reference band, other "
                                          "data (the default profile runs the stand-in) and protocol"),
        "ours_linear_median_error_cm_mean": (None, "the LDM paper publishes no error number (Fig. 4G shows the band)"),
        "pca_linear_median_error_cm_mean": (REFERENCE["cebra_pca"][0], REFERENCE["cebra_pca"][1]),
        "ours_mlp_coverage_95_mean": (0.95, "nominal level of the paper's 95 % interval (Fig. 4G, App. B)"),
        "ours_linear_coverage_95_mean": (0.95, "nominal level of the paper's analytic 95 % interval (App. B)"),
    })


def _record(job: Job, what: str, metrics: dict | None = None, artifacts: list | None = None) -> None:
    """Record an evaluate/figures job as its own MLflow run."""
    import math

    from ldm.pipeline.tracking import mlflow_run

    part = f"seed{job.wildcards['seed']}"
    with mlflow_run(EXPERIMENT, f"{part}_{what}", tags={"experiment_part": part, **job.context}) as run:
        if run is None:
            return
        import mlflow

        if metrics:
            mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in metrics.items() if isinstance(v, (int, float))
                                and not isinstance(v, bool) and math.isfinite(float(v))})
        for path in artifacts or []:
            mlflow.log_artifact(str(path), artifact_path="figures")
