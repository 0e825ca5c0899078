"""Benchmark (issue 9): batched two-view augmentation vs torchvision's per-image PIL pipeline, and the
training step's images/s with channels_last + bf16 on and off.

    python benchmarks/image_augmentation.py [--threads 2] [--batches 20] [--pipeline vicreg|symmetric]
        [--width 1.0] [--steps 3]

Part 1: one 256-image 32×32 uint8 batch, two views, the paper's pipeline (images.md §3):
* ours — :class:`ldm.data.image_transforms.BatchAugment` on the whole batch (CPU here; the same code on a GPU);
* baseline — torchvision.transforms (v1, PIL: RandomResizedCrop bicubic, ColorJitter, RandomGrayscale,
  GaussianBlur / RandomSolarize, flip, ToTensor, Normalize) applied per image in a DataLoader with
  ``threads`` worker processes, batch 256, two views per image (how solo-learn feeds a GPU).
Both use the same number of cores (``--threads``). Reports images/s (two views of an image = one image) and
the ratio. Two rows for ours: one process using the cores through torch's intra-op threads, and the
like-for-like one — one whole 256-image batch per DataLoader worker, as many workers as the baseline — whose
views are written straight into one shared-memory block, as the baseline's ``default_collate`` writes its
batches (without that, each view would be copied into shared memory once more: ~3.5 ms per 6 MB item).

Part 2: one training step (two views, forward + backward + LARS) of the CIFAR-stem ResNet-18 (``--width``)
with the plane kNN objective, fp32 / NCHW vs bf16 autocast + channels_last, images/s (CPU here).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch


def _pil_pipeline(name: str):
    import torchvision.transforms as T

    from ldm.data.image_transforms import PIPELINES, NORMALISATION

    p = PIPELINES[name]
    ops = [T.RandomResizedCrop(32, scale=p["scale"], interpolation=T.InterpolationMode.BICUBIC),
           T.RandomApply([T.ColorJitter(p["brightness"], p["contrast"], p["saturation"], p["hue"])], p=0.8),
           T.RandomGrayscale(p["grayscale_p"])]
    if p["blur_p"]:
        ops.append(T.RandomApply([T.GaussianBlur(13, (0.1, 2.0))], p=p["blur_p"]))
    if p["solarize_p"]:
        ops.append(T.RandomSolarize(128, p=p["solarize_p"]))
    ops += [T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(*NORMALISATION["cifar10"])]
    return T.Compose(ops)


class _TwoViews(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform) -> None:
        self.images, self.t = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        im = Image.fromarray(self.images[i])
        return self.t(im), self.t(im)


class _BatchViews(torch.utils.data.Dataset):
    """Item b = both views of the b-th 256-image batch, augmented batched (one torch thread per worker),
    written straight into shared memory, as the baseline's default collate writes its batches."""

    def __init__(self, images: np.ndarray, pipeline: str) -> None:
        from ldm.data.image_transforms import BatchAugment, pipeline_config

        self.x = torch.from_numpy(images)
        self.aug = BatchAugment(pipeline_config(pipeline))

    def __len__(self) -> int:
        return len(self.x) // 256

    def __getitem__(self, b: int):
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(b)
        xb = self.x[b * 256:(b + 1) * 256]
        size = self.aug.cfg.size
        # both views in one shared-memory block, allocated as torch's default_collate allocates a worker's
        # batch (``_new_shared``), so neither side pays a copy into shared memory
        e = torch.empty(0)
        views = e.new(e._typed_storage()._new_shared(2 * len(xb) * 3 * size * size)).view(2, len(xb), 3, size, size)
        return self.aug(xb, g, out=views[0]), self.aug(xb, g, out=views[1])


def _loader_rate(ds, threads: int, batch_size) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=threads)
    it = iter(loader)
    next(it)  # workers started
    t0 = time.perf_counter()
    n = 0
    for v1, _ in it:
        n += len(v1)
    return n / (time.perf_counter() - t0)


