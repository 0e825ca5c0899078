"""Tests for linear ICA as latent distribution matching (paper Sec. 3.1, Eq. 3, Fig. 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ldm.experiments.ica.figures import (
    plot_objective_history,
    plot_ou_paths,
    plot_recovered_images,
    plot_signal_histograms,
)
from ldm.models.ica import (
    FitResult,
    GaussianSourceModel,
    GeneralizedGaussianSourceModel,
    align_to_sources,
    amari_index,
    fit_unmixing,
    generalized_gaussian_log_density,
    ldm_ica_objective,
    matched_correlations,
    mix,
    mixing_matrix,
)
from ldm.data.ica_sources import (
    image_shape,
    natural_image_sources,
    ornstein_uhlenbeck_sources,
    ou_stationary_variance,
)

THETAS = (2.0, 0.2)
SIGMA, DT = 0.3, 0.1
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------
# fixtures: the two Fig. 2 experiments with default settings (fitted once per module)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_experiment() -> dict:
    S = natural_image_sources()
    A = mixing_matrix("symmetric")
    X = mix(S, A)
    fit = fit_unmixing(X)
    return {"S": S, "A": A, "X": X, "fit": fit, "Y": fit.W @ X}


@pytest.fixture(scope="module")
def ou_experiment() -> dict:
    S = ornstein_uhlenbeck_sources()
    A = mixing_matrix("rotation", angle_deg=45.0)
    X = mix(S, A)
    v = [ou_stationary_variance(t, SIGMA, dt=DT) for t in THETAS]
    fit = fit_unmixing(X, "gaussian", variances=v, seed=0)
    return {"S": S, "A": A, "X": X, "v": v, "fit": fit, "Y": fit.W @ X}


# ------------------------------------------------------------------------------------------
# sources
# ------------------------------------------------------------------------------------------
def test_ou_sources_deterministic_given_seed() -> None:
    a = ornstein_uhlenbeck_sources(n_steps=2000, seed=7)
    b = ornstein_uhlenbeck_sources(n_steps=2000, seed=7)
    c = ornstein_uhlenbeck_sources(n_steps=2000, seed=8)
    assert a.shape == (2, 2000) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    np.testing.assert_array_equal(a[:, 0], 0.0)  # x_0 = 0


def test_ou_sources_follow_euler_maruyama_recursion() -> None:
    S = ornstein_uhlenbeck_sources(thetas=THETAS, n_steps=500, seed=3)
    # the residual x_{t+1} - (1 - theta dt) x_t must be white noise of std sigma sqrt(dt)
    for th, row in zip(THETAS, S):
        resid = row[1:] - (1 - th * DT) * row[:-1]
        assert abs(resid.std() - SIGMA * math.sqrt(DT)) < 0.1 * SIGMA * math.sqrt(DT)
    # the two sources use independent noise
    r0 = S[0, 1:] - (1 - THETAS[0] * DT) * S[0, :-1]
    r1 = S[1, 1:] - (1 - THETAS[1] * DT) * S[1, :-1]
    assert abs(np.corrcoef(r0, r1)[0, 1]) < 0.2


def test_ou_stationary_variance_formulas() -> None:
    assert ou_stationary_variance(2.0, 0.3) == pytest.approx(0.09 / 4)
    assert ou_stationary_variance(0.2, 0.3) == pytest.approx(0.09 / 0.4)
    # exact variance of the Euler-Maruyama AR(1) chain
    assert ou_stationary_variance(2.0, 0.3, dt=0.1) == pytest.approx(0.025)
    with pytest.raises(ValueError):
        ou_stationary_variance(-1.0, 0.3)


def test_ou_sample_variance_matches_stationary_variance() -> None:
    n = 200_000
    S = ornstein_uhlenbeck_sources(thetas=THETAS, n_steps=n, seed=11)
    for th, row in zip(THETAS, S):
        v = ou_stationary_variance(th, SIGMA, dt=DT)
        rho = 1 - th * DT
        # standard error of the sample variance of an AR(1) process
        se = v * math.sqrt(2.0 / n * (1 + rho**2) / (1 - rho**2))
        assert abs(row.var() - v) < 4 * se, (th, row.var(), v, se)
    # the fast source discriminates the discrete-time variance from the continuous one
    v_cont = ou_stationary_variance(THETAS[0], SIGMA)
    v_disc = ou_stationary_variance(THETAS[0], SIGMA, dt=DT)
    assert abs(S[0].var() - v_disc) < abs(S[0].var() - v_cont)


def test_natural_image_sources_shape_and_range() -> None:
    S = natural_image_sources(size=32)
    assert S.shape == (2, 32 * 32 * 3) and S.dtype == np.float64
    assert S.min() >= 0.0 and S.max() <= 1.0
    assert image_shape(size=32) == (32, 32, 3)
    G = natural_image_sources(("camera", "astronaut"), size=24)  # one grayscale image -> gray
    assert G.shape == (2, 24 * 24)
    assert image_shape(("camera", "astronaut"), size=24) == (24, 24)
    assert not np.allclose(S[0], S[1])
    with pytest.raises(ValueError):
        natural_image_sources(("no_such_image", "camera"), size=8)


# ------------------------------------------------------------------------------------------
# mixing, densities, objective
# ------------------------------------------------------------------------------------------
def test_mixing_matrices_and_mix() -> None:
    np.testing.assert_allclose(mixing_matrix("symmetric"), [[1.0, 0.7], [0.7, 1.0]])
    R = mixing_matrix("rotation", angle_deg=45.0)
    np.testing.assert_allclose(R @ R.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(R @ [1.0, 0.0], [math.sqrt(0.5), math.sqrt(0.5)])
    with pytest.raises(ValueError):
        mixing_matrix("shear")
    S = np.random.default_rng(0).uniform(size=(2, 100)) + 5.0
    X = mix(S, mixing_matrix("symmetric"))
    np.testing.assert_allclose(X.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(X, mixing_matrix("symmetric") @ (S - S.mean(1, keepdims=True)))


@pytest.mark.parametrize("beta", [1.0, 2.0, 4.0, 8.0])
def test_generalized_gaussian_is_normalised(beta: float) -> None:
    grid = np.linspace(-60, 60, 400_001)
    pdf = np.exp(generalized_gaussian_log_density(grid, beta, 1.7))
    assert np.trapezoid(pdf, grid) == pytest.approx(1.0, abs=1e-6)


def test_generalized_gaussian_beta2_is_gaussian_and_torch_compatible() -> None:
    y = torch.linspace(-3, 3, 7, dtype=torch.float64)
    scale = 1.3  # Gaussian with variance scale^2 / 2
    var = scale**2 / 2
    expected = -(y**2) / (2 * var) - 0.5 * math.log(2 * math.pi * var)
    got = generalized_gaussian_log_density(y, 2.0, scale)
    assert isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, expected)


def test_objective_matches_manual_formula() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2, 500))
    W = np.array([[1.2, -0.3], [0.4, 0.9]])
    v = (0.5, 2.0)
    Y = W @ X
    manual = (
        np.mean(-(Y[0] ** 2) / (2 * v[0]) - (Y[1] ** 2) / (2 * v[1]))
        - 0.5 * math.log(2 * math.pi * v[0]) - 0.5 * math.log(2 * math.pi * v[1])
        + math.log(abs(np.linalg.det(W)))
    )
    got = ldm_ica_objective(W, X, GaussianSourceModel(variances=v))
    assert float(got) == pytest.approx(manual, rel=1e-12)
    # official-code quirks are selectable and differ from the default
    quirk = ldm_ica_objective(W, X, GaussianSourceModel(variances=v, energy="std"), logdet="gram_eps")
    assert abs(float(quirk) - manual) > 1e-3


def test_objective_higher_at_true_unmixing_than_identity(ou_experiment: dict) -> None:
    S = natural_image_sources(size=64)
    A = mixing_matrix("symmetric")
    X = mix(S, A)
    model = GeneralizedGaussianSourceModel()
    assert float(ldm_ica_objective(np.linalg.inv(A), X, model)) > float(
        ldm_ica_objective(np.eye(2), X, model)
    )
    e = ou_experiment
    model = GaussianSourceModel(variances=tuple(e["v"]))
    true = float(ldm_ica_objective(e["A"].T, e["X"], model))
    assert true > float(ldm_ica_objective(np.eye(2), e["X"], model))
    assert true > float(ldm_ica_objective(e["A"], e["X"], model))  # wrong direction


def test_objective_is_differentiable_in_W() -> None:
    X = np.random.default_rng(2).normal(size=(2, 50))
    W = torch.eye(2, dtype=torch.float64, requires_grad=True)
    ldm_ica_objective(W, X, "generalized_gaussian").backward()
    assert W.grad is not None and torch.isfinite(W.grad).all() and W.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------
# fits with default settings (paper Fig. 2)
# ------------------------------------------------------------------------------------------
def test_ou_fit_recovers_45_degree_rotation(ou_experiment: dict) -> None:
    e = ou_experiment
    fit: FitResult = e["fit"]
    assert fit.parametrization == "rotation" and fit.converged
    np.testing.assert_allclose(fit.W @ fit.W.T, np.eye(2), atol=1e-10)  # W stays a rotation
    P = fit.W @ e["A"]
    assert amari_index(P) < 0.05
    assert matched_correlations(e["S"], e["Y"]).min() >= 0.99
    # the recovered angle is -45 degrees (up to the sign symmetry W -> -W)
    assert abs(abs(P[0, 0]) - 1.0) < 1e-3
    values = [h[1] for h in fit.history]
    assert all(b >= a - 1e-12 for a, b in zip(values, values[1:]))  # monotone ascent


def test_image_fit_with_defaults_separates_images(image_experiment: dict) -> None:
    e = image_experiment
    fit: FitResult = e["fit"]
    assert fit.parametrization == "full" and fit.converged
    corr = matched_correlations(e["S"], e["Y"])
    assert corr.min() >= 0.98, corr
    assert amari_index(fit.W @ e["A"]) < 0.15
    assert fit.objective > fit.history[0][1] + 1.0


def test_fit_requires_variances_for_gaussian_model() -> None:
    with pytest.raises(ValueError):
        fit_unmixing(np.zeros((2, 10)), "gaussian")


# ------------------------------------------------------------------------------------------
# metrics
# ------------------------------------------------------------------------------------------
def test_amari_index_zero_for_scaled_permutation_and_large_for_dense() -> None:
    assert amari_index(np.array([[0.0, 3.0], [-0.5, 0.0]])) == pytest.approx(0.0, abs=1e-15)
    assert amari_index(np.diag([2.0, -7.0])) == pytest.approx(0.0, abs=1e-15)
    P3 = np.array([[0, 0, 2.0], [1.0, 0, 0], [0, -4.0, 0]])
    assert amari_index(P3) == pytest.approx(0.0, abs=1e-15)
    rng = np.random.default_rng(0)
    dense = rng.uniform(0.5, 1.0, size=(2, 2)) * rng.choice([-1, 1], size=(2, 2))
    assert amari_index(dense) > 0.2
    assert amari_index(np.ones((3, 3))) == pytest.approx(1.0)


def test_matched_correlations_handles_permutation_and_sign() -> None:
    rng = np.random.default_rng(5)
    S = rng.normal(size=(2, 5000))
    Y = np.stack([-2.0 * S[1], 0.5 * S[0]])
    np.testing.assert_allclose(matched_correlations(S, Y), [1.0, 1.0])
    aligned = align_to_sources(S, Y)
    np.testing.assert_allclose(aligned[0], 0.5 * S[0])
    np.testing.assert_allclose(aligned[1], 2.0 * S[1])
    # partially mixed: the matched values are the per-source correlations
    Y2 = np.stack([S[1] + 0.1 * S[0], -(S[0] + 0.5 * S[1])])
    corr = matched_correlations(S, Y2)
    assert corr[0] == pytest.approx(1 / math.sqrt(1.25), abs=0.02)
    assert corr[1] == pytest.approx(1 / math.sqrt(1.01), abs=0.02)


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------
def _assert_written(paths: list) -> None:
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    png, pdf = paths
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000


def test_figures_write_png_and_pdf(tmp_path, ou_experiment: dict) -> None:
    S = natural_image_sources(size=24)
    A = mixing_matrix("symmetric")
    X = mix(S, A)
    Y = np.linalg.inv(A) @ X
    _assert_written(
        plot_signal_histograms(S, X, Y, GeneralizedGaussianSourceModel(), tmp_path / "hist")
    )
    _assert_written(plot_recovered_images(S, X, Y, image_shape(size=24), tmp_path / "imgs"))
    e = ou_experiment
    sl = slice(0, 3000)
    _assert_written(
        plot_ou_paths(e["S"][:, sl], e["X"][:, sl], e["Y"][:, sl], e["v"], tmp_path / "sub" / "ou",
                      n_show=500),
    )
    _assert_written(plot_objective_history(e["fit"].history, tmp_path / "obj", reference=0.0))
