"""Prepared dataset artifacts: the file contract between acquisition and the experiments.

Small image datasets (``cifar10``, ``cifar100``, ``svhn``, ``mnist`` and their stand-ins):
``<out>/train.npz`` and ``<out>/test.npz`` with ``images`` uint8 [N, H, W, C] and ``labels``
int64 [N], plus ``<out>/meta.json`` ({"name", "source": "real" | "stand-in", "description",
"classes", "checksums", ...}). hc-11: ``<out>/spikes.npz`` + ``meta.json``; ImageNet-100: an index.

Writes are atomic per file and ``meta.json`` is written last (and removed first), so a folder
without ``meta.json`` is never a finished artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ldm.pipeline.io import atomic_path, write_json

META = "meta.json"
IMAGE_SPLITS = ("train", "test")


def atomic_save_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write an uncompressed ``.npz`` to a temp file beside ``path``, then rename it onto ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write indented, key-sorted JSON atomically."""
    return write_json(path, obj)


def sha256_of(path: str | os.PathLike) -> str:
    """sha256 of a written artifact file (recorded in meta.json)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def begin(out_dir: str | os.PathLike) -> Path:
    """Start (re)writing an artifact folder: create it and remove its ``meta.json`` first."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / META).unlink(missing_ok=True)
    return out_dir


def check_image_arrays(images: np.ndarray, labels: np.ndarray, *, where: str) -> None:
    """The contract's shapes and dtypes: uint8 [N, H, W, C] (C = 1 or 3) and int64 [N]."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{where}: images must be uint8 [N, H, W, C] with C in (1, 3), got {images.dtype} {images.shape}")
    if labels.dtype != np.int64 or labels.shape != (images.shape[0],):
        raise ValueError(f"{where}: labels must be int64 [{images.shape[0]}], got {labels.dtype} {labels.shape}")


def write_image_artifact(
    out_dir: str | os.PathLike,
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    meta: Mapping[str, Any],
) -> Path:
    """Write ``<split>.npz`` (images, labels) for every split, then ``meta.json`` last.

    ``meta`` must hold name, source ("real" | "stand-in"), description and classes; the sha256
    and shape of every split file are added here.
    """
    for key in ("name", "source", "description", "classes"):
        if key not in meta:
            raise KeyError(f"meta.json of an image artifact needs {key!r}")
    if meta["source"] not in ("real", "stand-in"):
        raise ValueError(f"meta source must be 'real' or 'stand-in', got {meta['source']!r}")
    out_dir = begin(out_dir)
    files: dict[str, Any] = {}
    for split, (images, labels) in splits.items():
        check_image_arrays(images, labels, where=f"{meta['name']} {split}")
        path = atomic_save_npz(out_dir / f"{split}.npz", {"images": images, "labels": labels})
        files[f"{split}.npz"] = {"sha256": sha256_of(path), "n": int(images.shape[0])}
    first = next(iter(splits.values()))[0]
    full = {
        **meta,
        "splits": {split: int(arr[0].shape[0]) for split, arr in splits.items()},
        "image_shape": list(first.shape[1:]),
        "layout": "NHWC uint8",
        "files": files,
    }
    atomic_write_json(out_dir / META, full)
    return out_dir


def read_meta(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``meta.json`` of a prepared artifact (FileNotFoundError saying it is unfinished)."""
    path = Path(out_dir) / META
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: {Path(out_dir)} is not a finished prepared dataset")
    return json.loads(path.read_text())


def source_summary(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Flat keys an experiment copies into its ``metrics.json`` so that every number says which data
    produced it: ``data.<name>.source`` ("real" | "stand-in") and ``data.<name>.description``."""
    meta = read_meta(out_dir)
    name = meta.get("name", Path(out_dir).name)
    key = f"data.{name}" + (f".{meta['epoch']}" if meta.get("epoch") else "")
    return {f"{key}.source": meta["source"], f"{key}.description": meta["description"]}
