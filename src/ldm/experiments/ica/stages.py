"""Stages of the ``ica`` experiment (paper Sec. 3.1, Fig. 2): linear ICA as latent distribution
matching, on two natural images (part ``images``) and two Ornstein–Uhlenbeck paths (part ``ou``).

sources → mixtures → fit → evaluate → figures, then ``summarize`` writes results/ica/metrics.json.
Glue only: the maths is in :mod:`ldm.models.ica` and :mod:`ldm.data.ica_sources`. Library modules are
imported inside each stage, so each stage's code inputs are exactly what it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ldm.pipeline.stages import Job, stage

EXPERIMENT = "ica"

#: What the paper reports for Fig. 2 (figures only, no numbers) and the official code's re-run
#: (the authors' code), shown beside ours in tables/paper_comparison.csv.
PAPER = {
    "images/min_abs_corr": (0.985, "official code re-run (paper Fig. 2 shows images only)"),
    "ou/min_abs_corr": (1.0, "official code re-run (paper Fig. 2 shows paths only)"),
}


def _part(name: str) -> Any:
    return lambda config, wc: config["ica"][wc["part"]][name]


@stage("ica.sources", settings=_part("sources"))
def make_sources(job: Job) -> None:
    """Generate the independent sources of one part (data/ica/<part>/sources.npz)."""
    from ldm.data import ica_sources
    from ldm.pipeline.io import save_npz

    s = job.settings
    if job.wildcards["part"] == "images":
        names = tuple(s["names"])
        S = ica_sources.natural_image_sources(names, size=s["size"], grayscale=s.get("grayscale"))
        shape = ica_sources.image_shape(names, size=s["size"], grayscale=s.get("grayscale"))
        save_npz(job.output["sources"], S=S, image_shape=shape)
    else:
        S = ica_sources.ornstein_uhlenbeck_sources(s["thetas"], sigma=s["sigma"], dt=s["dt"],
                                                   n_steps=s["n_steps"], seed=s["seed"])
        variances = [ica_sources.ou_stationary_variance(t, s["sigma"], s["dt"]) for t in s["thetas"]]
        save_npz(job.output["sources"], S=S, variances=variances)


@stage("ica.mixtures", settings=_part("mixing"))
def make_mixtures(job: Job) -> None:
    """Mix the sources: X = A S, rows centred (data/ica/<part>/mixtures.npz)."""
    from ldm.models import ica
    from ldm.pipeline.io import load_npz, save_npz

    S = load_npz(job.input["sources"])["S"]
    mixing = dict(job.settings)
    A = ica.mixing_matrix(mixing.pop("kind"), **mixing)
    save_npz(job.output["mixtures"], X=ica.mix(S, A), A=A)


def _fit_settings(settings: Mapping[str, Any], variances: Any) -> dict[str, Any]:
    """Keyword arguments of :func:`ldm.models.ica.fit_unmixing`; a Gaussian source model without
    explicit variances gets the sources' known stationary variances (the OU part)."""
    out = dict(settings)
    if out.get("source_model") == "gaussian" and out.get("variances") is None and variances is not None:
        out["variances"] = [float(v) for v in variances]
    return out


@stage("ica.fit", settings=_part("fit"))
def fit(job: Job) -> None:
    """Maximise the LDM objective (Eq. 3) for the unmixing matrix W; log the objective history."""
    import numpy as np

    from ldm.models import ica
    from ldm.pipeline.io import load_npz, save_npz
    from ldm.pipeline.tracking import log_history, mlflow_run

    data = load_npz(job.input["mixtures"])
    settings = _fit_settings(job.settings, load_npz(job.input["sources"]).get("variances"))
    with mlflow_run(EXPERIMENT, f"{job.wildcards['part']}_fit", params=settings, tags=job.context) as run:
        result = ica.fit_unmixing(data["X"], **settings)
        history = np.asarray(result.history, dtype=np.float64)
        if run is not None:
            log_history(run.info.run_id, "objective", history[:, 0], history[:, 1])
        save_npz(job.output["fit"], W=np.asarray(result.W), history=history)


