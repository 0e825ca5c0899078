"""Collapse diagnosis of the Kalman predictive-stopgrad run (issue 13): train one run of a profile with
optional overrides and print, per epoch, held-out R² (subset proxy), encoding spread, spectral radius of A,
log noise scale s and the two parts of the Kalman NLL.

    PYTHONPATH=src python benchmarks/kalman_collapse.py --run figure8_stopgrad --seed 1 --epochs 12 \
        --override '{"model": {"rho_max": 1.0}}'
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--run", default="figure8_stopgrad")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--override", default="{}", help="JSON merged into the run's settings")
    ap.add_argument("--dataset", default="{}", help="JSON merged into the run's data set")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from ldm.data.videos import VideoConfig, write_dataset
    from ldm.experiments.kalman.settings import kalman_section, resolve_run
    from ldm.pipeline.config import merge_settings
    from ldm.training.kalman import train

    section = kalman_section(yaml.safe_load(open(a.config)))
    cfg = resolve_run(section, a.run, a.seed)
    cfg = merge_settings(cfg, json.loads(a.override))
    cfg["data"] = merge_settings(cfg["data"], json.loads(a.dataset))
    if a.epochs:
        cfg["optim"]["epochs"] = a.epochs
    cfg["grad_cos_every"] = 0
    tmp = Path(a.out or tempfile.mkdtemp(prefix="kcollapse"))
    vc = VideoConfig.from_dict({k: v for k, v in cfg["data"].items() if k not in ("seed", "name")})
    write_dataset(vc, int(cfg["data"]["seed"]), tmp / "videos")
    cols = ["test/r2_heldout_subset", "enc/std_mean", "enc/std_min", "kalman/spectral_radius", "kalman/log_scale",
            "nll/logdet_per_step", "nll/mahalanobis_per_step", "loss"]
    print("epoch " + " ".join(c.split("/")[-1][:14].rjust(14) for c in cols), flush=True)

    def hook(epoch, m):
        print(f"{epoch + 1:5d} " + " ".join(f"{float(m.get(c, float('nan'))):14.4f}" for c in cols), flush=True)

    train(cfg, tmp / "videos", tmp / "run", _on_epoch_hook=hook)


if __name__ == "__main__":
    main()
