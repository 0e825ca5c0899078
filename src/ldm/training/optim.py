"""Optimisers and learning-rate schedules of the predictive models ("the predictor on a faster
timescale": per-module Adam parameter groups, the authors' code)."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from ldm.models.kalman_defaults import DEFAULTS
from ldm.pipeline.config import merge_settings



def build_optimizer(model: torch.nn.Module, optim_cfg: Mapping[str, Any]) -> torch.optim.Adam:
    """Adam with parameter groups: lr_group = lr * batch_size / 256 * multiplier (the authors' code)."""
    cfg = merge_settings(DEFAULTS["optim"], optim_cfg)
    scale = float(cfg["batch_size"]) / float(cfg["lr_scale_batch"])
    base = float(cfg["lr"]) * scale
    mult = cfg["multipliers"]
    kf = model.kalman
    groups = [
        {"name": "encoder", "params": list(model.encoder.parameters()), "lr": base * mult["encoder"]},
        {"name": "kalman", "params": kf.fast_parameters(), "lr": base * mult["kalman"]},
    ]
    if kf.process_net is not None:
        groups.append({"name": "process_net", "params": list(kf.process_net.parameters()),
                       "lr": base * mult["process_net"]})
    if kf.obs_net is not None:
        key = {"inferred": "obs_net_inferred", "input": "obs_net_input"}.get(kf.obs_noise, "obs_net_state")
        groups.append({"name": "obs_net", "params": list(kf.obs_net.parameters()), "lr": base * mult[key]})
    groups.append({"name": "pos_probe", "params": list(model.pos_probe.parameters()),
                   "lr": float(cfg["probe_lr"]) * scale})
    if model.noise_probe is not None:
        groups.append({"name": "noise_probe", "params": list(model.noise_probe.parameters()),
                       "lr": float(cfg["noise_probe_lr"]) * scale})
    n_model = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_groups = sum(p.numel() for g in groups for p in g["params"])
    if n_model != n_groups:
        raise RuntimeError(f"kalman: optimiser groups cover {n_groups} of {n_model} parameters")
    return torch.optim.Adam(groups, betas=(0.9, 0.999), weight_decay=float(cfg["weight_decay"]))


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Mapping[str, Any]) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``step`` (x0.5 at int(0.33 E), int(0.66 E)), ``linear`` (1 -> min_lr_factor over
    E epochs) or ``none``."""
    cfg = merge_settings(DEFAULTS["optim"], optim_cfg)
    E = int(cfg["epochs"])
    kind = cfg["scheduler"]
    if kind == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(0.33 * E), int(0.66 * E)], gamma=0.5)
    if kind == "linear":
        return torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, float(cfg["min_lr_factor"]), total_iters=E)
    if kind == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"kalman: optim.scheduler must be step | linear | none, got {kind!r}")
