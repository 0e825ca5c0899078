"""Image SSL training of the Table 2 / A1 rows (paper Sec. 6, App. B; images.md §1, §3).

A *row* (``ROWS``) fixes the objective (Table A1, :func:`ldm.objectives.registry.table_a1_config`), the
augmentation pipeline and the projector; a *run config* (``DEFAULTS`` ← profile overrides) fixes the
backbone width/stem, the optimiser (LARS, lr = base_lr × B/256, warm-up + cosine per iteration) and the
diagnostics. :func:`train` runs it through the shared resumable loop :func:`ldm.training.loop.fit` on a
:class:`~ldm.training.device.Device`; two views per image are augmented batched on that device
(:class:`ldm.data.image_transforms.BatchAugment`). The online linear probe is trained on detached
features during pretraining (the number the paper reports).

Paper vs code (design rule): ``variant: paper`` (default) uses the paper's objectives where the official
code differs (LogDet rows: exact log-det, joint covariance of [z1 ‖ z2], Eq. 9; sphere LogDet per dimension, log det C / d);
``variant: official`` uses the code that produced the published numbers (plane LogDet = VICReg /
VICReg2, sphere LogDet Taylor ρ⁴ with pooled covariance).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ldm.pipeline.config import layered_settings, merge_settings

log = logging.getLogger("ldm")

#: Row name → (Table A1 row, space, augmentation pipeline, projector kind).
ROWS: dict[str, dict[str, Any]] = {
    "plane_kde": {"table_row": "Plane Contr.", "space": "plane", "pipeline": "vicreg", "projector": "mlp"},
    "plane_kde_mi": {"table_row": "Plane Contr. + MI", "space": "plane", "pipeline": "vicreg", "projector": "mlp"},
    "plane_knn": {"table_row": "Plane kNN", "space": "plane", "pipeline": "vicreg", "projector": "mlp"},
    "plane_knn_mi": {"table_row": "Plane kNN + MI", "space": "plane", "pipeline": "vicreg", "projector": "mlp"},
    "plane_logdet": {"table_row": "Plane LogDet", "space": "plane", "pipeline": "vicreg", "projector": "vicreg"},
    "plane_logdet_mi": {"table_row": "Plane LogDet + MI", "space": "plane", "pipeline": "vicreg", "projector": "vicreg"},
    "sphere_kde": {"table_row": "Sphere Contr.", "space": "sphere", "pipeline": "symmetric", "projector": "mlp"},
    "sphere_kde_mi": {"table_row": "Sphere Contr. + MI", "space": "sphere", "pipeline": "symmetric", "projector": "mlp"},
    "sphere_knn": {"table_row": "Sphere kNN", "space": "sphere", "pipeline": "symmetric", "projector": "mlp"},
    "sphere_knn_mi": {"table_row": "Sphere kNN + MI", "space": "sphere", "pipeline": "symmetric", "projector": "mlp"},
    "sphere_logdet": {"table_row": "Sphere LogDet", "space": "sphere", "pipeline": "symmetric", "projector": "mlp"},
    "sphere_logdet_mi": {"table_row": "Sphere LogDet + MI", "space": "sphere", "pipeline": "symmetric", "projector": "mlp"},
    # no official code (images.md §1.3): softmax projector output, Dirichlet KDE, J_LDM; pipeline assumed
    "simplex_kde": {"table_row": "Simplex Contr.", "space": "simplex", "pipeline": "symmetric", "projector": "mlp"},
}

#: Projector sizes (hidden, out) per space and scale (images.md §1).
PROJECTOR_SIZES = {
    "plane": {"cifar": (2048, 2048), "imagenet": (2048, 2048)},
    "sphere": {"cifar": (2048, 256), "imagenet": (4096, 512)},
    "simplex": {"cifar": (2048, 256), "imagenet": (4096, 512)},
}

#: Run defaults = the paper's CIFAR setting (App. B; images.md §3).
DEFAULTS: dict[str, Any] = {
    "variant": "paper",
    "model": {"stem": "cifar", "width": 1.0, "projector_scale": 1.0},
    "augment": {},  # overrides of the row's pipeline (e.g. size)
    "optim": {"epochs": 1000, "batch_size": 256, "base_lr": 0.3, "warmup_epochs": 10, "weight_decay": 1e-4,
              "momentum": 0.9, "eta": 0.02, "clip_lr": True, "exclude_bias_n_norm": True, "classifier_lr": 0.1,
              "max_steps": None},
    "objective": {},  # overrides of the row's objective parameters
    "grad_cos_every": 50,
    "eval_every": 1,
    "sync_bn": True,
    "train_subset": None,  # pretrain on the first N training images (images.md §8: 10 k of CIFAR-10)
}


def resolve_run(row: str, dataset: str, overrides: Mapping[str, Any] | None = None, seed: int = 1) -> dict[str, Any]:
    """Full run config of ``row`` on ``dataset``: DEFAULTS ← overrides, plus the row's objective
    (Table A1 + dataset precision overrides), pipeline and projector."""
    from ldm.objectives.registry import build_objective, table_a1_config

    if row not in ROWS:
        raise KeyError(f"images: unknown row {row!r}; known rows: {sorted(ROWS)}")
    cfg = merge_settings(DEFAULTS, overrides, "images run config", shallow=("augment", "objective"))
    spec = ROWS[row]
    if cfg["variant"] not in ("paper", "official"):
        raise ValueError(f"images.variant must be 'paper' or 'official', got {cfg['variant']!r}")
    table_ds = dataset if dataset in ("cifar10", "cifar100", "svhn", "imagenet100") else "cifar10"
    objective = table_a1_config(spec["table_row"], table_ds, variant=cfg["variant"])
    objective.update(cfg["objective"])
    build_objective(objective)  # validates (raises naming the bad key)
    scale = "imagenet" if dataset == "imagenet100" else "cifar"
    hidden, out = PROJECTOR_SIZES[spec["space"]][scale]
    ps = float(cfg["model"]["projector_scale"])
    cfg["model"]["projector"] = {"kind": spec["projector"], "hidden": max(8, round(hidden * ps)),
                                 "out": max(8, round(out * ps))}
    if cfg["model"]["stem"] not in ("cifar", "imagenet"):
        raise ValueError(f"images.model.stem must be cifar or imagenet, got {cfg['model']['stem']!r}")
    from ldm.data.image_transforms import pipeline_config

    pipe = spec["pipeline"] + ("_imagenet" if scale == "imagenet" else "")
    cfg["augment"] = pipeline_config(pipe, dataset, **cfg["augment"]).to_dict()
    cfg.update(row=row, table_row=spec["table_row"], space=spec["space"], pipeline=pipe, dataset=dataset,
               seed=int(seed), objective=objective)
    return cfg


# ------------------------------------------------------------------------------------------
# entropy terms for the gradient-cosine diagnostic (Fig. A2; images.md §5)
# ------------------------------------------------------------------------------------------

def entropy_pair(objective: Any, z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """Differentiable (entropy term of the optimised loss, entropy term of its MI / no-MI counterpart).

    LDM rows: Ĥ(z1)+Ĥ(z2) vs Ĥ(z1, z2) with the row's estimator. VICReg rows (official plane LogDet): the
    VICReg regulariser (25·V + 1·C, per view) vs VICReg2's (17.5·V + 0.75·C, pooled), negated.
    """
    from ldm.objectives.objective import LDMObjective, VICRegObjective, vicreg_loss

    if isinstance(objective, LDMObjective):
        e1, e2 = objective.model.embed(z1), objective.model.embed(z2)
        single = objective.estimator.single(e1) + objective.estimator.single(e2)
        joint = objective.estimator.joint(e1, e2)
        return (single, joint) if objective.mi else (joint, single)
    if isinstance(objective, VICRegObjective):
        def reg(vw: float, cw: float, mode: str) -> Tensor:
            _, _, var, cov = vicreg_loss(z1, z2, 0.0, vw, cw, cov_mode=mode)
            return -(vw * var + cw * cov)
        mine = reg(objective.var_weight, objective.cov_weight, objective.cov_mode)
        other = reg(17.5, 0.75, "pooled") if objective.cov_mode == "per_view" else reg(25.0, 1.0, "per_view")
        return mine, other
    raise TypeError(f"no entropy pair for objective {type(objective).__name__}")


def grad_cosine(a: Tensor, b: Tensor, params: list[Tensor]) -> float:
    """cos(∂a/∂θ, ∂b/∂θ) over the flattened gradients (no double-backward graph)."""
    ga = torch.autograd.grad(a, params, retain_graph=True, allow_unused=True)
    gb = torch.autograd.grad(b, params, retain_graph=True, allow_unused=True)
    va = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().float() for g, p in zip(ga, params)])
    vb = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten().float() for g, p in zip(gb, params)])
    return float(F.cosine_similarity(va, vb, dim=0))


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------

def _generator(*keys: int) -> torch.Generator:
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] % (2**63))
    return torch.Generator().manual_seed(seed)


def data_fits_on(device: Any, nbytes: int, share: float = 0.5) -> bool:
    """Whether a training set of ``nbytes`` should live on ``device`` for the whole run: always on the CPU;
    on a GPU if it takes at most ``share`` of the memory free now (ImageNet-100 at 256 px is ~25 GB per
    process: on the GPU of an 80 GB card, in host memory on a 40 GB one), else it stays in host memory and
    each batch is copied over."""
    if device.device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device.device)
    return nbytes <= share * free


def build_model(cfg: Mapping[str, Any], n_classes: int):
    """The run's network at its initialisation (seeded by the run seed): also the random-init floor."""
    from ldm.models.ssl_image import ImageSSL

    torch.manual_seed(int(cfg["seed"]))
    return ImageSSL.from_config(cfg["model"], n_classes)


