"""Stages of the ``kalman`` experiment: predictive LDM with a Kalman filter on dot-motion videos
(paper Sec. 6.1, Fig. 4A-D, Fig. A3, Fig. A4).

    videos (per data set) -> train -> evaluate -> figures (per run x seed) ; summarize (all runs)

Glue only: data in :mod:`ldm.data.videos`, the model in :mod:`ldm.models.kalman_ssl`, training in
:mod:`ldm.training.kalman`, evaluation in :mod:`ldm.evaluation.kalman`, figures in
:mod:`ldm.experiments.kalman.figures`. Library modules are imported inside each stage so that each
stage's code inputs are exactly what it runs (a figure edit reruns the figures only).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ldm.experiments.kalman import settings
from ldm.pipeline.stages import Job, stage

EXPERIMENT = "kalman"

#: The paper's numbers (the authors' code; Fig. 4 / A3 / A4 R² of position from the filtered state),
#: shown beside ours in tables/paper_comparison.csv and the report.
PAPER = {
    "figure8_knn/r2_heldout_mean": (0.991, "paper Fig. 4B (notebook R², kNN / CPC)"),
    "figure8_stopgrad/r2_heldout_mean": (0.990, "paper Fig. 4B (notebook R², predictive stopgrad)"),
    "square_stopgrad/r2_heldout_mean": (0.967, "paper Fig. A3"),
    "inferred_sigma/r2_heldout_mean": (0.959, "paper Fig. A4"),
}

#: Per-run numbers aggregated over seeds into metrics.json and listed per seed in tables/runs.csv.
KEYS = ["r2_heldout", "r2_heldout_encoder", "baseline_raw_pixels_r2", "baseline_untrained_r2",
        "baseline_untrained_encoder_r2", "margin_over_raw_pixels", "r2_online_paper", "r2_heldout_skip10",
        "grad_cos_min", "grad_cos_max", "grad_cos_mean", "rotation_deg", "rotation_true_deg", "spectral_radius",
        "train_time_s", "noise_decoding_r2", "noise_decoding_spearman", "err_filtered_mean", "err_encoder_mean",
        "position_coverage_2sd", "process_var_jump_ratio", "r2_random_phase", "r2_random_phase_encoder",
        "baseline_raw_pixels_random_phase_r2", "margin_random_phase_over_raw_pixels", "baseline_noise_pixel_var_r2",
        "baseline_noise_untrained_r2", "noise_decoding_margin", "r2_heldout_noise_inferred", "r2_heldout_noise_const",
        "noise_inference_gain_r2", "r2_noisy_frames_noise_inferred", "r2_noisy_frames_noise_const",
        "noise_inference_gain_noisy_r2", "encoding_spread_ratio", "r2_drop_from_peak"]

#: Per-seed flags (issue 13), listed in tables/runs.csv and summarised in metrics.json: collapse (spread or
#: held-out R² fell during training), A at its radius bound (a warning sign), and a learned model whose
#: held-out R² is below OLS on the raw pixels (useless as a result even without a collapse).
FLAGS = ["collapsed", "below_raw_pixels", "a_at_bound"]


@stage("kalman.videos", settings=settings.videos)
def videos(job: Job) -> None:
    """Generate one data set's train/test videos (independent seeds)."""
    from ldm.data.videos import VideoConfig, write_dataset

    cfg = {k: v for k, v in job.settings.items() if k not in ("seed", "name")}
    write_dataset(VideoConfig.from_dict(cfg), int(job.settings["seed"]), Path(job.output["train"]).parent)


@stage("kalman.train", settings=settings.training)
def train(job: Job) -> None:
    """Train one run x seed; resumes an interrupted training only under the same provenance."""
    from ldm.training import kalman
    from ldm.training.device import Device

    device = Device.from_settings(job.settings["compute"])
    kalman.train(job.settings["run"], Path(job.input["train"]).parent, Path(job.output["model"]).parent,
                 tags=job.context, resume_key=job.provenance(), device=device, threads=job.threads,
                 progress=sys.stderr.isatty())


@stage("kalman.evaluate", settings=settings.run)
def evaluate(job: Job) -> None:
    """Held-out R², baselines and the other evaluation numbers of one run x seed."""
    from ldm.evaluation.kalman import evaluate as evaluate_run

    res = evaluate_run(job.settings, Path(job.input["train"]).parent, Path(job.input["model"]).parent)
    _record(job, "evaluate", metrics=res)


