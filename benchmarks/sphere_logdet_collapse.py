"""Sphere LogDet collapse at CPU scale (issue 9): train sphere LogDet rows of the images-cpu profile with
objective / optimiser variants and print, per variant, the per-epoch alignment and entropy terms, the
participation ratio of the (L2-normalised) test embeddings and the offline linear-probe top-1 on backbone
features, beside the random-init network measured in the same run.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sphere_logdet_collapse.py \
        --variants paper taylor2_nats official --epochs 6 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

VARIANTS: dict[str, dict] = {
    # the row's paper variant (since issue 9: exact log det of Eq. 34 per dimension, log det C / d)
    "paper": {},
    # the paper variant before issue 9: Taylor rho^2 expansion, 1/2 log det (nats) -> collapse to ~2 dims
    "taylor2_nats": {"objective": {"logdet": "taylor", "taylor_power": 2, "scaling": "entropy"}},
    # one factor at a time
    "taylor2_perdim": {"objective": {"logdet": "taylor", "taylor_power": 2}},
    "exact_nats": {"objective": {"scaling": "entropy"}},
    # the official code (Taylor rho^4, LD/d, jitter on every entry; no-MI: pooled covariance)
    "official": {"variant": "official"},
    # the old paper variant at the paper's base lr 0.3 and batch 256
    "taylor2_nats_lr0.3_b256": {"objective": {"logdet": "taylor", "taylor_power": 2, "scaling": "entropy"},
                                "optim": {"base_lr": 0.3, "batch_size": 256}},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--row", default="sphere_logdet_mi")
    ap.add_argument("--variants", nargs="+", default=["paper"])
    ap.add_argument("--set", default="{}", help="JSON overrides applied to every variant")
    ap.add_argument("--extra", default="{}", help="JSON {name: overrides} of ad-hoc variants")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--config", default="config/images-cpu.yaml")
    ap.add_argument("--data", default="data/cifar10")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from ldm.data.image_datasets import load_images
    from ldm.evaluation.images import probe_network
    from ldm.experiments.images.stages import EVAL_DEFAULTS
    from ldm.pipeline.config import layered_settings, merge_settings
    from ldm.training import images as ti

    section = yaml.safe_load(Path(args.config).read_text())["images"]
    xtr, ytr = load_images(Path(args.data) / "train.npz")
    xte, yte = load_images(Path(args.data) / "test.npz")
    ev = {**EVAL_DEFAULTS, "jacobian_images": 0}
    variants = {**VARIANTS, **json.loads(args.extra)}
    rows = []
    for seed, name in [(s, n) for n in ["random_init"] + args.variants for s in args.seeds]:
        over = merge_settings(layered_settings(section, dataset="cifar10", row=args.row), {"optim": {"epochs": args.epochs}})
        over = merge_settings(over, json.loads(args.set))
        over = merge_settings(over, variants.get(name, {}))
        cfg = ti.resolve_run(args.row, "cifar10", over, seed=seed)
        t0 = time.perf_counter()
        epochs: list[dict] = []
        if name == "random_init":
            model = ti.build_model(cfg, 10).eval()
        else:
            with tempfile.TemporaryDirectory() as tmp:
                hist = ti.train(cfg, xtr, ytr, tmp, n_classes=10)
                model, _ = ti.load_model(Path(tmp) / "model.pt")
            epochs = hist["epochs"]
        res = probe_network(model, cfg, ev, (xtr, ytr), (xte, yte), 10)
        for e in epochs:
            print(f"  {name} epoch {e.get('epoch')}: " + ", ".join(
                f"{k.split('/')[-1]}={v:.4g}" for k, v in e.items()
                if isinstance(v, float) and any(s in k for s in ("alignment", "entropy", "loss", "ssl"))), flush=True)
        rows.append((name, seed, res["linear_top1"], res["knn_top1"], res["participation_ratio"], res["pcs_90"],
                     time.perf_counter() - t0))
        print(f"{name} seed {seed}: linear {res['linear_top1']:.1f} knn {res['knn_top1']:.1f} PR {res['participation_ratio']:.2f}"
              f" pcs90 {res['pcs_90']}", flush=True)
    print(f"\nrow {args.row}, seeds {args.seeds}, {args.epochs} epochs, {args.config}")
    print(f"{'variant':<26}{'seed':>5}{'linear top1':>12}{'kNN top1':>10}{'PR(z)':>8}{'pcs90':>7}{'time s':>8}")
    for r in rows:
        print(f"{r[0]:<26}{r[1]:>5}{r[2]:>12.1f}{r[3]:>10.1f}{r[4]:>8.2f}{r[5]:>7d}{r[6]:>8.0f}")
    print(f"\n{'variant':<26}{'linear top1 mean ± sd':>24}{'PR mean':>9}")
    for name in ["random_init"] + args.variants:
        lin = np.array([r[2] for r in rows if r[0] == name])
        pr = np.array([r[4] for r in rows if r[0] == name])
        print(f"{name:<26}{lin.mean():>16.1f} ± {lin.std(ddof=1) if len(lin) > 1 else 0.0:<5.1f}{pr.mean():>9.2f}")


if __name__ == "__main__":
    main()
