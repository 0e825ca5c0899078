"""The GPU path on hardware (skipped where torch sees no CUDA device, as on CI).

Every experiment's training runs through the device layer on CUDA: its losses follow the CPU run's from the
same seed, a CUDA run killed after an epoch and resumed ends with the same metrics, the weights it saves load
on a CPU-only path and encode the same, and mixed precision (bf16 + channels_last; fp16 with its gradient
scaler, which the checkpoint keeps) trains to finite losses.

``LDM_TEST_ACCEL=cpu pytest tests/test_cuda.py`` runs the same tests with the CPU in the accelerator's place
(to debug the tests themselves on a machine without a GPU; the comparisons are then trivially close).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from ldm.training.device import Device

ACCEL = os.environ.get("LDM_TEST_ACCEL", "cuda")
pytestmark = pytest.mark.skipif(ACCEL == "cuda" and not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(autouse=True)
def _exact_fp32(monkeypatch):
    """fp32 on the GPU without TF32 (the CPU comparison) and deterministic cuDNN (the resume comparison);
    no MLflow records (not what these tests are about)."""
    monkeypatch.setenv("LDM_MLFLOW", "0")
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
             torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
     torch.backends.cudnn.benchmark) = saved


def _device(name: str, **kw: Any) -> Device:
    return Device.from_settings({"device": name, **kw})


class Killed(Exception):
    """A simulated kill after an epoch's checkpoint."""


def _kill_after(epoch_to_die: int) -> Callable[[int, Any], None]:
    def hook(epoch: int, _metrics: Any) -> None:
        if epoch == epoch_to_die:
            raise Killed

    return hook


# ------------------------------------------------------------------------------------------ experiments
# each runner trains a tiny run on ``dev`` into ``out`` (``kill``: die after that epoch's checkpoint) and
# returns (per-epoch history, CPU model state dict as saved)

def _images(dev: Device, out: Path, kill: int | None = None) -> tuple[list[dict], dict]:
    from ldm.training import images as ti

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 8, 8, 3), generator=g, dtype=torch.uint8)
    y = torch.arange(48) % 3
    cfg = ti.resolve_run("plane_knn_mi", "cifar10", {
        "model": {"width": 0.0625, "projector_scale": 1 / 64}, "augment": {"size": 8},
        "optim": {"epochs": 3, "batch_size": 16, "warmup_epochs": 1}, "eval_every": 1}, seed=3)
    def die_after_epoch(step: int) -> None:
        if kill is not None and step == 3 * kill:  # the first step after epoch ``kill``'s checkpoint
            raise Killed

    h = ti.train(cfg, x, y, out, test_images=x[:12], test_labels=y[:12], n_classes=3, device=dev,
                 resume_key={"k": 1}, step_hook=die_after_epoch)
    return h["epochs"], torch.load(out / "model.pt", weights_only=False)["state_dict"]


def _identifiability(loss: str) -> Callable[..., tuple[list[dict], dict]]:
    def run(dev: Device, out: Path, kill: int | None = None) -> tuple[list[dict], dict]:
        from ldm.data import wobbly as w
        from ldm.training import identifiability as T

        data = out.parent / "wobbly"
        if not (data / "train.npz").is_file():
            w.write_dataset(w.WobblyConfig(seq_len=12, n_train=24, n_test=4), 1, data)
        cfg = T.resolve_config({"loss": loss, "progress": False,
                                "model": {"encoder": {"hidden_layers": 1, "hidden_dim": 16}},
                                "optim": {"batch_size": 8, "epochs": 3},
                                "eval": {"train_subset": 16, "grid_n": 8, "max_fit_frames": 10_000}}, seed=2)
        T.train(cfg, data, out, device=dev, on_epoch=None if kill is None else _kill_after(kill))
        return (json.loads((out / "history.json").read_text())["epochs"],
                torch.load(out / "model.pt", weights_only=False)["model"])

    return run


def _kalman(dev: Device, out: Path, kill: int | None = None) -> tuple[list[dict], dict]:
    from ldm.data.videos import VideoConfig, write_dataset
    from ldm.experiments.kalman import settings as kset
    from ldm.training import kalman as ktrain

    section = {"seeds": [1], "data_seed": 2, "defaults": {"grad_cos_every": 1, "eval_train_subset": 8},
               "datasets": {"tiny8": {"motion": "figure8", "seq_len": 20, "dt": 0.1, "period": 1.0,
                                      "observation_noise": 0.01, "n_train": 16, "n_test": 4}},
               "runs": {"knn": {"dataset": "tiny8", "loss": "knn", "model": {"state_dim": 4, "latent_dim": 2},
                                "optim": {"batch_size": 8, "lr": 0.005, "epochs": 3}}}}
    videos = out.parent / "videos"
    if not (videos / "train.npz").is_file():
        dcfg = kset.dataset_config(section, "tiny8")
        write_dataset(VideoConfig.from_dict({k: v for k, v in dcfg.items() if k not in ("seed", "name")}),
                      dcfg["seed"], videos)
    cfg = kset.resolve_run(section, "knn", 1)
    ktrain.train(cfg, videos, out, device=dev, _on_epoch_hook=None if kill is None else _kill_after(kill))
    return (json.loads((out / "history.json").read_text())["epochs"],
            torch.load(out / "model.pt", weights_only=False)["model"])


