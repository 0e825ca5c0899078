"""Stages of the ``ica`` experiment (paper Sec. 3.1, Fig. 2): linear ICA as latent distribution
matching. Each part ``ica.<part>`` is one source set: photographs (``images``), Ornstein–Uhlenbeck
paths (``ou``) or simulated i.i.d. sources of known kurtosis (``simulated``), with its mixing and
its fit (source model = the LDM latent model).

sources → mixtures → fit → evaluate (ICA beside the PCA baselines) → figures, then ``summarize``
writes results/ica/metrics.json, tables/ica_table.csv (source sets × PCA/ICA) and the paper table.
Glue only: the maths is in :mod:`ldm.models.ica`, :mod:`ldm.data.ica_sources` and
:mod:`ldm.evaluation.ica`. Library modules are imported inside each stage, so each stage's code
inputs are exactly what it runs.
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

#: Methods of the ICA table, in order: the raw mixtures (W = I), the PCA baselines, the fit.
METHODS = ("mixtures", "pca_rotation", "pca_whitening", "ica")


def source_kind(part: str, sources: Mapping[str, Any]) -> str:
    """Kind of a part's sources: ``sources.kind``, else the part name (``images`` or ``ou``)."""
    kind = sources.get("kind", part if part in ("images", "ou") else None)
    if kind not in ("images", "ou", "simulated"):
        raise ValueError(f"ica.{part}.sources.kind must be images, ou or simulated (part {part!r} "
                         "is not named images or ou, so it cannot be inferred)")
    return kind


def _part(name: str) -> Any:
    return lambda config, wc: config["ica"][wc["part"]][name]


@stage("ica.sources", settings=_part("sources"))
def make_sources(job: Job) -> None:
    """Generate the independent sources of one part (data/ica/<part>/sources.npz)."""
    from ldm.data import ica_sources
    from ldm.pipeline.io import save_npz

    s = job.settings
    kind = source_kind(job.wildcards["part"], s)
    if kind == "images":
        names = tuple(s["names"])
        S = ica_sources.natural_image_sources(names, size=s.get("size", 200), grayscale=s.get("grayscale"))
        shape = ica_sources.image_shape(names, size=s.get("size", 200), grayscale=s.get("grayscale"))
        save_npz(job.output["sources"], S=S, image_shape=shape)
    elif kind == "simulated":
        S = ica_sources.simulated_sources(s["distributions"], n_samples=s.get("n_samples", 20_000),
                                          seed=s.get("seed", 0))
        save_npz(job.output["sources"], S=S)
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
    A = ica.mixing_matrix(mixing.pop("kind"), d=S.shape[0], **mixing)
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
    """Maximise the LDM objective (Eq. 3) for the unmixing matrix W (and an adaptive latent model's
    parameters); log the objective history."""
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
        betas = np.asarray(getattr(result.source_model, "betas", ()), dtype=np.float64)
        save_npz(job.output["fit"], W=np.asarray(result.W), history=history, betas=betas,
                 restart_objectives=np.asarray(result.restart_objectives, dtype=np.float64))


@stage("ica.evaluate", settings=lambda config, wc: {})
def evaluate(job: Job) -> None:
    """|corr| of each recovered source with its true source (best permutation and sign) and the
    Amari index of W·A, for the fit and beside it the raw mixtures (W = I) and the PCA baselines;
    the kurtosis of each source and the largest correlation between two sources."""
    import numpy as np

    from ldm.evaluation import ica as ica_eval
    from ldm.pipeline.io import load_npz, write_json
    from ldm.pipeline.tracking import mlflow_run

    S = load_npz(job.input["sources"])["S"]
    mixtures = load_npz(job.input["mixtures"])
    fitted = load_npz(job.input["fit"])
    W = fitted["W"]
    rows = ica_eval.evaluate_unmixings(S, mixtures["X"], mixtures["A"],
                                       {"mixtures": np.eye(S.shape[0]), "ica": W})
    by_method = {r["method"]: r for r in rows}
    metrics = {
        "min_abs_corr": by_method["ica"]["min_abs_corr"],
        "abs_corr": by_method["ica"]["abs_corr"],
        "amari_index": by_method["ica"]["amari_index"],
        "methods": rows,
        **ica_eval.source_statistics(S),
        # fitted shape of each source's latent density, in source order (rows of W are permuted)
        "betas": ([float(fitted["betas"][j]) for j in ica_eval.matched_permutation(S, W @ mixtures["X"])]
                  if len(fitted["betas"]) else []),
        "W": np.asarray(W).tolist(),
        "WA": np.asarray(W @ mixtures["A"]).tolist(),
    }
    with mlflow_run(EXPERIMENT, f"{job.wildcards['part']}_evaluate", tags=job.context) as run:
        if run is not None:
            import mlflow

            mlflow.log_metrics({f"{r['method']}_{k}": r[k] for r in rows for k in ("min_abs_corr", "amari_index")})
    write_json(job.output["evaluation"], metrics)


@stage("ica.figures", settings=lambda config, wc: {
    "fit": config["ica"][wc["part"]]["fit"],
    "kind": source_kind(wc["part"], config["ica"][wc["part"]]["sources"])})
