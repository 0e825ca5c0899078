"""Image SSL experiment (issue 9): batched augmentation, LARS and its schedule, probes, training through
the resumable loop (kill/resume, non-finite stop), DDP gather equivalence."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch

from ldm.data.image_transforms import AugmentConfig, BatchAugment, pipeline_config
from ldm.evaluation import image_probes as ip
from ldm.training.lars import LARS, lr_at

torch.set_num_threads(1)


def _images(n=8, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, h, w, 3), generator=g, dtype=torch.uint8)


# ---------------------------------------------------------------- augmentation
def test_augment_identity_crop_equals_normalised_input():
    cfg = AugmentConfig(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
                        solarize_p=0.0, flip_p=0.0, interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = _images()
    y = BatchAugment(cfg)(x, torch.Generator().manual_seed(1))
    ref = x.permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(y, ref, atol=1e-5)


def test_augment_flip_grayscale_solarize_and_determinism():
    base = dict(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.0, blur_p=0.0, interpolation="bilinear",
                mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    x = _images()
    ref = x.permute(0, 3, 1, 2).float() / 255
    flip = BatchAugment(AugmentConfig(**base, flip_p=1.0, grayscale_p=0.0, solarize_p=0.0))(x, torch.Generator().manual_seed(0))
    assert torch.allclose(flip, ref.flip(-1), atol=1e-5)
    gray = BatchAugment(AugmentConfig(**base, flip_p=0.0, grayscale_p=1.0, solarize_p=0.0))(x, torch.Generator().manual_seed(0))
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    sol = BatchAugment(AugmentConfig(**base, flip_p=0.0, grayscale_p=0.0, solarize_p=1.0))(x, torch.Generator().manual_seed(0))
    assert torch.allclose(sol, torch.where(ref >= 128 / 255, 1 - ref, ref), atol=1e-5)
    aug = BatchAugment(pipeline_config("symmetric", size=16))
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert a.shape == (8, 3, 16, 16) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()


def test_augment_hue_matches_torchvision():
    from torchvision.transforms.v2 import functional as TF

    from ldm.data.image_transforms import _adjust_hue

    x = _images(4).permute(0, 3, 1, 2).float() / 255
    shift = torch.tensor([0.1, -0.2, 0.05, 0.3])
    ours = _adjust_hue(x, shift)
    ref = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(4)])
    assert torch.allclose(ours, ref, atol=1e-4)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_crop_as_two_matmuls_equals_grid_sample(interpolation):
    """The separable crop (two batched matmuls) is exactly F.grid_sample of the crop's affine grid,
    flips, border clamping and up/down-scaling included."""
    import torch.nn.functional as F

    from ldm.data.image_transforms import _crop_matrices

    g = torch.Generator().manual_seed(3)
    n, h, w, size = 16, 20, 24, 12
    x = torch.rand(n, 3, h, w, generator=g)
    cw = torch.rand(n, generator=g) * 0.9 + 0.1
    ch = torch.rand(n, generator=g) * 0.9 + 0.1
    cx = cw / 2 + torch.rand(n, generator=g) * (1 - cw)
    cy = ch / 2 + torch.rand(n, generator=g) * (1 - ch)
    sx = cw * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, 2 * cx - 1, ch, 2 * cy - 1
    grid = F.affine_grid(theta, (n, 3, size, size), align_corners=False)
    ref = F.grid_sample(x, grid, mode=interpolation, padding_mode="border", align_corners=False)
    rows = _crop_matrices(cy, ch, size, h, interpolation)
    cols = _crop_matrices(cx, sx, size, w, interpolation)
    ours = rows.unsqueeze(1) @ x @ cols.transpose(1, 2).unsqueeze(1)
    assert torch.allclose(ours, ref, atol=1e-5)
    with pytest.raises(ValueError, match="interpolation"):
        _crop_matrices(cy, ch, size, h, "nearest")


def test_augment_hue_matches_torchvision_on_edge_colours():
    """Greys, primaries and ties between the largest channels rotate exactly like torchvision."""
    from torchvision.transforms.v2 import functional as TF

    from ldm.data.image_transforms import _adjust_hue

    colours = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.8, 0.8, 0.2],
                            [0.2, 0.8, 0.8], [0.8, 0.2, 0.8], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.3, 0.1, 0.2]])
    x = colours.T.reshape(1, 3, 2, 5).repeat(5, 1, 1, 1)
    shift = torch.tensor([-0.5, -0.25, 0.0, 0.2, 0.5])
    ours = _adjust_hue(x, shift)
    ref = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(5)])
    assert torch.allclose(ours, ref, atol=1e-5)


def test_batched_colour_jitter_equals_torchvision_per_image_in_each_order(monkeypatch):
    """The whole-batch jitter applies, per image, torchvision's brightness/contrast/saturation/hue
    functions with that image's factors in that image's random order; un-jittered images pass unchanged.
    (Luma as torchvision's tensor code, 0.2989 R; ours is PIL's 0.299 R, which the paper's PIL pipeline used.)"""
    from torchvision.transforms.v2 import functional as TF

    import ldm.data.image_transforms as it

    monkeypatch.setattr(it, "LUMA", (0.2989, 0.587, 0.114))

    cfg = AugmentConfig(size=16, scale=(1.0, 1.0), ratio=(1.0, 1.0), jitter_p=0.7, brightness=0.8, contrast=0.8,
                        saturation=0.8, hue=0.3, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0, flip_p=0.0,
                        interpolation="bilinear", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    aug = BatchAugment(cfg)
    x = _images(n=40)
    p = aug.sample(40, 16, 16, torch.Generator().manual_seed(11))
    assert 0 < int(p["jitter"].sum()) < 40
    ours = aug.apply(x.permute(0, 3, 1, 2), p)
    fns = [lambda im, i: TF.adjust_brightness(im, float(p["brightness"][i])),
           lambda im, i: TF.adjust_contrast(im, float(p["contrast"][i])),
           lambda im, i: TF.adjust_saturation(im, float(p["saturation"][i])),
           lambda im, i: TF.adjust_hue(im, float(p["hue"][i]))]
    for i in range(40):
        im = x[i].permute(2, 0, 1).float() / 255
        if p["jitter"][i]:
            for op in p["order"][i].tolist():
                im = fns[op](im, i)
        assert torch.allclose(ours[i], im, atol=2e-5), i


def test_cpu_chunking_gives_the_whole_batch_result():
    """Chunked application on a CPU (cache-sized pieces) equals applying the sampled parameters to the
    whole batch at once."""
    aug = BatchAugment(pipeline_config("symmetric", size=16))
    x = _images(n=70).permute(0, 3, 1, 2)
    p = aug.sample(70, 16, 16, torch.Generator().manual_seed(2))
    aug.CPU_CHUNK = 1000
    whole = aug.apply(x, p)
    aug.CPU_CHUNK = 16
    chunked = aug.apply(x, p)
    assert chunked.shape == whole.shape == (70, 3, 16, 16)
    assert torch.allclose(chunked, whole, atol=1e-6)


def test_augment_writes_into_a_given_output():
    """``out=`` (e.g. a shared-memory block in a DataLoader worker) receives exactly the returned views, on the
    chunked and the whole-batch path; a wrong destination is refused with its shape named."""
    aug = BatchAugment(pipeline_config("vicreg", size=16))
    x = _images(n=70)
    ref = aug(x, torch.Generator().manual_seed(4))
    for chunk in (16, 1000):
        aug.CPU_CHUNK = chunk
        out = torch.full((70, 3, 16, 16), float("nan")).share_memory_()
        got = aug(x, torch.Generator().manual_seed(4), out=out)
        assert got.data_ptr() == out.data_ptr() and torch.allclose(out, ref, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(70, 3, 16, 16\)"):
        aug(x, torch.Generator().manual_seed(4), out=torch.empty(70, 3, 32, 32))


def test_augment_is_fp32_under_an_ambient_autocast():
    # the training step runs under the device's autocast; the views must not depend on it (on CUDA fp16 they
    # became NaN, tests/test_cuda.py)
    augment = BatchAugment(pipeline_config("vicreg", size=16))
    x = _images(n=16)
    plain = augment(x, torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = augment(x, torch.Generator().manual_seed(1))
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=0, atol=0)


def test_crop_scale_respected():
    aug = BatchAugment(AugmentConfig(scale=(0.2, 0.3)))
    p = aug.sample(2000, 32, 32, torch.Generator().manual_seed(0))
    area = p["cw"] * p["ch"]
    assert area.min() > 0.17 and area.max() < 0.34  # pixel rounding of the crop sides
    assert (p["cx"] - p["cw"] / 2 >= -1e-6).all() and (p["cx"] + p["cw"] / 2 <= 1 + 1e-6).all()


# ---------------------------------------------------------------- LARS and the schedule
def test_lars_step_by_hand_and_exclusions():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w, b]}], lr=0.5, momentum=0.9, weight_decay=0.1, eta=0.02, clip_lr=True)
    w.grad = torch.tensor([[0.0, 1.0]])
    b.grad = torch.tensor([2.0])
    opt.step()
    trust = 0.02 * 5 / (1.0 + 0.1 * 5 + 1e-8)  # 0.0667 < lr: no clip
    d = (torch.tensor([[0.0, 1.0]]) + 0.1 * torch.tensor([[3.0, 4.0]])) * (trust / 0.5) 
    # clip_lr form: r <- min(r / lr, 1), update lr * r * (g + wd w)
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0]]) - 0.5 * d, atol=1e-6)
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.5 * 2.0]))  # bias: no wd, no scaling
    # a second step uses momentum
    w.grad = torch.tensor([[0.0, 1.0]])
    b.grad = torch.tensor([2.0])
    opt.step()
    assert torch.allclose(b.detach(), torch.tensor([0.0 - 0.5 * (0.9 * 2.0 + 2.0)]))


