"""Benchmark: how the p annealing clock decides whether DM keeps its ten categories (App. A.8, images.md §2).

    python benchmarks/categorical_annealing.py [--seed 1] [--jobs 2] [--settings pairs epoch const pairs16k]

Each setting trains the DM run (p 0.8 -> 0.992) on the default profile's digits stand-in with the profile's
settings (config/config.yaml ``categorical.defaults``) and one change:

    pairs     the paper's schedule per pair seen (anneal_pairs 60000, the profile's default)
    epoch     the official update per training epoch of 8192 pairs (anneal_pairs null, E = 30)
    const     p held at 0.8 (the same-run baseline: how far the encoder has got at each step)
    pairs16k  16384 pairs per epoch on the pairs clock (a setting no config has)

It prints per epoch the step, p and the test accuracy / categories used of every setting, then one summary
row per setting beside k-means on raw pixels. The data is built in memory
(:func:`ldm.data.image_standins.digits_standin`, seed 1), one torch thread per process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

PROFILE = {"encoder": {"name": "resnet18", "stem": "imagenet", "width": 0.125}, "channels": 1, "lr": 1e-3,
           "batch_size": 256, "pairs_per_epoch": 8192, "epochs": 30}
SETTINGS = {
    "pairs": {},
    "epoch": {"anneal_pairs": None, "anneal_epochs": None},
    "const": {"p_end": None},
    "pairs16k": {"pairs_per_epoch": 16384},
}


def run(job: tuple[str, int]) -> dict:
    """Train DM with ``SETTINGS[name]`` and ``seed``; per-epoch history and final clustering numbers."""
    import torch

    torch.set_num_threads(1)
    from ldm.data.image_standins import digits_standin
    from ldm.data.image_transforms import preprocess_images
    from ldm.training.categorical import PAPER_RUNS, evaluate_encoder, resolve_run, train_categorical

    name, seed = job
    splits = digits_standin(seed=1)
    (tr_i, tr_y), (te_i, te_y) = splits["train"], splits["test"]
    cfg = resolve_run({**PROFILE, **PAPER_RUNS["dm"], **SETTINGS[name], "seed": seed})
    trx = preprocess_images(tr_i, cfg["image_size"], cfg["channels"])
    tex = preprocess_images(te_i, cfg["image_size"], cfg["channels"])
    c0 = time.process_time()
    with tempfile.TemporaryDirectory() as d:
        enc, hist = train_categorical(cfg, trx, tr_y, Path(d) / "ckpt", eval_x=tex, eval_labels=te_y, progress=False)
    rep = evaluate_encoder(enc, tex, te_y)
    h = rep["entropy_bits"]
    return {"name": name, "seed": seed, "acc": rep["accuracy_greedy"], "used": rep["clusters_used"],
            "median_H": float(np.median(h)), "p_final": hist["epochs"][-1]["p"], "cpu_s": time.process_time() - c0,
            "epochs": hist["epochs"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--settings", nargs="+", default=["pairs", "epoch", "const"], choices=sorted(SETTINGS))
    args = ap.parse_args()
    jobs = [(s, args.seed) for s in args.settings]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run, jobs))
    from ldm.data.image_standins import digits_standin
    from ldm.evaluation.clustering import kmeans_baseline

    splits = digits_standin(seed=1)
    km = kmeans_baseline(splits["train"][0], splits["test"][0], splits["test"][1], seed=args.seed)
    print(f"# DM on the digits stand-in, profile settings {PROFILE}, seed {args.seed}")
    print("| epoch | " + " | ".join(f"{r['name']}: step, p, acc, used" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for i in range(max(len(r["epochs"]) for r in rows)):
        cells = []
        for r in rows:
            e = r["epochs"][i] if i < len(r["epochs"]) else None
            cells.append("" if e is None else f"{e['step']}, {e['p']:.3f}, {e.get('test/accuracy_greedy', float('nan')):.3f}, "
                                              f"{e.get('test/clusters_used', float('nan')):.0f}")
        print(f"| {i + 1} | " + " | ".join(cells) + " |")
    print()
    print("| setting | seed | accuracy (greedy) | categories used | median entropy [bits] | final p | CPU s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| k-means on raw pixels | {args.seed} | {km['accuracy_greedy']:.3f} | 10 | | | |")
    for r in rows:
        print(f"| {r['name']} | {r['seed']} | {r['acc']:.3f} | {r['used']} | {r['median_H']:.2g} | {r['p_final']:.4f} | {r['cpu_s']:.0f} |")


if __name__ == "__main__":
    main()
