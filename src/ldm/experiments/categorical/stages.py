"""Stages of the ``categorical`` experiment: categorical latents with a probabilistic encoder on MNIST
(paper App. A.8, Fig. A8/A9; reference/images.md §2).

    data/<dataset>/{train,test}.npz (rule datasets_images)
        -> train (per run x seed: training and its test evaluation) ; baselines (per seed)
        -> figures, summarize (all runs)

Glue only: pairs in :mod:`ldm.data.pairs`, the encoder in :mod:`ldm.models.categorical`, the objectives
and the p annealing in :mod:`ldm.objectives`, training in :mod:`ldm.training.categorical`, clustering
accuracy (greedy and Hungarian) and entropies in :mod:`ldm.evaluation.clustering`, the records, tables and
paper values in :mod:`ldm.evaluation.categorical`, the plots in :mod:`ldm.experiments.categorical.figures`.
The test evaluation runs in the training job (one process instead of two: the evaluation takes a fraction
of a second, a process start with torch and MLflow several seconds). Library modules are imported inside each stage so that each
stage's code inputs are exactly what it runs. Settings resolvers are torch-free (they run while
Snakemake builds the DAG) and read only what their job uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldm.pipeline.config import merge_settings
from ldm.pipeline.stages import Job, stage

EXPERIMENT = "categorical"

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


def resolved_run(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The full run config (:func:`ldm.training.categorical.resolve_run`) of a run's settings; errors name
    the config key."""
    from ldm.training.categorical import resolve_run

    over = merge_settings(settings["defaults"], settings["overrides"])
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
    same provenance) and evaluate it on the test split: model.pt, history.json (p, T, test accuracy per
    epoch), train_metrics.json, eval.json (greedy/Hungarian accuracy, confusion matrices, entropies in bits)
    and codes.npz (category probabilities)."""
    import time

    import numpy as np

    from ldm.evaluation.categorical import KEYS, run_record
    from ldm.pipeline.io import save_npz, write_json
    from ldm.pipeline.tracking import mlflow_run
    from ldm.training import categorical as cat
    from ldm.training.device import Device

    cfg = resolved_run(job.settings["run"])
    cfg["threads"] = int(job.threads)
    _, tr_y, trx = _data(job, cfg, "train")
    _, te_y, tex = _data(job, cfg, "test")
    out_dir = Path(job.output["model"]).parent
    ckpt = out_dir / "checkpoints"
    name = job.settings["run"]["name"]
    part = f"{name}_seed{cfg['seed']}"
    with mlflow_run(EXPERIMENT, f"{part}_train", params=cfg, tags={"experiment_part": part, **job.context}) as run:
        t0 = time.perf_counter()
        encoder, history = cat.train_categorical(
            cfg, trx, tr_y, ckpt, eval_x=tex, eval_labels=te_y, progress=False, resume_key=job.provenance(),
            device=Device.from_settings(job.settings["compute"]),
            on_epoch=lambda epoch, metrics: _log_metrics(run, metrics, epoch))
        summary = cat.finish_run(out_dir, encoder, cfg, history, ckpt)
        summary["wall_time_this_call_s"] = time.perf_counter() - t0
        write_json(job.output["summary"], summary)
        rep = cat.evaluate_encoder(encoder, tex, te_y)
        p_final = cat.annealing(cfg, n_train=len(tr_y)).p(int(cfg["epochs"]) - 1)
        res = run_record(name, cfg, rep, summary["train_time_s"], p_final)
        write_json(job.output["eval"], res)
        n = rep["probs"].shape[1]
        assignment = np.array([rep["assignment_greedy"].get(c, -1) for c in range(n)], dtype=np.int64)
        save_npz(job.output["codes"], probs=rep["probs"].astype(np.float32), entropy_bits=rep["entropy_bits"],
                 labels=np.asarray(te_y), assignment_greedy=assignment)
        _log_metrics(run, {f"eval/{k}": v for k, v in res.items() if k in KEYS})


@stage("categorical.baselines", settings=_baseline_settings)
def baselines(job: Job) -> None:
    """Baselines measured in the same run: the untrained encoder (argmax clusters; k-means on its backbone
    features) with the run seed, and k-means (k = 10) on raw pixels."""
    import torch

    from ldm.evaluation.categorical import baseline_record
    from ldm.evaluation.clustering import kmeans_accuracy, kmeans_baseline
    from ldm.pipeline.io import write_json
    from ldm.pipeline.tracking import mlflow_run
    from ldm.training import categorical as cat

    cfg = resolved_run({"name": "baselines", "defaults": job.settings["defaults"], "overrides": {},
                        "seed": job.settings["seed"]})
    torch.set_num_threads(int(job.threads))
    tr_i, _, trx = _data(job, cfg, "train")
    te_i, te_y, tex = _data(job, cfg, "test")
    seed, k = int(cfg["seed"]), int(cfg["n_categories"])
    enc = cat.build_encoder(cfg)
    km_feat = kmeans_accuracy(cat.backbone_features(enc, trx), cat.backbone_features(enc, tex), te_y, k=k, seed=seed)
    res = baseline_record(seed, cfg["encoder"]["name"], cat.evaluate_encoder(enc, tex, te_y), km_feat,
                          kmeans_baseline(tr_i, te_i, te_y, k=k, seed=seed))
    write_json(job.output["eval"], res)
    with mlflow_run(EXPERIMENT, f"baselines_seed{seed}", tags={"experiment_part": f"baselines_seed{seed}",
                                                                **job.context}) as run:
        _log_metrics(run, res)


@stage("categorical.figures", settings=lambda config, wc: {})
def figures(job: Job) -> None:
    """Fig. A9 ln-entropy histograms, confusion matrices, most/least certain digits (Fig. A8), the p / T
    annealing schedule and training curves; runs shown with their lowest seed (curves: every seed)."""
    import numpy as np

    from ldm.evaluation.categorical import run_order
    from ldm.experiments.categorical import figures as figs
    from ldm.pipeline.io import load_npz, read_json, save_figure
    from ldm.pipeline.tracking import mlflow_run

    out = Path(job.output["figures"])
    out.mkdir(parents=True, exist_ok=True)
    test = load_npz(job.input["test"])  # the images of the certain digits (no torch needed here)
    evals = sorted((read_json(p) for k, p in job.input.items() if k.startswith("eval_")),
                   key=lambda e: (e["name"], e["seed"]))
    first = {}
    for ev in evals:
        first.setdefault(ev["name"], ev)
    order = run_order(list(first))

    def rd(ev: dict) -> Path:
        return Path(job.input[f"eval_{ev['name']}_seed{ev['seed']}"]).parent

    codes = {r: load_npz(rd(first[r]) / "codes.npz") for r in order}
    histories = {(e["name"], e["seed"]): read_json(rd(e) / "history.json")["epochs"] for e in evals}
    label = {r: f"{r} (seed {first[r]['seed']})" for r in order}
    saved = save_figure(figs.entropy_histograms({label[r]: codes[r]["entropy_bits"] for r in order}),
                        out / "entropy_histograms")
    saved += save_figure(figs.confusion_matrices({label[r]: np.asarray(first[r]["confusion_greedy"]) for r in order},
                                                 {label[r]: first[r]["accuracy_greedy"] for r in order}),
                         out / "confusion_matrices")
    for r in order:
        amap = {c: int(y) for c, y in enumerate(codes[r]["assignment_greedy"]) if y >= 0}
        saved += save_figure(figs.certain_digits(test["images"], codes[r]["probs"], codes[r]["entropy_bits"],
                                                 codes[r]["labels"], amap, title=label[r]), out / f"certain_digits_{r}")
    sched = {}
    for r in order:
        if first[r]["objective"] == "mi":  # pure MI does not use T
            continue
        epochs = histories[(r, first[r]["seed"])]
        sched[r] = ([e["epoch"] for e in epochs], [e["p"] for e in epochs], [e["temperature"] for e in epochs])
    saved += save_figure(figs.annealing_schedule(sched), out / "annealing_schedule")
    saved += save_figure(figs.training_curves({f"{n} seed {s}": h for (n, s), h in histories.items()}),
                         out / "training_curves")
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
    from ldm.evaluation.categorical import PAPER, TABLE_COLUMNS, runs_table, summary_metrics
    from ldm.pipeline.io import read_json, write_json
    from ldm.pipeline.summary import write_csv, write_paper_table
    from ldm.pipeline.tracking import mlflow_run

    rows = [read_json(p) for k, p in sorted(job.input.items()) if k.startswith("eval_")]
    base = [read_json(p) for k, p in sorted(job.input.items()) if k.startswith("baseline_")]
    header = {"experiment": EXPERIMENT, "profile": job.settings["profile"], "seeds": job.settings["seeds"],
              "dataset": job.settings["dataset"], "source": read_json(job.input["meta"]).get("source", "real")}
    metrics = summary_metrics(rows, base, header)
    write_json(job.output["metrics"], metrics)
    write_csv(job.output["table"], runs_table(rows, base), TABLE_COLUMNS)
    write_paper_table(job.output["paper_table"], metrics, PAPER)
    with mlflow_run(EXPERIMENT, "summarize", tags={"experiment_part": "summary", **job.context}) as run:
        _log_metrics(run, metrics)
        if run is not None:
            import mlflow

            for key in ("table", "paper_table"):
                mlflow.log_artifact(str(job.output[key]), artifact_path="tables")