def test_lars_clip_lr_caps_the_rate():
    w = torch.nn.Parameter(torch.ones(2, 2) * 10)
    opt = LARS([w], lr=1e-3, momentum=0.0, weight_decay=0.0, eta=0.02, clip_lr=True)
    w.grad = torch.full((2, 2), 1e-4)  # trust ratio huge -> clipped at lr
    opt.step()
    assert torch.allclose(w.detach(), torch.full((2, 2), 10 - 1e-3 * 1e-4), atol=1e-9)


def test_warmup_cosine_schedule():
    assert lr_at(0, 100, 10, 0.3) == pytest.approx(3e-5)
    assert lr_at(10, 100, 10, 0.3) == pytest.approx(0.3)
    assert lr_at(55, 100, 10, 0.3) == pytest.approx(0.15)
    assert lr_at(100, 100, 10, 0.3) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(5, 100, 10, 0.3) < lr_at(6, 100, 10, 0.3)


# ---------------------------------------------------------------- probes and diagnostics
def test_probes_on_separable_and_random_features():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=g) * 5
    ytr, yte = torch.arange(500) % 5, torch.arange(200) % 5
    xtr = centres[ytr] + torch.randn(500, 16, generator=g)
    xte = centres[yte] + torch.randn(200, 16, generator=g)
    assert ip.linear_probe(xtr, ytr, xte, yte, 5)["top1"] > 95
    assert ip.knn_probe(xtr, ytr, xte, yte, k=50)["top1"] > 95
    noise = torch.randn(200, 16, generator=g)
    assert ip.knn_probe(torch.randn(500, 16, generator=g), ytr, noise, yte, k=50)["top1"] < 40
    t = ip.topk(torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]]), torch.tensor([2, 0]), (1, 2))
    assert t == {"top1": 50.0, "top2": 100.0}


