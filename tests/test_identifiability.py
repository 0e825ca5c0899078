"""The identifiability experiment's library: wobbly generator, MLP encoder + LSTM predictor, the four
predictive losses, affine-R² / unfolding metrics, resumable training, figures (paper Sec. 7.1, Fig. 5)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ldm.objectives import entropy as ee
from ldm.data import wobbly as w
from ldm.evaluation import identifiability as ident
from ldm.experiments.identifiability import figures as figs
from ldm.training import identifiability as T
from ldm.models.lstm_predictor import LSTMPredictor
from ldm.models.mlp_encoder import ENCODER_PRESETS, MLPEncoder, build_encoder
from ldm.objectives.predictive_losses import LOSSES, build_objective, predictive_loss
from ldm.training.loop import NonFiniteLossError


def tiny_data(**kw) -> w.WobblyConfig:
    base = dict(seq_len=20, n_train=32, n_test=4)
    base.update(kw)
    return w.WobblyConfig(**base)


# --------------------------------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------------------------------


def test_generator_deterministic_and_splits_independent():
    a_tr, a_te = w.generate_dataset(tiny_data(), seed=3)
    b_tr, b_te = w.generate_dataset(tiny_data(), seed=3)
    for k in a_tr:
        np.testing.assert_array_equal(a_tr[k], b_tr[k])
        np.testing.assert_array_equal(a_te[k], b_te[k])
    c_tr, _ = w.generate_dataset(tiny_data(), seed=4)
    assert not np.allclose(a_tr["state"], c_tr["state"])
    # independent child seeds: the test set is not a copy of the first training sequences
    assert not np.allclose(a_tr["state"][:4, 0], a_te["state"][:, 0])
    # more training sequences do not change the test set
    _, d_te = w.generate_dataset(tiny_data(n_train=64), seed=3)
    np.testing.assert_array_equal(a_te["state"], d_te["state"])
    assert a_tr["frames"].shape == (32, 20, 100) and a_tr["frames"].dtype == np.float32
    assert a_tr["state"].shape == (32, 20, 2) and a_tr["clamped"].dtype == bool


def test_initial_state_on_unit_circle_and_noise_free_orbit_follows_eq16():
    tr, _ = w.generate_dataset(tiny_data(process_noise=0.0, seq_len=40, n_train=64), seed=0)
    s = tr["state"].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(s[:, 0], axis=-1), 1.0, atol=1e-6)
    # one RK4 step of 0.3 per frame, no noise
    np.testing.assert_allclose(s[:, 1], w.rk4_step(w.wobbly_field, s[:, 0], 0.3), atol=1e-5)
    # the vector field is Eq. 16: fine integration follows the closed orbits
    # r(θ) = 1 + a[sin(k(θ−θ0)) − sin(k(φ0−θ0))], θ(t) = φ0 + t
    z = w.simulate("wobbly", 64, 2001, 0.003, 0.0, np.random.default_rng(0))
    a, k, th0 = 0.5, 4.0, -3 * math.pi / 8
    phi0 = np.arctan2(z[:, 0, 1], z[:, 0, 0])
    keep = 0.5 - a * np.sin(k * (phi0 - th0)) >= 0.3  # orbits that stay away from the singular origin
    assert keep.sum() >= 10
    z = z[keep]
    th = np.unwrap(np.arctan2(z[..., 1], z[..., 0]), axis=1)
    np.testing.assert_allclose(th[:, -1] - th[:, 0], 6.0, atol=1e-6)  # dθ/dt = 1
    r_pred = 1.0 + a * (np.sin(k * (th - th0)) - np.sin(k * (th[:, :1] - th0)))
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), r_pred, atol=1e-6)


def test_rk4_step_is_fourth_order_taylor_for_linear_fields():
    J = np.array([[0.0, -1.0], [1.0, 0.0]])
    z = np.array([[1.0, 0.5]])
    h = 0.3
    taylor = sum(np.linalg.matrix_power(J * h, n) / math.factorial(n) for n in range(5))
    np.testing.assert_allclose(w.rk4_step(lambda s: s @ J.T, z, h), z @ taylor.T, atol=1e-14)
    np.testing.assert_allclose(w.rk4_step(lambda s: w.rotation_field(s, 1.0), z, h), z @ taylor.T, atol=1e-14)


def test_process_noise_variance():
    rng = np.random.default_rng(0)
    z = w.simulate("rotation", 20_000, 2, 0.3, 0.1, rng, params={"omega": 0.0})
    np.testing.assert_allclose(np.var(z[:, 1] - z[:, 0], axis=0), 0.1, rtol=0.05)


def test_swirl_matrix_equals_skimage():
    from skimage.transform import swirl

    M = w.swirl_matrix(10, 10.0, 200.0)
    rng = np.random.default_rng(1)
    for img in rng.random((5, 10, 10)):
        ref = swirl(img, strength=10, radius=200, order=1, mode="reflect")
        np.testing.assert_allclose(M @ img.ravel(), ref.ravel(), atol=1e-12)
    np.testing.assert_allclose(M.sum(1), 1.0, atol=1e-12)  # bilinear weights


def test_render_and_clamping_flags():
    cfg = w.WobblyConfig()
    lo, hi = w.visible_window(10)
    assert (lo, hi) == pytest.approx((-3.0, 2.4))
    s = np.array([[0.0, 0.0], [2.39, -2.99], [2.5, 0.0], [0.0, -3.1], [10.0, 10.0]])
    np.testing.assert_array_equal(w.clamped_mask(s, cfg), [False, False, True, True, True])
    f = w.render(s, cfg, seed=1)
    np.testing.assert_allclose(f, (w.dot_images(s) @ w.swirl_matrix().T).astype(np.float32), atol=1e-6)
    # clamped states look like the border state they are clipped to
    np.testing.assert_allclose(f[4], w.render(np.array([[2.4, 2.4]]), cfg, 1)[0], atol=1e-6)
    dot = w.dot_images(np.array([[0.0, 0.0]]))[0].reshape(10, 10)
    assert dot.max() == pytest.approx(1.0) and np.unravel_index(dot.argmax(), dot.shape) == (5, 5)
    tr, _ = w.generate_dataset(tiny_data(), seed=0)
    np.testing.assert_array_equal(tr["clamped"], w.clamped_mask(tr["state"].astype(np.float64), cfg))


def test_grid_states_layout():
    g = w.grid_states(5, 2.0)
    assert g.shape == (5, 5, 2)
    np.testing.assert_allclose(g[0, 0], [-2, -2])
    np.testing.assert_allclose(g[4, 0], [2, -2])  # first index follows x
    np.testing.assert_allclose(g[0, 4], [-2, 2])
    assert not w.clamped_mask(g, w.WobblyConfig()).any()


def test_pluggable_motions_and_renderers():
    @w.register_motion("_test_drift", w.unit_circle_init, {"speed": 1.0})
    def drift(z, speed=1.0):
        return np.full_like(z, speed)

    try:
        cfg = tiny_data(motion="_test_drift", motion_params={"speed": 2.0}, process_noise=0.0)
        tr, _ = w.generate_dataset(cfg, seed=0)
        np.testing.assert_allclose(np.diff(tr["state"], axis=1), 0.6, atol=1e-5)
        assert cfg.to_dict()["motion_params"] == {"speed": 2.0}
    finally:
        del w.MOTIONS["_test_drift"]
    # higher-dimensional variant (Fig. A7): product of wobbly planes, rendered by a frozen random MLP
    cfg4 = tiny_data(state_dim=4, renderer="random_mlp")
    tr, te = w.generate_dataset(cfg4, seed=2)
    assert tr["state"].shape[-1] == 4 and tr["frames"].shape[-1] == 100 and not tr["clamped"].any()
    s = tr["state"][0, :3].astype(np.float64)
    np.testing.assert_allclose(w.render(s, cfg4, 2), tr["frames"][0, :3], atol=1e-5)  # one renderer per seed
    assert not np.allclose(w.render(s, cfg4, 3), tr["frames"][0, :3])
    with pytest.raises(ValueError, match="mlp_negative_slope"):
        w.generate_dataset(tiny_data(renderer="random_mlp", mlp_negative_slope=0.0), seed=0)
    with pytest.raises(ValueError, match="non-injective"):
        w.generate_dataset(tiny_data(state_dim=4, renderer="random_mlp", mlp_hidden=3), seed=0)


@pytest.mark.parametrize("kw, match", [
    ({"motion": "nope"}, "unknown motion"),
    ({"renderer": "nope"}, "unknown renderer"),
    ({"state_dim": 3}, "even state_dim"),
    ({"state_dim": 4}, "needs state_dim 2"),
    ({"motion_params": {"amplitud": 1.0}}, "amplitud"),
    ({"process_noise": -1.0}, "process_noise"),
])
def test_config_errors_name_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        w.WobblyConfig(**kw)
    with pytest.raises(ValueError, match="bogus"):
        w.WobblyConfig.from_dict({"bogus": 1})


def test_save_load_roundtrip_and_errors(tmp_path):
    paths = w.write_dataset(tiny_data(), 5, tmp_path / "d")
    arr, meta = w.load_split(paths["train"])
    tr, _ = w.generate_dataset(tiny_data(), 5)
    np.testing.assert_array_equal(arr["frames"], tr["frames"])
    assert meta["seed"] == 5 and meta["split"] == "train"
    assert w.config_from_meta(meta).to_dict() == tiny_data().to_dict()
    assert meta["clamped_fraction"] == pytest.approx(tr["clamped"].mean())
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        w.load_split(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        w.load_split(bad)
    np.savez(tmp_path / "nokey.npz", frames=np.zeros(1))
    with pytest.raises(ValueError, match="'state'"):
        w.load_split(tmp_path / "nokey.npz")
    assert not list((tmp_path / "d").glob(".*tmp*"))


# --------------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------------


def test_encoder_presets_and_lstm_predictor_is_causal():
    def n_linear(m):
        return sum(isinstance(x, torch.nn.Linear) for x in m.modules())

    assert ENCODER_PRESETS["paper"][:2] == (10, 200) and ENCODER_PRESETS["released_code"][:2] == (1, 200)
    assert n_linear(build_encoder({}, 100, 2)) == 11
    enc = build_encoder({"preset": "released_code"}, 100, 3)
    assert n_linear(enc) == 2 and enc(torch.zeros(4, 7, 100)).shape == (4, 7, 3)
    assert build_encoder({"preset": "paper", "hidden_layers": 2, "hidden_dim": 8}, 100, 2).hidden_dim == 8
    with pytest.raises(ValueError, match="preset"):
        build_encoder({"preset": "huge"}, 100, 2)
    assert n_linear(MLPEncoder(100, 2, 0)) == 1
    pred = LSTMPredictor(2, 10, (20, 20))
    z = torch.randn(3, 12, 2)
    p, h = pred(z)
    assert p.shape == (3, 12, 2) and h.shape == (3, 12, 10)
    z2 = z.clone()
    z2[:, 5] += 1.0
    p2, _ = pred(z2)
    torch.testing.assert_close(p2[:, :5], p[:, :5])  # p_t depends on z_{<=t} only
    assert not torch.allclose(p2[:, 5:], p[:, 5:])


def test_he_init_keeps_the_10x200_encoder_output_alive():
    """Issue 11: with PyTorch's default init the paper's 10 x 200 encoder's output is ~1e-5 of its input scale
    (vanishing signal); the He init of the ``paper`` preset keeps it at the 1-layer encoder's scale."""
    torch.manual_seed(0)
    x = torch.rand(512, 100) * (torch.rand(512, 100) < 0.1)  # sparse non-negative frames like the blobs
    x_std = float(x.std(0).mean())

    def out_std(cfg, seed=1):
        torch.manual_seed(seed)
        with torch.no_grad():
            return float(build_encoder(cfg, 100, 2)(x).std(0).min())

    deep_torch = out_std({"preset": "paper", "init": "torch"})
    deep_he = out_std({"preset": "paper"})
    shallow = out_std({"preset": "released_code"})
    assert build_encoder({"preset": "paper"}, 100, 2).init == "he"
    assert build_encoder({"preset": "released_code"}, 100, 2).init == "torch"
    assert deep_torch < 1e-3 * x_std  # the collapse the He init fixes
    assert 0.05 * x_std < deep_he < 20 * x_std  # a sane output scale at init
    assert deep_he > 0.1 * shallow
    for seed in (2, 3):  # not one lucky draw
        assert 0.05 * x_std < out_std({"preset": "paper"}, seed) < 20 * x_std
    with pytest.raises(ValueError, match="init"):
        build_encoder({"preset": "paper", "init": "xavier"}, 100, 2)


