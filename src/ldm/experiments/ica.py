"""Stages of the ``ica`` experiment (paper Sec. 3.1, Fig. 2): linear ICA as latent distribution
matching, on two natural images (part ``images``) and two Ornstein–Uhlenbeck paths (part ``ou``).

sources → mixtures → fit → evaluate → figures, then ``summarize`` writes results/ica/metrics.json.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ldm import ica, sources
from ldm.io import load_npz, read_json, save_npz, write_json
from ldm.stages import Job, stage
from ldm.tracking import log_history, mlflow_run

EXPERIMENT = "ica"


def _make_sources(part: str, settings: dict[str, Any]) -> dict[str, np.ndarray]:
    """Source matrix S (2 × N) and what the later stages need to interpret it."""
    if part == "images":
        names = tuple(settings["names"])
        S = sources.natural_image_sources(names, size=settings["size"], grayscale=settings.get("grayscale"))
        shape = sources.image_shape(names, size=settings["size"], grayscale=settings.get("grayscale"))
        return {"S": S, "image_shape": np.asarray(shape)}
    if part == "ou":
        S = sources.ornstein_uhlenbeck_sources(
            settings["thetas"], sigma=settings["sigma"], dt=settings["dt"],
            n_steps=settings["n_steps"], seed=settings["seed"],
        )
        variances = [sources.ou_stationary_variance(t, settings["sigma"], settings["dt"]) for t in settings["thetas"]]
        return {"S": S, "variances": np.asarray(variances)}
    raise ValueError(f"unknown ica part '{part}' (allowed: images, ou)")


@stage("ica.sources")
def make_sources(job: Job) -> None:
    """Generate the independent sources of one part (data/ica/<part>/sources.npz)."""
    save_npz(job.output["sources"], **_make_sources(job.wildcards["part"], job.settings["sources"]))


@stage("ica.mixtures")
def make_mixtures(job: Job) -> None:
    """Mix the sources: X = A S, rows centred (data/ica/<part>/mixtures.npz)."""
    S = load_npz(job.input["sources"])["S"]
    mixing = dict(job.settings["mixing"])
    A = ica.mixing_matrix(mixing.pop("kind"), **mixing)
    save_npz(job.output["mixtures"], X=ica.mix(S, A), A=A)


def _fit_settings(job: Job, variances: np.ndarray | None) -> dict[str, Any]:
    """Keyword arguments of :func:`ldm.ica.fit_unmixing`; a Gaussian source model without explicit
    variances gets the sources' known stationary variances (the OU part)."""
    settings = dict(job.settings["fit"])
    if settings.get("source_model") == "gaussian" and settings.get("variances") is None and variances is not None:
        settings["variances"] = variances.tolist()
    return settings


@stage("ica.fit")
def fit(job: Job) -> None:
    """Maximise the LDM objective (Eq. 3) for the unmixing matrix W; log the objective history."""
    data = load_npz(job.input["mixtures"])
    src = load_npz(job.input["sources"])
    settings = _fit_settings(job, src.get("variances"))
    part = job.wildcards["part"]
    params = {"part": part, **settings, "mixing": job.settings["mixing"]}
    with mlflow_run(EXPERIMENT, part, params=params, tags=job.context) as run:
        result = ica.fit_unmixing(data["X"], **settings)
        history = np.asarray(result.history, dtype=np.float64)
        log_history(run.info.run_id, "objective", history[:, 0], history[:, 1])
        save_npz(job.output["fit"], W=np.asarray(result.W), history=history)
        write_json(job.output["run"], {"run_id": run.info.run_id, "experiment": EXPERIMENT})


@stage("ica.evaluate")
def evaluate(job: Job) -> None:
    """|corr| of each recovered source with its true source (best permutation and sign) and the
    Amari index of W·A; logged to the part's MLflow run."""
    S = load_npz(job.input["sources"])["S"]
    mixtures = load_npz(job.input["mixtures"])
    W = load_npz(job.input["fit"])["W"]
    Y = W @ mixtures["X"]
    corr = ica.matched_correlations(S, Y)
    metrics = {
        "min_abs_corr": float(np.min(corr)),
        "abs_corr": [float(c) for c in corr],
        "amari_index": float(ica.amari_index(W @ mixtures["A"])),
        "W": np.asarray(W).tolist(),
        "WA": np.asarray(W @ mixtures["A"]).tolist(),
    }
    run_id = read_json(job.input["run"])["run_id"]
    with mlflow_run(EXPERIMENT, "", tags={**job.context, "snakemake.rule": "ica_fit"}, run_id=run_id):
        import mlflow

        mlflow.log_metrics({"min_abs_corr": metrics["min_abs_corr"], "amari_index": metrics["amari_index"]})
    write_json(job.output["evaluation"], metrics)


@stage("ica.figures")
def figures(job: Job) -> None:
    """Fig. 2 panels of one part (PNG + PDF), also logged as artifacts of the part's run."""
    from ldm.figures import ica as ica_figures

    part = job.wildcards["part"]
    src = load_npz(job.input["sources"])
    mixtures = load_npz(job.input["mixtures"])
    fitted = load_npz(job.input["fit"])
    S, X = src["S"], mixtures["X"]
    Y = fitted["W"] @ X
    settings = _fit_settings(job, src.get("variances"))
    model_keys = {"generalized_gaussian": ("beta", "scale"), "gaussian": ("variances", "energy")}
    name = settings["source_model"]
    model = ica.make_source_model(name, **{k: settings[k] for k in model_keys[name] if k in settings})
    stems = {os.path.splitext(os.fspath(p))[0] for p in job.output.values()}
    written: list[str] = []
    for stem in sorted(stems):
        kind = os.path.basename(stem).removeprefix(f"{part}_")
        if kind == "histograms":
            written += ica_figures.plot_signal_histograms(S, X, Y, model, stem)
        elif kind == "recovered" and part == "images":
            written += ica_figures.plot_recovered_images(S, X, Y, tuple(src["image_shape"]), stem)
        elif kind == "recovered" and part == "ou":
            written += ica_figures.plot_ou_paths(S, X, Y, src["variances"], stem)
        elif kind == "objective":
            written += ica_figures.plot_objective_history(fitted["history"], stem)
        else:
            raise ValueError(f"no ica figure called '{os.path.basename(stem)}' (part {part})")
    run_id = read_json(job.input["run"])["run_id"]
    with mlflow_run(EXPERIMENT, "", tags={**job.context, "snakemake.rule": "ica_fit"}, run_id=run_id):
        import mlflow

        for path in written:
            mlflow.log_artifact(str(path), artifact_path="figures")


@stage("ica.summarize")
def summarize(job: Job) -> None:
    """results/ica/metrics.json: the headline numbers of every part, flat keys, with profile."""
    out: dict[str, Any] = {"profile": os.environ.get("LDM_PROFILE", "unknown")}
    for name, path in sorted(job.input.items()):
        part = name.removeprefix("evaluation_")
        ev = read_json(path)
        out[f"{part}/min_abs_corr"] = ev["min_abs_corr"]
        out[f"{part}/amari_index"] = ev["amari_index"]
        for i, c in enumerate(ev["abs_corr"]):
            out[f"{part}/abs_corr_{i}"] = c
    parts = job.settings
    if "ou" in parts:
        out["ou/seed"] = parts["ou"]["sources"]["seed"]
    write_json(job.output["metrics"], out)
