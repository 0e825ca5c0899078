"""Benchmark: the four App. A.8 runs (DM, DM+MI annealed, DM+MI p = 0.8, MI) on the digits stand-in, with
the random-init encoder and k-means on raw pixels as baselines; prints one table row per run and seed.

    python benchmarks/categorical_standin.py [--data data/mnist] [--seeds 1 2 3] [--jobs 2] \
        [--encoder '{"name": "resnet18", "width": 0.125}'] [--lr 1e-3] [--pairs 8192] [--batch 256] \
        [--epochs 30] [--channels 1] [--anneal-rate 4] [--anneal-pairs 60000] [--overrides JSON] [--figures DIR]

The defaults are the default profile's settings (config/config.yaml, ``categorical.defaults``).

Without ``--data`` the default profile's MNIST stand-in is built in memory
(:func:`ldm.data.image_standins.digits_standin`, seed 1: scikit-learn's 8×8 digits as 20×20 digits in a
28×28 frame, class-stratified 80/20 split). Each run
trains in its own process with one torch thread (``--jobs`` processes at a time); the time column is the
run's wall time (training + per-epoch test evaluation).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def digits_standin(seed: int = 1) -> tuple[np.ndarray, ...]:
    """The default profile's MNIST stand-in (ldm.data.image_standins.digits_standin, seed 1): sklearn digits
    as 20×20 digits in a 28×28 frame, class-stratified 80/20 split."""
    from ldm.data.image_standins import digits_standin as make

    splits = make(seed=seed)
    return (*splits["train"], *splits["test"])


def _summary(rep: dict) -> dict:
    h = rep["entropy_bits"]
    return {"greedy": rep["accuracy_greedy"], "hungarian": rep["accuracy_hungarian"],
            "mean_H": float(h.mean()), "median_H": float(np.median(h)), "frac_H<1e-3": float((h < 1e-3).mean()),
            "used": rep["clusters_used"]}


def run_one(job: dict) -> dict:
    """Train (or, for ``baseline``, only initialise) one run in this process; return its summary."""
    import torch

    torch.set_num_threads(1)
    from ldm.data.image_transforms import preprocess_images
    from ldm.evaluation.clustering import kmeans_accuracy
    from ldm.training.categorical import (
        PAPER_RUNS, backbone_features, build_encoder, evaluate_encoder, read_prepared, resolve_run, train_categorical,
    )

    tr_i, tr_y = read_prepared(Path(job["data"]) / "train.npz")
    te_i, te_y = read_prepared(Path(job["data"]) / "test.npz")
    cfg = resolve_run({**PAPER_RUNS[job["run"] if job["run"] in PAPER_RUNS else "dm"], **job["overrides"],
                       "seed": job["seed"]})
    trx = preprocess_images(tr_i, cfg["image_size"], cfg["channels"])
    tex = preprocess_images(te_i, cfg["image_size"], cfg["channels"])
    t0, c0 = time.perf_counter(), time.process_time()
    history = None
    if job["run"] == "random_init":
        enc = build_encoder(cfg)
    else:
        enc, history = train_categorical(cfg, trx, tr_y, Path(job["ckpt"]), eval_x=tex, eval_labels=te_y,
                                         progress=False)
    rep = evaluate_encoder(enc, tex, te_y)
    out = {"run": job["run"], "seed": job["seed"], "time_s": time.perf_counter() - t0,
           "cpu_s": time.process_time() - c0, **_summary(rep)}
    if job["run"] == "random_init":  # also k-means on the random-init backbone features
        km = kmeans_accuracy(backbone_features(enc, trx), backbone_features(enc, tex), te_y, seed=job["seed"])
        out["kmeans_features"] = km
    if job.get("figures"):
        np.savez(Path(job["figures"]) / f"{job['run']}_seed{job['seed']}.npz", probs=rep["probs"],
                 entropy_bits=rep["entropy_bits"], confusion_greedy=rep["confusion_greedy"],
                 assignment=np.array([rep["assignment_greedy"].get(c, -1) for c in range(rep["probs"].shape[1])]))
        if history is not None:
            (Path(job["figures"]) / f"{job['run']}_seed{job['seed']}.json").write_text(json.dumps(history["epochs"]))
    return out


def make_figures(folder: Path, runs: list[str], seed: int, data: Path) -> None:
    from ldm.experiments.categorical import figures
    from ldm.training.categorical import PAPER_RUNS, annealing, read_prepared, resolve_run

    te_i, te_y = read_prepared(data / "test.npz")
    loaded = {r: np.load(folder / f"{r}_seed{seed}.npz") for r in runs}
    figures.entropy_histograms({r: d["entropy_bits"] for r, d in loaded.items()}).savefig(folder / "entropy_histograms.png", dpi=120)
    figures.confusion_matrices({r: d["confusion_greedy"] for r, d in loaded.items()}).savefig(folder / "confusion.png", dpi=120)
    for r, d in loaded.items():
        amap = {c: int(y) for c, y in enumerate(d["assignment"]) if y >= 0}
        figures.certain_digits(te_i, d["probs"], d["entropy_bits"], te_y, amap, title=r).savefig(folder / f"certain_{r}.png", dpi=120)
    hist = {r: json.loads((folder / f"{r}_seed{seed}.json").read_text()) for r in runs if (folder / f"{r}_seed{seed}.json").exists()}
    figures.training_curves(hist).savefig(folder / "curves.png", dpi=120)
    sched = {}
    for r in runs:
        if r in PAPER_RUNS and PAPER_RUNS[r]["objective"] != "mi":  # pure MI does not use T
            h = hist.get(r, [])
            if h:
                sched[r] = ([e["epoch"] for e in h], [e["p"] for e in h], [e["temperature"] for e in h])
                continue
            s = annealing(resolve_run({**PAPER_RUNS[r], "epochs": 30}))
            ep = list(range(s.epochs))
            sched[r] = (ep, [s.p(e) for e in ep], [s.temperature(e) for e in ep])
    figures.annealing_schedule(sched).savefig(folder / "annealing.png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="folder with train.npz/test.npz (default: build the stand-in)")
    ap.add_argument("--standin-seed", type=int, default=1)
    ap.add_argument("--runs", nargs="+", default=["dm", "dm_mi", "dm_mi_p08", "mi"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1])
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--encoder", type=json.loads, default={"name": "resnet18", "width": 0.125})
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pairs", type=int, default=8192)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--anneal-rate", type=float, default=4.0, help="T <- T - (rate/30)(T - T_end) per schedule epoch (paper: 4)")
    ap.add_argument("--anneal-pairs", type=int, default=60000,
                    help="pairs per schedule epoch (paper 60000: T follows the paper's run per pair seen); "
                         "0 = the official update per training epoch with E = --epochs")
    ap.add_argument("--overrides", type=json.loads, default={}, help="further RUN_DEFAULTS overrides (JSON)")
    ap.add_argument("--figures", type=Path, default=None)
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    data = args.data
    if data is None:
        data = Path(tmp.name) / "mnist"
        data.mkdir()
        tr_i, tr_y, te_i, te_y = digits_standin(args.standin_seed)
        np.savez(data / "train.npz", images=tr_i, labels=tr_y)
        np.savez(data / "test.npz", images=te_i, labels=te_y)
    overrides = {"encoder": args.encoder, "lr": args.lr, "pairs_per_epoch": args.pairs, "epochs": args.epochs,
                 "batch_size": args.batch, "channels": args.channels, "anneal_rate": args.anneal_rate,
                 **({"anneal_pairs": args.anneal_pairs} if args.anneal_pairs else {"anneal_pairs": None, "anneal_epochs": None}),
                 **args.overrides}
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
    jobs = [{"run": r, "seed": s, "data": str(data), "overrides": overrides,
             "ckpt": str(Path(tmp.name) / f"ckpt_{r}_{s}"), "figures": str(args.figures) if args.figures else None}
            for s in args.seeds for r in ["random_init", *args.runs]]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(run_one, jobs))
    else:
        rows = [run_one(j) for j in jobs]
    wall = time.perf_counter() - t0
    from ldm.evaluation.clustering import kmeans_baseline
    from ldm.training.categorical import PAPER_ACCURACY, read_prepared

    tr_i, _ = read_prepared(data / "train.npz")
    te_i, te_y = read_prepared(data / "test.npz")
    km = kmeans_baseline(tr_i, te_i, te_y, seed=1)
    print(f"# data {data if args.data else 'sklearn digits stand-in (built here)'}: train {len(tr_i)}, test {len(te_i)}; "
          f"overrides {json.dumps(overrides)}")
    print(f"# total wall {wall:.1f} s with {args.jobs} job(s), 1 thread each")
    cols = ["run", "seed", "greedy", "hungarian", "paper", "mean_H", "median_H", "frac_H<1e-3", "used", "wall_s", "cpu_s"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    print(f"| kmeans_raw_pixels | 1 | {km['accuracy_greedy']:.3f} | {km['accuracy_hungarian']:.3f} | | | | | 10 | | |")
    for r in rows:
        paper = PAPER_ACCURACY.get(r["run"])
        print(f"| {r['run']} | {r['seed']} | {r['greedy']:.3f} | {r['hungarian']:.3f} | {'' if paper is None else paper} | "
              f"{r['mean_H']:.3g} | {r['median_H']:.2g} | {r['frac_H<1e-3']:.2f} | {r['used']} | {r['time_s']:.1f} | {r['cpu_s']:.1f} |")
        if "kmeans_features" in r:
            k = r["kmeans_features"]
            print(f"| random_init_kmeans_features | {r['seed']} | {k['accuracy_greedy']:.3f} | {k['accuracy_hungarian']:.3f} | | | | | 10 | | |")
    if args.figures:
        make_figures(args.figures, [r for r in ["random_init", *args.runs]], args.seeds[0], data)
        print(f"# figures in {args.figures}")


if __name__ == "__main__":
    main()
