"""Predictive LDM with a Kalman predictor: losses, optimiser groups, gradient cosine, and the training
stage end to end (resume after a kill gives identical metrics; a non-finite loss stops with a clear error)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from types import SimpleNamespace

from ldm.data.videos import VideoConfig, write_dataset
from ldm.evaluation import kalman as kalman_eval
from ldm.evaluation import rotation
from ldm.experiments.kalman import settings as kset
from ldm.pipeline.config import merge_settings
from ldm.experiments.kalman import stages as kstages
from ldm.models import kalman_ssl
from ldm.objectives.entropy import gaussian_cross_entropy, knn_entropy
from ldm.pipeline.stages import Job
from ldm.training import kalman as ktrain
from ldm.training import optim
from ldm.training.loop import NonFiniteLossError

# the library as one namespace for these tests
ps = SimpleNamespace(**{n: getattr(kalman_ssl, n) for n in dir(kalman_ssl) if not n.startswith("_")},
                     build_optimizer=optim.build_optimizer, build_scheduler=optim.build_scheduler,
                     rotation_angles_deg=rotation.rotation_angles_deg,
                     dominant_rotation_deg=rotation.dominant_rotation_deg)


def _generate(cfg, out_dir):
    write_dataset(VideoConfig.from_dict({k: v for k, v in cfg.items() if k not in ("seed", "name")}), cfg["seed"], out_dir)


def _figures(run_dir, fig_dir):
    job = Job("kalman.figures", {}, input={"eval": run_dir / "eval.json", "latents": run_dir / "latents_test.npz",
                                          "history": run_dir / "history.json"},
              output={"figures": fig_dir}, wildcards={"run": "r", "seed": "1"})
    kstages.figures(job)
    return sorted(p for p in fig_dir.iterdir())


def _summarize(run_dirs, out, profile):
    job = Job("kalman.summarize", {"profile": profile, "runs": [], "seeds": [1]},
              input={f"eval_{i}": rd / "eval.json" for i, rd in enumerate(run_dirs)},
              output={"metrics": out, "table": out.parent / "tables" / "runs.csv",
                      "paper_table": out.parent / "tables" / "paper_comparison.csv",
                      "epochs": out.parent / "tables" / "epochs.csv",
                      "grad_cos_png": out.parent / "figures" / "fig4d_grad_cos.png"})
    kstages.summarize(job)
    return json.loads(out.read_text())


kx = SimpleNamespace(generate_videos=_generate, dataset_config=kset.dataset_config, resolve_run=kset.resolve_run,
                     train=ktrain.train, evaluate=kalman_eval.evaluate, figures=_figures, summarize=_summarize)

TINY_SECTION = {
    "seeds": [1],
    "data_seed": 2,
    "defaults": {"grad_cos_every": 1, "eval_train_subset": 8},
    "datasets": {
        "tiny8": {"motion": "figure8", "seq_len": 20, "dt": 0.1, "period": 1.0, "observation_noise": 0.01,
                  "n_train": 16, "n_test": 4},
        "tinycirc": {"motion": "circular", "seq_len": 20, "dt": 0.1, "period": 2.0, "noise_type": "random_gaussian",
                     "observation_noise": 0.3, "prediction_noise": 0.05, "n_train": 16, "n_test": 4},
    },
    "runs": {
        "knn": {"dataset": "tiny8", "loss": "knn", "model": {"state_dim": 4, "latent_dim": 2},
                "optim": {"batch_size": 8, "lr": 0.005, "epochs": 3}},
        "sg": {"dataset": "tiny8", "loss": "stopgrad", "model": {"state_dim": 4, "latent_dim": 2},
               "optim": {"batch_size": 8, "lr": 0.005, "epochs": 3}},
        "inferred": {"dataset": "tinycirc", "loss": "stopgrad",
                     "model": {"state_dim": 2, "latent_dim": 2, "obs_noise": "inferred"},
                     "optim": {"batch_size": 8, "lr": 0.01, "epochs": 2}},
    },
}


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for name in TINY_SECTION["datasets"]:
        kx.generate_videos(kx.dataset_config(TINY_SECTION, name), root / name)
        out[name] = root / name
    return out


def _model_and_batch(loss="knn", seed=0, **model):
    cfg = merge_settings(ps.DEFAULTS, {"loss": loss, "model": {"state_dim": 4, "latent_dim": 2, **model}})
    m = ps.KalmanSSL(cfg["model"], seed=seed)
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(4, 15, 100, generator=g)
    return m, cfg, frames


def test_knn_loss_is_kalman_nll_minus_T_entropy():
    m, cfg, x = _model_and_batch("knn")
    z, out = m(x)
    loss, terms = ps.ssl_loss(m, z, out, cfg)
    nll = gaussian_cross_entropy(z, out.pred_mean, out.innov_cov, jitter=1e-6).mean(0).sum()
    ent = knn_entropy(z.reshape(-1, 2), k=3, p=2.0, clip_quantile=0.9, scale_by_dim=True)
    torch.testing.assert_close(loss, nll - 15 * ent)
    assert set(terms) == {"kalman_nll", "knn_entropy"}


def test_stopgrad_loss_gets_no_gradient_through_current_target():
    m, cfg, x = _model_and_batch("stopgrad")
    z = m.encoder(x).detach().requires_grad_(True)
    out = m.kalman(z, x)
    loss, _ = ps.ssl_loss(m, z, out, cfg)
    (g,) = torch.autograd.grad(loss, z)
    # the last encoding is only ever a (detached) target: zero gradient; earlier ones feed predictions
    assert torch.all(g[:, -1] == 0)
    assert g[:, :-1].abs().sum() > 0
    # its value is the Kalman negative log-likelihood of Eq. 15
    torch.testing.assert_close(loss, ps.kalman_nll(z, out))


def test_infonce_rewards_predictions_that_pick_their_own_time_step():
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(2, 12, 4, generator=g)
    right = ps.infonce_over_time(z, SimpleNamespace(pred_mean=z.clone()), 0.1, "cosine")
    shifted = ps.infonce_over_time(z, SimpleNamespace(pred_mean=z.roll(1, dims=1)), 0.1, "cosine")
    chance = 12 * math.log(12)  # T x log T: a prediction that cannot tell the time steps apart
    assert float(right) < 0.1 * chance < chance < float(shifted)
    m, cfg, x = _model_and_batch("infonce")
    z, out = m(x)
    loss, terms = ps.ssl_loss(m, z, out, cfg)
    loss.backward()
    assert "infonce" in terms and m.encoder.net[0].weight.grad.abs().sum() > 0


def test_unknown_loss_raises():
    m, cfg, x = _model_and_batch("knn")
    z, out = m(x)
    with pytest.raises(ValueError, match="unknown loss"):
        ps.ssl_loss(m, z, out, {**cfg, "loss": "mse"})


def test_optimizer_groups_and_lr_scaling():
    m, cfg, _ = _model_and_batch(obs_noise="inferred")
    opt = ps.build_optimizer(m, {"batch_size": 32, "lr": 0.01})
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    base = 0.01 * 32 / 256
    assert lrs["encoder"] == pytest.approx(base)
    assert lrs["kalman"] == pytest.approx(100 * base)
    assert lrs["obs_net"] == pytest.approx(0.03 * base)
    assert lrs["pos_probe"] == pytest.approx(0.5 * 32 / 256)
    names = {id(p) for g in opt.param_groups for p in g["params"]}
    assert names == {id(p) for p in m.parameters()}
    fast = next(g for g in opt.param_groups if g["name"] == "kalman")
    assert {id(p) for p in fast["params"]} == {id(p) for p in m.kalman.fast_parameters()}
    m2, _, _ = _model_and_batch(process_noise="observation+prediction")
    lrs2 = {g["name"]: g["lr"] for g in ps.build_optimizer(m2, {"batch_size": 8, "lr": 0.01}).param_groups}
    assert lrs2["process_net"] == pytest.approx(10 * 0.01 * 8 / 256)


def test_schedulers():
    m, _, _ = _model_and_batch()
    opt = ps.build_optimizer(m, {"batch_size": 8, "lr": 0.005})
    sch = ps.build_scheduler(opt, {"epochs": 20, "scheduler": "step"})
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    base = 0.005 * 8 / 256
    assert lrs[5] == pytest.approx(base) and lrs[6] == pytest.approx(base / 2) and lrs[13] == pytest.approx(base / 4)
    opt = ps.build_optimizer(m, {"batch_size": 8, "lr": 0.02})
    sch = ps.build_scheduler(opt, {"epochs": 4, "scheduler": "linear", "min_lr_factor": 0.25})
    for _ in range(4):
        opt.step()
        sch.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25 * 0.02 * 8 / 256)
    with pytest.raises(ValueError, match="scheduler"):
        ps.build_scheduler(opt, {"scheduler": "cosine"})


def test_gradient_cosine_does_not_touch_grads():
    m, cfg, x = _model_and_batch("knn")
    z, out = m(x)
    ps.gradient_cosine(m, z, out, cfg["knn"])
    assert all(p.grad is None for p in m.parameters())


def test_rotation_angles():
    th = math.radians(18.0)
    A = torch.tensor([[math.cos(th), -math.sin(th), 0.0], [math.sin(th), math.cos(th), 0.0], [0.0, 0.0, 0.5]])
    assert ps.rotation_angles_deg(A) == pytest.approx([18.0])
    assert ps.dominant_rotation_deg(torch.eye(2) * 0.9) == 0.0


def test_resolve_run_and_config_errors():
    cfg = kx.resolve_run(TINY_SECTION, "knn", 3)
    assert cfg["seed"] == 3 and cfg["data"]["motion"] == "figure8" and cfg["model"]["hidden_dim"] == 100
    assert cfg["optim"]["weight_decay"] == ps.DEFAULTS["optim"]["weight_decay"]
    with pytest.raises(KeyError, match="kalman.runs.nope"):
        kx.resolve_run(TINY_SECTION, "nope", 1)
    bad = {**TINY_SECTION, "runs": {"x": {"dataset": "tiny8", "lossy": 1}}}
    with pytest.raises(KeyError, match="unknown key"):
        kx.resolve_run(bad, "x", 1)
    with pytest.raises(KeyError, match="datasets.missing"):
        kx.dataset_config(TINY_SECTION, "missing")


def _final(run_dir):
    return json.loads((run_dir / "train_metrics.json").read_text())["final"]


def test_train_evaluate_figures_summarize(data_dirs, tmp_path):
    cfg = kx.resolve_run(TINY_SECTION, "inferred", 1)
    rd = tmp_path / "inferred"
    summary = kx.train(cfg, data_dirs["tinycirc"], rd)
    assert summary["epochs"] == 2 and summary["steps"] == 4
    for f in ("model.pt", "history.json", "train_metrics.json"):
        assert (rd / f).is_file()
    assert not (rd / "checkpoints").exists(), "a finished run keeps no checkpoint to resume from"
    ev = kx.evaluate(None, data_dirs["tinycirc"], rd)
    for k in ("r2_heldout", "r2_online_paper", "noise_decoding_r2", "rotation_deg", "grad_cos_min"):
        assert k in ev and math.isfinite(ev[k])
    figs = kx.figures(rd, tmp_path / "figs")
    assert any(p.name.startswith("noise_") for p in figs)
    assert {p.suffix for p in figs} == {".png", ".pdf"}
    out = tmp_path / "res" / "metrics.json"
    metrics = kx.summarize([rd], out, profile="test")
    assert metrics["profile"] == "test" and metrics["seeds"] == [1] and metrics["inferred/seeds"] == [1]
    assert "inferred/baseline_raw_pixels_r2_mean" in metrics and "inferred/baseline_untrained_r2_mean" in metrics
    assert "inferred/r2_heldout_mean" in metrics and "inferred/r2_heldout_std" in metrics
    assert (tmp_path / "res" / "tables" / "runs.csv").is_file()
    assert (tmp_path / "res" / "figures" / "fig4d_grad_cos.png").is_file()


def test_killed_run_resumes_with_identical_metrics(data_dirs, tmp_path, monkeypatch):
    cfg = kx.resolve_run(TINY_SECTION, "knn", 1)
    ref = tmp_path / "ref"
    kx.train(cfg, data_dirs["tiny8"], ref)

    # kill 1: right after the epoch-1 checkpoint; kill 2: in the middle of epoch 3 (step 6 of 6)
    run = tmp_path / "killed"

    def kill_after_epoch(epoch, _metrics):
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        kx.train(cfg, data_dirs["tiny8"], run, _on_epoch_hook=kill_after_epoch)
    assert not (run / "model.pt").exists()

    real = ktrain.training_loss
    calls = {"n": 0}

    def dying_loss(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 2 done (steps 3-4 ran), dies in the first step of epoch 3
            raise KeyboardInterrupt("simulated kill mid-epoch")
        return real(*args, **kw)

    monkeypatch.setattr(ktrain, "training_loss", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        kx.train(cfg, data_dirs["tiny8"], run)
    monkeypatch.setattr(ktrain, "training_loss", real)
    kx.train(cfg, data_dirs["tiny8"], run)

    a, b = _final(ref), _final(run)
    for k, v in a.items():
        if k.endswith("time_s"):
            continue
        assert b[k] == v, k
    sa = torch.load(ref / "model.pt", weights_only=False)["model"]
    sb = torch.load(run / "model.pt", weights_only=False)["model"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    ha = json.loads((ref / "history.json").read_text())
    hb = json.loads((run / "history.json").read_text())
    assert [s["grad_cos"] for s in ha["steps"]] == [s["grad_cos"] for s in hb["steps"]]


def test_non_finite_loss_names_step_and_term_and_keeps_checkpoint(data_dirs, tmp_path, monkeypatch):
    cfg = kx.resolve_run(TINY_SECTION, "sg", 1)
    real = ktrain.training_loss

    def nan_at_step_3(model, frames, pos, level, c):
        loss, terms, z, out = real(model, frames, pos, level, c)
        nan_at_step_3.n += 1
        if nan_at_step_3.n == 3:
            terms["stopgrad_nll"] = terms["stopgrad_nll"] * float("nan")
            loss = loss * float("nan")
        return loss, terms, z, out

    nan_at_step_3.n = 0
    monkeypatch.setattr(ktrain, "training_loss", nan_at_step_3)
    rd = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"step 3 \(epoch 2; both counted from 1\): term stopgrad_nll=nan"):
        kx.train(cfg, data_dirs["tiny8"], rd)
    ck = torch.load(rd / "checkpoints" / "last.pt", weights_only=False)
    assert ck["epoch"] == 1 and ck["step"] == 2
    assert not (rd / "model.pt").exists()


def test_nan_frames_raise_non_finite(data_dirs, tmp_path):
    import numpy as np

    from ldm.data import videos

    arrays, meta = videos.load_npz(data_dirs["tiny8"] / "train.npz")
    arrays["frames"][:, 3, 7] = np.nan
    bad = tmp_path / "bad"
    videos.save_npz(bad / "train.npz", arrays, meta)
    (bad / "test.npz").write_bytes((data_dirs["tiny8"] / "test.npz").read_bytes())
    cfg = kx.resolve_run(TINY_SECTION, "sg", 1)
    cfg["fresh_noise"] = False
    with pytest.raises(NonFiniteLossError, match="step 1 "):
        kx.train(cfg, bad, tmp_path / "run")


def test_checkpoint_from_other_settings_is_not_resumed(tmp_path):
    """A rerun after a config change starts afresh instead of resuming the old run's checkpoint."""
    import torch

    from ldm.training.checkpoint import save_checkpoint
    from ldm.training.loop import discard_stale_checkpoint

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(tmp_path, model=model, optimizer=opt, scheduler=None, step=3, epoch=1, history={},
                    extra={"resume_key": '{"lr": 0.1}'})
    assert not discard_stale_checkpoint(tmp_path, {"lr": 0.1})
    assert (tmp_path / "last.pt").exists()
    assert discard_stale_checkpoint(tmp_path, {"lr": 0.2})
    assert not (tmp_path / "last.pt").exists()


