"""A generic, resumable training loop: tqdm progress, one non-finite check per step, checkpoint per epoch.

The loop is deterministic given (a) the model/optimiser state and (b) a ``batches(epoch)`` function whose
randomness depends only on the epoch (seeded generators). A run killed at any point and restarted
resumes from its last complete epoch checkpoint and ends with exactly the metrics of an uninterrupted
run (on CPU, same thread count).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import torch
from torch import Tensor

from ldm.training.checkpoint import checkpoint_extra, latest_checkpoint, load_checkpoint, save_checkpoint
from ldm.training.device import Device

log = logging.getLogger("ldm")

StepFn = Callable[[Any, int], tuple[Tensor, Mapping[str, Tensor], Mapping[str, float]]]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN/inf; the message names the step and the offending term."""


def check_finite(loss: Tensor, terms: Mapping[str, Tensor], step: int, epoch: int,
                 checkpoint: Optional[Path]) -> None:
    """Raise :class:`NonFiniteLossError` if the scalar ``loss`` is not finite (one host sync per step)."""
    if bool(torch.isfinite(loss)):
        return
    bad = [f"{k}={float(v.detach()):.6g}" for k, v in terms.items() if not math.isfinite(float(v.detach()))]
    which = ", ".join(bad) if bad else f"total={float(loss.detach()):.6g}"
    where = f"last good checkpoint kept at {checkpoint}" if checkpoint else "no checkpoint written yet"
    raise NonFiniteLossError(
        f"non-finite loss at step {step + 1} (epoch {epoch + 1}; both counted from 1): term {which}; {where}")


def _key(resume_key: Mapping[str, Any]) -> str:
    return json.dumps(resume_key, sort_keys=True, default=str)


def discard_stale_checkpoint(ckpt_dir: Path | str, resume_key: Optional[Mapping[str, Any]]) -> bool:
    """Delete ``<ckpt_dir>/last.pt`` if it was written under another ``resume_key`` (other settings,
    code or input files: see :meth:`ldm.pipeline.stages.Job.provenance`); return True if it did."""
    last = latest_checkpoint(ckpt_dir)
    if last is None or resume_key is None or checkpoint_extra(last).get("resume_key") == _key(resume_key):
        return False
    last.unlink()
    log.info(f"checkpoint {last} was written with other settings, code or inputs; discarded, training from scratch")
    return True


def fit(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any],
    epochs: int,
    batches: Callable[[int], Iterable[Any]],
    step_fn: StepFn,
    ckpt_dir: Path | str,
    end_epoch: Optional[Callable[[int, int, dict], Mapping[str, float]]] = None,
    on_epoch: Optional[Callable[[int, Mapping[str, float]], None]] = None,
    max_steps: Optional[int] = None,
    extra: Optional[dict[str, Any]] = None,
    resume_key: Optional[Mapping[str, Any]] = None,
    progress: bool = True,
    desc: str = "train",
    device: Optional[Device] = None,
) -> dict[str, Any]:
    """Train for ``epochs`` epochs, resuming from ``<ckpt_dir>/last.pt`` if present.

    ``step_fn(batch, step)`` returns (loss, named loss terms, extra per-step metrics such as the gradient
    cosine). Epoch metrics = means of the terms + ``end_epoch(epoch, step, history)`` (evaluation); they are
    appended to ``history['epochs']`` and passed to ``on_epoch`` (e.g. MLflow) *after* the checkpoint is
    written. Returns the history ``{'epochs': [...], 'steps': [...], 'extra': {...}}``.

    ``resume_key`` (the job's provenance hash) is stored in the checkpoint; a checkpoint written under a
    different key is discarded and training restarts. ``device`` runs ``step_fn`` under its autocast and
    scales fp16 gradients; the caller moves model and batches. One line per epoch goes to the ``ldm``
    logger (the job's log file), a tqdm bar to a terminal.
    """
    device = device or Device(torch.device("cpu"))
    scaler = device.grad_scaler()
    ckpt_dir = Path(ckpt_dir)
    history: dict[str, Any] = {"epochs": [], "steps": [], "extra": dict(extra or {})}
    step, start_epoch = 0, 0
    discard_stale_checkpoint(ckpt_dir, resume_key)
    last = latest_checkpoint(ckpt_dir)
    if resume_key is not None:
        history["extra"]["resume_key"] = _key(resume_key)
    if last is not None:
        state = load_checkpoint(last, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler)
        step, start_epoch, history = state["step"], state["epoch"], state["history"]
        log.info(f"{desc}: resumed from epoch {start_epoch} (step {step}) of checkpoint {last}")
    for epoch in range(start_epoch, epochs):
        if max_steps is not None and step >= max_steps:
            break
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        n = 0
        it = batches(epoch)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(it, desc=f"{desc} epoch {epoch + 1}/{epochs}", leave=False, mininterval=2.0)
            it = bar
        for batch in it:
            optimizer.zero_grad(set_to_none=True)
            with device.autocast():
                loss, terms, step_metrics = step_fn(batch, step)
            check_finite(loss, terms, step, epoch, last)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            step += 1
            n += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            if step_metrics:
                history["steps"].append({"step": step, "epoch": epoch, **{k: float(v) for k, v in step_metrics.items()}})
            if max_steps is not None and step >= max_steps:
                break
        if bar is not None:
            bar.close()
        metrics: dict[str, float] = {f"train/{k}": v / max(n, 1) for k, v in sums.items()}
        metrics["lr"] = float(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            scheduler.step()
        model.eval()
        if end_epoch is not None:
            with torch.no_grad():
                metrics.update(end_epoch(epoch, step, history))
        metrics["epoch_time_s"] = time.perf_counter() - t0
        history["epochs"].append({"epoch": epoch + 1, "step": step, **metrics})
        last = save_checkpoint(ckpt_dir, model=model, optimizer=optimizer, scheduler=scheduler, step=step,
                               epoch=epoch + 1, history=history, extra=history.get("extra"), scaler=scaler)
        log.info(f"{desc} epoch {epoch + 1}/{epochs}: " + _epoch_line(metrics))
        if on_epoch is not None:
            on_epoch(epoch + 1, metrics)
    return history


def _epoch_line(metrics: Mapping[str, float]) -> str:
    """``loss=... <headline metrics> 12.3 s`` for the job log."""
    shown = [f"{k.removeprefix('train/').removeprefix('test/')}={v:.4g}" for k, v in metrics.items()
             if isinstance(v, (int, float)) and (k == "train/loss" or k.startswith("test/"))]
    return " ".join(shown) + f" {metrics.get('epoch_time_s', 0.0):.1f} s"
