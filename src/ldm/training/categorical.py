"""Training and evaluation of categorical encoders (App. A.8; images.md §2; experiment ``categorical``).

One run = a categorical encoder (backbone → MLP head → n = 10 logits) trained on pairs of two different
images of the same digit with one of the categorical objectives of the objective library:

    objective  paper label     loss (images.md §2)               p schedule
    dm         "DM"            −I − T·Ĥ(c1, c2)                   0.8 → 0.992 (annealed)
    dm_mi      "DM+MI"         −I − T·m·Ĥ(c̄), m = 2               0.8 → 0.992, or constant 0.8
    mi         "MI"            −(2Ĥ(c̄) − Ĥ(c1, c2))               (T unused)

:data:`PAPER_RUNS` are the four runs of the paper. Training goes through :func:`ldm.training.fit`
(checkpoint per epoch, resume, non-finite check naming step and term); the temperature of each epoch
comes from :class:`ldm.objectives.categorical.CategoricalAnnealing`; the pairs of each epoch are drawn by
:class:`ldm.data.pairs.SameClassPairs` from a generator seeded by (seed, epoch).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from ldm.objectives.categorical import CategoricalAnnealing
from ldm.data.pairs import SameClassPairs
from ldm.evaluation.clustering import clustering_report
from ldm.models.categorical import CategoricalEncoder, build_backbone
from ldm.objectives.registry import CATEGORICAL_RUNS, build_objective
from ldm.pipeline.config import merge_settings
from ldm.pipeline.io import save_torch, write_json
from ldm.objectives.objective import CategoricalObjective
from ldm.training.device import Device
from ldm.training.loop import fit

__all__ = [
    "OBJECTIVES",
    "RUN_DEFAULTS",
    "PAPER_RUNS",
    "PAPER_ACCURACY",
    "resolve_run",
    "read_prepared",
    "build_encoder",
    "build_categorical_objective",
    "annealing",
    "fingerprint",
    "train_categorical",
    "evaluate_encoder",
    "finish_run",
    "load_encoder",
    "backbone_features",
]

#: run objective -> objective-library config (ldm.objective_registry.CATEGORICAL_RUNS)
OBJECTIVES: dict[str, dict[str, Any]] = {
    "dm": CATEGORICAL_RUNS["dm"],
    "dm_mi": CATEGORICAL_RUNS["dm_mi"],
    "mi": CATEGORICAL_RUNS["mi_only"],
}

#: Settings of one run and their defaults (the paper's, images.md §2).
RUN_DEFAULTS: dict[str, Any] = {
    "objective": "dm",            # one of OBJECTIVES
    "multiplier": 2.0,            # m of dm_mi (H(c1) + H(c2) ≈ 2 Ĥ(c̄))
    "p_start": 0.8,               # P(c2 = c1) in epoch 0
    "p_end": 0.992,               # annealing target; null = constant p_start
    "anneal_rate": 4.0,           # T ← T − (rate/E)(T − T_end) after every schedule epoch
    "anneal_epochs": 30,          # E of that update (official: max_epochs = 30); null = this run's epochs
    "anneal_pairs": 60000,        # pairs per schedule epoch (the paper's epoch); null = this run's epoch
    "n_categories": 10,
    "encoder": {"name": "resnet18", "stem": "imagenet", "width": 1.0},
    "head_hidden": 128,
    "image_size": 32,             # 28 → 32 bicubic
    "channels": 3,                # gray → RGB
    "lr": 3.0e-5,                 # AdamW
    "betas": [0.9, 0.95],
    "weight_decay": 0.02,
    "batch_size": 256,
    "epochs": 30,
    "pairs_per_epoch": 60000,     # null = number of training images
    "label_weights": "uniform",   # label of a pair: uniform over digits (official)
    "seed": 1,
    "eval_every": 1,              # test-set clustering accuracy every N epochs (0 = never)
    "threads": 1,
}

#: The four runs of App. A.8 (run_mnist.sh): overrides of RUN_DEFAULTS.
PAPER_RUNS: dict[str, dict[str, Any]] = {
    "dm": {"objective": "dm", "p_start": 0.8, "p_end": 0.992},
    "dm_mi": {"objective": "dm_mi", "p_start": 0.8, "p_end": 0.992},
    "dm_mi_p08": {"objective": "dm_mi", "p_start": 0.8, "p_end": None},
    "mi": {"objective": "mi", "p_start": 0.8, "p_end": None},
}

#: The paper's clustering accuracies (greedy assignment, MNIST test set, seed 1).
PAPER_ACCURACY: dict[str, float] = {"dm": 0.989, "dm_mi": 0.892, "dm_mi_p08": 0.989, "mi": 0.699}


def resolve_run(overrides: Mapping[str, Any] | None = None, where: str = "categorical run") -> dict[str, Any]:
    """RUN_DEFAULTS ← overrides, validated; errors name the key (prefixed by ``where``)."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(RUN_DEFAULTS))
    if unknown:
        raise KeyError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(RUN_DEFAULTS)}")
    cfg = merge_settings(RUN_DEFAULTS, overrides)
    if isinstance(overrides.get("encoder"), Mapping) and "name" in overrides["encoder"] \
            and overrides["encoder"]["name"] != RUN_DEFAULTS["encoder"]["name"]:
        cfg["encoder"] = dict(overrides["encoder"])  # another backbone: don't inherit resnet options
    if cfg["objective"] not in OBJECTIVES:
        raise ValueError(f"{where}: objective={cfg['objective']!r}; allowed values: {sorted(OBJECTIVES)}")
    for key in ("batch_size", "epochs", "n_categories", "head_hidden", "threads"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ValueError(f"{where}: {key}={cfg[key]!r}; allowed: an integer >= 1")
    if cfg["pairs_per_epoch"] is not None and (not isinstance(cfg["pairs_per_epoch"], int) or cfg["pairs_per_epoch"] < cfg["batch_size"]):
        raise ValueError(f"{where}: pairs_per_epoch={cfg['pairs_per_epoch']!r}; allowed: null or an integer >= batch_size")
    if not (isinstance(cfg["lr"], (int, float)) and cfg["lr"] > 0):
        raise ValueError(f"{where}: lr={cfg['lr']!r}; allowed: a number > 0")
    for key in ("anneal_epochs", "anneal_pairs"):
        v = cfg[key]
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{where}: {key}={v!r}; allowed: null or an integer >= 1")
    try:
        annealing(cfg, n_train=cfg["pairs_per_epoch"] or cfg["batch_size"])
    except ValueError as err:
        raise ValueError(f"{where}: p_start/p_end/anneal_rate: {err}") from None
    return cfg


def read_prepared(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """``images`` uint8 (N, H, W, C) and ``labels`` int64 (N,) of a prepared split (contract.md), read with
    :func:`ldm.data.image_datasets.load_images` (errors name the file and the bad key)."""
    from ldm.data.image_datasets import load_images

    images, labels = load_images(path)
    if labels.dim() != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{path}: 'labels' must be (N,) with N = {images.shape[0]}, got shape {tuple(labels.shape)}")
    return images.numpy(), labels.numpy()


def build_encoder(cfg: Mapping[str, Any]) -> CategoricalEncoder:
    """The run's categorical encoder (backbone + 128-unit head), initialised from ``cfg['seed']``."""
    torch.manual_seed(int(cfg["seed"]))
    backbone = build_backbone(cfg["encoder"], in_channels=int(cfg["channels"]))
    return CategoricalEncoder(backbone, int(cfg["n_categories"]), int(cfg["head_hidden"]))


def build_categorical_objective(cfg: Mapping[str, Any]) -> CategoricalObjective:
    """The run's objective from the objective library (softmax applied by the latent model)."""
    spec = {**OBJECTIVES[cfg["objective"]], "p": float(cfg["p_start"]), "n": int(cfg["n_categories"]),
            "from_logits": True, "float_parts": False}
    if cfg["objective"] == "dm_mi":
        spec["multiplier"] = float(cfg["multiplier"])
    obj = build_objective(spec)
    assert isinstance(obj, CategoricalObjective)
    return obj


def annealing(cfg: Mapping[str, Any], n_train: int | None = None) -> CategoricalAnnealing:
    """The run's p / temperature schedule on a clock of pairs seen (images.md §2): T moves
    ``anneal_rate / anneal_epochs`` of the remaining gap per ``anneal_pairs`` pairs (the paper: 4/30 per
    epoch of 60 000 pairs), i.e. ``pace`` = pairs_per_epoch / anneal_pairs schedule epochs per training
    epoch. The paper profile (60 000-pair epochs, 30 of them) runs the official per-epoch update exactly; a
    profile with fewer pairs anneals as far as the pairs it trains on take the paper's run. ``n_train``
    (training images) is the epoch length when ``pairs_per_epoch`` is null."""
    per_epoch = cfg["pairs_per_epoch"] or n_train
    if cfg["anneal_pairs"] is None:
        pace = 1.0
    elif per_epoch is None:
        raise ValueError("pairs_per_epoch is null: the number of training images (n_train) is needed for anneal_pairs")
    else:
        pace = float(per_epoch) / float(cfg["anneal_pairs"])
    return CategoricalAnnealing(p_start=float(cfg["p_start"]),
                                p_end=None if cfg["p_end"] is None else float(cfg["p_end"]),
                                epochs=int(cfg["anneal_epochs"] or cfg["epochs"]), n=int(cfg["n_categories"]),
                                rate=float(cfg["anneal_rate"]), pace=pace)


def fingerprint(x: torch.Tensor, labels: np.ndarray) -> str:
    """Cheap identity of a training set: shape, all labels and every ⌈N/256⌉-th image."""
    import hashlib

    h = hashlib.sha1()
    h.update(str(tuple(x.shape)).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    step = max(1, x.shape[0] // 256)
    h.update(x[::step].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_categorical(
    cfg: Mapping[str, Any],
    train_x: torch.Tensor,
    train_labels: np.ndarray,
    ckpt_dir: Path | str,
    *,
    eval_x: Optional[torch.Tensor] = None,
    eval_labels: Optional[np.ndarray] = None,
    on_epoch: Optional[Callable[[int, Mapping[str, float]], None]] = None,
    progress: bool = True,
    data_fingerprint: Optional[str] = None,
    device: Optional[Device] = None,
    resume_key: Optional[str] = None,
) -> tuple[CategoricalEncoder, dict[str, Any]]:
    """Train one run on preprocessed images ``train_x`` (N, C, S, S); resumes from ``ckpt_dir``.

    Per-epoch metrics (history['epochs']): train loss terms, ``p`` and ``temperature`` of the epoch and,
    every ``eval_every`` epochs, test clustering accuracy (greedy / Hungarian) and mean entropy (bits).
    A checkpoint is resumed only if it was written with the same settings and the same training data
    (``data_fingerprint``, default :func:`fingerprint` of ``train_x`` and ``train_labels``).
    ``device`` (the device layer; default CPU, fp32) places model and data and sets the precision.
    ``resume_key`` (a pipeline job's provenance hash: settings, code and input files) replaces the
    settings part of the key when given.
    """
    cfg = resolve_run(cfg)
    torch.set_num_threads(int(cfg["threads"]))
    device = device or Device.from_settings({"device": "cpu"})
    encoder = device.model(build_encoder(cfg), conv=True)
    objective = build_categorical_objective(cfg)
    schedule = annealing(cfg, n_train=len(train_labels))
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=float(cfg["lr"]), betas=tuple(cfg["betas"]),
                                  weight_decay=float(cfg["weight_decay"]))
    x = device.batch(train_x, image=True)
    pairs = SameClassPairs(train_labels, seed=int(cfg["seed"]), label_weights=cfg["label_weights"])
    n_pairs = int(cfg["pairs_per_epoch"] or len(train_labels))
    bs = int(cfg["batch_size"])
    ex = device.batch(eval_x, image=True) if eval_x is not None else None

    def batches(epoch: int):
        schedule.apply(objective.model, epoch)  # T of this epoch (depends on the epoch only)
        for i1, i2 in pairs.batches(n_pairs, bs, epoch):
            yield device.batch((torch.from_numpy(i1), torch.from_numpy(i2)))

    def step_fn(batch, step):
        i1, i2 = batch
        xb = torch.cat([x[i1], x[i2]])  # one forward: BatchNorm statistics over both views
        logits = encoder(xb)  # fit runs step_fn under the device's autocast
        with device.full_precision():  # the objective in fp32
            l1, l2 = logits.float().chunk(2)
            loss, parts = objective(l1, l2)
        terms = {k: v for k, v in parts.items() if k != "loss"}
        return loss, terms, {}

    def end_epoch(epoch: int, step: int, history: Mapping[str, Any]) -> dict[str, float]:
        out = {"p": schedule.p(epoch), "temperature": schedule.temperature(epoch)}
        every = int(cfg["eval_every"])
        if ex is not None and eval_labels is not None and every > 0 and ((epoch + 1) % every == 0 or epoch + 1 == cfg["epochs"]):
            rep = clustering_report(encoder.probabilities(ex), eval_labels)
            out.update({"test/accuracy_greedy": rep["accuracy_greedy"],
                        "test/accuracy_hungarian": rep["accuracy_hungarian"],
                        "test/mean_entropy_bits": rep["mean_entropy_bits"],
                        "test/clusters_used": float(rep["clusters_used"])})
        return out

    key: dict[str, Any] = ({"provenance": resume_key} if resume_key is not None
                           else {k: v for k, v in cfg.items() if k not in ("threads", "eval_every")})
    key["data"] = data_fingerprint or fingerprint(train_x, train_labels)
    history = fit(model=encoder, optimizer=optimizer, scheduler=None, epochs=int(cfg["epochs"]), batches=batches,
                  step_fn=step_fn, ckpt_dir=ckpt_dir, end_epoch=end_epoch, on_epoch=on_epoch,
                  resume_key=key, progress=progress, desc=f"categorical {cfg['objective']}", device=device)
    return encoder, history


def evaluate_encoder(encoder: CategoricalEncoder, x: torch.Tensor, labels: np.ndarray,
                     batch_size: int = 1024) -> dict[str, Any]:
    """Clustering report (greedy and Hungarian accuracy, confusion matrices, entropies in bits) and the
    category probabilities ``probs`` of images ``x``."""
    device = next(encoder.parameters()).device
    probs = encoder.probabilities(x.to(device), batch_size).cpu().double()
    rep = clustering_report(probs, labels)
    rep["probs"] = probs.numpy()
    return rep


@torch.no_grad()
def backbone_features(encoder: CategoricalEncoder, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """Backbone features (N, out_dim) in eval mode (e.g. for k-means on random-init features)."""
    device = next(encoder.parameters()).device
    was = encoder.training
    encoder.eval()
    try:
        out = [encoder.backbone(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, x.shape[0], batch_size)]
    finally:
        encoder.train(was)
    return torch.cat(out).numpy()


def finish_run(out_dir: Path | str, encoder: CategoricalEncoder, cfg: Mapping[str, Any], history: Mapping[str, Any],
               ckpt_dir: Path | str | None = None) -> dict[str, Any]:
    """Write ``model.pt`` (weights + resolved settings), ``history.json`` and ``train_metrics.json`` into
    ``out_dir`` and delete ``ckpt_dir`` (a finished run is never resumed); return the training summary."""
    out_dir = Path(out_dir)
    epochs = list(history["epochs"])
    final = dict(epochs[-1]) if epochs else {}
    summary = {"objective": cfg["objective"], "seed": int(cfg["seed"]), "epochs": len(epochs),
               "steps": int(final.get("step", 0)),
               "train_time_s": float(sum(e.get("epoch_time_s", 0.0) for e in epochs)), "final": final}
    save_torch({"model": {k: v.detach().cpu() for k, v in encoder.state_dict().items()}, "config": dict(cfg)},
               out_dir / "model.pt")
    write_json(out_dir / "history.json", {"epochs": epochs})
    write_json(out_dir / "train_metrics.json", summary)
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary


def load_encoder(path: Path | str) -> tuple[CategoricalEncoder, dict[str, Any]]:
    """The trained encoder of a ``model.pt`` written by :func:`finish_run` (CPU, eval mode) and its settings."""
    state = torch.load(Path(path), map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ValueError(f"{path}: not a categorical model file (expected keys 'model' and 'config')")
    cfg = resolve_run(state["config"], where=str(path))
    encoder = build_encoder(cfg)
    encoder.load_state_dict(state["model"])
    encoder.eval()
    return encoder, cfg
