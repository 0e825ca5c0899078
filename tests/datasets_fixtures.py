"""Tiny files in the exact upstream formats and a manifest pinning them, for the dataset tests."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ldm.data.formats import write_cifar_archive, write_mnist_idx_gz, write_svhn_mat
from ldm.data.manifest import MANIFEST_PATH


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tiny_images(n: int, shape: tuple[int, ...], n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), rng.integers(0, n_classes, size=n).astype(np.int64)


def make_upstream_files(folder: Path) -> dict[str, Any]:
    """Write tiny CIFAR-10/CIFAR-100 archives, SVHN .mat files and MNIST idx .gz files into ``folder``.

    Returns {dataset: {"files": {name: bytes}, "members": {...}, "arrays": {split: (x, y)}}}.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    for name, variant, n_classes in (("cifar10", "cifar10", 10), ("cifar100", "cifar100", 100)):
        train = tiny_images(10, (32, 32, 3), n_classes, seed=1)
        test = tiny_images(4, (32, 32, 3), n_classes, seed=2)
        classes = [f"class_{i}" for i in range(n_classes)]
        archive = folder / ("cifar-10-python.tar.gz" if variant == "cifar10" else "cifar-100-python.tar.gz")
        members = write_cifar_archive(archive, train, test, classes, variant=variant)
        out[name] = {
            "files": {archive.name: archive.read_bytes()},
            "members": {k: md5(v) for k, v in members.items()},
            "arrays": {"train": train, "test": test},
            "classes": classes,
        }
    svhn_files, svhn_arrays = {}, {}
    for split, n, seed in (("train", 7, 3), ("test", 5, 4), ("extra", 3, 5)):
        x, y = tiny_images(n, (32, 32, 3), 10, seed)
        y[0] = 0  # a zero, stored as 10 in the .mat
        path = write_svhn_mat(folder / f"{split}_32x32.mat", x, y)
        svhn_files[path.name] = path.read_bytes()
        svhn_arrays[split] = (x, y)
    out["svhn"] = {"files": svhn_files, "arrays": svhn_arrays}
    mnist_files, mnist_arrays = {}, {}
    for split, prefix, n, seed in (("train", "train", 9, 6), ("test", "t10k", 4, 7)):
        x, y = tiny_images(n, (28, 28), 10, seed)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y.astype(np.uint8))):
            path = write_mnist_idx_gz(folder / f"{prefix}-{kind}-ubyte.gz", arr)
            mnist_files[path.name] = path.read_bytes()
        mnist_arrays[split] = (x[..., None], y)
    out["mnist"] = {"files": mnist_files, "arrays": mnist_arrays}
    return out


def write_test_manifest(path: Path, base_url: str, upstream: dict[str, Any], extra_files: dict[str, list] | None = None) -> Path:
    """A manifest like the bundled one whose files are the tiny ones, served under ``base_url/<dataset>/``."""
    real = yaml.safe_load(MANIFEST_PATH.read_text())
    manifest: dict[str, Any] = {}
    for name, info in upstream.items():
        entry = dict(real[name])
        files = []
        for spec in real[name]["files"]:
            if spec["name"] not in info["files"]:
                continue
            data = info["files"][spec["name"]]
            f = {
                "name": spec["name"],
                "urls": [f"{base_url}/{name}/{spec['name']}"],
                "size": len(data),
                "md5": md5(data),
            }
            for key in ("split", "optional"):
                if key in spec:
                    f[key] = spec[key]
            if "members" in spec:
                f["members"] = dict(info["members"])
            files.append(f)
        entry["files"] = files
        manifest[name] = entry
    for name in ("imagenet100", "hc11"):
        manifest[name] = real[name]
    for name, files in (extra_files or {}).items():
        manifest[name] = {**manifest.get(name, real[name]), **files} if isinstance(files, dict) else manifest[name]
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def tar_member_names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()
