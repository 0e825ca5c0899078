"""Atomic training checkpoints that let a killed run resume and end with identical metrics.

A checkpoint holds the model, optimiser, scheduler and fp16 gradient-scaler states, the global RNG states
(torch CPU and, once CUDA is in use, every CUDA device; numpy; python), the step/epoch counters, the training history and free-form ``extra`` data. It is written to a
temporary file in the same folder and renamed onto its final name, so a crash never leaves a truncated
checkpoint behind.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ldm.pipeline.io import save_torch

LAST = "last.pt"


def rng_state() -> dict[str, Any]:
    """Global RNG states of torch (CPU, and each CUDA device once CUDA is initialised), numpy and python
    ``random``."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`rng_state` (CUDA states only where this process uses CUDA)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_dir: Path | str,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any],
    step: int,
    epoch: int,
    history: Any,
    extra: Optional[dict[str, Any]] = None,
    scaler: Optional[torch.amp.GradScaler] = None,
) -> Path:
    """Write ``<ckpt_dir>/last.pt`` atomically; ``epoch`` = number of completed epochs."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(),
        "step": int(step),
        "epoch": int(epoch),
        "history": history,
        "extra": dict(extra or {}),
    }
    return save_torch(state, Path(ckpt_dir) / LAST)


def latest_checkpoint(ckpt_dir: Path | str) -> Optional[Path]:
    """Path of the last complete checkpoint in ``ckpt_dir``, or None."""
    p = Path(ckpt_dir) / LAST
    return p if p.is_file() else None


def checkpoint_extra(path: Path | str) -> dict[str, Any]:
    """The ``extra`` mapping stored in a checkpoint (empty if unreadable)."""
    try:
        return dict(torch.load(Path(path), map_location="cpu", weights_only=False).get("extra") or {})
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is treated as foreign
        return {}


def load_checkpoint(
    path: Path | str,
    *,
    model: torch.nn.Module,
    optimizer: Optional[torch.optim.Optimizer] = None,
    scheduler: Optional[Any] = None,
    restore_rng: bool = True,
    scaler: Optional[torch.amp.GradScaler] = None,
) -> dict[str, Any]:
    """Load states into ``model``/``optimizer``/``scheduler``/``scaler`` (and the RNGs); return step, epoch,
    history and extra. A corrupt file raises an error naming it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the file name
        raise RuntimeError(f"checkpoint {path} cannot be read: {err}") from err
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if restore_rng:
        set_rng_state(state["rng"])
    return {k: state[k] for k in ("step", "epoch", "history", "extra")}


def load_trained_run(run_dir: Path | str, build: Callable[[dict[str, Any]], torch.nn.Module],
                     experiment: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model that :func:`save_trained_run` wrote to ``run_dir/model.pt``, rebuilt by ``build(config)`` on
    the CPU in eval mode, and its resolved config; a missing file is named with the stage that makes it."""
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{experiment}: no trained model at {path} (run the train stage first)")
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = state["config"]
    model = build(cfg)
    model.load_state_dict(state["model"])
    return model.eval(), cfg


def save_trained_run(out_dir: Path | str, model: torch.nn.Module, config: dict[str, Any], history: dict[str, Any],
                     summary: dict[str, Any], run: Any = None, wall_time_s: Optional[float] = None) -> None:
    """Write a finished training's artefacts atomically: ``model.pt`` (CPU state dict + resolved config),
    ``history.json`` (per-epoch and per-step records) and ``train_metrics.json`` (``summary``); log this
    call's wall time and the total training time to the MLflow ``run`` when one is active (a record only)."""
    from ldm.pipeline.io import write_json

    out_dir = Path(out_dir)
    save_torch({"model": {k: v.cpu() for k, v in model.state_dict().items()}, "config": config}, out_dir / "model.pt")
    write_json(out_dir / "history.json", {"epochs": history["epochs"], "steps": history["steps"]})
    write_json(out_dir / "train_metrics.json", summary)
    if run is not None:
        import mlflow

        mlflow.log_metrics({"wall_time_s": float(wall_time_s or 0.0), "train_time_total_s": summary["train_time_total_s"]})