def test_spectrum_and_jacobian_logdet():
    rng = np.random.default_rng(0)
    iso = rng.standard_normal((20000, 8))
    s = ip.spectrum_stats(iso)
    assert s["participation_ratio"] == pytest.approx(8, rel=0.05) and s["pcs_99"] == 8
    low = iso * np.array([10, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    s = ip.spectrum_stats(low)
    assert s["participation_ratio"] == pytest.approx(1, rel=0.01) and s["pcs_90"] == 1
    A = torch.randn(3, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ld = ip.jacobian_logdet(lambda x: A @ x.reshape(-1).double(), torch.randn(2, 3, 2, 2))
    want = float(torch.logdet(A @ A.T))
    assert np.allclose(ld, want, atol=1e-8)


# ---------------------------------------------------------------- training
def _tiny_cfg(row="plane_knn_mi", **optim):
    from ldm.training import images as ti

    return ti.resolve_run(row, "cifar10", {
        "model": {"width": 0.0625, "projector_scale": 1 / 64},
        "augment": {"size": 8},
        "optim": {"epochs": 3, "batch_size": 16, "warmup_epochs": 1, **optim},
        "grad_cos_every": 2, "eval_every": 1}, seed=3)


def _tiny_data(n=48):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 8, 8, 3), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 3


def test_rows_resolve_with_paper_default_and_official_option():
    from ldm.training import images as ti

    cfg = ti.resolve_run("plane_logdet", "cifar10")
    assert cfg["objective"]["estimator"] == "logdet" and cfg["objective"]["joint_cov"] == "concat"
    assert cfg["model"]["projector"]["kind"] == "vicreg" and cfg["pipeline"] == "vicreg"
    off = ti.resolve_run("plane_logdet", "cifar10", {"variant": "official"})
    assert off["objective"]["objective"] == "vicreg_nomi"
    assert ti.resolve_run("plane_knn", "cifar10")["objective"]["lambda"] == 12.5
    assert ti.resolve_run("sphere_kde", "imagenet100")["model"]["projector"]["out"] == 512
    with pytest.raises(KeyError, match="optim.epoch"):
        ti.resolve_run("plane_kde", "cifar10", {"optim": {"epoch": 3}})


@pytest.mark.parametrize("row", ["plane_knn_mi", "sphere_logdet", "plane_logdet_mi"])
def test_train_writes_model_history_and_grad_cos(tmp_path, row):
    from ldm.training import images as ti

    x, y = _tiny_data()
    h = ti.train(_tiny_cfg(row), x, y, tmp_path, test_images=x[:12], test_labels=y[:12], n_classes=3)
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "history.json").is_file()
    assert not (tmp_path / "checkpoints").exists()
    assert len(h["epochs"]) == 3 and all(math.isfinite(e["train/loss"]) for e in h["epochs"])
    cos = [s["grad_cos"] for s in h["steps"]]
    assert cos and all(-1 <= c <= 1 for c in cos)
    assert "test/online_top1" in h["epochs"][-1]


def test_kill_and_resume_gives_identical_final_metrics(tmp_path):
    from ldm.training import images as ti

    x, y = _tiny_data()
    cfg = _tiny_cfg()
    full = ti.train(cfg, x, y, tmp_path / "full", test_images=x[:12], test_labels=y[:12], n_classes=3)

    class Killed(Exception):
        pass

    def kill(step):
        if step == 7:  # inside epoch 3 (3 steps per epoch)
            raise Killed

    with pytest.raises(Killed):
        ti.train(cfg, x, y, tmp_path / "part", test_images=x[:12], test_labels=y[:12], n_classes=3,
                 resume_key={"k": 1}, step_hook=kill)
    assert (tmp_path / "part" / "checkpoints" / "last.pt").is_file()
    resumed = ti.train(cfg, x, y, tmp_path / "part", test_images=x[:12], test_labels=y[:12], n_classes=3,
                       resume_key={"k": 1})
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "part" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full["epochs"][-1]["train/loss"] == resumed["epochs"][-1]["train/loss"]
    assert full["epochs"][-1]["test/online_top1"] == resumed["epochs"][-1]["test/online_top1"]


def test_non_finite_loss_names_step_and_term_and_keeps_checkpoint(tmp_path):
    from ldm.training import images as ti
    from ldm.training.loop import NonFiniteLossError

    x, y = _tiny_data()
    cfg = _tiny_cfg()
    holder = {}

    real_build = ti.build_model

    def build(c, n):
        holder["m"] = real_build(c, n)
        return holder["m"]

    def poison(step):
        if step == 4:  # after epoch 1's checkpoint: break the projector
            with torch.no_grad():
                holder["m"].projector[0].weight.fill_(float("nan"))

    ti.build_model, orig = build, ti.build_model
    try:
        with pytest.raises(NonFiniteLossError, match=r"step 5 .*term .*(ssl|alignment|entropy)=nan.*last good checkpoint"):
            ti.train(cfg, x, y, tmp_path, n_classes=3, step_hook=poison)
    finally:
        ti.build_model = orig
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


# ---------------------------------------------------------------- DDP equivalence (2 gloo processes)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _objective_configs():
    return [{"space": "plane", "estimator": "kde", "mi": True}, {"space": "plane", "estimator": "knn", "mi": False},
            {"space": "sphere", "estimator": "logdet", "mi": False, "logdet": "taylor"},
            {"objective": "vicreg"}]


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8)).double()


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 12, generator=g, dtype=torch.float64), torch.randn(32, 12, generator=g, dtype=torch.float64)


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from ldm.objectives.registry import build_objective
    from ldm.training.distributed import gather_with_grad

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    x1, x2 = _batch()
    sl = slice(rank * 16, (rank + 1) * 16)
    results = []
    for oc in _objective_configs():
        net = torch.nn.parallel.DistributedDataParallel(_net())
        obj = build_objective({**oc, "float_parts": False})
        loss, _ = obj(gather_with_grad(net(x1[sl])), gather_with_grad(net(x2[sl])))
        loss.backward()
        results.append((float(loss), [p.grad.clone() for p in net.module.parameters()]))
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