def train(
    cfg: Mapping[str, Any],
    train_images: Tensor,
    train_labels: Tensor,
    out_dir: Path | str,
    *,
    test_images: Optional[Tensor] = None,
    test_labels: Optional[Tensor] = None,
    n_classes: Optional[int] = None,
    device: Any = None,
    resume_key: Optional[Mapping[str, Any]] = None,
    on_epoch: Optional[Callable[[int, Mapping[str, float]], None]] = None,
    progress: bool = False,
    keep_checkpoints: bool = False,
    step_hook: Optional[Callable[[int], None]] = None,
) -> dict[str, Any]:
    """Pretrain one run; writes ``model.pt`` and ``history.json`` to ``out_dir``; returns the history.

    ``train_images``: uint8 (N, H, W, C). Under torchrun (``torch.distributed`` initialised) each rank
    takes its slice of every global batch and the embeddings are gathered with gradient.
    """
    from ldm.data.image_transforms import AugmentConfig, BatchAugment, normalise_batch
    from ldm.objectives.registry import build_objective
    from ldm.pipeline.io import save_torch, write_json
    from ldm.training.device import Device
    from ldm.training.distributed import gather_with_grad, world
    from ldm.training.lars import build_lars, set_lr
    from ldm.training.loop import fit

    device = device or Device(torch.device("cpu"))
    out_dir = Path(out_dir)
    rank, size = world()
    n_classes = int(n_classes or int(train_labels.max()) + 1)
    model = build_model(cfg, n_classes)
    if size > 1 and cfg.get("sync_bn", True) and device.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = device.model(model, conv=True)
    net = TwoViews(model)
    if size > 1:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.device.index] if device.device.type == "cuda" else None)
    o = cfg["optim"]
    B = int(o["batch_size"])
    if B % size:
        raise ValueError(f"images.optim.batch_size={B} is not divisible by the world size {size}")
    if cfg.get("train_subset"):
        train_images, train_labels = train_images[:int(cfg["train_subset"])], train_labels[:int(cfg["train_subset"])]
    n = len(train_images)
    if n < B:
        raise ValueError(f"images: batch_size {B} exceeds the {n} training images")
    steps_per_epoch = n // B  # drop_last
    total = int(o["epochs"]) * steps_per_epoch
    if o.get("max_steps"):
        total = min(total, int(o["max_steps"]))
    warmup = int(round(float(o["warmup_epochs"]) * steps_per_epoch))
    optimizer = build_lars(model, model.classifier, o, B)
    objective = build_objective({**cfg["objective"], "float_parts": False})
    augment = BatchAugment(AugmentConfig.from_dict(cfg["augment"]))
    images = torch.as_tensor(np.asarray(train_images))
    if data_fits_on(device, images.numel() * images.element_size()):
        images = images.to(device.device)  # else each batch is copied over (same numbers either way)
    labels = train_labels.to(device.device)
    seed = int(cfg["seed"])
    ssl_params = [p for name, p in model.named_parameters() if not name.startswith("classifier.")]
    cos_every = int(cfg.get("grad_cos_every") or 0)

    def batches(epoch: int):
        perm = torch.randperm(n, generator=_generator(seed, 1, epoch))
        for b in range(steps_per_epoch):
            idx = perm[b * B:(b + 1) * B][rank * (B // size):(rank + 1) * (B // size)]
            yield idx, (seed, 2, epoch, b)

    def step_fn(batch, step: int):
        idx, key = batch
        if step_hook is not None:
            step_hook(step)
        lr = set_lr(optimizer, step, total, warmup)
        x = images[idx.to(images.device)].to(device.device, non_blocking=True)
        y = labels[idx.to(device.device)]
        g1, g2 = _generator(*key, 1), _generator(*key, 2)
        x1 = device.batch(augment(x, g1), image=True)  # fp32 views whatever the precision (BatchAugment.apply)
        x2 = device.batch(augment(x, g2), image=True)
        (_, z1, c1), (_, z2, c2) = net(x1, x2)
        with device.full_precision():  # the entropy estimators and the probe loss in fp32
            z1, z2 = z1.float(), z2.float()
            z1g, z2g = gather_with_grad(z1), gather_with_grad(z2)
            ssl, parts = objective(z1g, z2g)
            ce = 0.5 * (F.cross_entropy(c1.float(), y) + F.cross_entropy(c2.float(), y))
            loss = ssl + ce
        terms = {"ssl": ssl.detach(), "online_ce": ce.detach(),
                 **{k: v for k, v in parts.items() if k != "loss"}}
        metrics: dict[str, float] = {}
        if cos_every and step % cos_every == 0 and size == 1 and torch.isfinite(ssl):
            with device.full_precision():
                h_opt, h_other = entropy_pair(objective, z1g, z2g)
            metrics = {"grad_cos": grad_cosine(h_opt, h_other, ssl_params), "lr": lr}
        return loss, terms, metrics

    test_x = None
    if test_images is not None:
        test_x = normalise_batch(test_images, cfg["augment"]["mean"], cfg["augment"]["std"], cfg["augment"]["size"])

    def end_epoch(epoch: int, step: int, history: dict) -> dict[str, float]:
        last = step >= total or epoch + 1 == int(o["epochs"])
        every = int(cfg.get("eval_every") or 0)
        if test_x is None or rank != 0 or not (last or (every and (epoch + 1) % every == 0)):
            return {}
        logits = predict_logits(model, test_x, device)
        t1, t5 = topk_accuracy(logits, test_labels, (1, 5))
        return {"test/online_top1": t1, "test/online_top5": t5}

    t0 = time.perf_counter()
    history = fit(model=model, optimizer=optimizer, scheduler=None, epochs=int(o["epochs"]), batches=batches,
                  step_fn=step_fn, ckpt_dir=out_dir / "checkpoints" / (f"rank{rank}" if rank else ""), end_epoch=end_epoch, on_epoch=on_epoch,
                  max_steps=total, extra={"row": cfg["row"], "seed": seed}, resume_key=resume_key,
                  progress=progress, desc=f"images {cfg['row']} seed {seed}", device=device)
    history["extra"]["train_time_s"] = time.perf_counter() - t0
    history["extra"]["steps_per_epoch"] = steps_per_epoch
    history["extra"]["total_steps"] = total
    if size > 1:
        torch.distributed.barrier()  # every rank has written its last checkpoint
    if rank == 0:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_torch({"state_dict": state, "config": dict(cfg), "n_classes": n_classes}, out_dir / "model.pt")
        write_json(out_dir / "history.json", history)
        if not keep_checkpoints:
            shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return history


class TwoViews(torch.nn.Module):
    """Both views through the network in one call (one DDP forward; BatchNorm statistics per view, as
    solo-learn's per-view forward)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x1: Tensor, x2: Tensor):  # noqa: D102
        return self.model(x1), self.model(x2)


def load_model(path: Path | str):
    """(model on the CPU in eval mode, config) from a ``model.pt``."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=False)
    cfg = blob["config"]
    model = build_model(cfg, int(blob["n_classes"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval(), cfg


@torch.no_grad()
def predict_logits(model, x: Tensor, device: Any = None, batch: int = 1024) -> Tensor:
    """Online-probe logits of normalised images ``x`` (eval mode)."""
    was = model.training
    model.eval()
    out = []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        if device is not None:
            xb = device.batch(xb, image=True)
        out.append(model(xb)[2].float().cpu())
    model.train(was)
    return torch.cat(out)


@torch.no_grad()
def embed(model, x: Tensor, batch: int = 1024, device: Any = None) -> tuple[Tensor, Tensor]:
    """(backbone features, projector outputs) of normalised images ``x`` in eval mode."""
    model.eval()
    hs, zs = [], []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        if device is not None:
            xb = device.batch(xb, image=True)
        h, z, _ = model(xb)
        hs.append(h.float().cpu())
        zs.append(z.float().cpu())
    return torch.cat(hs), torch.cat(zs)


def topk_accuracy(logits: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[float]:
    """Top-k accuracies in percent (k capped at the number of classes)."""
    labels = labels.to(logits.device)
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels.view(-1, 1)
    return [100.0 * float(hit[:, :min(k, logits.shape[1])].any(1).float().mean()) for k in ks]


# ------------------------------------------------------------------------------------------
# torchrun entry point (multi-GPU / multi-node DDP; docs/images.md)
# ------------------------------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> None:
    """``torchrun --nproc_per_node=N -m ldm.training.images --dataset cifar10 --row plane_knn --seed 1
    --data data/cifar10 --out results/images/cifar10/plane_knn/seed1 [--config config/paper.yaml]``.

    Each process trains on its slice of every global batch; the embeddings are all-gathered with gradient
    so each entropy estimate sees the global batch; rank 0 writes ``model.pt`` / ``history.json``.
    Settings come from the profile's ``images`` section (defaults <- dataset/row overrides) and ``compute``.
    """
    import argparse
    import json

    import yaml

    from ldm.data.image_datasets import load_images
    from ldm.training.device import Device
    from ldm.training.distributed import init_from_env

    ap = argparse.ArgumentParser(prog="python -m ldm.training.images", description=main.__doc__)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--row", required=True, choices=sorted(ROWS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", required=True, help="folder with train.npz / test.npz")
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="config/paper.yaml")
    ap.add_argument("--set", default="{}", help="JSON overrides of the run config")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    profile = yaml.safe_load(Path(args.config).read_text())
    over = merge_settings(layered_settings(profile.get("images") or {}, dataset=args.dataset, row=args.row),
                          json.loads(args.set))
    rank, size = init_from_env()
    compute = dict(profile.get("compute") or {})
    if compute.get("device", "auto") != "cpu" and torch.cuda.is_available():
        compute["device"] = "cuda"
    device = Device.from_settings(compute)
    if device.device.type == "cuda":
        device.device = torch.device("cuda", torch.cuda.current_device())
    cfg = resolve_run(args.row, args.dataset, over, seed=args.seed)
    xtr, ytr = load_images(Path(args.data) / "train.npz")
    xte, yte = load_images(Path(args.data) / "test.npz")
    log.info(f"rank {rank}/{size} on {device.describe()}: {args.row} {args.dataset} seed {args.seed}")
    train(cfg, xtr, ytr, args.out, test_images=xte, test_labels=yte, device=device,
          resume_key={"cfg": json.dumps(cfg, sort_keys=True, default=str), "world": size})
    if size > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
