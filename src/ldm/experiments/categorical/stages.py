"""Stages of the ``categorical`` experiment: categorical latents with a probabilistic encoder on MNIST
(paper App. A.8, Fig. A8/A9; reference/images.md §2).

    data/<dataset>/{train,test}.npz (rule datasets_images)
        -> train, evaluate (per run x seed) ; baselines (per seed) -> figures, summarize (all runs)

Glue only: pairs in :mod:`ldm.data.pairs`, the encoder in :mod:`ldm.models.categorical`, the objectives
and the p annealing in :mod:`ldm.objectives`, training in :mod:`ldm.training.categorical`, clustering
accuracy (greedy and Hungarian) and entropies in :mod:`ldm.evaluation.clustering`, the plots in
:mod:`ldm.experiments.categorical.figures`. Library modules are imported inside each stage so that each
stage's code inputs are exactly what it runs. Settings resolvers are torch-free (they run while
Snakemake builds the DAG) and read only what their job uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldm.pipeline.stages import Job, stage

EXPERIMENT = "categorical"

#: The paper's clustering accuracies (greedy assignment, MNIST test set, seed 1; images.md §2, notebook).
PAPER: dict[str, tuple[float | None, str]] = {
    "dm/accuracy_greedy_mean": (0.989, "App. A.8 / Fig. A8, notebook 'DM p=0.99' (exact, p 0.8 -> 0.992)"),
    "dm_mi/accuracy_greedy_mean": (0.892, "App. A.8 / Fig. A8, notebook 'DM+MI p=0.99' (approx m=2, p 0.8 -> 0.992)"),
    "dm_mi_p08/accuracy_greedy_mean": (0.989, "App. A.8 / Fig. A8, notebook 'DM+MI p=0.8' (approx m=2, p = 0.8)"),
    "mi/accuracy_greedy_mean": (0.699, "App. A.8 / Fig. A8, notebook 'MI' (pure MI maximisation)"),
    "dm/median_entropy_bits_mean": (None, "Fig. A9: DM codes concentrated at higher entropy (qualitative)"),
    "mi/frac_entropy_below_1e-3_mean": (None, "Fig. A9: MI codes with many near-zero entropies (qualitative)"),
}

#: Per-run numbers of eval.json aggregated over seeds (metrics.json) and listed per seed (tables/runs.csv).
KEYS = ["accuracy_greedy", "accuracy_hungarian", "mean_entropy_bits", "median_entropy_bits",
        "frac_entropy_below_1e-3", "clusters_used", "train_time_s"]
#: Baselines measured in the same run (per seed).
BASELINE_KEYS = ["random_init_accuracy_greedy", "random_init_accuracy_hungarian", "random_init_mean_entropy_bits",
                 "random_init_kmeans_features_accuracy_greedy", "random_init_kmeans_features_accuracy_hungarian",
                 "kmeans_raw_pixels_accuracy_greedy", "kmeans_raw_pixels_accuracy_hungarian"]


def _section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    if "categorical" not in config:
        raise KeyError("config has no 'categorical' section (expected keys: categorical.dataset, categorical.runs)")
    section = config["categorical"]
    if "runs" not in section or not section["runs"]:
        raise KeyError("categorical.runs is missing or empty (the paper's four: dm, dm_mi, dm_mi_p08, mi)")
    return section


def _run_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """One run x seed: ``categorical.defaults`` <- ``categorical.runs.<run>`` and the seed (resolved against
    the library's RUN_DEFAULTS in the stage)."""
    section = _section(config)
    runs = section["runs"]
    run = wc["run"]
    if run not in runs:
        raise KeyError(f"categorical.runs.{run} is not defined (known: {sorted(runs)})")
    return {"name": run, "dataset": section.get("dataset", "mnist"), "defaults": dict(section.get("defaults") or {}),
            "overrides": dict(runs[run]), "seed": int(wc["seed"])}


def _train_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    return {"run": _run_settings(config, wc), "compute": config["compute"]}


def _baseline_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    """The untrained encoder of ``categorical.defaults`` (same seed) and k-means on raw pixels."""
    section = _section(config)
    return {"dataset": section.get("dataset", "mnist"), "defaults": dict(section.get("defaults") or {}),
            "seed": int(wc["seed"])}


def _summary_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    section = _section(config)
    return {"profile": config["profile"], "dataset": section.get("dataset", "mnist"), "runs": sorted(section["runs"]),
            "seeds": list(section.get("seeds", [1]))}


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), Mapping) and isinstance(v, Mapping) else v
    return out