def figures(job: Job) -> None:
    """Fig. 2 panels of one part (PNG + PDF), also logged as MLflow artifacts."""
    import os

    from ldm.evaluation import ica as ica_eval
    from ldm.experiments.ica import figures as ica_figures
    from ldm.models import ica
    from ldm.pipeline.io import load_npz
    from ldm.pipeline.tracking import mlflow_run

    part, kind = job.wildcards["part"], job.settings["kind"]
    src = load_npz(job.input["sources"])
    mixtures = load_npz(job.input["mixtures"])
    fitted = load_npz(job.input["fit"])
    S, X = src["S"], mixtures["X"]
    Y = fitted["W"] @ X
    settings = _fit_settings(job.settings["fit"], src.get("variances"))
    name = settings["source_model"]
    if len(fitted["betas"]):  # an adaptive model: its fitted shapes, in source order (as the panels)
        perm = ica_eval.matched_permutation(S, Y)
        model: Any = ica.PerSourceGeneralizedGaussianSourceModel(betas=tuple(float(fitted["betas"][j]) for j in perm))
    else:
        model = ica.make_source_model(name, **{k: settings[k] for k in ica.SOURCE_MODEL_KEYS[name] if k in settings})
    written: list = []
    for stem in sorted({os.path.splitext(os.fspath(p))[0] for p in job.output.values()}):
        panel = os.path.basename(stem).removeprefix(f"{part}_")
        if panel == "histograms":
            written += ica_figures.plot_signal_histograms(S, X, Y, model, stem)
        elif panel == "recovered" and kind == "images":
            written += ica_figures.plot_recovered_images(S, X, Y, tuple(src["image_shape"]), stem)
        elif panel == "recovered" and kind == "ou":
            written += ica_figures.plot_ou_paths(S, X, Y, src["variances"], stem)
        elif panel == "recovered":
            written += ica_figures.plot_scatter_pairs(S, X, Y, stem)
        elif panel == "objective":
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
    parts = list(ica_cfg["parts"])
    out: dict[str, Any] = {"profile": config["profile"], "parts": parts,
                           "sources": {p: ica_cfg[p]["sources"] for p in parts}}
    if "ou" in parts:
        out["ou_seed"] = ica_cfg["ou"]["sources"]["seed"]
    return out


def _source_label(part: str, sources: Mapping[str, Any]) -> str:
    kind = source_kind(part, sources)
    if kind == "images":
        return "+".join(sources["names"])
    if kind == "simulated":
        return "+".join(sources["distributions"])
    return "+".join(f"OU(theta={t:g})" for t in sources["thetas"])


@stage("ica.summarize", settings=_summary_settings)
def summarize(job: Job) -> None:
    """results/ica/metrics.json (flat keys, with profile), tables/ica_table.csv (one row per part ×
    method: raw mixtures, PCA rotation, PCA whitening, ICA) and the paper-comparison table."""
    from ldm.pipeline.io import read_json, write_json
    from ldm.pipeline.summary import write_csv, write_paper_table

    out: dict[str, Any] = {"profile": job.settings["profile"]}
    rows: list[dict[str, Any]] = []
    for part in job.settings["parts"]:
        ev = read_json(job.input[f"evaluation_{part}"])
        out[f"{part}/min_abs_corr"] = ev["min_abs_corr"]
        out[f"{part}/amari_index"] = ev["amari_index"]
        for i, c in enumerate(ev["abs_corr"]):
            out[f"{part}/abs_corr_{i}"] = c
        for i, k in enumerate(ev["kurtosis"]):
            out[f"{part}/source_kurtosis_{i}"] = k
        out[f"{part}/max_abs_source_corr"] = ev["max_abs_source_corr"]
        sources = job.settings["sources"][part]
        for r in sorted(ev["methods"], key=lambda r: METHODS.index(r["method"])):
            if r["method"] != "ica":
                out[f"{part}/baseline_{r['method']}_min_abs_corr"] = r["min_abs_corr"]
                out[f"{part}/baseline_{r['method']}_amari_index"] = r["amari_index"]
            rows.append({
                "part": part, "kind": source_kind(part, sources), "sources": _source_label(part, sources),
                "n_sources": len(ev["kurtosis"]), "method": r["method"],
                "min_abs_corr": round(r["min_abs_corr"], 5), "amari_index": round(r["amari_index"], 4),
                "abs_corr": ";".join(f"{c:.4f}" for c in r["abs_corr"]),
                "source_kurtosis": ";".join(f"{k:+.2f}" for k in ev["kurtosis"]),
                "max_abs_source_corr": round(ev["max_abs_source_corr"], 3),
                "fitted_betas": ";".join(f"{b:.2f}" for b in ev["betas"]) if r["method"] == "ica" else "",
            })
        best_pca = max(r["min_abs_corr"] for r in ev["methods"] if r["method"].startswith("pca"))
        out[f"{part}/ica_margin_over_pca"] = ev["min_abs_corr"] - best_pca
    if "ou_seed" in job.settings:
        out["ou/seed"] = job.settings["ou_seed"]
    write_json(job.output["metrics"], out)
    write_csv(job.output["ica_table"], rows, ["part", "kind", "sources", "n_sources", "method", "min_abs_corr",
                                              "amari_index", "abs_corr", "source_kurtosis",
                                              "max_abs_source_corr", "fitted_betas"])
    write_paper_table(job.output["table"], out, {k: v for k, v in PAPER.items() if k in out})