# --------------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------------


def _zp(B=2, T=5, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, T, d, generator=g, dtype=torch.float64, requires_grad=True)
    p = torch.randn(B, T, d, generator=g, dtype=torch.float64, requires_grad=True)
    return z, p


@pytest.mark.parametrize("name", LOSSES)
def test_losses_match_the_estimators(name):
    B, T, d = 2, 5, 2
    z, p = _zp(B, T, d)
    loss, terms = predictive_loss(build_objective(name, B), z, p)  # 5·B = 10 = B·T: no subsampling
    ce = 0.5 * ((z[:, 1:] - p[:, :-1]) ** 2).sum(-1).sum(1).mean().detach()
    zf = z.reshape(-1, d)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert float(terms["alignment_ce"]) == pytest.approx(float(ce))
    if name == "stopgrad":
        assert set(terms) == {"alignment_ce"}
        assert float(loss.detach()) == pytest.approx(float(ce))
        return
    h = {"knn": lambda: ee.knn_entropy(zf, k=3, p=2.0, clip_quantile=0.9, scale_by_dim=True),
         "logdet": lambda: ee.logdet_entropy(zf, jitter=1e-8, method="slogdet"),
         "kde": lambda: ee.bandwidth_kde_entropy(zf, bandwidth=1.0)}[name]()
    h = h.detach()
    assert float(terms[f"entropy_{name}"]) == pytest.approx(float(h))
    assert float(loss.detach()) == pytest.approx(float(ce - T * h))  # entropy weighted by T (not T − 1)


