"""Benchmark: time to get a CIFAR-10-sized training set (50 000 images, 32×32×3) into tensors.

    python benchmarks/dataset_loading.py [--n 50000] [--batch 256] [--threads 1]

Prepares the CIFAR-10 stand-in at CIFAR-10 size once, through the pipeline's entry point
(``ldm.data.datasets.prepare("cifar10", {"standin": true, ...})``; its build time is printed too), which
writes the prepared artifact ``train.npz``; writes the same images as the files of
``cifar-10-batches-py/`` (the upstream python-pickle format); then measures, in the same run and on the
same images:

* ``prepared npz → uint8 tensor``: :func:`ldm.data.image_datasets.load_images` (one read of the array);
* ``prepared npz → one epoch of float batches``: the above, then every batch of ``--batch`` images
  converted to float in [0, 1], channels first (what a training loop does on the fly);
* ``torchvision CIFAR10 construct``: ``torchvision.datasets.CIFAR10(root)`` (md5 check + unpickling);
* ``torchvision CIFAR10 per-image epoch``: one epoch through ``DataLoader(CIFAR10(..., transform=ToTensor()))``,
  i.e. one PIL image decoded and converted per item (``num_workers=0``).

Times are wall seconds of one pass each (the files are in the page cache after writing, for both paths).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="training images (CIFAR-10: 50 000)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets as tvd
    from torchvision.transforms import ToTensor

    from ldm.data.datasets import prepare
    from ldm.data.formats import cifar_members
    from ldm.data.image_datasets import load_images

    torch.set_num_threads(args.threads)
    rows: list[tuple[str, float, int]] = []

    with tempfile.TemporaryDirectory(prefix="ldm-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        prepare("cifar10", {"standin": True, "standin_options": {"n_train": args.n, "n_test": 100}}, tmp / "cifar10")
        build_s = time.perf_counter() - t
        npz = tmp / "cifar10" / "train.npz"
        with np.load(npz) as data:
            images, labels = data["images"], data["labels"]
        classes = [f"class_{i}" for i in range(10)]
        test = (images[:10], labels[:10])
        members = cifar_members((images, labels), test, classes)
        import hashlib

        for name, payload in members.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(payload)
        md5 = {name.split("/", 1)[1]: hashlib.md5(payload).hexdigest() for name, payload in members.items()}
        # torchvision's own CIFAR10 class, told the checksums of these batch files
        CIFAR10 = type("CIFAR10", (tvd.CIFAR10,), {
            "train_list": [[f, md5[f]] for f, _ in tvd.CIFAR10.train_list],
            "test_list": [[f, md5[f]] for f, _ in tvd.CIFAR10.test_list],
            "meta": {**tvd.CIFAR10.meta, "md5": md5["batches.meta"]},
        })

        t = time.perf_counter()
        x, y = load_images(npz)
        rows.append(("prepared npz -> uint8 tensor [N,32,32,3]", time.perf_counter() - t, len(x)))

        t = time.perf_counter()
        x, y = load_images(npz)
        seen = 0
        for i in range(0, len(x), args.batch):
            batch = x[i : i + args.batch].permute(0, 3, 1, 2).float().div_(255)
            seen += len(batch)
        rows.append(("prepared npz -> one epoch of float batches", time.perf_counter() - t, seen))

        t = time.perf_counter()
        ds = CIFAR10(str(tmp), train=True, download=False)
        rows.append(("torchvision CIFAR10 construct (md5 + unpickle)", time.perf_counter() - t, len(ds)))

        t = time.perf_counter()
        ds = CIFAR10(str(tmp), train=True, download=False, transform=ToTensor())
        seen = 0
        for batch, _ in DataLoader(ds, batch_size=args.batch, num_workers=0):
            seen += len(batch)
        rows.append(("torchvision CIFAR10 per-image epoch (PIL + ToTensor)", time.perf_counter() - t, seen))
        # both paths hold the same images
        assert np.array_equal(ds.data, images), "torchvision read different images"
        size_mb = npz.stat().st_size / 2**20

    print(f"# dataset loading, {args.n} images 32x32x3, batch {args.batch}, torch threads {args.threads}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]}, torch {torch.__version__}")
    print(f"# stand-in build (datasets.prepare cifar10 standin, {args.n} + 100 images): {build_s:.2f} s; train.npz {size_mb:.0f} MiB")
    print(f"{'path':<56} {'seconds':>9} {'images/s':>12}")
    base = rows[-1][1]
    for name, seconds, n in rows:
        print(f"{name:<56} {seconds:>9.3f} {n / seconds:>12.0f}")
    print(f"# one epoch: prepared tensors {base / rows[1][1]:.0f}x faster than torchvision's per-image path")


if __name__ == "__main__":
    main()
