"""The device layer: the one place that chooses where training runs and how.

``Device.from_settings(config["compute"])`` picks CUDA when torch sees a GPU (``device: auto``), else
the CPU, or what the config forces; it moves models and batches, runs the forward pass under mixed
precision (bf16, or fp16 with a gradient scaler) and puts convolutional models in ``channels_last``.
Every training loop takes a :class:`Device`; on a CPU machine with the defaults it is a no-op.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Device:
    """Where a training runs: the torch device, the autocast dtype and the memory format."""

    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None = None) -> "Device":
        """``{"device": auto|cpu|cuda, "precision": fp32|bf16|fp16, "channels_last": bool}``."""
        settings = dict(settings or {})
        want = settings.get("device", "auto")
        if want not in ("auto", "cpu", "cuda"):
            raise ValueError(f"config key 'compute.device' = {want!r} is not allowed (allowed values: auto, cpu, cuda)")
        if want == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("config key 'compute.device' = 'cuda' but torch sees no CUDA device on this machine")
        name = "cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu"
        precision = settings.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise ValueError(f"config key 'compute.precision' = {precision!r} is not allowed (allowed values: fp32, bf16, fp16)")
        if precision == "fp16" and name != "cuda":
            raise ValueError("config key 'compute.precision' = 'fp16' needs a CUDA device (use bf16 or fp32 on the CPU)")
        return cls(torch.device(name), precision, bool(settings.get("channels_last", False)))

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    def model(self, module: torch.nn.Module, conv: bool = False) -> torch.nn.Module:
        """Move ``module`` to the device (channels_last for convolutional nets when enabled)."""
        module = module.to(self.device)
        if conv and self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module

    def batch(self, x: Any, image: bool = False) -> Any:
        """Move a tensor (or a tuple/list/dict of tensors) to the device; 4-D image batches go
        channels_last when enabled."""
        if isinstance(x, torch.Tensor):
            x = x.to(self.device, non_blocking=True)
            if image and self.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            return x
        if isinstance(x, (tuple, list)):
            return type(x)(self.batch(v, image) for v in x)
        if isinstance(x, Mapping):
            return {k: self.batch(v, image) for k, v in x.items()}
        return x

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision for the forward pass (nothing in fp32)."""
        if self.autocast_dtype is None:
            yield
            return
        with torch.autocast(self.device.type, dtype=self.autocast_dtype):
            yield

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """fp32 inside a mixed-precision forward pass: data preparation (augmentation) and the loss."""
        with torch.autocast(self.device.type, enabled=False):
            yield

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A gradient scaler for fp16 (None otherwise)."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def describe(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        return f"{name} ({self.device}), precision {self.precision}, channels_last {self.channels_last}"