def _hippocampus(dev: Device, out: Path, kill: int | None = None) -> tuple[list[dict], dict]:
    from ldm.training.kalman_spikes import train

    rng = np.random.default_rng(0)
    spikes = out.parent / "spikes.npz"
    if not spikes.is_file():
        n = 800
        phase = (np.arange(n) % 160) / 80.0
        pos = np.where(phase < 1, phase, 2 - phase) * 1.6
        centres = rng.uniform(0, 1.6, 24)
        lam = (0.5 + 40.0 * np.exp(-0.5 * ((pos[:, None] - centres[None]) / 0.12) ** 2)) * 0.025
        np.savez(spikes, counts=rng.poisson(lam).astype(np.int32), position=pos,
                 direction=np.where(phase < 1, 1, -1).astype(np.int8), time=np.arange(n) * 0.025)
    cfg = {"seed": 1, "name": "tiny", "loss": "knn",
           "model": {"state_dim": 6, "latent_dim": 3, "hidden_dim": 16, "obs_noise": "input"},
           "optim": {"batch_size": 4, "lr": 0.05, "epochs": 3, "scheduler": "none"},
           "data": {"n_units": 24, "window": 40, "windows_per_epoch": 8, "train_fraction": 0.8}}
    train(cfg, spikes, out, resume_key="k", device=dev, _on_epoch_hook=None if kill is None else _kill_after(kill))
    return (json.loads((out / "history.json").read_text())["epochs"],
            torch.load(out / "model.pt", weights_only=False)["model"])


def _categorical(dev: Device, out: Path, kill: int | None = None) -> tuple[list[dict], dict]:
    from sklearn.datasets import load_digits

    from ldm.training.categorical import PAPER_RUNS, train_categorical

    d = load_digits()
    x = torch.from_numpy(d.images[:160].astype(np.float32) / 16.0)[:, None]
    x = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    y = d.target[:160].astype(np.int64)
    cfg = {**PAPER_RUNS["dm"], "encoder": {"name": "small_cnn", "widths": [8, 16]}, "head_hidden": 16,
           "batch_size": 32, "pairs_per_epoch": 64, "epochs": 3, "lr": 1e-3, "image_size": 16, "channels": 1,
           "anneal_pairs": None, "anneal_epochs": None}
    enc, hist = train_categorical(cfg, x[:120], y[:120], out / "checkpoints", eval_x=x[120:], eval_labels=y[120:],
                                  progress=False, device=dev, on_epoch=None if kill is None else _kill_after(kill))
    return hist["epochs"], {k: v.detach().cpu() for k, v in enc.state_dict().items()}


RUNNERS = {"images": _images, "identifiability_knn": _identifiability("knn"),
           "identifiability_stopgrad": _identifiability("stopgrad"), "kalman": _kalman,
           "hippocampus": _hippocampus, "categorical": _categorical}


def _numbers(epochs: list[dict]) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in e.items() if k != "epoch_time_s" and isinstance(v, (int, float))} for e in epochs]


