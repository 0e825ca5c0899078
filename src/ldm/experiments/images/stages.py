"""Stages of the ``images`` experiment (paper Sec. 6, Table 2 / A1, Fig. 3, Fig. A2):

    [decode (ImageNet-100 only)] -> train (dataset x row x seed) -> evaluate (same)
    baselines (dataset x seed: random-init network, raw pixels) -> summarize, figures

Glue only: training in :mod:`ldm.training.images`, probes and diagnostics in
:mod:`ldm.evaluation.image_probes`, augmentation in :mod:`ldm.data.image_transforms`, figures in
:mod:`ldm.experiments.images.figures`. Settings resolvers are torch-free and read only what the job uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldm.pipeline.config import layered_settings
from ldm.pipeline.stages import Job, stage

EXPERIMENT = "images"

def _section(config: Mapping[str, Any]) -> Mapping[str, Any]:
    if "images" not in config:
        raise KeyError("config has no 'images' section (expected keys: images.datasets, images.rows)")
    return config["images"]


def _check(section: Mapping[str, Any], wc: Mapping[str, str]) -> None:
    if "dataset" in wc and wc["dataset"] not in section["datasets"]:
        raise KeyError(f"images.datasets does not list {wc['dataset']!r} (listed: {section['datasets']})")
    if "row" in wc and wc["row"] not in section["rows"]:
        raise KeyError(f"images.rows does not list {wc['row']!r} (listed: {section['rows']})")


def _run_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    s = _section(config)
    _check(s, wc)
    return {"dataset": wc["dataset"], "row": wc["row"], "seed": int(wc["seed"]),
            "overrides": layered_settings(s, dataset=wc["dataset"], row=wc["row"])}


def _train_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    return {**_run_settings(config, wc), "compute": config["compute"]}


def _eval_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    return {**_run_settings(config, wc), "evaluate": dict(_section(config).get("evaluate") or {})}


def _baseline_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    s = _section(config)
    _check(s, wc)
    return {"dataset": wc["dataset"], "seed": int(wc["seed"]), "overrides": layered_settings(s, dataset=wc["dataset"]),
            "row": s["rows"][0], "evaluate": dict(s.get("evaluate") or {})}


def _summary_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    s = _section(config)
    return {"profile": config["profile"], "datasets": list(s["datasets"]), "rows": list(s["rows"]),
            "seeds": list(s.get("seeds", [1]))}


EVAL_DEFAULTS = {"knn_k": 200, "knn_temperature": 0.07, "probe_l2": 1e-4, "probe_max_iter": 200,
                 "jacobian_images": 4, "batch": 512}


def _eval_cfg(settings: Mapping[str, Any]) -> dict[str, Any]:
    ev = dict(settings.get("evaluate") or {})
    unknown = sorted(set(ev) - set(EVAL_DEFAULTS) - {"tsne_points", "tsne_iter"})
    if unknown:
        raise KeyError(f"images.evaluate: unknown key(s) {unknown}; known: {sorted(EVAL_DEFAULTS) + ['tsne_iter', 'tsne_points']}")
    return {**EVAL_DEFAULTS, **ev}


def _load(job: Job, split: str):
    """uint8 images (N, H, W, C) and labels of a split (npz artifact or decoded ImageNet-100 .npy)."""
    import numpy as np
    import torch

    path = Path(job.input[split])
    if path.suffix == ".npz":
        from ldm.data.image_datasets import load_images

        return load_images(path)
    images = torch.from_numpy(np.load(path, mmap_mode="r"))
    labels = torch.from_numpy(np.load(job.input[f"{split}_labels"]).astype(np.int64))
    return images, labels


def _n_classes(job: Job, labels) -> int:
    import json

    meta = job.input.get("meta")
    if meta is not None and Path(meta).is_file():
        classes = json.loads(Path(meta).read_text()).get("classes")
        if classes:
            return len(classes)
    return int(labels.max()) + 1


@stage("images.decode", settings=lambda config, wc: {"size": int((_section(config).get("decode") or {}).get("size", 256))})
def decode(job: Job) -> None:
    """ImageNet-100: decode every JPEG of the index once (shorter side -> size, centre crop) into a uint8
    .npy memmap, so that training reads batches of arrays and augments them batched on the device."""
    import json

    from ldm.data.imagenet100 import predecode

    meta = json.loads(Path(job.input["meta"]).read_text())
    root = meta.get("root") or (meta.get("settings") or {}).get("ilsvrc_root")
    if not root:
        raise KeyError(f"{job.input['meta']} names no ILSVRC root ('root' or 'settings.ilsvrc_root')")
    for split, index in (("train", job.input["train_index"]), ("test", job.input["val_index"])):
        predecode(root, index, job.output[split], job.output[f"{split}_labels"], size=job.settings["size"],
                  workers=max(1, int(job.threads)))


@stage("images.train", settings=_train_settings)
def train(job: Job) -> None:
    """Pretrain one dataset x row x seed (resumes only under the same provenance; deletes its checkpoints)."""
    import math

    import torch

    from ldm.pipeline.tracking import mlflow_run
    from ldm.training import images as ti
    from ldm.training.device import Device

    torch.set_num_threads(max(1, int(job.threads)))
    s = job.settings
    cfg = ti.resolve_run(s["row"], s["dataset"], s["overrides"], seed=s["seed"])
    xtr, ytr = _load(job, "train")
    xte, yte = _load(job, "test")
    part = f"{s['dataset']}_{s['row']}_seed{s['seed']}"
    with mlflow_run(EXPERIMENT, f"{part}_train", params=cfg, tags={"experiment_part": part, **job.context}) as run:

        def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
            if run is not None:
                import mlflow

                mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in metrics.items()
                                    if isinstance(v, (int, float)) and math.isfinite(float(v))}, step=epoch)

        ti.train(cfg, xtr, ytr, Path(job.output["model"]).parent, test_images=xte, test_labels=yte,
                 n_classes=_n_classes(job, ytr), device=Device.from_settings(job.settings["compute"]),
                 resume_key=job.provenance(), on_epoch=on_epoch)


@stage("images.evaluate", settings=_eval_settings)
def evaluate(job: Job) -> None:
    """Online, offline-linear and kNN probes (top-1/top-5), test-embedding spectrum, Jacobian log-dets,
    gradient cosines of training (eval.json) and the test embeddings (embeddings.npz)."""
    import numpy as np
    import torch

    from ldm.pipeline.io import read_json, save_npz, write_json
    from ldm.training import images as ti

    torch.set_num_threads(max(1, int(job.threads)))
    ev = _eval_cfg(job.settings)
    model, cfg = ti.load_model(job.input["model"])
    history = read_json(job.input["history"])
    res = evaluate_model(job, model, cfg, ev)
    cos = [st["grad_cos"] for st in history.get("steps", []) if "grad_cos" in st]
    res.update(dataset=cfg["dataset"], row=cfg["row"], table_row=cfg["table_row"], seed=cfg["seed"],
               variant=cfg["variant"], width=cfg["model"]["width"], epochs=cfg["optim"]["epochs"],
               steps=history["extra"].get("total_steps"), train_time_s=history["extra"].get("train_time_s"),
               grad_cos_mean=float(np.mean(cos)) if cos else None, grad_cos=cos,
               grad_cos_steps=[st["step"] for st in history.get("steps", []) if "grad_cos" in st])
    last = history["epochs"][-1] if history["epochs"] else {}
    res["final_train_loss"] = last.get("train/loss")
    z = res.pop("_test_z")
    y = res.pop("_test_y")
    save_npz(job.output["embeddings"], z=z, labels=y)
    write_json(job.output["eval"], res)


def evaluate_model(job: Job, model, cfg: Mapping[str, Any], ev: Mapping[str, Any]) -> dict[str, Any]:
    """Every probe of one network (trained or at random init) on the job's train/test splits."""
    from ldm.evaluation.images import probe_network

    xtr, ytr = _load(job, "train")
    xte, yte = _load(job, "test")
    return probe_network(model, cfg, ev, (xtr, ytr), (xte, yte), _n_classes(job, ytr))


