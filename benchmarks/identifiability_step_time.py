"""Seconds per training step of the identifiability model (MLP encoder + LSTM(10) predictor) per loss,
batch size and encoder depth, on this machine (CPU, ``--threads``). Prints a table, plus the wall time a
paper-scale run would take (steps per run from predictive.md §4.4).

    PYTHONPATH=src python benchmarks/identifiability_step_time.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from ldm.training.identifiability import PredictiveLDM, build_optimizer, resolve_config
from ldm.objectives.predictive_losses import build_objective, predictive_loss

PAPER_STEPS = {"knn": 10_000 // 128 * 300, "kde": 10_000 // 128 * 300, "logdet": 10_000 // 128 * 300,
               "stopgrad": 20_000 // 128 * 20}


def step_time(loss: str, batch: int, layers: int, seq_len: int, reps: int) -> float:
    cfg = resolve_config({"loss": loss, "model": {"encoder": {"hidden_layers": layers, "hidden_dim": 200}},
                          "optim": {"batch_size": batch}})
    model = PredictiveLDM(cfg["model"], 100, 2, seed=0)
    opt = build_optimizer(model, cfg["optim"])
    obj = build_objective(loss, batch, cfg["loss_settings"])
    x = torch.randn(batch, seq_len, 100)
    s = torch.randn(batch, seq_len, 2)
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        z, pred = model(x)
        l, _ = predictive_loss(obj, z, pred)
        (l + ((model.probe(z.detach()) - s) ** 2).mean()).backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--losses", nargs="+", default=["knn", "stopgrad", "logdet", "kde"])
    p.add_argument("--batches", nargs="+", type=int, default=[128, 32])
    p.add_argument("--layers", nargs="+", type=int, default=[10, 1])
    p.add_argument("--seq-len", type=int, default=100)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"threads={a.threads} seq_len={a.seq_len} torch={torch.__version__}")
    print(f"{'loss':9s} {'B':>4s} {'layers':>6s} {'s/step':>8s} {'paper steps':>11s} {'paper run (h)':>13s}")
    for loss in a.losses:
        for b in a.batches:
            for layers in a.layers:
                t = step_time(loss, b, layers, a.seq_len, a.reps)
                steps = PAPER_STEPS[loss] if b == 128 else float("nan")
                print(f"{loss:9s} {b:4d} {layers:6d} {t:8.4f} {steps:11.0f} {t * steps / 3600:13.2f}", flush=True)


if __name__ == "__main__":
    main()