def test_checkpoint_from_other_code_is_discarded_and_a_resume_is_logged(data_dirs, tmp_path, caplog):
    """The resume key is the job's provenance (settings + code + inputs): an interrupted run's checkpoint
    written by other code is discarded, not resumed; a resume under the same key says so in the log."""
    import logging

    caplog.set_level(logging.INFO, logger="ldm")
    cfg = kx.resolve_run(TINY_SECTION, "sg", 1)
    ref = tmp_path / "ref"
    kx.train(cfg, data_dirs["tiny8"], ref, resume_key="code-v2")

    def kill_after_epoch(epoch, _metrics):
        if epoch == 1:
            raise KeyboardInterrupt("simulated kill")

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        kx.train(cfg, data_dirs["tiny8"], run, resume_key="code-v1", _on_epoch_hook=kill_after_epoch)
    assert (run / "checkpoints" / "last.pt").is_file()
    caplog.clear()
    with pytest.raises(KeyboardInterrupt):  # the code changed: starts again from epoch 0, dies after epoch 1
        kx.train(cfg, data_dirs["tiny8"], run, resume_key="code-v2", _on_epoch_hook=kill_after_epoch)
    assert "discarded" in caplog.text and "resumed" not in caplog.text
    caplog.clear()
    kx.train(cfg, data_dirs["tiny8"], run, resume_key="code-v2")
    assert "resumed from epoch 1" in caplog.text
    sa = torch.load(ref / "model.pt", weights_only=False)["model"]
    sb = torch.load(run / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------------------------------
# issue 13: the stopgrad collapse mechanism, its fix, collapse flags, the generalisation set
# --------------------------------------------------------------------------------------------------


def test_kalman_nll_is_scale_covariant_so_shrinking_is_a_descent_direction():
    """z -> a z with e^s -> a^2 e^s lowers Eq. 15 by exactly T L log(1/a) (fixed Sigma_A, Sigma_D):
    nothing in the stopgrad loss pins the encodings' scale."""
    m, cfg, x = _model_and_batch("stopgrad")
    with torch.no_grad():
        z = m.encoder(x)
        out = m.kalman(z, x)
        base = float(ps.kalman_nll(z, out))
        a = 0.1
        m.kalman.log_scale += 2 * math.log(a)
        m.kalman.offset *= a
        out_s = m.kalman(a * z, x)
        shrunk = float(ps.kalman_nll(a * z, out_s))
    T, L = z.shape[1], z.shape[2]
    # P_0 = I does not scale, so the first steps differ; the per-step gain approaches L log(1/a)
    assert shrunk < base - 0.5 * T * L * math.log(1 / a)


@pytest.mark.parametrize("norm", ["whiten", "batch"])
def test_encoding_norm_removes_the_scale_direction(norm):
    cfg = merge_settings(ps.DEFAULTS, {"loss": "stopgrad", "model": {"state_dim": 4, "latent_dim": 2, "encoding_norm": norm}})
    m = ps.KalmanSSL(cfg["model"], seed=0, loss="stopgrad")
    assert m.encoder.norm is not None
    x = torch.randn(4, 15, 100, generator=torch.Generator().manual_seed(0))
    m.train()
    z1 = m.encoder(x)
    with torch.no_grad():
        m.encoder.net[-1].weight *= 0.1
        m.encoder.net[-1].bias *= 0.1
    z2 = m.encoder(x)
    torch.testing.assert_close(z1, z2, rtol=1e-3, atol=1e-3)  # the loss cannot gain by shrinking
    flat = z1.reshape(-1, 2)
    cov = torch.cov(flat.T, correction=1 if norm == "whiten" else 0)
    torch.testing.assert_close(torch.diagonal(cov), torch.ones(2), rtol=1e-3, atol=1e-3)
    if norm == "whiten":  # and cannot gain by making the dimensions collinear either
        assert abs(float(cov[0, 1].detach())) < 1e-3


def test_auto_norm_and_bad_norm():
    cfg = merge_settings(ps.DEFAULTS, {"model": {"state_dim": 4, "latent_dim": 2}})
    assert isinstance(ps.KalmanSSL(cfg["model"], seed=0, loss="stopgrad").encoder.norm, kalman_ssl.BatchWhitening)
    assert ps.KalmanSSL(cfg["model"], seed=0, loss="knn").encoder.norm is None
    with pytest.raises(ValueError, match="encoding_norm"):
        ps.KalmanSSL({**cfg["model"], "encoding_norm": "layer"}, seed=0)
    # eval mode uses the running statistics: a single frame encodes the same in any batch
    m = ps.KalmanSSL(cfg["model"], seed=0, loss="stopgrad").eval()
    x = torch.randn(3, 5, 100)
    torch.testing.assert_close(m.encoder(x)[:1], m.encoder(x[:1]))


def test_encoding_norm_auto_resolves_by_loss():
    assert kx.resolve_run(TINY_SECTION, "sg", 1)["model"]["encoding_norm"] == "whiten"
    assert kx.resolve_run(TINY_SECTION, "knn", 1)["model"]["encoding_norm"] == "none"
    sec = merge_settings(TINY_SECTION, {"runs": {"sg": {"model": {"encoding_norm": "none"}}}})
    assert kx.resolve_run(sec, "sg", 1)["model"]["encoding_norm"] == "none"


def test_collapse_flags_from_spread_and_r2_history():
    hist = [{"enc/std_mean": 0.4, "test/r2_heldout_subset": 0.99}, {"enc/std_mean": 0.3, "test/r2_heldout_subset": 0.98}]
    ok = ktrain.collapse_flags({"enc/std_mean": 0.35, "test/r2_heldout_subset": 0.985, "kalman/spectral_radius": 1.0},
                               hist, 1.02)
    assert not ok["collapse/flag"] and not ok["collapse/a_at_bound"]
    shrunk = ktrain.collapse_flags({"enc/std_mean": 0.01, "test/r2_heldout_subset": 0.97,
                                    "kalman/spectral_radius": 1.0199}, hist, 1.02)
    assert shrunk["collapse/flag"] and shrunk["collapse/a_at_bound"]
    assert shrunk["collapse/spread_ratio"] == pytest.approx(0.01 / 0.4)
    fell = ktrain.collapse_flags({"enc/std_mean": 0.4, "test/r2_heldout_subset": 0.6, "kalman/spectral_radius": 1.0},
                                 hist, 1.02)
    assert fell["collapse/flag"] and fell["collapse/r2_drop"] == pytest.approx(0.39)


def test_generalisation_set_expands_into_datasets_and_runs():
    gen = {"seed": 5, "n_motions": 5, "dataset": {"seq_len": 20, "n_train": 16, "n_test": 4, "observation_noise": 0.01},
           "run": {"loss": "stopgrad", "model": {"state_dim": 4, "latent_dim": 2}, "optim": {"epochs": 1}}}
    sec = {**TINY_SECTION, "generalisation": gen}
    pairs = kset.runs_and_seeds({"kalman": sec})
    assert [r for r, _ in pairs] == ["knn", "sg", "inferred"] + [f"gen{i}_stopgrad" for i in range(1, 6)]
    cfg = kx.resolve_run(kset.kalman_section({"kalman": sec}), "gen3_stopgrad", 2)
    assert cfg["data"]["random_phase"] and cfg["data"]["name"] == "gen3" and cfg["data"]["n_train"] == 16
    assert cfg["data"]["motion"] in ("lissajous", "ellipse", "polygon", "epicycle")
    assert cfg["model"]["encoding_norm"] == "whiten"
    # deterministic from the seed, different for another seed
    again = kx.resolve_run(kset.kalman_section({"kalman": sec}), "gen3_stopgrad", 2)
    other = kx.resolve_run(kset.kalman_section({"kalman": {**sec, "generalisation": {**gen, "seed": 6}}}), "gen3_stopgrad", 2)
    assert again["data"] == cfg["data"] and other["data"] != cfg["data"]
    clash = {**sec, "datasets": {**sec["datasets"], "gen1": sec["datasets"]["tiny8"]}}
    with pytest.raises(KeyError, match="clash"):
        kset.kalman_section({"kalman": clash})


def test_generalisation_model_size_from_the_highest_drawable_harmonic():
    from ldm.data.motions import draw_max_harmonic, draw_motions, get_motion, harmonic_model_size, motion_params

    K = draw_max_harmonic()
    # the bound holds for every motion the drawer produces (many seeds), and is attained
    seen = []
    for seed in range(60):
        for m in draw_motions(seed, 4):
            vc = VideoConfig.from_dict(m)
            seen.append(max(abs(h) for h in get_motion(vc.motion).harmonics(motion_params(vc))))
    assert max(seen) == K and K >= 2
    assert harmonic_model_size(K) == {"latent_dim": 2 * K, "state_dim": 4 * K}
    with pytest.raises(ValueError, match="harmonics"):
        harmonic_model_size(0)
    gen = {"seed": 5, "n_motions": 4, "size_by_harmonics": True, "dataset": {"seq_len": 20, "n_train": 16, "n_test": 4},
           "run": {"loss": "stopgrad", "model": {"hidden_dim": 50}, "optim": {"epochs": 1}}}
    sec = kset.kalman_section({"kalman": {**TINY_SECTION, "generalisation": gen}})
    for i in range(1, 5):  # one size for every motion, whatever it is
        cfg = kx.resolve_run(sec, f"gen{i}_stopgrad", 1)
        assert (cfg["model"]["latent_dim"], cfg["model"]["state_dim"], cfg["model"]["hidden_dim"]) == (2 * K, 4 * K, 50)
    assert "state_dim" not in gen["run"]["model"], "the config mapping is not edited"
    both = {**gen, "run": {"loss": "stopgrad", "model": {"state_dim": 10}}}
    with pytest.raises(KeyError, match="size_by_harmonics"):
        kset.kalman_section({"kalman": {**TINY_SECTION, "generalisation": both}})


def test_evaluation_reports_random_phase_baselines_and_collapse(data_dirs, tmp_path):
    cfg = kx.resolve_run(TINY_SECTION, "sg", 1)
    rd = tmp_path / "sg"
    kx.train(cfg, data_dirs["tiny8"], rd)
    ev = kx.evaluate(None, data_dirs["tiny8"], rd)
    for k in ("r2_random_phase", "r2_random_phase_encoder", "baseline_raw_pixels_random_phase_r2",
              "r2_heldout_encoder", "baseline_raw_pixels_r2", "baseline_untrained_r2", "encoding_spread_ratio"):
        assert math.isfinite(ev[k]), k
    assert isinstance(ev["collapsed"], bool) and isinstance(ev["a_at_bound"], bool)
    hist = json.loads((rd / "history.json").read_text())["epochs"]
    assert all("collapse/flag" in e and "enc/std_mean" in e for e in hist)
    # a collapsed seed is flagged in metrics.json and in the table, never summarised silently
    ev2 = dict(ev, seed=2, collapsed=True)
    rd2 = tmp_path / "sg2"
    rd2.mkdir()
    (rd2 / "eval.json").write_text(json.dumps(ev2))
    (rd2 / "history.json").write_text((rd / "history.json").read_text())
    metrics = kx.summarize([rd, rd2], tmp_path / "res" / "metrics.json", profile="test")
    assert metrics["collapse_detected"] is True and metrics["collapsed_runs"] == ["sg_seed2"]
    assert metrics["sg/collapsed_seeds"] == [2]
    # so is a learned model below OLS on the raw pixels (useless, even without a collapse)
    assert ev["below_raw_pixels"] == (ev["r2_heldout"] < ev["baseline_raw_pixels_r2"])
    ev3 = dict(ev, seed=3, collapsed=False, below_raw_pixels=True)
    rd3 = tmp_path / "sg3"
    rd3.mkdir()
    (rd3 / "eval.json").write_text(json.dumps(ev3))
    (rd3 / "history.json").write_text((rd / "history.json").read_text())
    metrics = kx.summarize([rd, rd2, rd3], tmp_path / "res" / "metrics.json", profile="test")
    assert metrics["below_raw_pixels_runs"] == sorted(["sg_seed3"] + (["sg_seed1", "sg_seed2"] if ev["below_raw_pixels"] else []))
    assert metrics["below_raw_pixels_detected"] is True and "sg_seed3" in metrics["flagged_runs"]
    assert metrics["sg/below_raw_pixels_seeds"][-1] == 3
    table = (tmp_path / "res" / "tables" / "runs.csv").read_text().splitlines()
    assert table[0].split(",")[4] == "collapsed" and table[2].split(",")[4] in ("True", "true", "1")


def test_noise_inferred_claim_has_baselines(data_dirs, tmp_path):
    cfg = kx.resolve_run(TINY_SECTION, "inferred", 1)
    rd = tmp_path / "inf"
    kx.train(cfg, data_dirs["tinycirc"], rd)
    ev = kx.evaluate(None, data_dirs["tinycirc"], rd)
    for k in ("baseline_noise_pixel_var_r2", "baseline_noise_untrained_r2", "noise_decoding_margin"):
        assert math.isfinite(ev[k]), k
    assert ev["noise_decoding_margin"] == pytest.approx(
        ev["noise_decoding_r2"] - max(ev["baseline_noise_pixel_var_r2"], ev["baseline_noise_untrained_r2"]))
    # what inferring the noise does for the filter: the same model with Sigma_D fixed at its mean
    for k in ("r2_heldout_noise_inferred", "r2_heldout_noise_const", "r2_noisy_frames_noise_inferred",
              "r2_noisy_frames_noise_const"):
        assert math.isfinite(ev[k]), k
    assert ev["r2_heldout_noise_inferred"] == pytest.approx(ev["r2_heldout"])
    assert ev["noise_inference_gain_r2"] == pytest.approx(ev["r2_heldout_noise_inferred"] - ev["r2_heldout_noise_const"])


def test_constant_noise_counterfactual_reproduces_a_fixed_noise_filter():
    m, cfg, frames = _model_and_batch("stopgrad", seed=3)
    m.eval()
    with torch.no_grad():
        _, out = m(frames)
        const = (m.kalman.log_scale.exp() * torch.ones(2)).numpy()
    h = kalman_eval.filter_constant_noise(m, frames, const, batch=3)
    assert torch.allclose(torch.from_numpy(h), out.filt_mean, atol=1e-5)
    h2 = kalman_eval.filter_constant_noise(m, frames, 100 * const, batch=3)
    assert not torch.allclose(torch.from_numpy(h2), out.filt_mean, atol=1e-3), "a noisier constant trusts z less"