# ------------------------------------------------------------------------------------------------ tests
def test_device_layer_places_batches_and_autocasts():
    dev = _device(ACCEL, precision="bf16", channels_last=True)
    assert dev.device.type == ACCEL
    x = dev.batch(torch.rand(2, 3, 8, 8), image=True)
    assert x.device.type == ACCEL and x.is_contiguous(memory_format=torch.channels_last)
    conv = dev.model(torch.nn.Conv2d(3, 4, 3), conv=True)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    with dev.autocast():
        y = conv(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    if ACCEL == "cuda":
        assert _device("auto").device.type == "cuda"
        assert _device("cuda", precision="fp16").grad_scaler() is not None


@pytest.mark.skipif(ACCEL != "cuda", reason="the CUDA generator")
def test_checkpoint_rng_state_restores_the_cuda_generator():
    from ldm.training.checkpoint import rng_state, set_rng_state

    torch.manual_seed(5)
    torch.rand(3, device="cuda")
    saved = rng_state()
    assert "cuda" in saved
    a = torch.rand(4, device="cuda")
    torch.rand(100, device="cuda")
    set_rng_state(saved)
    assert torch.equal(a, torch.rand(4, device="cuda"))


@pytest.mark.parametrize("name", list(RUNNERS))
def test_accelerator_training_follows_the_cpu_and_saves_cpu_weights(name, tmp_path):
    run = RUNNERS[name]
    cpu_h, cpu_w = run(_device("cpu"), tmp_path / "cpu")
    acc_h, acc_w = run(_device(ACCEL), tmp_path / "accel")
    assert len(acc_h) == len(cpu_h) == 3
    for c, a in zip(_numbers(cpu_h), _numbers(acc_h)):
        assert all(math.isfinite(v) for v in a.values()), a
        assert set(a) == set(c)
    first_cpu, first_acc = cpu_h[0]["train/loss"], acc_h[0]["train/loss"]
    assert first_acc == pytest.approx(first_cpu, rel=1e-3, abs=1e-4), (first_cpu, first_acc)
    assert acc_h[-1]["train/loss"] == pytest.approx(cpu_h[-1]["train/loss"], rel=5e-2, abs=1e-2)
    assert all(t.device.type == "cpu" for t in acc_w.values()), "model.pt must hold CPU tensors"
    assert set(acc_w) == set(cpu_w)


@pytest.mark.parametrize("name", list(RUNNERS))
def test_killed_accelerator_run_resumes_with_the_same_metrics(name, tmp_path):
    run = RUNNERS[name]
    full_h, full_w = run(_device(ACCEL), tmp_path / "full")
    with pytest.raises(Killed):
        run(_device(ACCEL), tmp_path / "resumed", kill=1)
    res_h, res_w = run(_device(ACCEL), tmp_path / "resumed")
    full, res = _numbers(full_h), _numbers(res_h)
    assert len(full) == len(res) == 3
    for f, r in zip(full, res):
        assert set(f) == set(r)
        for k in f:
            assert r[k] == pytest.approx(f[k], rel=1e-5, abs=1e-6), (k, f[k], r[k])
    for k in full_w:
        torch.testing.assert_close(res_w[k], full_w[k], rtol=1e-4, atol=1e-5)


def test_identifiability_model_trained_on_the_accelerator_encodes_the_same_on_the_cpu(tmp_path):
    from ldm.training import identifiability as T

    _identifiability("knn")(_device(ACCEL), tmp_path / "run")
    data = tmp_path / "wobbly"
    frames = np.load(data / "test.npz")["frames"]
    model, cfg = T.load_model(tmp_path / "run", frames.shape[-1], 2)
    on_cpu = T.encode(model, frames)
    on_acc = T.encode(model.to(ACCEL), frames)
    np.testing.assert_allclose(on_acc, on_cpu, rtol=1e-4, atol=1e-5)
    ev = T.evaluate(tmp_path / "run", data)
    assert math.isfinite(ev["learned/r2_unclamped"]) and math.isfinite(ev["random_init/r2_unclamped"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_images_mixed_precision_trains_finite_and_resumes(precision, tmp_path):
    if precision == "fp16" and ACCEL != "cuda":
        pytest.skip("fp16 needs CUDA")
    dev = lambda: _device(ACCEL, precision=precision, channels_last=True)  # noqa: E731
    full_h, _ = _images(dev(), tmp_path / "full")
    assert all(math.isfinite(v) for e in _numbers(full_h) for v in e.values())
    with pytest.raises(Killed):
        _images(dev(), tmp_path / "resumed", kill=2)
    ckpt = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=False)
    if precision == "fp16":
        assert ckpt["scaler"] and ckpt["scaler"]["scale"] > 0, "the fp16 gradient scaler is checkpointed"
    else:
        assert ckpt["scaler"] is None
    res_h, _ = _images(dev(), tmp_path / "resumed")
    assert res_h[-1]["train/loss"] == pytest.approx(full_h[-1]["train/loss"], rel=1e-3)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_batch_augment_ignores_an_ambient_autocast(precision):
    from ldm.data.image_transforms import BatchAugment, pipeline_config

    if precision == "fp16" and ACCEL != "cuda":
        pytest.skip("fp16 autocast: CUDA")
    augment = BatchAugment(pipeline_config("vicreg", size=32))
    x = torch.randint(0, 256, (64, 32, 32, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).to(ACCEL)
    plain = augment(x, torch.Generator().manual_seed(1))
    with _device(ACCEL, precision=precision).autocast():
        under = augment(x, torch.Generator().manual_seed(1))
    assert under.dtype == torch.float32 and torch.isfinite(under).all()
    torch.testing.assert_close(under, plain, rtol=0, atol=0)


def test_images_from_host_memory_train_like_images_on_the_device(tmp_path, monkeypatch):
    # a training set too large for the GPU stays in host memory and each batch is copied over
    from ldm.training import images as ti

    on_h, on_w = _images(_device(ACCEL), tmp_path / "on_device")
    seen = []
    monkeypatch.setattr(ti, "data_fits_on", lambda device, nbytes, **kw: seen.append(nbytes) or False)
    host_h, host_w = _images(_device(ACCEL), tmp_path / "host")
    assert seen == [48 * 8 * 8 * 3]
    assert _numbers(host_h) == _numbers(on_h)
    for k in on_w:
        assert torch.equal(host_w[k], on_w[k]), k
