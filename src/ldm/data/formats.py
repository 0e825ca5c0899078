"""Writers of the upstream file formats (CIFAR python pickles, SVHN ``.mat``, MNIST idx).

The real clients (torchvision's dataset classes) read these formats. Writing them from arrays
lets tests serve tiny files in the exact upstream format from a local HTTP server, and lets the
loading benchmark put a CIFAR-10-sized stand-in through ``torchvision.datasets.CIFAR10``.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """[N, 32, 32, 3] uint8 → the CIFAR row layout [N, 3072] (all R, then G, then B, row-major)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"CIFAR images must be uint8 [N, 32, 32, 3], got {images.dtype} {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(payload))


def cifar_members(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: Sequence[str],
    *,
    variant: str = "cifar10",
) -> dict[str, bytes]:
    """The files of ``cifar-10-batches-py/`` (5 train batches) or ``cifar-100-python/`` as bytes."""
    if variant == "cifar10":
        folder = "cifar-10-batches-py"
        members: dict[str, bytes] = {}
        chunks = np.array_split(np.arange(len(train[0])), 5)
        for i, idx in enumerate(chunks, start=1):
            entry = {
                "batch_label": f"training batch {i} of 5",
                "labels": [int(v) for v in train[1][idx]],
                "data": _cifar_rows(train[0][idx]),
                "filenames": [f"img_{j:06d}.png" for j in idx],
            }
            members[f"{folder}/data_batch_{i}"] = pickle.dumps(entry, protocol=2)
        members[f"{folder}/test_batch"] = pickle.dumps(
            {
                "batch_label": "testing batch 1 of 1",
                "labels": [int(v) for v in test[1]],
                "data": _cifar_rows(test[0]),
                "filenames": [f"test_{j:06d}.png" for j in range(len(test[1]))],
            },
            protocol=2,
        )
        members[f"{folder}/batches.meta"] = pickle.dumps(
            {"label_names": list(classes), "num_cases_per_batch": len(chunks[0]), "num_vis": 3072}, protocol=2
        )
        return members
    if variant == "cifar100":
        folder = "cifar-100-python"
        out = {}
        for split, (images, labels) in (("train", train), ("test", test)):
            out[f"{folder}/{split}"] = pickle.dumps(
                {
                    "batch_label": f"{split}ing batch 1 of 1",
                    "fine_labels": [int(v) for v in labels],
                    "coarse_labels": [int(v) // 5 for v in labels],
                    "data": _cifar_rows(images),
                    "filenames": [f"{split}_{j:06d}.png" for j in range(len(labels))],
                },
                protocol=2,
            )
        out[f"{folder}/meta"] = pickle.dumps(
            {"fine_label_names": list(classes), "coarse_label_names": [f"coarse_{i}" for i in range(20)]}, protocol=2
        )
        return out
    raise ValueError(f"variant must be 'cifar10' or 'cifar100', got {variant!r}")


def write_cifar_archive(
    path: str | os.PathLike,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: Sequence[str],
    *,
    variant: str = "cifar10",
) -> dict[str, bytes]:
    """Write a ``cifar-10-python.tar.gz``-style archive; returns its members (name → bytes)."""
    members = cifar_members(train, test, classes, variant=variant)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            _add_bytes(tar, name, payload)
    return members


def write_svhn_mat(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write an SVHN format-2 ``.mat``: ``X`` uint8 [32, 32, 3, N], ``y`` [N, 1] with 10 for digit 0."""
    from scipy.io import savemat

    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"SVHN images must be uint8 [N, 32, 32, 3], got {images.dtype} {images.shape}")
    y = np.asarray(labels, dtype=np.uint8).copy()
    y[y == 0] = 10
    savemat(str(path), {"X": np.ascontiguousarray(images.transpose(1, 2, 3, 0)), "y": y.reshape(-1, 1)})
    return Path(path)


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx (SN3 "pascalvincent") encoding of a uint8 array: magic 0x0000 08 <ndim>, dims, data."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"idx writer supports uint8 only, got {array.dtype}")
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def write_mnist_idx_gz(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write a gzip'd idx file (``train-images-idx3-ubyte.gz`` style)."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:
        fh.write(idx_bytes(array))
    return Path(path)