@stage("kalman.figures", settings=settings.run)
def figures(job: Job) -> None:
    """Per-run figures (Fig. 4A/A3 frames, latents ± 2σ, decoded position, gradient cosine, rotation,
    Fig. A4 noise panels) into the run's figure folder."""
    from ldm.experiments.kalman import figures as kfig
    from ldm.pipeline.io import load_npz, read_json

    ev = read_json(job.input["eval"])
    lat = load_npz(job.input["latents"])
    hist = read_json(job.input["history"])
    fig_dir = Path(job.output["figures"])
    name = f"{ev['name']}_seed{ev['seed']}"
    paths = []
    paths += kfig.example_frames(lat["frames"][0], lat["position"][0], fig_dir / f"frames_{name}",
                                 title=f"{ev['dataset']} (test video 0)")
    paths += kfig.latent_trajectories(lat, fig_dir / f"latents_{name}", title=name)
    paths += kfig.position_decoding(lat, fig_dir / f"position_{name}", title=f"{name}  R²={ev['r2_heldout']:.3f}")
    paths += kfig.grad_cos({name: hist["steps"]}, fig_dir / f"grad_cos_{name}")
    paths += kfig.rotation_angle(hist["epochs"], ev["rotation_true_deg"], fig_dir / f"rotation_{name}", title=name)
    if "err_filtered" in lat:
        paths += kfig.noise_panels(lat, fig_dir / f"noise_{name}", title=name)
    _record(job, "figures", artifacts=paths)


@stage("kalman.summarize", settings=settings.summary)
def summarize(job: Job) -> None:
    """metrics.json (mean/std/min over seeds), tables/runs.csv (every run x seed, with baselines),
    the paper-comparison table, Fig. 4D over all runs, and per-epoch histories for DVC plots."""
    from ldm.experiments.kalman import figures as kfig
    from ldm.pipeline.io import read_json, write_json
    from ldm.pipeline.summary import aggregate, write_csv, write_paper_table

    rows, steps, epochs = [], {}, []
    for key, path in sorted(job.input.items()):
        if key.startswith("eval_"):
            ev = read_json(path)
            rows.append(ev)
            hist = read_json(Path(path).with_name("history.json"))
            steps[f"{ev['name']} (seed {ev['seed']})"] = hist["steps"]
            epochs += [{"run": f"{ev['name']}_seed{ev['seed']}", **{k.replace("/", "_"): v for k, v in e.items()}}
                       for e in hist["epochs"]]
    metrics: dict[str, Any] = {
        "experiment": EXPERIMENT, "profile": job.settings["profile"], "seeds": job.settings["seeds"],
        "r2_method": "held-out OLS with intercept: fit on filtered states of all training sequences, R2 on all "
                     "test sequences (independent seed); baselines: raw pixels and the untrained model, same split",
    }
    metrics.update(aggregate(rows, KEYS, by="name"))
    for name in sorted({r["name"] for r in rows}):
        mins = [r["grad_cos_min"] for r in rows if r["name"] == name and r.get("grad_cos_min") == r.get("grad_cos_min")]
        if mins:
            metrics[f"{name}/grad_cos_all_positive"] = bool(min(mins) > 0)
        metrics[f"{name}/loss"] = next(r["loss"] for r in rows if r["name"] == name)
        for flag in FLAGS:
            metrics[f"{name}/{flag}_seeds"] = sorted(int(r["seed"]) for r in rows if r["name"] == name and r.get(flag))
    # a collapsed run is never summarised silently: a top-level flag, the list, and a warning in the log
    collapsed = sorted(f"{r['name']}_seed{r['seed']}" for r in rows if r.get("collapsed"))
    metrics["collapse_detected"] = bool(collapsed)
    metrics["collapsed_runs"] = collapsed
    metrics["a_at_bound_runs"] = sorted(f"{r['name']}_seed{r['seed']}" for r in rows if r.get("a_at_bound"))
    below = sorted(f"{r['name']}_seed{r['seed']}" for r in rows if r.get("below_raw_pixels"))
    metrics["below_raw_pixels_detected"] = bool(below)
    metrics["below_raw_pixels_runs"] = below
    metrics["flagged_runs"] = sorted(set(collapsed) | set(below))
    import logging

    if collapsed:
        logging.getLogger("ldm").warning(f"kalman: COLLAPSED runs in this summary: {collapsed} "
                                         "(their R2 is in the tables, flagged in the 'collapsed' column)")
    if below:
        logging.getLogger("ldm").warning(f"kalman: runs BELOW the raw-pixel baseline in this summary: {below} "
                                         "(flagged in the 'below_raw_pixels' column)")
    write_json(job.output["metrics"], metrics)
    write_csv(job.output["table"], sorted(rows, key=lambda r: (r["name"], r["seed"])),
              ["name", "seed", "loss", "dataset", *FLAGS, *KEYS])
    write_paper_table(job.output["paper_table"], metrics, PAPER)
    cols = sorted({k for e in epochs for k in e if k != "run"})
    write_csv(job.output["epochs"], epochs, ["run", *cols])
    kfig.grad_cos(steps, Path(job.output["grad_cos_png"]).with_suffix(""))


def _record(job: Job, what: str, metrics: dict | None = None, artifacts: list | None = None) -> None:
    """Record an evaluate/figures job as its own MLflow run (tagged with the run and seed)."""
    import math

    from ldm.pipeline.tracking import mlflow_run

    part = f"{job.wildcards['run']}_seed{job.wildcards['seed']}"
    with mlflow_run(EXPERIMENT, f"{part}_{what}", tags={"experiment_part": part, **job.context}) as run:
        if run is None:
            return
        import mlflow

        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))
                                and not isinstance(v, bool) and math.isfinite(float(v))})
        for path in artifacts or []:
            mlflow.log_artifact(str(path), artifact_path="figures")
