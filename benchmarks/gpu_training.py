"""Training speed of the real training functions on this machine's CPU and GPU, measured in one run.

Image SSL (``ldm.training.images.train``: batched augmentation on the device, ResNet-18, LARS) at the paper's
CIFAR settings (width 1, batch 256, 32×32) on synthetic images, and the identifiability model
(``ldm.training.identifiability.train``: MLP encoder + LSTM predictor, batch 128, 100 frames) with the paper's
kNN and stopgrad configs; on a GPU also ImageNet-100 settings with the training set on the GPU or in host
memory. Each row is timed through the whole training loop (checkpointing excluded); the
ratio is against the CPU row of the same table, measured in the same run. The last column projects a
paper-scale run (images: 1000 epochs of 50 000 images; identifiability: predictive.md §4.4's step counts).

    PYTHONPATH=src python benchmarks/gpu_training.py [--cpu-threads 16] [--skip-cpu]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ldm.training.device import Device

PAPER_IMAGE_STEPS = 1000 * (50_000 // 256)
PAPER_IDENT_STEPS = {"knn": 10_000 // 128 * 300, "stopgrad": 20_000 // 128 * 20}


def image_rate(dev: Device, row: str, steps: int, dataset: str = "cifar10", host_data: bool = False) -> float:
    """Images per second of ``images.train`` steps (median step interval after two warm-up steps) on random
    uint8 images (32 px; ImageNet-100: 256 px, 224-px crops, the ImageNet stem). ``host_data``: the training
    set stays in host memory and each batch is copied over (what ``train`` does when it would not fit)."""
    from ldm.training import images as ti

    g = torch.Generator().manual_seed(0)
    n, px = 256 * (steps + 3), (256 if dataset == "imagenet100" else 32)
    x = torch.randint(0, 256, (n, px, px, 3), generator=g, dtype=torch.uint8)
    classes = 100 if dataset == "imagenet100" else 10
    y = torch.randint(0, classes, (n,), generator=g)
    over = {"optim": {"epochs": 1, "batch_size": 256, "warmup_epochs": 0}}
    if dataset == "imagenet100":
        over["model"] = {"stem": "imagenet"}
    cfg = ti.resolve_run(row, dataset, over, seed=1)
    stamps: list[float] = []
    fits = ti.data_fits_on
    ti.data_fits_on = (lambda *a, **k: False) if host_data else fits
    try:
        with tempfile.TemporaryDirectory() as out:
            ti.train(cfg, x, y, out, n_classes=classes, device=dev, step_hook=lambda s: stamps.append(time.perf_counter()))
    finally:
        ti.data_fits_on = fits
    gaps = [b - a for a, b in zip(stamps[2:], stamps[3:])]
    return 256 / statistics.median(gaps)


def ident_rate(dev: Device, loss: str, data: Path, steps: int, threads: int) -> float:
    """Training steps per second of ``identifiability.train`` (an epoch without evaluation)."""
    import json

    from ldm.training import identifiability as T

    preset = "released_code" if loss == "stopgrad" else "paper"  # as config/paper.yaml
    over = {"loss": loss, "progress": False, "n_train": 128 * steps, "threads": threads,
            "model": {"state_dim": 2, "encoder": {"preset": preset}},
            "optim": {"batch_size": 128, "epochs": 3}, "eval": {"every": 1000, "train_subset": 64}}
    cfg = T.resolve_config(over, seed=1)
    with tempfile.TemporaryDirectory() as out:
        T.train(cfg, data, out, device=dev)
        epochs = json.loads((Path(out) / "history.json").read_text())["epochs"]
    return steps / epochs[1]["epoch_time_s"]  # epoch 2: warmed up, no evaluation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--image-steps", type=int, default=20, help="timed steps per GPU row (CPU: 3)")
    ap.add_argument("--ident-steps", type=int, default=20)
    ap.add_argument("--parts", default="images,imagenet,identifiability", help="comma-separated: images, imagenet (GPU only), identifiability")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(args.cpu_threads)
    devices = [("cpu fp32", Device.from_settings({"device": "cpu"}))] if not args.skip_cpu else []
    if torch.cuda.is_available():
        devices += [("cuda fp32", Device.from_settings({"device": "cuda"})),
                    ("cuda bf16 + channels_last", Device.from_settings({"device": "cuda", "precision": "bf16",
                                                                         "channels_last": True}))]
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print(f"CPU threads: {args.cpu_threads}\n")

    if "images" in parts:
        print("| image SSL, CIFAR paper settings | device | images/s | × CPU | 1000 epochs of 50k (h) |")
        print("|---|---|---|---|---|")
    for row in ("plane_knn_mi", "sphere_kde", "plane_logdet_mi") if "images" in parts else ():
        base = None
        for name, dev in devices:
            r = image_rate(dev, row, 3 if dev.device.type == "cpu" else args.image_steps)
            base = base or (r if dev.device.type == "cpu" else None)
            ratio = f"{r / base:.1f}" if base else "—"
            print(f"| {row} | {name} | {r:.0f} | {ratio} | {PAPER_IMAGE_STEPS * 256 / r / 3600:.1f} |", flush=True)

    if "imagenet" in parts and torch.cuda.is_available():
        print("\n| image SSL, ImageNet-100 paper settings (224 px) | device | images/s | × on-device data | "
              "400 epochs of 126 689 (h) |")
        print("|---|---|---|---|---|")
        dev = Device.from_settings({"device": "cuda", "precision": "bf16", "channels_last": True})
        base = None
        for host in (False, True):
            r = image_rate(dev, "plane_knn_mi", args.image_steps, "imagenet100", host_data=host)
            base = base or r
            where = "data in host memory" if host else "data on the GPU"
            print(f"| plane_knn_mi | cuda bf16 + channels_last, {where} | {r:.0f} | {r / base:.2f} | "
                  f"{400 * 126_689 / r / 3600:.1f} |", flush=True)
    if "identifiability" not in parts:
        return
    from ldm.data import wobbly as w

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "wobbly"
        w.write_dataset(w.WobblyConfig(n_train=128 * args.ident_steps, n_test=8), 1, data)
        print("\n| identifiability (paper config) | device | steps/s | × CPU | paper run (min) |")
        print("|---|---|---|---|---|")
        for loss in ("knn", "stopgrad"):
            base = None
            for name, dev in devices:
                if "bf16" in name:
                    continue  # this experiment trains in fp32
                r = ident_rate(dev, loss, data, args.ident_steps, args.cpu_threads)
                base = base or (r if dev.device.type == "cpu" else None)
                ratio = f"{r / base:.1f}" if base else "—"
                print(f"| {loss} ({PAPER_IDENT_STEPS[loss]} steps) | {name} | {r:.1f} | {ratio} | "
                      f"{PAPER_IDENT_STEPS[loss] / r / 60:.1f} |", flush=True)


if __name__ == "__main__":
    main()