def test_knn_scale_by_dim_option_and_subset_size():
    z, p = _zp(2, 5, 2)
    a = predictive_loss(build_objective("knn", 2), z, p)[1]["entropy_knn"]
    b = predictive_loss(build_objective("knn", 2, {"knn": {"scale_by_dim": False}}), z, p)[1]["entropy_knn"]
    assert float(a) == pytest.approx(2 * float(b))  # paper form ×d vs released code
    assert build_objective("knn", 128).subset_size == 640  # 5·B
    assert build_objective("kde", 128).subset_size is None  # all B·T encodings
    with pytest.raises(KeyError, match="scale_by_dimm"):
        build_objective("knn", 2, {"knn": {"scale_by_dimm": True}})
    with pytest.raises(ValueError, match="unknown loss"):
        build_objective("simclr", 2)


def test_stopgrad_gradient_reaches_encodings_only_through_predictions():
    z, p = _zp()
    loss, _ = predictive_loss(build_objective("stopgrad", 2), z, p.detach())
    assert not loss.requires_grad  # the targets are detached, the predictions are constants here
    loss, _ = predictive_loss(build_objective("stopgrad", 2), z, p)
    loss.backward()
    assert z.grad is None and p.grad is not None
    z2, p2 = _zp()
    predictive_loss(build_objective("knn", 2), z2, p2)[0].backward()
    assert z2.grad is not None and float(z2.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", ["knn", "logdet", "kde"])
def test_no_op_allocates_more_than_n_squared(name):
    """Pairwise estimators stay O(N²): no forward or backward op creates an N×N×d tensor."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class MaxNumel(TorchDispatchMode):
        biggest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor):
                    MaxNumel.biggest = max(MaxNumel.biggest, t.numel())
            return out

    B, T, d = 4, 100, 3
    N = B * T
    z = torch.randn(B, T, d, requires_grad=True)
    p = torch.randn(B, T, d, requires_grad=True)
    obj = build_objective(name, B)
    with MaxNumel():
        loss, _ = predictive_loss(obj, z, p)
        loss.backward()
    assert MaxNumel.biggest <= N * N < N * N * d


def test_separate_predictor_stopgrad_equals_stopgrad_when_the_predictors_agree():
    """App. A.6.2: with q_φ ≡ q (same mean, unit variance) the separate-predictor loss has exactly the stopgrad
    gradient (the z_t-gradients of the alignment and of Ĥ_φ cancel); a q_φ with variance v_φ < 1 pushes z_t away
    from the prediction (expands the residual towards unit variance), v_φ > 1 pulls it in."""
    from ldm.objectives.predictive_losses import separate_predictor_stopgrad_loss

    torch.manual_seed(0)
    z0, w0 = torch.randn(3, 6, 2), torch.randn(2, 2)
    sg = build_objective("stopgrad", 3)

    def grads(fn):
        z, wgt = z0.clone().requires_grad_(True), w0.clone().requires_grad_(True)
        pred = torch.tanh(z @ wgt)  # depends on the encodings, like the LSTM
        fn(z, pred).backward()
        return z.grad, wgt.grad

    ref = grads(lambda z, p: predictive_loss(sg, z, p)[0])
    same = grads(lambda z, p: separate_predictor_stopgrad_loss(z, p, None, torch.tanh(z.detach() @ w0), torch.ones(1))[0])
    for a, b in zip(ref, same):
        torch.testing.assert_close(a, b)
    for v, sign in ((0.5, -1.0), (2.0, 1.0)):
        z = z0.clone().requires_grad_(True)
        p = torch.zeros_like(z0)
        separate_predictor_stopgrad_loss(z, p, None, p, torch.full((1,), v))[0].backward()
        # gradient w.r.t. z_t (t >= 1) = (z_t − p)(1 − 1/v): descent shrinks the residual iff v > 1
        torch.testing.assert_close(z.grad[:, 1:], (z0[:, 1:] * (1 - 1 / v)) / 3)
        assert sign * float((z.grad[:, 1:] * z0[:, 1:]).sum()) > 0
    with pytest.raises(ValueError, match="equal shape"):
        separate_predictor_stopgrad_loss(z0, z0[:, 1:], None, z0, torch.ones(1))


def test_predictive_variance_ema_target_and_entropy_predictor_options():
    cfg = T.resolve_config({"loss": "stopgrad", "model": {"encoder": {"preset": "released_code"}, "variance": "state",
                                                          "target_ema": 0.5, "entropy_predictor": "learned"}})
    m = T.PredictiveLDM(cfg["model"], 100, 2, seed=0, loss="stopgrad")
    x = torch.rand(2, 7, 100)
    z, p, v = m.forward_full(x)
    assert v.shape == (2, 7, 2) and bool((v > 0).all())
    ep, ev = m.entropy_prediction(z)
    assert ep.shape == z.shape and ev.shape == (2,)
    names = {g["name"] for g in T.build_optimizer(m, cfg["optim"]).param_groups}
    assert names == {"encoder", "rnn", "head", "probe", "entropy_rnn", "entropy_head", "variance"}
    torch.testing.assert_close(m.targets(x), m.encoder(x).detach())  # EMA starts at the encoder
    with torch.no_grad():
        for q in m.encoder.parameters():
            q.add_(1.0)
    before = [q.clone() for q in m.target_encoder.parameters()]
    m.update_target()
    for t, b, o in zip(m.target_encoder.parameters(), before, m.encoder.parameters()):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * o)
    assert all(not q.requires_grad for q in m.target_encoder.parameters())
    for key, bad in (("variance", "huge"), ("entropy_predictor", "mlp"), ("target_ema", 1.5)):
        with pytest.raises(ValueError, match=key):
            T.PredictiveLDM({**cfg["model"], key: bad}, 100, 2, 0, "stopgrad")
    with pytest.raises(ValueError, match="entropy_predictor"):
        T.PredictiveLDM({**cfg["model"], "entropy_predictor": "state"}, 100, 2, 0, "knn")


def test_loss_shape_errors():
    obj = build_objective("knn", 2)
    with pytest.raises(ValueError, match="equal shape"):
        predictive_loss(obj, torch.zeros(2, 5, 2), torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="T=1"):
        predictive_loss(obj, torch.zeros(2, 1, 2), torch.zeros(2, 1, 2))


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------


def test_affine_r2_hand_cases():
    rng = np.random.default_rng(0)
    s_tr, s_te = rng.normal(size=(10, 30, 2)), rng.normal(size=(5, 30, 2))
    A = np.array([[2.0, -1.0], [0.5, 3.0]])
    r = ident.affine_r2(s_tr @ A + 7.0, s_tr, s_te @ A + 7.0, s_te)
    assert r["r2"] == pytest.approx(1.0) and r["n_test"] == 150
    noise = ident.affine_r2(rng.normal(size=(10, 30, 2)), s_tr, rng.normal(size=(5, 30, 2)), s_te)
    assert abs(noise["r2"]) < 0.05
    # one output predicted perfectly, the other not at all: mean R² = 0.5
    half = ident.affine_r2(np.stack([s_tr[..., 0], np.zeros_like(s_tr[..., 0]) + rng.normal(size=s_tr.shape[:2])], -1),
                           s_tr, np.stack([s_te[..., 0], rng.normal(size=s_te.shape[:2])], -1), s_te)
    assert half["r2"] == pytest.approx(0.5, abs=0.05)


def test_identifiability_r2_all_vs_unclamped():
    rng = np.random.default_rng(1)
    s_tr, s_te = 3 * rng.normal(size=(20, 50, 2)), 3 * rng.normal(size=(10, 50, 2))
    lo, hi = -3.0, 2.4
    enc = lambda s: np.clip(s, lo, hi) * 2.0 + 1.0  # an encoder that is exact where the state is visible
    c_tr, c_te = ((s_tr < lo) | (s_tr > hi)).any(-1), ((s_te < lo) | (s_te > hi)).any(-1)
    r = ident.identifiability_r2(enc(s_tr), s_tr, c_tr, enc(s_te), s_te, c_te)
    assert r["r2_unclamped"] == pytest.approx(1.0)
    assert r["r2_all"] < 0.95
    assert r["unclamped_fraction_test"] == pytest.approx(1 - c_te.mean())
    with pytest.raises(ValueError, match="mask shape"):
        ident.affine_r2(s_tr, s_tr, s_te, s_te, train_mask=np.ones(3, bool))


def test_notebook_r2():
    z = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    W, b = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([1.0, -1.0])
    assert ident.notebook_r2(W, b, z, z @ W.T + b) == pytest.approx(1.0)
    y = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    pred = z @ W.T + b
    ss = ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    assert ident.notebook_r2(W, b, z, y) == pytest.approx(float(np.mean(1 - ss)))


def test_orientation_consistency_hand_cases():
    g = w.grid_states(6, 2.0)
    assert ident.signed_areas(g[:2, :2]).ravel() == pytest.approx([0.8 * 0.8, 0.8 * 0.8])
    ident_map = ident.orientation_consistency(g)
    assert ident_map == {"orientation_consistency": 1.0, "fold_fraction": 0.0, "degenerate_fraction": 0.0}
    mirrored = g @ np.array([[1.0, 0.0], [0.3, -2.0]])  # affine with det < 0: orientation flips, all alike
    assert ident.orientation_consistency(mirrored)["orientation_consistency"] == 1.0
    smooth = np.stack([g[..., 0] + 0.1 * np.sin(g[..., 1]), g[..., 1] + 0.1 * g[..., 0] ** 2], -1)
    assert ident.orientation_consistency(smooth)["orientation_consistency"] == 1.0
    folded = np.stack([np.abs(g[..., 0] - 0.4), g[..., 1]], -1)  # fold along x = 0.4 (3 of 5 columns flip)
    oc = ident.orientation_consistency(folded)
    assert oc["fold_fraction"] == pytest.approx(2 / 5) and oc["orientation_consistency"] == pytest.approx(3 / 5)
    collapsed = ident.orientation_consistency(np.zeros_like(g))
    assert collapsed["orientation_consistency"] == 0.0 and collapsed["degenerate_fraction"] == 1.0
    line = ident.orientation_consistency(np.stack([g[..., 0], np.zeros_like(g[..., 0])], -1))
    assert line["orientation_consistency"] == 0.0


# --------------------------------------------------------------------------------------------------
# training, resume, evaluation, figures
# --------------------------------------------------------------------------------------------------


def tiny_cfg(loss="knn", **over):
    cfg = {"loss": loss, "progress": False,
           "model": {"encoder": {"hidden_layers": 1, "hidden_dim": 16}},
           "optim": {"batch_size": 8, "epochs": 3},
           "eval": {"train_subset": 16, "grid_n": 8, "max_fit_frames": 10_000}}
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return T.resolve_config(cfg, seed=2)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("wobbly")
    w.write_dataset(tiny_data(), 1, d)
    return d


def test_optimizer_groups_and_schedules():
    cfg = T.resolve_config({"loss": "stopgrad", "optim": {"batch_size": 128}})
    model = T.PredictiveLDM(cfg["model"], 100, 2, seed=0)
    opt = T.build_optimizer(model, cfg["optim"])
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == pytest.approx({"encoder": 0.0025 * 0.5 * 2, "rnn": 0.0025 * 0.5 * 20, "head": 0.0025 * 0.5 * 30,
                                 "probe": 0.25})
    n = sum(p.numel() for p in model.parameters())
    assert n == sum(p.numel() for g in opt.param_groups for p in g["params"])
    sch = T.build_scheduler(opt, cfg["optim"])
    seen = []
    for _ in range(20):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sch.step()
    assert seen[0] == pytest.approx([0.0] * 4)  # warm-up from warmup_start_lr = 0 (official)
    assert seen[9][:3] == pytest.approx([lrs["encoder"], lrs["rnn"], lrs["head"]])
    assert seen[19][0] == pytest.approx(5e-5 * 0.5 + 0.5 * (lrs["encoder"] - 2.5e-5) * (1 + math.cos(math.pi * 9 / 10)))
    cfg = T.resolve_config({"loss": "knn", "optim": {"epochs": 4}})
    opt = T.build_optimizer(T.PredictiveLDM(cfg["model"], 100, 2, 0), cfg["optim"])
    sch = T.build_scheduler(opt, cfg["optim"])
    base = opt.param_groups[0]["lr"]
    for _ in range(4):
        opt.step()
        sch.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(base * 0.45)  # min_lr / lr
    with pytest.raises(KeyError, match="optim.bogus"):
        T.resolve_config({"optim": {"bogus": 1}})
    with pytest.raises(ValueError, match="loss must be"):
        T.resolve_config({"loss": "vicreg"})


def _comparable(history):
    return [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in history]


@pytest.mark.parametrize("loss,norm,extra", [("knn", "none", {}), ("stopgrad", "none", {}), ("stopgrad", "whiten", {}),
                                             ("stopgrad", "none", {"variance": "state", "target_ema": 0.9,
                                                                   "entropy_predictor": "state"})])
def test_killed_run_resumes_with_identical_metrics(data_dir, tmp_path, loss, norm, extra):
    # whiten: the running statistics are checkpointed too; extra: the EMA target encoder, variance nets and the
    # separate entropy predictor as well
    cfg = tiny_cfg(loss, model={"encoding_norm": norm, **extra})
    T.train(cfg, data_dir, tmp_path / "full")
    full = json.loads((tmp_path / "full" / "history.json").read_text())["epochs"]

    class Killed(Exception):
        pass

    def kill_after_first(epoch, metrics):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        T.train(cfg, data_dir, tmp_path / "killed", on_epoch=kill_after_first)
    assert not (tmp_path / "killed" / "model.pt").exists()
    T.train(cfg, data_dir, tmp_path / "killed")
    resumed = json.loads((tmp_path / "killed" / "history.json").read_text())["epochs"]
    assert _comparable(resumed) == _comparable(full)
    a = torch.load(tmp_path / "full" / "model.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "killed" / "model.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    drop = lambda d: {k: v for k, v in d.items() if k != "train_time_s"}  # noqa: E731
    assert drop(T.evaluate(tmp_path / "full", data_dir)) == drop(T.evaluate(tmp_path / "killed", data_dir))


def test_non_finite_loss_names_step_and_term(data_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = T.predictive_loss

    def poisoned(objective, z, pred, **kw):
        loss, terms = real(objective, z, pred, **kw)
        calls["n"] += 1
        if calls["n"] == 6:  # step 6 = the 2nd step of epoch 2 (4 steps per epoch)
            terms["entropy_knn"] = torch.tensor(float("nan"))
            loss = loss + float("nan")
        return loss, terms

    monkeypatch.setattr(T, "predictive_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 6 \(epoch 2.*entropy_knn=nan.*last good checkpoint"):
        T.train(tiny_cfg("knn"), data_dir, tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "run" / "model.pt").exists()


def test_train_evaluate_and_figures(data_dir, tmp_path):
    cfg = tiny_cfg("logdet", model={"state_dim": 3})
    summary = T.train(cfg, data_dir, tmp_path / "run")
    assert summary["steps"] == 12 and summary["epochs"] == 3
    hist = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"]
    assert all("test/r2_unclamped_subsetfit" in e and "train/entropy_logdet" in e for e in hist)
    ev = T.evaluate(tmp_path / "run", data_dir)
    for row in ("learned", "random_init", "pixels_ols_supervised", "pixels_pca_unsupervised"):
        assert -10 < ev[f"{row}/r2_all"] <= 1 and -10 < ev[f"{row}/r2_unclamped"] <= 1
    assert ev["state_dim"] == 3 and ev["encoder_layers"] == 1
    for name in ("before", "after"):
        assert 0.0 <= ev[f"grid_{name}/orientation_consistency"] <= 1.0
    assert json.loads((tmp_path / "run" / "eval.json").read_text()) == pytest.approx(ev)
    lat = np.load(tmp_path / "run" / "latents.npz")
    assert lat["grid"].shape == (8, 8, 2) and lat["grid_after"].shape == (8, 8, 3)
    fd = tmp_path / "figs"
    paths = figs.fig5c_maps(lat["grid"], lat["grid_before"], lat["grid_after"], fd / "fig5c",
                            {"before": 0.5, "after": 0.9}, W_before=lat["W_before"], c_before=lat["c_before"],
                            W_after=lat["W_after"], c_after=lat["c_after"])
    paths += figs.fig5b_system(lat["state_test"][0], lat["clamped_test"][0], lat["frames_test"][0], fd / "fig5b")
    paths += figs.figA6_losses({"logdet": {"grid": lat["grid"], "after": lat["grid_after"], "W": lat["W_after"],
                                           "c": lat["c_after"], "r2_unclamped": [0.5], "orientation": [0.7]}},
                               fd / "figA6")
    paths += figs.figA7_dims([ev, {**ev, "state_dim": 2}], fd / "figA7")
    paths += figs.training_curves({"logdet": hist}, fd / "curves")
    assert len(paths) == 10 and all(p.is_file() and p.stat().st_size > 0 for p in paths)
    T.train(tiny_cfg("knn", optim={"epochs": 1}), data_dir, tmp_path / "run2")
    T.evaluate(tmp_path / "run2", data_dir)
    # without a random-MLP run there is no Fig. A7 (the swirled 2-D and 3-D runs are not a dimension sweep)
    made = figs.figures_from_runs([tmp_path / "run", tmp_path / "run2"], tmp_path / "all")
    names = sorted(p.name for p in made)
    assert names == sorted(f"{n}.{e}" for n in ("fig5c_knn_d2_seed2", "fig5c_logdet_d3_seed2", "fig5b",
                                                 "figA6_losses") for e in ("png", "pdf"))
    # Fig. A7 = the runs on the random-MLP observation of a 4-D state; they stay out of Fig. A6
    mlp_dir = tmp_path / "mlp4"
    w.write_dataset(tiny_data(renderer="random_mlp", state_dim=4), 1, mlp_dir)
    T.train(tiny_cfg("knn", model={"state_dim": 4}, optim={"epochs": 1}), mlp_dir, tmp_path / "run3")
    ev3 = T.evaluate(tmp_path / "run3", mlp_dir)
    assert ev3["renderer"] == "random_mlp" and ev3["data_state_dim"] == 4 and ev["renderer"] == "swirl_dot"
    made = figs.figures_from_runs([tmp_path / "run", tmp_path / "run2", tmp_path / "run3"], tmp_path / "all3")
    names = sorted(p.name for p in made)
    assert names == sorted(f"{n}.{e}" for n in ("fig5c_knn_d2_seed2", "fig5c_logdet_d3_seed2", "fig5c_knn_d4_seed2",
                                                 "fig5b", "figA6_losses", "figA7_dims") for e in ("png", "pdf"))


def test_stale_checkpoint_is_not_resumed_and_finished_run_deletes_checkpoints(data_dir, tmp_path):
    class Killed(Exception):
        pass

    def kill(epoch, metrics):
        raise Killed

    with pytest.raises(Killed):  # a killed run leaves its checkpoint under resume key "a"
        T.train(tiny_cfg("knn", optim={"epochs": 2}), data_dir, tmp_path / "run", on_epoch=kill, resume_key="a")
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    s = T.train(tiny_cfg("knn", optim={"epochs": 2}), data_dir, tmp_path / "run", resume_key="b")
    assert s["epochs"] == 2 and s["steps"] == 8  # restarted from scratch, not resumed
    assert not (tmp_path / "run" / "checkpoints").exists()  # a finished run keeps no checkpoints


def test_normal_equation_ols_and_pca_match_reference():
    from ldm.evaluation.probes import fit_ols

    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 8))  # rank 6 of 8 features
    Y = X @ rng.normal(size=(8, 2)) + 0.1 * rng.normal(size=(500, 2)) + 4.0
    W, c = ident.fit_ols_normal(X, Y)
    W2, c2 = fit_ols(X, Y)
    np.testing.assert_allclose(X @ W + c, X @ W2 + c2, atol=1e-8)
    mu, axes = ident.pca_fit(X, 2)
    _, _, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    np.testing.assert_allclose(np.abs(axes.T @ vt[:2].T), np.eye(2), atol=1e-8)


# --------------------------------------------------------------------------------------------------
# encoding_norm: whitening the encodings (the stopgrad loss's missing marginal-entropy term)
# --------------------------------------------------------------------------------------------------


def _stopgrad_loss_at_scale(norm: str, a: float, zero_head: bool) -> float:
    """Stopgrad training loss of a fixed model whose encoder output layer is scaled by ``a``."""
    cfg = tiny_cfg("stopgrad", model={"encoding_norm": norm})
    model = T.PredictiveLDM(cfg["model"], 100, 2, seed=0, loss="stopgrad")
    last = model.encoder.net[-1]
    with torch.no_grad():
        last.weight.mul_(a)
        last.bias.mul_(a)
        if zero_head:  # a predictor that always predicts 0: shrinking the targets is the collapse direction
            model.predictor.head[-1].weight.zero_()
            model.predictor.head[-1].bias.zero_()
    x = torch.randn(8, 20, 100, generator=torch.Generator().manual_seed(1))
    z, pred = model(x)
    loss, _ = predictive_loss(build_objective("stopgrad", 8), z, pred)
    return float(loss.detach())


@pytest.mark.parametrize("zero_head", [True, False])
def test_whitened_stopgrad_cannot_lower_its_loss_by_scaling_the_encodings(zero_head):
    scales = (1e-3, 0.1, 0.5, 3.0, 100.0)
    ref = _stopgrad_loss_at_scale("whiten", 1.0, zero_head)
    for a in scales:
        assert _stopgrad_loss_at_scale("whiten", a, zero_head) == pytest.approx(ref, rel=1e-4)
    if zero_head:
        # without whitening the same model lowers its loss by shrinking: L(a) = a² L(1) (alignment → 0)
        raw = {a: _stopgrad_loss_at_scale("none", a, True) for a in (1.0, *scales)}
        assert raw[0.1] == pytest.approx(0.01 * raw[1.0], rel=1e-4)
        assert raw[1e-3] < 1e-4 * raw[1.0] < raw[1.0] < raw[100.0]


def test_encoding_norm_resolution_running_stats_and_affine_invariance():
    assert T.resolve_encoding_norm("auto", "stopgrad") == "whiten"
    assert T.resolve_encoding_norm("auto", "knn") == "none"
    assert T.resolve_encoding_norm(None, "stopgrad") == "none"
    with pytest.raises(ValueError, match="model.encoding_norm"):
        T.resolve_encoding_norm("batchnorm", "stopgrad")
    cfg = tiny_cfg("stopgrad", model={"encoding_norm": "auto"})
    model = T.PredictiveLDM(cfg["model"], 100, 2, seed=0, loss=cfg["loss"])
    assert model.encoding_norm == "whiten" and model.norm is not None
    assert T.PredictiveLDM(cfg["model"], 100, 2, seed=0, loss="knn").norm is None
    x = torch.randn(16, 20, 100, generator=torch.Generator().manual_seed(2)) * 3 + 1
    model.train()
    z = model.embed(x).reshape(-1, 2)
    # training: whitened over the pooled batch x time encodings
    torch.testing.assert_close(z.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cov(z.T), torch.eye(2), atol=1e-4, rtol=0)
    for _ in range(200):  # running statistics converge to the batch's
        model.embed(x)
    # evaluation (encode): the running statistics, the same map the predictor was trained on
    z_eval = torch.from_numpy(T.encode(model, x.numpy()))
    torch.testing.assert_close(z_eval.reshape(-1, 2), z.detach(), atol=1e-3, rtol=0)
    raw = T.encode(model, x.numpy(), raw=True)
    np.testing.assert_allclose(raw, model.encoder(x).detach().numpy(), atol=1e-5)
    # the affine R² is invariant to the (affine) whitening
    state = np.random.default_rng(0).normal(size=(16, 20, 2)).astype(np.float32)
    state = state + 0.1 * raw  # something the encodings predict
    r_w = ident.affine_r2(z_eval.numpy()[:8], state[:8], z_eval.numpy()[8:], state[8:])
    r_raw = ident.affine_r2(raw[:8], state[:8], raw[8:], state[8:])
    assert r_w["r2"] == pytest.approx(r_raw["r2"], abs=1e-6)


def test_encoding_spread_detects_shrinking_and_collinearity():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 2))
    s = T.encoding_spread(z)
    assert 0.8 < s["enc/std_min"] <= s["enc/std_max"] < 1.2 and s["enc/cov_eig_ratio"] > 0.7
    assert T.encoding_spread(0.01 * z)["enc/std_max"] < 0.02
    col = np.stack([z[:, 0], 2 * z[:, 0] + 1e-3 * z[:, 1]], -1)
    assert T.encoding_spread(col)["enc/cov_eig_ratio"] < 1e-5
