"""Linear probes (ldm.evaluation.probes): R^2, held-out OLS, uncertainty propagation, noise-level decoding."""

from __future__ import annotations

import numpy as np
import pytest

from ldm.evaluation import probes


def test_r2_matches_sklearn():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 2))
    yp = y + 0.3 * rng.normal(size=(50, 2))
    assert probes.r2_score(y, yp) == pytest.approx(r2_score(y, yp))
    assert probes.r2_score(y, y) == 1.0


def test_ols_recovers_linear_map_and_heldout_r2():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(4, 2))
    c = np.array([0.5, -1.0])
    Xtr = rng.normal(size=(10, 30, 4))
    Xte = rng.normal(size=(3, 30, 4))
    res = probes.heldout_r2(Xtr, Xtr @ W + c, Xte, Xte @ W + c)
    np.testing.assert_allclose(res["W"], W, atol=1e-10)
    np.testing.assert_allclose(res["c"], c, atol=1e-10)
    assert res["r2"] == pytest.approx(1.0)
    noisy = probes.heldout_r2(Xtr, Xtr @ W + c + rng.normal(size=(10, 30, 2)), Xte, Xte @ W + c)
    assert 0.5 < noisy["r2"] < 1.0
    # ridge shrinks the map
    Wr, _ = probes.fit_ols(Xtr.reshape(-1, 4), (Xtr @ W).reshape(-1, 2), ridge=1e4)
    assert np.linalg.norm(Wr) < np.linalg.norm(W)


def test_propagate_covariance_matches_monte_carlo():
    rng = np.random.default_rng(2)
    W = rng.normal(size=(3, 2))
    M = rng.normal(size=(3, 3))
    P = M @ M.T + 0.1 * np.eye(3)
    cov = probes.propagate_covariance(W, P)
    np.testing.assert_allclose(cov, W.T @ P @ W)
    h = rng.multivariate_normal(np.zeros(3), P, size=200_000)
    np.testing.assert_allclose(np.cov((h @ W).T), cov, rtol=0.03, atol=0.02)
    batch = probes.propagate_covariance(W, np.stack([P, 2 * P]))
    np.testing.assert_allclose(batch[1], 2 * cov)
    np.testing.assert_allclose(probes.probe_std(W, P), np.sqrt(np.diag(cov)))


def test_paper_probe_r2_drops_bias_and_subtracts_offset():
    rng = np.random.default_rng(3)
    Wt = rng.normal(size=(2, 3))  # torch Linear layout [out, in]
    b = rng.normal(size=3)
    h = rng.normal(size=(100, 3))
    pos = (h - b) @ Wt.T
    assert probes.paper_probe_r2(h, b, Wt, pos) == pytest.approx(1.0)
    assert probes.paper_probe_r2(h, 0 * b, Wt, pos) < 1.0


def test_noise_level_decoding_and_binned_error():
    rng = np.random.default_rng(4)
    level = rng.exponential(0.3, size=(20, 50)) + 1e-3
    feat = np.stack([level * 2.0, level * 3.0], -1) * np.exp(0.01 * rng.normal(size=(20, 50, 2)))
    res = probes.noise_level_decoding(feat[:15], level[:15], feat[15:], level[15:])
    assert res["spearman"] > 0.99 and res["pearson"] > 0.9 and res["r2"] > 0.5
    centres, means = probes.binned_error(level, level, n_bins=4)
    assert len(centres) == 4 and np.all(np.diff(means) > 0)