def resolved_run(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The full run config (:func:`ldm.training.categorical.resolve_run`) of a run's settings; errors name
    the config key."""
    from ldm.training.categorical import resolve_run

    over = _merge(settings["defaults"], settings["overrides"])
    if isinstance(settings["overrides"].get("encoder"), Mapping):
        over["encoder"] = dict(settings["overrides"]["encoder"])  # a run's encoder replaces the default's
    over["seed"] = int(settings["seed"])
    return resolve_run(over, where=f"categorical.runs.{settings['name']}")


def _data(job: Job, cfg: Mapping[str, Any], split: str):
    from ldm.data.image_transforms import preprocess_images
    from ldm.training.categorical import read_prepared

    images, labels = read_prepared(job.input[split])
    return images, labels, preprocess_images(images, int(cfg["image_size"]), int(cfg["channels"]))


def _log_metrics(run: Any, metrics: Mapping[str, Any], step: int | None = None) -> None:
    import math

    if run is None:
        return
    import mlflow

    mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in metrics.items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))},
                       step=step)


@stage("categorical.train", settings=_train_settings)
def train(job: Job) -> None:
    """Train one run x seed on same-class pairs through the shared resumable loop (resumes only under the
    same provenance); model.pt, history.json (p, T, test accuracy per epoch), train_metrics.json."""
    import time

    from ldm.pipeline.tracking import mlflow_run
    from ldm.training import categorical as cat
    from ldm.training.device import Device

    cfg = resolved_run(job.settings["run"])
    cfg["threads"] = int(job.threads)
    _, tr_y, trx = _data(job, cfg, "train")
    _, te_y, tex = _data(job, cfg, "test")
    out_dir = Path(job.output["model"]).parent
    ckpt = out_dir / "checkpoints"
    part = f"{job.settings['run']['name']}_seed{cfg['seed']}"
    with mlflow_run(EXPERIMENT, f"{part}_train", params=cfg, tags={"experiment_part": part, **job.context}) as run:
        t0 = time.perf_counter()
        encoder, history = cat.train_categorical(
            cfg, trx, tr_y, ckpt, eval_x=tex, eval_labels=te_y, progress=False, resume_key=job.provenance(),
            device=Device.from_settings(job.settings["compute"]),
            on_epoch=lambda epoch, metrics: _log_metrics(run, metrics, epoch))
        summary = cat.finish_run(out_dir, encoder, cfg, history, ckpt)
        summary["wall_time_this_call_s"] = time.perf_counter() - t0
        from ldm.pipeline.io import write_json

        write_json(job.output["summary"], summary)


@stage("categorical.evaluate", settings=_run_settings)
def evaluate(job: Job) -> None:
    """Test-set clustering accuracy (greedy = the paper's, and Hungarian), confusion matrices, per-image
    entropy in bits (eval.json) and the category probabilities (codes.npz)."""
    import numpy as np

    from ldm.pipeline.io import read_json, save_npz, write_json
    from ldm.pipeline.tracking import mlflow_run
    from ldm.training import categorical as cat

    encoder, cfg = cat.load_encoder(job.input["model"])
    _, te_y, tex = _data(job, cfg, "test")
    rep = cat.evaluate_encoder(encoder, tex, te_y)
    h = rep["entropy_bits"]
    n = rep["probs"].shape[1]
    res = {
        "name": job.settings["name"], "seed": int(cfg["seed"]), "objective": cfg["objective"],
        "p_start": cfg["p_start"], "p_end": cfg["p_end"], "encoder": cfg["encoder"]["name"],
        "n_test": int(len(te_y)),
        "accuracy_greedy": rep["accuracy_greedy"], "accuracy_hungarian": rep["accuracy_hungarian"],
        "mean_entropy_bits": rep["mean_entropy_bits"], "median_entropy_bits": float(np.median(h)),
        "frac_entropy_below_1e-3": float((h < 1e-3).mean()), "clusters_used": rep["clusters_used"],
        "train_time_s": read_json(job.input["summary"])["train_time_s"],
        "confusion": rep["confusion"].tolist(), "confusion_greedy": rep["confusion_greedy"].tolist(),
        "assignment_greedy": {str(c): y for c, y in rep["assignment_greedy"].items()},
        "assignment_hungarian": {str(c): y for c, y in rep["assignment_hungarian"].items()},
    }
    write_json(job.output["eval"], res)
    assignment = np.array([rep["assignment_greedy"].get(c, -1) for c in range(n)], dtype=np.int64)
    save_npz(job.output["codes"], probs=rep["probs"].astype(np.float32), entropy_bits=h, labels=np.asarray(te_y),
             assignment_greedy=assignment)
    part = f"{job.settings['name']}_seed{cfg['seed']}"
    with mlflow_run(EXPERIMENT, f"{part}_evaluate", tags={"experiment_part": part, **job.context}) as run:
        _log_metrics(run, {k: v for k, v in res.items() if k in KEYS})


@stage("categorical.baselines", settings=_baseline_settings)
def baselines(job: Job) -> None:
    """Baselines measured in the same run: the untrained encoder (argmax clusters; k-means on its backbone
    features) with the run seed, and k-means (k = 10) on raw pixels."""
    import numpy as np

    from ldm.evaluation.clustering import kmeans_accuracy, kmeans_baseline
    from ldm.pipeline.io import write_json
    from ldm.pipeline.tracking import mlflow_run
    from ldm.training import categorical as cat

    settings = {"name": "baselines", "defaults": job.settings["defaults"], "overrides": {}, "seed": job.settings["seed"]}
    cfg = resolved_run(settings)
    import torch

    torch.set_num_threads(int(job.threads))
    tr_i, _, trx = _data(job, cfg, "train")
    te_i, te_y, tex = _data(job, cfg, "test")
    seed = int(cfg["seed"])
    enc = cat.build_encoder(cfg)
    rep = cat.evaluate_encoder(enc, tex, te_y)
    km_feat = kmeans_accuracy(cat.backbone_features(enc, trx), cat.backbone_features(enc, tex), te_y,
                              k=int(cfg["n_categories"]), seed=seed)
    km_raw = kmeans_baseline(tr_i, te_i, te_y, k=int(cfg["n_categories"]), seed=seed)
    res = {"seed": seed, "encoder": cfg["encoder"]["name"],
           "random_init_accuracy_greedy": rep["accuracy_greedy"],
           "random_init_accuracy_hungarian": rep["accuracy_hungarian"],
           "random_init_mean_entropy_bits": rep["mean_entropy_bits"],
           "random_init_kmeans_features_accuracy_greedy": km_feat["accuracy_greedy"],
           "random_init_kmeans_features_accuracy_hungarian": km_feat["accuracy_hungarian"],
           "kmeans_raw_pixels_accuracy_greedy": km_raw["accuracy_greedy"],
           "kmeans_raw_pixels_accuracy_hungarian": km_raw["accuracy_hungarian"],
           "random_init_entropy_bits_median": float(np.median(rep["entropy_bits"]))}
    write_json(job.output["eval"], res)
    with mlflow_run(EXPERIMENT, f"baselines_seed{seed}", tags={"experiment_part": f"baselines_seed{seed}",
                                                                **job.context}) as run:
        _log_metrics(run, res)


@stage("categorical.figures", settings=lambda config, wc: {})
def figures(job: Job) -> None:
    """Fig. A9 ln-entropy histograms, confusion matrices, most/least certain digits (Fig. A8), the p / T
    annealing schedule and training curves; runs shown with their lowest seed (curves: every seed)."""
    from ldm.experiments.categorical import figures as figs
    from ldm.pipeline.io import load_npz, read_json, save_figure
    from ldm.pipeline.tracking import mlflow_run
    from ldm.training.categorical import read_prepared

    out = Path(job.output["figures"])
    out.mkdir(parents=True, exist_ok=True)
    te_i, te_y = read_prepared(job.input["test"])
    evals = [read_json(p) for k, p in sorted(job.input.items()) if k.startswith("eval_")]
    first_seed = {}
    for ev in sorted(evals, key=lambda e: (e["name"], e["seed"])):
        first_seed.setdefault(ev["name"], ev["seed"])
    order = [r for r in ("dm", "dm_mi", "dm_mi_p08", "mi") if r in first_seed] + \
        sorted(r for r in first_seed if r not in ("dm", "dm_mi", "dm_mi_p08", "mi"))

    def rd(name: str, seed: int) -> Path:
        return Path(job.input[f"eval_{name}_seed{seed}"]).parent

    codes = {r: load_npz(rd(r, first_seed[r]) / "codes.npz") for r in order}
    ev_first = {r: next(e for e in evals if e["name"] == r and e["seed"] == first_seed[r]) for r in order}
    label = {r: f"{r} (seed {first_seed[r]})" for r in order}
    saved = []
    saved += save_figure(figs.entropy_histograms({label[r]: codes[r]["entropy_bits"] for r in order}),
                         out / "entropy_histograms")
    import numpy as np

    saved += save_figure(figs.confusion_matrices({label[r]: np.asarray(ev_first[r]["confusion_greedy"]) for r in order},
                                                 {label[r]: ev_first[r]["accuracy_greedy"] for r in order}),
                         out / "confusion_matrices")
    for r in order:
        amap = {c: int(y) for c, y in enumerate(codes[r]["assignment_greedy"]) if y >= 0}
        saved += save_figure(figs.certain_digits(te_i, codes[r]["probs"], codes[r]["entropy_bits"], te_y, amap,
                                                 title=label[r]), out / f"certain_digits_{r}")
    histories = {f"{e['name']} seed {e['seed']}": read_json(rd(e["name"], e["seed"]) / "history.json")["epochs"]
                 for e in sorted(evals, key=lambda e: (e["name"], e["seed"]))}
    sched = {}
    for r in order:
        if ev_first[r]["objective"] == "mi":  # pure MI does not use T
            continue
        epochs = read_json(rd(r, first_seed[r]) / "history.json")["epochs"]
        sched[r] = ([e["epoch"] for e in epochs], [e["p"] for e in epochs], [e["temperature"] for e in epochs])
    saved += save_figure(figs.annealing_schedule(sched), out / "annealing_schedule")
    saved += save_figure(figs.training_curves(histories), out / "training_curves")
    with mlflow_run(EXPERIMENT, "figures", tags={"experiment_part": "figures", **job.context}) as run:
        if run is not None:
            import mlflow

            for path in saved:
                if Path(path).suffix == ".png":
                    mlflow.log_artifact(str(path), artifact_path="figures")


@stage("categorical.summarize", settings=_summary_settings)
def summarize(job: Job) -> None:
    """metrics.json (mean/std/min over every seed, flat keys, with the baselines), tables/runs.csv (every
    run x seed and the baselines) and tables/paper_comparison.csv."""
    from ldm.pipeline.io import read_json, write_json
    from ldm.pipeline.summary import aggregate, write_csv, write_paper_table

    rows = [read_json(p) for k, p in sorted(job.input.items()) if k.startswith("eval_")]
    base = [read_json(p) for k, p in sorted(job.input.items()) if k.startswith("baseline_")]
    meta = read_json(job.input["meta"])
    metrics: dict[str, Any] = {
        "experiment": EXPERIMENT, "profile": job.settings["profile"], "seeds": job.settings["seeds"],
        "dataset": job.settings["dataset"], "source": meta.get("source", "real"),
        "accuracy": "clustering accuracy on the test split: argmax category, one-to-one cluster -> digit map by the "
                    "paper's greedy assignment (accuracy_greedy) and by the Hungarian method (accuracy_hungarian)",
        "entropy": "per-image entropy of the category probabilities in bits",
        "baselines": "random_init: the untrained encoder of categorical.defaults (same seed): its argmax clusters "
                     "and k-means (k = n) on its backbone features; kmeans_raw_pixels: k-means on the pixels",
    }
    metrics.update(aggregate(rows, KEYS, by="name"))
    for name in sorted({r["name"] for r in rows}):
        first = next(r for r in rows if r["name"] == name)
        metrics[f"{name}/objective"] = first["objective"]
        if first["objective"] == "mi":
            metrics[f"{name}/p"] = "unused (pure MI has no latent model)"
        else:
            metrics[f"{name}/p"] = f"{first['p_start']} -> {first['p_end']}" if first["p_end"] is not None else f"{first['p_start']}"
        metrics[f"{name}/encoder"] = first["encoder"]
    for r in base:
        r["name"] = "baselines"
    metrics.update(aggregate(base, BASELINE_KEYS, by="name"))
    if "dm/accuracy_greedy_mean" in metrics and "mi/accuracy_greedy_mean" in metrics:
        metrics["dm_minus_mi_accuracy_greedy_mean"] = metrics["dm/accuracy_greedy_mean"] - metrics["mi/accuracy_greedy_mean"]
    write_json(job.output["metrics"], metrics)
    table = sorted(rows, key=lambda r: (r["name"], r["seed"]))
    for r in table:
        if r["objective"] == "mi":  # T (and so p) is not used by the pure MI objective
            r["p_start"] = r["p_end"] = ""
        r["paper_accuracy_greedy"] = PAPER.get(f"{r['name']}/accuracy_greedy_mean", ("", ""))[0]
    table += [{"name": "baseline_random_init", "seed": b["seed"], "encoder": b["encoder"],
               "accuracy_greedy": b["random_init_accuracy_greedy"],
               "accuracy_hungarian": b["random_init_accuracy_hungarian"],
               "mean_entropy_bits": b["random_init_mean_entropy_bits"],
               "median_entropy_bits": b["random_init_entropy_bits_median"]} for b in base]
    table += [{"name": "baseline_random_init_kmeans_features", "seed": b["seed"], "encoder": b["encoder"],
               "accuracy_greedy": b["random_init_kmeans_features_accuracy_greedy"],
               "accuracy_hungarian": b["random_init_kmeans_features_accuracy_hungarian"]} for b in base]
    table += [{"name": "baseline_kmeans_raw_pixels", "seed": b["seed"],
               "accuracy_greedy": b["kmeans_raw_pixels_accuracy_greedy"],
               "accuracy_hungarian": b["kmeans_raw_pixels_accuracy_hungarian"]} for b in base]
    cols = ["name", "seed", "objective", "p_start", "p_end", "encoder", "accuracy_greedy", "accuracy_hungarian",
            "paper_accuracy_greedy", "mean_entropy_bits", "median_entropy_bits", "frac_entropy_below_1e-3",
            "clusters_used", "train_time_s", "n_test"]
    write_csv(job.output["table"], table, cols)
    write_paper_table(job.output["paper_table"], metrics, PAPER)
    from ldm.pipeline.tracking import mlflow_run

    with mlflow_run(EXPERIMENT, "summarize", tags={"experiment_part": "summary", **job.context}) as run:
        _log_metrics(run, metrics)
        if run is not None:
            import mlflow

            for key in ("table", "paper_table"):
                mlflow.log_artifact(str(job.output[key]), artifact_path="tables")