@stage("images.baselines", settings=_baseline_settings)
def baselines(job: Job) -> None:
    """The same architecture at random initialisation (same seed) and a linear / kNN probe on raw pixels,
    measured on the same splits with the same probes (baselines.json)."""
    import torch

    from ldm.data.image_transforms import normalise_batch
    from ldm.evaluation import image_probes as ip
    from ldm.pipeline.io import write_json
    from ldm.training import images as ti

    torch.set_num_threads(max(1, int(job.threads)))
    s = job.settings
    ev = _eval_cfg(s)
    cfg = ti.resolve_run(s["row"], s["dataset"], s["overrides"], seed=s["seed"])
    xtr, ytr = _load(job, "train")
    n_classes = _n_classes(job, ytr)
    model = ti.build_model(cfg, n_classes).eval()
    rand = evaluate_model(job, model, cfg, {**ev, "jacobian_images": 0})
    xte, yte = _load(job, "test")
    aug = cfg["augment"]
    ptr = normalise_batch(torch.as_tensor(xtr[:]), aug["mean"], aug["std"], aug["size"]).flatten(1)
    pte = normalise_batch(torch.as_tensor(xte[:]), aug["mean"], aug["std"], aug["size"]).flatten(1)
    lin = ip.linear_probe(ptr, ytr, pte, yte, n_classes, l2=float(ev["probe_l2"]), max_iter=int(ev["probe_max_iter"]))
    knn = ip.knn_probe(ptr, ytr, pte, yte, k=int(ev["knn_k"]), temperature=float(ev["knn_temperature"]), n_classes=n_classes)
    write_json(job.output["baselines"], {
        "dataset": s["dataset"], "seed": s["seed"], "architecture": cfg["model"], "image_size": aug["size"],
        "random_init_linear_top1": rand["linear_top1"], "random_init_linear_top5": rand["linear_top5"],
        "random_init_knn_top1": rand["knn_top1"], "random_init_knn_top5": rand["knn_top5"],
        "random_init_online_top1": rand["online_top1"],
        "random_init_participation_ratio": rand["participation_ratio"],
        "raw_pixels_linear_top1": lin["top1"], "raw_pixels_linear_top5": lin["top5"],
        "raw_pixels_knn_top1": knn["top1"], "raw_pixels_knn_top5": knn["top5"],
    })