@stage("ica.evaluate", settings=lambda config, wc: {})
def evaluate(job: Job) -> None:
    """|corr| of each recovered source with its true source (best permutation and sign) and the
    Amari index of W·A."""
    import numpy as np

    from ldm.models import ica
    from ldm.pipeline.io import load_npz, write_json
    from ldm.pipeline.tracking import mlflow_run

    S = load_npz(job.input["sources"])["S"]
    mixtures = load_npz(job.input["mixtures"])
    W = load_npz(job.input["fit"])["W"]
    corr = ica.matched_correlations(S, W @ mixtures["X"])
    metrics = {
        "min_abs_corr": float(np.min(corr)),
        "abs_corr": [float(c) for c in corr],
        "amari_index": float(ica.amari_index(W @ mixtures["A"])),
        "W": np.asarray(W).tolist(),
        "WA": np.asarray(W @ mixtures["A"]).tolist(),
    }
    with mlflow_run(EXPERIMENT, f"{job.wildcards['part']}_evaluate", tags=job.context) as run:
        if run is not None:
            import mlflow

            mlflow.log_metrics({"min_abs_corr": metrics["min_abs_corr"], "amari_index": metrics["amari_index"]})
    write_json(job.output["evaluation"], metrics)


@stage("ica.figures", settings=_part("fit"))
def figures(job: Job) -> None:
    """Fig. 2 panels of one part (PNG + PDF), also logged as MLflow artifacts."""
    import os

    from ldm.experiments.ica import figures as ica_figures
    from ldm.models import ica
    from ldm.pipeline.io import load_npz
    from ldm.pipeline.tracking import mlflow_run

    part = job.wildcards["part"]
    src = load_npz(job.input["sources"])
    mixtures = load_npz(job.input["mixtures"])
    fitted = load_npz(job.input["fit"])
    S, X = src["S"], mixtures["X"]
    Y = fitted["W"] @ X
    settings = _fit_settings(job.settings, src.get("variances"))
    model_keys = {"generalized_gaussian": ("beta", "scale"), "gaussian": ("variances", "energy")}
    name = settings["source_model"]
    model = ica.make_source_model(name, **{k: settings[k] for k in model_keys[name] if k in settings})
    written: list = []
    for stem in sorted({os.path.splitext(os.fspath(p))[0] for p in job.output.values()}):
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
    with mlflow_run(EXPERIMENT, f"{part}_figures", tags=job.context) as run:
        if run is not None:
            import mlflow

            for path in written:
                mlflow.log_artifact(str(path), artifact_path="figures")


def _summary_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    ica_cfg = config["ica"]
    out: dict[str, Any] = {"profile": config["profile"], "parts": list(ica_cfg["parts"])}
    if "ou" in out["parts"]:
        out["ou_seed"] = ica_cfg["ou"]["sources"]["seed"]
    return out


@stage("ica.summarize", settings=_summary_settings)
def summarize(job: Job) -> None:
    """results/ica/metrics.json (flat keys, with profile) and the paper-comparison table."""
    from ldm.pipeline.io import read_json, write_json
    from ldm.pipeline.summary import write_paper_table

    out: dict[str, Any] = {"profile": job.settings["profile"]}
    for name, path in sorted(job.input.items()):
        part = name.removeprefix("evaluation_")
        ev = read_json(path)
        out[f"{part}/min_abs_corr"] = ev["min_abs_corr"]
        out[f"{part}/amari_index"] = ev["amari_index"]
        for i, c in enumerate(ev["abs_corr"]):
            out[f"{part}/abs_corr_{i}"] = c
    if "ou_seed" in job.settings:
        out["ou/seed"] = job.settings["ou_seed"]
    write_json(job.output["metrics"], out)
    write_paper_table(job.output["table"], out, PAPER)
