"""Batched differentiable Kalman filter (ldm.models.kalman_filter) against a per-sequence reference loop."""

from __future__ import annotations

import pytest
import torch

from ldm.objectives.entropy import gaussian_cross_entropy
from ldm.models.kalman_filter import (KalmanFilter, StableTransition, reference_filter_loglik, spd_solve,
                               spectral_radius)


def _randomise(kf: KalmanFilter, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        kf.offset.copy_(torch.randn(kf.offset.shape, generator=g, dtype=kf.offset.dtype))
        kf.log_process.copy_(0.3 * torch.randn(kf.log_process.shape, generator=g, dtype=kf.offset.dtype))
        kf.log_scale.fill_(-0.7)


@pytest.mark.parametrize("obs_noise,S,L", [("fixed", 6, 3), ("inferred", 6, 3), ("inferred", 2, 2),
                                            ("inferred", 3, 1), ("fixed", 2, 2)])
def test_batched_filter_matches_reference_loop(obs_noise, S, L):
    torch.manual_seed(0)
    kf = KalmanFilter(S, L, obs_noise=obs_noise, input_dim=16).double()
    _randomise(kf)
    z = torch.randn(4, 30, L, dtype=torch.float64)
    x = torch.randn(4, 30, 16, dtype=torch.float64)
    out = kf(z, x)
    ll = -gaussian_cross_entropy(z, out.pred_mean, out.innov_cov).sum(1)
    q = (kf.log_scale.exp() * kf.log_process.exp()).detach()
    ll_ref, h_ref = reference_filter_loglik(z, kf.transition().detach(), kf.offset.detach(), q,
                                            out.obs_var.detach().expand(4, 30, L), S)
    torch.testing.assert_close(ll, ll_ref, atol=1e-9, rtol=1e-10)
    torch.testing.assert_close(out.filt_mean, h_ref, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("L", [1, 2, 3])
def test_spd_solve_matches_linalg_solve(L):
    g = torch.Generator().manual_seed(L)
    M = torch.randn(7, L, L, generator=g, dtype=torch.float64)
    Se = M @ M.mT + 0.1 * torch.eye(L, dtype=torch.float64)
    Y = torch.randn(7, L, 4, generator=g, dtype=torch.float64)
    torch.testing.assert_close(spd_solve(Se, Y), torch.linalg.solve(Se, Y))


def test_shared_covariances_are_batch_free_and_equal_interleaved():
    kf = KalmanFilter(5, 2).double()
    _randomise(kf, 1)
    z = torch.randn(3, 25, 2, dtype=torch.float64)
    out = kf(z)
    assert out.filt_cov.shape == (1, 25, 5, 5) and out.innov_cov.shape == (1, 25, 2, 2)
    inter = kf._interleaved(z, kf.transition(), None)
    torch.testing.assert_close(out.filt_mean, inter.filt_mean)
    torch.testing.assert_close(out.innov_cov.expand_as(inter.innov_cov), inter.innov_cov)
    torch.testing.assert_close(out.filt_cov.expand_as(inter.filt_cov), inter.filt_cov)
    # covariances stay symmetric positive definite along the sequence
    assert torch.linalg.eigvalsh(out.filt_cov).min() > 0
    torch.testing.assert_close(out.filt_cov, out.filt_cov.mT, atol=1e-10, rtol=0)


def test_known_scalar_filter():
    """S = L = 1, A = 1, b = 0: the textbook scalar recursion."""
    kf = KalmanFilter(1, 1, init_log_scale=0.0).double()
    with torch.no_grad():
        kf.transition.weight.fill_(1.0)
        kf.transition.rho_max = 1.5
        kf.transition.soft_start = None
        kf.log_process.fill_(torch.log(torch.tensor(0.5)))
    z = torch.tensor([[[1.0], [2.0], [0.5]]], dtype=torch.float64)
    with torch.no_grad():
        out = kf(z)
    h, P = 0.0, 1.0
    for t in range(3):
        Pm = P + 0.5
        K = Pm / (Pm + 1.0)
        h = h + K * (float(z[0, t, 0]) - h)
        P = (1 - K) * Pm
        assert float(out.filt_mean[0, t, 0]) == pytest.approx(h)
        assert float(out.filt_cov[0, t, 0, 0]) == pytest.approx(P)


def test_stable_transition_rescales_without_editing_parameter():
    tr = StableTransition(4, rho_max=1.02)
    assert float(spectral_radius(tr().detach())) == pytest.approx(1 / 1.1, rel=1e-4)
    with torch.no_grad():
        tr.weight.mul_(3.0)
    before = tr.weight.detach().clone()
    A = tr()
    assert float(spectral_radius(A.detach())) == pytest.approx(1.02, rel=1e-5)
    torch.testing.assert_close(tr.weight.detach(), before)  # never edited in place
    A.sum().backward()
    assert torch.isfinite(tr.weight.grad).all()


def test_soft_radius_map_is_smooth_and_keeps_a_restoring_gradient():
    soft = StableTransition(3, rho_max=1.02, soft_start=0.95)
    hard = StableTransition(3, rho_max=1.02, soft_start=None)
    r = torch.linspace(0.5, 3.0, 200, dtype=torch.float64)
    f = soft.radius_map(r)
    assert torch.all(f <= 1.02) and torch.all(f[r < 1.2] < 1.02) and torch.all(torch.diff(f[r < 1.2]) > 0)
    torch.testing.assert_close(f[r <= 0.95], r[r <= 0.95])
    for tr in (soft, hard):
        with torch.no_grad():
            tr.weight.copy_(torch.diag(torch.tensor([1.05, 0.5, 0.3])))
        # derivative of rho(A) along the radial direction of W (scaling W up)
        (g,) = torch.autograd.grad(spectral_radius(tr()), tr.weight)
        radial = float((g * tr.weight.detach()).sum())
        if tr is soft:
            assert radial > 1e-3  # the loss can pull rho(A) back inside the boundary
        else:
            assert abs(radial) < 1e-6  # the hard rescale has none: A sticks at rho_max


def test_gradients_reach_all_filter_parameters_and_gradcheck():
    kf = KalmanFilter(3, 2).double()
    _randomise(kf, 2)
    z = torch.randn(2, 6, 2, dtype=torch.float64, requires_grad=True)

    def nll(z_):
        out = kf(z_)
        return gaussian_cross_entropy(z_, out.pred_mean, out.innov_cov).sum()

    assert torch.autograd.gradcheck(nll, (z,))
    nll(z).backward()
    for p in kf.fast_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


@pytest.mark.parametrize("kw", [dict(obs_noise="state"), dict(process_noise="error"),
                                dict(process_noise="observation+prediction", pred_steps=3),
                                dict(obs_noise="inferred", process_noise="error")])
def test_input_dependent_covariances_run_and_backprop(kw):
    torch.manual_seed(0)
    kf = KalmanFilter(4, 2, input_dim=9, **kw)
    z = torch.randn(5, 12, 2, requires_grad=True)
    x = torch.randn(5, 12, 9)
    out = kf(z, x)
    assert out.filt_mean.shape == (5, 12, 4) and out.innov_cov.shape == (5, 12, 2, 2)
    assert out.obs_var.shape == (5, 12, 2) and out.process_var.shape == (5, 12, 4)
    base = (kf.log_scale.exp() * kf.log_process.exp()).detach()
    assert (out.process_var >= base - 1e-6).all()
    loss = gaussian_cross_entropy(z, out.pred_mean, out.innov_cov).sum()
    loss.backward()
    net = kf.obs_net if kw.get("obs_noise") in ("state", "inferred") else kf.process_net
    grads = [p.grad for p in net.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert torch.isfinite(z.grad).all()


def test_inferred_variance_tracks_pixel_noise_at_init():
    kf = KalmanFilter(2, 2, obs_noise="inferred", input_dim=100, init_log_scale=0.0)
    x_lo = 0.1 * torch.randn(1, 4, 100)
    x_hi = 1.0 * torch.randn(1, 4, 100)
    with torch.no_grad():
        v_lo = kf.observation_variance(x_lo, 4)
        v_hi = kf.observation_variance(x_hi, 4)
    assert (v_hi > 20 * v_lo).all()
    assert float(v_hi.mean()) == pytest.approx(1.0, rel=0.3)  # ~ the frame's pixel variance


def test_bad_arguments():
    with pytest.raises(ValueError, match="latent_dim"):
        KalmanFilter(2, 3)
    with pytest.raises(ValueError, match="obs_noise"):
        KalmanFilter(2, 2, obs_noise="magic")
    kf = KalmanFilter(3, 2)
    with pytest.raises(ValueError, match=r"\[B, T, 2\]"):
        kf(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="frames"):
        KalmanFilter(2, 2, obs_noise="inferred")(torch.zeros(1, 3, 2))