@stage("images.summarize", settings=_summary_settings)
def summarize(job: Job) -> None:
    """metrics.json, tables/runs.csv (every dataset x row x seed with the baselines), Table A1 as CSV and
    markdown (the paper's values beside ours, profile and seeds), tables/paper_comparison.csv and the
    paper's qualitative claims checked on these runs (tables/claims.csv and .md)."""
    from ldm.experiments.images.tables import write_summary

    write_summary(job)


@stage("images.figures", settings=lambda config, wc: {
    "tsne_points": int((_section(config).get("evaluate") or {}).get("tsne_points", 1000)),
    "tsne_iter": int((_section(config).get("evaluate") or {}).get("tsne_iter", 1000))})
def figures(job: Job) -> None:
    """Fig. 3 (spectra, participation ratio, t-SNE, accuracy vs dimensionality) and Fig. A2 (gradient
    cosines over training, Jacobian log-det histograms), one set per dataset."""
    from ldm.experiments.images import figures as figs
    from ldm.pipeline.io import load_npz, read_json

    out = Path(job.output["figures"])
    out.mkdir(parents=True, exist_ok=True)
    evals, embs = [], {}
    for key, path in sorted(job.input.items()):
        if key.startswith("eval_"):
            ev = read_json(path)
            evals.append(ev)
            embs[(ev["dataset"], ev["row"], int(ev["seed"]))] = load_npz(Path(path).parent / "embeddings.npz")
    figs.all_figures(evals, embs, out, tsne_points=job.settings["tsne_points"], tsne_iter=job.settings["tsne_iter"])
