"""Tables of the ``images`` experiment: the per-run table, Table A1 beside the paper's values, metrics.json
and the paper's qualitative claims checked on the runs (:mod:`ldm.evaluation.image_claims`).

Kept out of ``stages.py`` so that an edit here reruns only ``images_summarize``, not the trainings (a stage's
code inputs are the modules it imports; ``stages.py`` is one of every stage's).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from ldm.evaluation.image_claims import claims_markdown, qualitative_claims
from ldm.pipeline.io import atomic_write, read_json, write_json
from ldm.pipeline.stages import Job
from ldm.pipeline.summary import aggregate, write_csv, write_paper_table

EXPERIMENT = "images"

#: Table A1 (online linear probe, ResNet-18, top-1 / top-5; images.md §6): row -> dataset -> (top1, top5).
PAPER_A1: dict[str, dict[str, tuple[float, float]]] = {
    "plane_kde": {"cifar10": (91.87, 99.73), "cifar100": (65.28, 89.06), "svhn": (92.15, 99.07), "imagenet100": (72.60, 92.36)},
    "plane_kde_mi": {"cifar10": (92.09, 99.76), "cifar100": (65.29, 88.96), "svhn": (92.20, 99.11), "imagenet100": (72.68, 92.04)},
    "plane_knn": {"cifar10": (92.07, 99.68), "cifar100": (65.63, 88.93), "svhn": (92.75, 99.20), "imagenet100": (74.32, 93.36)},
    "plane_knn_mi": {"cifar10": (91.89, 99.69), "cifar100": (65.85, 88.94), "svhn": (92.85, 99.19), "imagenet100": (73.68, 92.84)},
    "plane_logdet": {"cifar10": (92.06, 99.74), "cifar100": (69.47, 91.27), "svhn": (92.79, 99.20), "imagenet100": (75.92, 93.32)},
    "plane_logdet_mi": {"cifar10": (91.94, 99.74), "cifar100": (68.62, 90.77), "svhn": (92.72, 99.13), "imagenet100": (74.72, 93.40)},
    "sphere_kde": {"cifar10": (90.93, 99.74), "cifar100": (64.83, 88.63), "svhn": (91.59, 98.92), "imagenet100": (72.12, 92.12)},
    "sphere_kde_mi": {"cifar10": (91.38, 99.73), "cifar100": (66.01, 89.47), "svhn": (92.33, 99.05), "imagenet100": (73.08, 92.72)},
    "sphere_knn": {"cifar10": (90.22, 99.68), "cifar100": (64.31, 88.00), "svhn": (92.27, 98.99), "imagenet100": (72.64, 92.16)},
    "sphere_knn_mi": {"cifar10": (89.96, 99.63), "cifar100": (64.50, 87.82), "svhn": (92.16, 99.05), "imagenet100": (73.28, 92.28)},
    "sphere_logdet": {"cifar10": (91.41, 99.77), "cifar100": (65.40, 89.31), "svhn": (92.57, 99.09), "imagenet100": (73.00, 93.00)},
    "sphere_logdet_mi": {"cifar10": (91.20, 99.73), "cifar100": (65.37, 89.34), "svhn": (92.54, 99.09), "imagenet100": (72.28, 92.40)},
    "simplex_kde": {"cifar10": (90.23, 99.69), "cifar100": (62.65, 86.98), "svhn": (92.21, 99.03), "imagenet100": (70.50, 91.97)},
}

#: Per-run numbers of eval.json aggregated over seeds (metrics.json) and listed per seed (tables/runs.csv).
KEYS = ["online_top1", "online_top5", "linear_top1", "linear_top5", "knn_top1", "knn_top5",
        "random_init_linear_top1", "random_init_knn_top1", "raw_pixels_linear_top1", "raw_pixels_knn_top1",
        "linear_gain_over_random_init", "participation_ratio", "pcs_90", "pcs_99", "grad_cos_mean",
        "jacobian_logdet_mean", "train_time_s"]



def write_summary(job: Job) -> None:
    """metrics.json, tables/runs.csv (every dataset x row x seed with the baselines), Table A1 as CSV and
    markdown (the paper's values beside ours, profile and seeds), tables/paper_comparison.csv and the
    paper's qualitative claims checked on these runs (tables/claims.csv and .md)."""
    base = {}
    for key, path in job.input.items():
        if key.startswith("baselines_"):
            b = read_json(path)
            base[(b["dataset"], int(b["seed"]))] = b
    rows, evals = [], []
    for key, path in sorted(job.input.items()):
        if key.startswith("eval_"):
            ev = read_json(path)
            evals.append(ev)
            b = base[(ev["dataset"], int(ev["seed"]))]
            row = {k: v for k, v in ev.items() if not isinstance(v, list)}
            for k in ("random_init_linear_top1", "random_init_knn_top1", "raw_pixels_linear_top1", "raw_pixels_knn_top1"):
                row[k] = b[k]
            row["linear_gain_over_random_init"] = row["linear_top1"] - b["random_init_linear_top1"]
            row["name"] = f"{ev['dataset']}/{ev['row']}"
            rows.append(row)
    metrics: dict[str, Any] = {
        "experiment": EXPERIMENT, "profile": job.settings["profile"], "seeds": job.settings["seeds"],
        "source": {ds: _source(ds) for ds in job.settings["datasets"]},
        "probes": "online = linear classifier trained on detached features during pretraining (the paper's number); "
                  "linear = offline softmax regression on frozen backbone features (L-BFGS); knn = weighted kNN "
                  "(cosine, k=200, T=0.07); top-1/top-5 in percent on the test split",
        "baselines": "random_init = the same network at its initialisation (same seed); raw_pixels = the same probes "
                     "on normalised pixels",
    }
    metrics.update(aggregate(rows, KEYS, by="name"))
    for (ds, seed), b in sorted(base.items()):
        for k in ("random_init_linear_top1", "random_init_knn_top1", "raw_pixels_linear_top1", "raw_pixels_knn_top1"):
            metrics[f"{ds}/baselines/seed{seed}/{k}"] = b[k]
    claims = qualitative_claims(evals)
    for c in claims:
        slug = "/".join(re.sub(r"[^a-z0-9]+", "_", t.lower()).strip("_") for t in (c["claim"], c["subject"]))
        metrics[f"{c['dataset']}/claims/{slug}"] = c["holds"]
    write_json(job.output["metrics"], metrics)
    cols = ["dataset", "row", "table_row", "seed", "variant", "width", "epochs", "steps", *KEYS]
    write_csv(job.output["table"], sorted(rows, key=lambda r: (r["dataset"], r["row"], r["seed"])), cols)
    a1 = table_a1_rows(rows, base, job.settings)
    a1_cols = list(a1[0].keys()) if a1 else ["dataset", "row"]
    write_csv(job.output["table_a1"], a1, a1_cols)
    md = table_a1_markdown(a1, {**job.settings, "source": metrics["source"]})
    atomic_write(job.output["table_a1_md"], lambda tmp: tmp.write_text(md))
    paper = {}
    for r in a1:
        if r["row"] in PAPER_A1 and r["dataset"] in PAPER_A1[r["row"]]:
            paper[f"{r['dataset']}/{r['row']}/online_top1_mean"] = (PAPER_A1[r["row"]][r["dataset"]][0],
                                                                   f"Table A1 {r['table_row']}, {r['dataset']} top-1 (online probe)")
    write_paper_table(job.output["paper_table"], metrics, paper)
    write_csv(job.output["claims"], claims, ["claim", "dataset", "subject", "value", "reference", "holds", "detail"])
    md = claims_markdown(claims, job.settings["profile"], job.settings["seeds"])
    atomic_write(job.output["claims_md"], lambda tmp: tmp.write_text(md))


def _source(dataset: str) -> str:
    """'stand-in' / 'real' from data/<dataset>/meta.json (relative to the working directory = repo root)."""
    import json

    meta = Path("data") / dataset / "meta.json"
    try:
        return str(json.loads(meta.read_text()).get("source", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def table_a1_rows(rows: list[dict], base: Mapping[tuple[str, int], Mapping[str, Any]],
                  settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One line per dataset x row (mean ± std over seeds) plus the random-init and raw-pixel lines."""
    import numpy as np

    out = []
    for ds in settings["datasets"]:
        for row in settings["rows"]:
            rs = [r for r in rows if r["dataset"] == ds and r["row"] == row]
            if not rs:
                continue
            line: dict[str, Any] = {"dataset": ds, "row": row, "table_row": rs[0]["table_row"],
                                    "seeds": " ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))}
            for k in ("online_top1", "online_top5", "linear_top1", "linear_top5", "knn_top1", "knn_top5",
                      "linear_gain_over_random_init"):
                vals = [float(r[k]) for r in rs]
                line[f"{k}_mean"] = round(float(np.mean(vals)), 2)
                line[f"{k}_std"] = round(float(np.std(vals)), 2)
            p = PAPER_A1.get(row, {}).get(ds)
            line["paper_top1"], line["paper_top5"] = (p if p else ("", ""))
            out.append(line)
        for kind in ("random_init", "raw_pixels"):
            bs = [b for (d, _), b in base.items() if d == ds]
            if not bs:
                continue
            line = {"dataset": ds, "row": kind, "table_row": "random-init network" if kind == "random_init" else "raw pixels",
                    "seeds": " ".join(str(b["seed"]) for b in bs)}
            for k in ("linear_top1", "linear_top5", "knn_top1", "knn_top5"):
                vals = [float(b[f"{kind}_{k}"]) for b in bs]
                line[f"{k}_mean"] = round(float(np.mean(vals)), 2)
                line[f"{k}_std"] = round(float(np.std(vals)), 2)
            if out:
                for k in out[-1]:
                    line.setdefault(k, "")
            out.append(line)
    return out


def table_a1_markdown(a1: list[dict[str, Any]], settings: Mapping[str, Any]) -> str:
    """Table A1 as markdown: ours (online / offline linear / kNN top-1 ± std over seeds) beside the paper's."""
    head = (f"# Table A1 — ours vs the paper\n\nProfile `{settings['profile']}`, seeds {settings['seeds']}. "
            f"Data: {settings.get('source', {})} (a `stand-in` is NOT the named dataset; docs/datasets.md). "
            "Ours: mean ± std over seeds; `paper` = Table A1 online-probe top-1 / top-5 (full-scale runs, "
            "real datasets). Random-init and raw-pixel lines use the same probes on the same splits.\n\n"
            "| dataset | row | online top-1 | online top-5 | linear top-1 | linear top-5 | kNN top-1 | kNN top-5 | "
            "gain over random init (linear) | paper top-1 | paper top-5 | seeds |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")

    def pm(r: Mapping[str, Any], k: str) -> str:
        m = r.get(f"{k}_mean", "")
        return "" if m == "" else f"{m:.2f} ± {r[f'{k}_std']:.2f}"

    lines = [f"| {r['dataset']} | {r['table_row']} | {pm(r, 'online_top1')} | {pm(r, 'online_top5')} | "
             f"{pm(r, 'linear_top1')} | {pm(r, 'linear_top5')} | {pm(r, 'knn_top1')} | {pm(r, 'knn_top5')} | "
             f"{pm(r, 'linear_gain_over_random_init')} | {r.get('paper_top1', '')} | {r.get('paper_top5', '')} | "
             f"{r['seeds']} |" for r in a1]
    return head + "\n".join(lines) + "\n"