def test_ddp_gather_with_gradient_matches_one_process(tmp_path):
    import torch.multiprocessing as mp

    from ldm.objectives.registry import build_objective

    out = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=False)
    x1, x2 = _batch()
    for oc, (ddp_loss, ddp_grads) in zip(_objective_configs(), ddp):
        net = _net()
        loss, _ = build_objective({**oc, "float_parts": False})(net(x1), net(x2))
        loss.backward()
        assert abs(float(loss.detach()) - ddp_loss) < 1e-5, oc
        for p, g in zip(net.parameters(), ddp_grads):
            assert torch.allclose(p.grad, g, atol=1e-5), oc


# ---------------------------------------------------------------- stage chain (train -> evaluate, baselines -> summarize, figures)
def test_stage_chain_tables_and_figures(tmp_path):
    import json

    from ldm.data.artifacts import write_image_artifact
    from ldm.experiments.images import stages as st
    from ldm.pipeline.stages import Job

    g = np.random.default_rng(0)
    data = tmp_path / "data"
    splits = {s: (g.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % 3) for s, n in (("train", 64), ("test", 30))}
    write_image_artifact(data, splits, {"name": "cifar10", "source": "stand-in", "description": "test", "classes": ["a", "b", "c"]})
    config = {"profile": "test", "compute": {"device": "cpu"}, "images": {
        "datasets": ["cifar10"], "rows": ["plane_knn", "sphere_kde_mi"], "seeds": [1, 2],
        "defaults": {"model": {"width": 0.0625, "projector_scale": 1 / 64}, "augment": {"size": 8},
                     "optim": {"epochs": 2, "batch_size": 16, "warmup_epochs": 1}, "grad_cos_every": 2},
        "evaluate": {"jacobian_images": 2, "knn_k": 10, "tsne_points": 30, "tsne_iter": 250}}}
    io = {"train": data / "train.npz", "train_labels": data / "train.npz", "test": data / "test.npz",
          "test_labels": data / "test.npz", "meta": data / "meta.json"}
    evals, bases = {}, {}
    for seed in (1, 2):
        wc = {"dataset": "cifar10", "seed": str(seed)}
        out = tmp_path / f"baselines{seed}.json"
        st.baselines(Job("images.baselines", st._baseline_settings(config, wc), dict(io), {"baselines": out}, wc))
        bases[f"baselines_cifar10_seed{seed}"] = out
        for row in ("plane_knn", "sphere_kde_mi"):
            wc = {"dataset": "cifar10", "row": row, "seed": str(seed)}
            run = tmp_path / row / f"seed{seed}"
            st.train(Job("images.train", st._train_settings(config, wc), dict(io),
                         {"model": run / "model.pt", "history": run / "history.json"}, wc))
            st.evaluate(Job("images.evaluate", st._eval_settings(config, wc),
                            {**io, "model": run / "model.pt", "history": run / "history.json"},
                            {"eval": run / "eval.json", "embeddings": run / "embeddings.npz"}, wc))
            evals[f"eval_cifar10_{row}_seed{seed}"] = run / "eval.json"
    b = json.loads((tmp_path / "baselines1.json").read_text())
    assert 0 <= b["random_init_linear_top1"] <= 100 and 0 <= b["raw_pixels_linear_top1"] <= 100
    ev = json.loads(evals["eval_cifar10_plane_knn_seed1"].read_text())
    assert ev["grad_cos"] and len(ev["jacobian_logdet"]) == 2 and ev["embedding_dim"] == 32
    tables = tmp_path / "tables"
    outs = {"metrics": tmp_path / "metrics.json", "table": tables / "runs.csv", "table_a1": tables / "a1.csv",
            "table_a1_md": tables / "a1.md", "paper_table": tables / "paper.csv",
            "claims": tables / "claims.csv", "claims_md": tables / "claims.md"}
    st.summarize(Job("images.summarize", st._summary_settings(config, {}), {**evals, **bases}, outs, {}))
    runs = (tables / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 4  # every row x seed
    md = (tables / "a1.md").read_text()
    assert "Plane kNN" in md and "random-init network" in md and "raw pixels" in md and "92.07" in md
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["cifar10/plane_knn/seeds"] == [1, 2]
    claims = (tables / "claims.md").read_text()
    assert "gradient cosines mostly positive" in claims  # no MI pair and no plane LogDet among these rows
    assert any(k.startswith("cifar10/claims/") for k in m)
    figs = tmp_path / "figures"
    st.figures(Job("images.figures", {"tsne_points": 30, "tsne_iter": 250}, dict(evals), {"figures": figs}, {}))
    names = {p.name for p in figs.glob("*.png")}
    assert {"cifar10_spectrum.png", "cifar10_tsne.png", "cifar10_accuracy_vs_dim.png", "cifar10_grad_cos.png",
            "cifar10_jacobian_logdet.png"} <= names


def test_more_torchrun_processes_than_gpus_is_named(monkeypatch):
    # 2 processes on a 1-GPU node: a clear error before any process group starts
    from ldm.training import distributed

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a, **k: pytest.fail("must not start"))
    with pytest.raises(RuntimeError, match="local rank 1, but this node has 1 visible GPU"):
        distributed.init_from_env()