def bench_augmentation(threads: int, batches: int, pipeline: str) -> tuple[float, float, float]:
    from ldm.data.image_transforms import BatchAugment, pipeline_config

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (256 * batches, 32, 32, 3), dtype=np.uint8)
    # ours
    torch.set_num_threads(threads)
    aug = BatchAugment(pipeline_config(pipeline))
    x = torch.from_numpy(images)
    g = torch.Generator().manual_seed(0)
    aug(x[:256], g), aug(x[:256], g)  # warm-up
    t0 = time.perf_counter()
    for b in range(batches):
        xb = x[b * 256:(b + 1) * 256]
        aug(xb, g), aug(xb, g)
    ours = 256 * batches / (time.perf_counter() - t0)
    torch.set_num_threads(1)
    # ours, one whole batch per DataLoader worker (1 thread each): the same cores as the baseline
    ours_workers = _loader_rate(_BatchViews(images, pipeline), threads, None)
    # torchvision per image through a DataLoader
    base = _loader_rate(_TwoViews(images, _pil_pipeline(pipeline)), threads, 256)
    return ours, ours_workers, base


def bench_step(threads: int, width: float, steps: int, fast: bool) -> float:
    from ldm.objectives.registry import build_objective
    from ldm.training import images as ti
    from ldm.training.device import Device
    from ldm.training.lars import build_lars

    torch.set_num_threads(threads)
    cfg = ti.resolve_run("plane_knn", "cifar10", {"model": {"width": width}}, seed=1)
    dev = Device(torch.device("cpu"), "bf16" if fast else "fp32", fast)
    model = dev.model(ti.build_model(cfg, 10), conv=True)
    opt = build_lars(model, model.classifier, cfg["optim"], 256)
    obj = build_objective({**cfg["objective"], "float_parts": False})
    g = torch.Generator().manual_seed(0)
    x1 = dev.batch(torch.randn(256, 3, 32, 32, generator=g), image=True)
    x2 = dev.batch(torch.randn(256, 3, 32, 32, generator=g), image=True)
    y = torch.randint(0, 10, (256,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        with dev.autocast():
            _, z1, c1 = model(x1)
            _, z2, c2 = model(x2)
            loss = obj(z1.float(), z2.float())[0] + torch.nn.functional.cross_entropy(c1.float(), y)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 256 * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--pipeline", default=None, choices=["vicreg", "symmetric"], help="default: both")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    print(f"cores: {args.threads} (os.cpu_count() = {os.cpu_count()}); torch {torch.__version__}; "
          f"CUDA available: {torch.cuda.is_available()}")
    for pipe in ([args.pipeline] if args.pipeline else ["vicreg", "symmetric"]):
        ours, ours_w, base = bench_augmentation(args.threads, args.batches, pipe)
        print("\n| augmentation (256 x 32x32, 2 views) | pipeline | images/s | ratio |")
        print("|---|---|---|---|")
        print(f"| torchvision PIL per image, DataLoader {args.threads} workers | {pipe} | {base:.0f} | 1.00 |")
        print(f"| BatchAugment, whole batch, one process with {args.threads} torch threads | {pipe} | {ours:.0f} | {ours / base:.2f} |")
        print(f"| BatchAugment, one whole batch per DataLoader worker ({args.threads} workers, 1 thread each) | {pipe} | {ours_w:.0f} | {ours_w / base:.2f} |")
    print(f"\n| training step (ResNet-18 width {args.width}, CIFAR stem, batch 256 x 2 views, plane kNN, LARS) | images/s |")
    print("|---|---|")
    for fast in (False, True):
        ips = bench_step(args.threads, args.width, args.steps, fast)
        print(f"| {'bf16 autocast + channels_last' if fast else 'fp32, NCHW'} (CPU) | {ips:.1f} |")
    if not torch.cuda.is_available():
        print("\nNo CUDA device here: the CIFAR-10 epoch on a GPU (50 000 images, batch 256, AMP) was not measured.")


if __name__ == "__main__":
    main()
