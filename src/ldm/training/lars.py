"""LARS and the per-iteration warm-up + cosine schedule of the image experiments (paper App. B;
images.md §3: solo-learn's LARS, momentum 0.9, η = 0.02, clip_lr, biases and norms excluded).

Per parameter tensor ``p`` with gradient ``g`` in a group with learning rate ``lr`` and weight decay ``wd``:

* excluded (1-D: biases, BatchNorm weights/biases, when ``exclude_bias_n_norm``): ``d = g`` (no weight
  decay, no LARS scaling);
* otherwise ``d = (g + wd·p) · r`` with the trust ratio ``r = η‖p‖ / (‖g‖ + wd‖p‖ + 1e−8)``; with
  ``clip_lr`` the effective rate ``r·lr`` is clipped at ``lr`` (``r ← min(r/lr, 1)``); ``r = 1`` when
  ``‖p‖ = 0`` or ``‖g‖ = 0``.

Then heavy-ball momentum ``buf ← μ·buf + d``, ``p ← p − lr·buf``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["LARS", "param_groups", "lr_at", "set_lr", "build_lars"]


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You et al. 2017) in solo-learn's form (see module docstring)."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 0.02, clip_lr: bool = True, exclude_bias_n_norm: bool = True, eps: float = 1e-8) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(f"LARS: invalid lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, clip_lr=clip_lr,
                        exclude_bias_n_norm=exclude_bias_n_norm, eps=eps, lars=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                excluded = (p.ndim == 1 and group["exclude_bias_n_norm"]) or not group["lars"]
                if not excluded:
                    p_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(d)
                    trust = group["eta"] * p_norm / (g_norm + wd * p_norm + group["eps"])
                    if group["clip_lr"] and lr > 0:
                        trust = torch.clamp(trust / lr, max=1.0)
                    trust = torch.where((p_norm > 0) & (g_norm > 0), trust, torch.ones_like(trust))
                    d = d.add(p, alpha=wd) if wd else d.clone()
                    d.mul_(trust)
                state = self.state[p]
                if mom:
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.clone()
                    else:
                        buf.mul_(mom).add_(d)
                    d = buf
                p.add_(d, alpha=-lr)
        return loss


def param_groups(model: nn.Module, classifier: nn.Module | None, weight_decay: float, classifier_lr: float,
                 base_lr: float) -> list[dict[str, Any]]:
    """Two groups: the SSL network (backbone + projector; wd, base lr) and the online classifier
    (lr 0.1, wd 0, still LARS-scaled, same schedule: images.md §3). ``base_lr`` and ``classifier_lr``
    are the peak rates, stored as ``peak_lr`` for :func:`set_lr`."""
    cls_ids = {id(p) for p in classifier.parameters()} if classifier is not None else set()
    main = [p for p in model.parameters() if p.requires_grad and id(p) not in cls_ids]
    groups = [{"name": "ssl", "params": main, "weight_decay": weight_decay, "lr": base_lr, "peak_lr": base_lr}]
    if classifier is not None:
        groups.append({"name": "classifier", "params": list(classifier.parameters()), "weight_decay": 0.0,
                       "lr": classifier_lr, "peak_lr": classifier_lr})
    return groups


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, warmup_start: float = 3e-5,
          final: float = 0.0) -> float:
    """Linear warm-up from ``warmup_start`` to ``peak`` over ``warmup_steps`` iterations, then cosine
    decay to ``final`` at ``total_steps`` (solo-learn's LinearWarmupCosineAnnealingLR, per iteration)."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_start + (peak - warmup_start) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, step: int, total_steps: int, warmup_steps: int) -> float:
    """Set every group's lr from its ``peak_lr`` for iteration ``step``; returns the first group's lr."""
    for g in optimizer.param_groups:
        g["lr"] = lr_at(step, total_steps, warmup_steps, g["peak_lr"], warmup_start=min(3e-5, g["peak_lr"]))
    return optimizer.param_groups[0]["lr"]


def build_lars(model: nn.Module, classifier: nn.Module | None, cfg: Mapping[str, Any], batch_size: int) -> LARS:
    """LARS with lr = base_lr × B/256 (``cfg``: base_lr, weight_decay, momentum, eta, clip_lr,
    exclude_bias_n_norm, classifier_lr)."""
    base = float(cfg["base_lr"]) * batch_size / 256.0
    groups = param_groups(model, classifier, float(cfg["weight_decay"]), float(cfg["classifier_lr"]), base)
    return LARS(groups, lr=base, momentum=float(cfg["momentum"]), weight_decay=float(cfg["weight_decay"]),
                eta=float(cfg["eta"]), clip_lr=bool(cfg["clip_lr"]), exclude_bias_n_norm=bool(cfg["exclude_bias_n_norm"]))
