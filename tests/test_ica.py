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
from ldm.evaluation.ica import (
    align_to_sources,
    amari_index,
    evaluate_unmixings,
    excess_kurtosis,
    matched_correlations,
    pca_unmixing,
)
from ldm.models.ica import (
    AdaptiveGeneralizedGaussianSourceModel,
    FitResult,
    GaussianSourceModel,
    GeneralizedGaussianSourceModel,
    PerSourceGeneralizedGaussianSourceModel,
    fit_unmixing,
    generalized_gaussian_log_density,
    ldm_ica_objective,
    make_source_model,
    mix,
    mixing_matrix,
    random_mixing_matrix,
    unit_variance_scale,
)
from ldm.data.ica_sources import (
    SIMULATED_KURTOSIS,
    image_shape,
    simulated_sources,
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


def test_natural_image_sources_take_any_number_of_images() -> None:
    S = natural_image_sources(("astronaut", "chelsea", "coffee", "rocket"), size=16)
    assert S.shape == (4, 16 * 16 * 3)
    np.testing.assert_array_equal(S[:2], natural_image_sources(("astronaut", "chelsea"), size=16))
    with pytest.raises(ValueError, match="at least two"):
        natural_image_sources(("astronaut",), size=8)
    with pytest.raises(ValueError, match="must differ"):
        natural_image_sources(("astronaut", "astronaut"), size=8)


def test_simulated_sources_have_their_known_kurtosis_and_are_independent() -> None:
    names = list(SIMULATED_KURTOSIS)
    S = simulated_sources(names, n_samples=400_000, seed=3)
    assert S.shape == (len(names), 400_000)
    np.testing.assert_allclose(S.mean(axis=1), 0.0, atol=0.01)
    np.testing.assert_allclose(S.var(axis=1), 1.0, atol=0.02)
    kurt = excess_kurtosis(S)
    for name, k in zip(names, kurt):
        if name == "student_t5":  # its sample kurtosis has infinite variance (no 8th moment): sign only
            assert k > 2.0, k
        else:  # sampling error of the kurtosis at n = 400 000: < 0.05
            assert abs(k - SIMULATED_KURTOSIS[name]) < 0.1, (name, k)
    assert SIMULATED_KURTOSIS["laplace"] > 0 > SIMULATED_KURTOSIS["uniform"] > SIMULATED_KURTOSIS["bimodal"]
    R = np.corrcoef(S)
    assert np.abs(R[~np.eye(len(names), dtype=bool)]).max() < 0.01
    np.testing.assert_array_equal(S, simulated_sources(names, n_samples=400_000, seed=3))
    with pytest.raises(ValueError, match="unknown simulated"):
        simulated_sources(["laplace", "cauchy"])


# ------------------------------------------------------------------------------------------
# mixing, densities, objective
# ------------------------------------------------------------------------------------------
def test_random_mixing_has_the_condition_number_and_is_seeded() -> None:
    for d, kappa in [(2, 4.0), (3, 10.0), (4, 2.5)]:
        A = random_mixing_matrix(d, kappa, seed=5)
        assert A.shape == (d, d)
        assert np.linalg.cond(A) == pytest.approx(kappa, rel=1e-9)
        np.testing.assert_array_equal(A, mixing_matrix("random", d=d, condition_number=kappa, seed=5))
        assert not np.allclose(A, random_mixing_matrix(d, kappa, seed=6))
        assert amari_index(A) > 0.1  # it really mixes
        hard = random_mixing_matrix(d, kappa, seed=5, min_pca_amari=0.3)
        assert np.linalg.cond(hard) == pytest.approx(kappa, rel=1e-9)
        U, _, Vt = np.linalg.svd(hard)  # the second-order unmixings of unit-variance sources
        assert min(amari_index(Vt), amari_index(U @ Vt)) >= 0.3
    M = [[1.0, 2.0, 0.0], [0.0, 1.0, 0.5], [0.3, 0.0, 1.0]]
    np.testing.assert_array_equal(mixing_matrix("matrix", d=3, matrix=M), M)
    with pytest.raises(ValueError, match="shape"):
        mixing_matrix("matrix", d=2, matrix=M)
    with pytest.raises(ValueError, match="singular"):
        mixing_matrix("matrix", d=2, matrix=[[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(ValueError, match="2 x 2"):
        mixing_matrix("symmetric", d=3)


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


# ------------------------------------------------------------------------------------------
# PCA baselines
# ------------------------------------------------------------------------------------------
def test_pca_baselines_whiten_and_only_solve_what_second_order_statistics_can() -> None:
    S = simulated_sources(["laplace", "uniform", "bimodal"], n_samples=20_000, seed=1)
    A = random_mixing_matrix(3, 4.0, seed=2)
    X = mix(S, A)
    C = np.cov(X, bias=True)
    for kind in ("rotation", "whitening"):
        W = pca_unmixing(X, kind)
        np.testing.assert_allclose(W @ C @ W.T, np.eye(3), atol=1e-10)
        assert matched_correlations(S, W @ X).min() < 0.95  # whitening leaves a rotation unresolved
    Wz = pca_unmixing(X, "whitening")
    np.testing.assert_allclose(Wz, Wz.T, atol=1e-12)  # symmetric (ZCA)
    variances = np.var(pca_unmixing(X, "rotation") @ np.linalg.inv(np.diag(np.ones(3))) @ X, axis=1)
    np.testing.assert_allclose(variances, 1.0, atol=1e-10)
    # a symmetric mixing of equal-variance sources is undone by symmetric whitening alone
    S2 = simulated_sources(["laplace", "uniform"], n_samples=20_000, seed=1)
    A2 = mixing_matrix("symmetric", a=0.7)
    assert matched_correlations(S2, pca_unmixing(mix(S2, A2), "whitening") @ mix(S2, A2)).min() > 0.99
    with pytest.raises(ValueError, match="rotation"):
        pca_unmixing(X, "ica")


def test_evaluate_unmixings_adds_the_pca_baselines() -> None:
    S = simulated_sources(["laplace", "uniform"], n_samples=5000, seed=0)
    A = random_mixing_matrix(2, 3.0, seed=0)
    X = mix(S, A)
    rows = evaluate_unmixings(S, X, A, {"truth": np.linalg.inv(A)})
    by = {r["method"]: r for r in rows}
    assert set(by) == {"pca_rotation", "pca_whitening", "truth"}
    assert by["truth"]["min_abs_corr"] == pytest.approx(1.0) and by["truth"]["amari_index"] < 1e-10
    assert by["pca_whitening"]["amari_index"] > 0.05


# ------------------------------------------------------------------------------------------
# source models: objects, registry, adaptive shapes
# ------------------------------------------------------------------------------------------
def test_unit_variance_generalized_gaussian_has_unit_variance() -> None:
    grid = np.linspace(-40, 40, 800_001)
    for beta in (1.0, 2.0, 4.0, 10.0):
        pdf = np.exp(generalized_gaussian_log_density(grid, beta, unit_variance_scale(beta)))
        assert np.trapezoid(pdf, grid) == pytest.approx(1.0, abs=1e-6)
        assert np.trapezoid(grid**2 * pdf, grid) == pytest.approx(1.0, abs=1e-5)
    t = torch.tensor([[1.0], [4.0]], dtype=torch.float64)
    torch.testing.assert_close(unit_variance_scale(t)[:, 0],
                               torch.tensor([unit_variance_scale(1.0), unit_variance_scale(4.0)], dtype=torch.float64))


def test_registry_builds_models_and_names_bad_keys() -> None:
    assert make_source_model("generalized_gaussian", beta=4.0) == GeneralizedGaussianSourceModel(beta=4.0)
    assert isinstance(make_source_model("adaptive_generalized_gaussian", beta_max=8.0),
                      AdaptiveGeneralizedGaussianSourceModel)
    with pytest.raises(ValueError, match="unknown source model 'laplace'.*adaptive_generalized_gaussian"):
        make_source_model("laplace")
    with pytest.raises(ValueError, match="takes beta_init, beta_min, beta_max; got beta"):
        make_source_model("adaptive_generalized_gaussian", beta=4.0)
    with pytest.raises(TypeError, match="source model object"):
        fit_unmixing(np.random.default_rng(0).normal(size=(2, 50)), 3.0)


def test_adaptive_model_learns_the_kurtosis_sign_of_each_source() -> None:
    """With W fixed at the truth, maximising over the shapes gives beta < 2 for a Laplace source
    and beta > 2 for uniform / bimodal ones (the latent model matched per source)."""
    S = simulated_sources(["laplace", "uniform", "bimodal"], n_samples=20_000, seed=4)
    model = AdaptiveGeneralizedGaussianSourceModel()
    theta = model.init_parameters(3).requires_grad_(True)
    opt = torch.optim.LBFGS([theta], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -ldm_ica_objective(np.eye(3), S, model, theta=theta)
        loss.backward()
        return loss

    opt.step(closure)
    betas = model.betas(theta.detach()).numpy()
    assert betas[0] < 1.5 and betas[1] > 4.0 and betas[2] > 4.0, betas
    fixed = model.with_parameters(theta.detach())
    assert isinstance(fixed, PerSourceGeneralizedGaussianSourceModel)
    assert float(ldm_ica_objective(np.eye(3), S, fixed)) == pytest.approx(
        float(ldm_ica_objective(np.eye(3), S, model, theta=theta.detach())), rel=1e-12)


def _mixed_kurtosis_photographs(size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    S = natural_image_sources(("hubble_deep_field", "astronaut"), size=size)  # kurtosis +30, -1.4
    A = random_mixing_matrix(2, 4.0, seed=1, min_pca_amari=0.3)
    return S, A, mix(S, A)


def test_fixed_sub_gaussian_model_prefers_a_wrong_unmixing_on_mixed_kurtosis() -> None:
    """The issue's failure, as a property of the objective: with beta = 4 for both sources the
    objective is higher at the fitted (wrong) W than at the true unmixing; with the per-source
    shapes the adaptive fit finds, the true unmixing scores higher again."""
    S, A, X = _mixed_kurtosis_photographs()
    W_true = np.linalg.inv(A)
    gg4 = GeneralizedGaussianSourceModel()
    fit4 = fit_unmixing(X, gg4)
    assert matched_correlations(S, fit4.W @ X).min() < 0.9
    # scale-free comparison: rescale the true unmixing's rows to the fitted rows' output scale
    Y4 = fit4.W @ X
    W_true_scaled = W_true * (np.sort(Y4.std(axis=1)) / (W_true @ X).std(axis=1))[np.argsort(np.argsort((W_true @ X).std(axis=1)))][:, None]
    assert float(ldm_ica_objective(fit4.W, X, gg4)) > float(ldm_ica_objective(W_true_scaled, X, gg4))
    per_source = PerSourceGeneralizedGaussianSourceModel(betas=(1.0, 10.0))
    W_unit = W_true / (W_true @ X).std(axis=1, keepdims=True)  # unit-variance sources, in order
    assert float(ldm_ica_objective(W_unit, X, per_source)) > float(ldm_ica_objective(
        fit4.W / Y4.std(axis=1, keepdims=True), X, per_source))


@pytest.mark.parametrize("names", [("hubble_deep_field", "astronaut"), ("rocket", "immunohistochemistry")])
def test_adaptive_fit_separates_photographs_of_both_kurtosis_signs(names: tuple[str, str]) -> None:
    S = natural_image_sources(names, size=64)
    kurt = excess_kurtosis(S)
    assert kurt.max() > 1.0 and kurt.min() < -0.5  # one super-, one sub-Gaussian image
    A = random_mixing_matrix(2, 4.0, seed=3, min_pca_amari=0.3)
    X = mix(S, A)
    fit = fit_unmixing(X, AdaptiveGeneralizedGaussianSourceModel(), init="whiten")
    ica_corr = matched_correlations(S, fit.W @ X).min()
    pca_corr = max(matched_correlations(S, pca_unmixing(X, k) @ X).min() for k in ("rotation", "whitening"))
    fixed = matched_correlations(S, fit_unmixing(X, "generalized_gaussian").W @ X).min()
    assert ica_corr >= 0.98 and ica_corr > pca_corr and fixed < 0.95, (ica_corr, pca_corr, fixed)
    assert amari_index(fit.W @ A) < 0.1
    betas = np.asarray(fit.source_model.betas)
    assert betas.min() < 2.0 < betas.max()  # one super-, one sub-Gaussian latent density


@pytest.mark.parametrize("dists", [("laplace", "uniform"), ("laplace", "bimodal", "uniform"),
                                   ("laplace", "student_t5", "uniform", "bimodal")])
def test_adaptive_fit_separates_simulated_sources_of_mixed_kurtosis(dists: tuple[str, ...]) -> None:
    d = len(dists)
    S = simulated_sources(dists, n_samples=10_000, seed=d)
    A = random_mixing_matrix(d, 4.0, seed=d, min_pca_amari=0.3)
    X = mix(S, A)
    fit = fit_unmixing(X, "adaptive_generalized_gaussian", init="whiten", restarts=2, seed=1)
    assert len(fit.restart_objectives) == 2 and fit.objective == max(fit.restart_objectives)
    ica_corr = matched_correlations(S, fit.W @ X).min()
    pca_corr = max(matched_correlations(S, pca_unmixing(X, k) @ X).min() for k in ("rotation", "whitening"))
    assert ica_corr >= 0.98 and pca_corr < 0.95, (ica_corr, pca_corr)
    assert amari_index(fit.W @ A) < 0.05
    fixed = matched_correlations(S, fit_unmixing(X, GeneralizedGaussianSourceModel()).W @ X).min()
    assert fixed < 0.95  # one fixed sub-Gaussian density for all sources does not separate them


# ------------------------------------------------------------------------------------------
# stages: a simulated part through the whole chain
# ------------------------------------------------------------------------------------------
def test_stage_chain_on_a_simulated_part_reports_pca_beside_ica(tmp_path, monkeypatch) -> None:
    import csv
    import json
    from pathlib import Path

    from ldm.pipeline.stages import Job, job_settings, run_stage

    monkeypatch.setenv("LDM_MLFLOW", "0")
    config = {"profile": "test", "experiments": ["ica"], "ica": {
        "parts": ["sim"],
        "sim": {"sources": {"kind": "simulated", "distributions": ["laplace", "uniform", "bimodal"],
                            "n_samples": 4000, "seed": 2},
                "mixing": {"kind": "random", "condition_number": 4.0, "min_pca_amari": 0.3, "seed": 1},
                "fit": {"source_model": "adaptive_generalized_gaussian", "init": "whiten"}}}}
    wc = {"part": "sim"}
    f = {k: tmp_path / v for k, v in {"sources": "s.npz", "mixtures": "m.npz", "fit": "f.npz",
                                      "evaluation": "e.json", "metrics": "metrics.json",
                                      "ica_table": "t.csv", "table": "p.csv"}.items()}

    def job(stage: str, inputs: list[str], outputs: list[str], wildcards: dict) -> Job:
        settings, _ = job_settings(stage, config, wildcards)
        return Job(stage=stage, settings=settings, input={k: Path(f[k]) for k in inputs},
                   output={k: Path(f[k]) for k in outputs}, wildcards=wildcards)

    run_stage(job("ica.sources", [], ["sources"], wc))
    run_stage(job("ica.mixtures", ["sources"], ["mixtures"], wc))
    run_stage(job("ica.fit", ["sources", "mixtures"], ["fit"], wc))
    run_stage(job("ica.evaluate", ["sources", "mixtures", "fit"], ["evaluation"], wc))
    figs = {f"{k}_{e}": tmp_path / f"sim_{k}.{e}" for k in ("histograms", "recovered", "objective") for e in ("png", "pdf")}
    fig_settings, _ = job_settings("ica.figures", config, wc)
    run_stage(Job(stage="ica.figures", settings=fig_settings, input={k: f[k] for k in ("sources", "mixtures", "fit")},
                  output=figs, wildcards=wc))
    assert all(p.read_bytes()[:4] in (b"\x89PNG", b"%PDF") for p in figs.values())
    f["evaluation_sim"] = f["evaluation"]
    run_stage(job("ica.summarize", ["evaluation_sim"], ["metrics", "ica_table", "table"], {}))
    metrics = json.loads(f["metrics"].read_text())
    assert metrics["sim/min_abs_corr"] >= 0.98
    assert metrics["sim/baseline_pca_whitening_min_abs_corr"] < metrics["sim/min_abs_corr"]
    assert metrics["sim/ica_margin_over_pca"] > 0
    assert metrics["sim/source_kurtosis_0"] > 1.0 and metrics["sim/source_kurtosis_2"] < -1.0
    rows = list(csv.DictReader(f["ica_table"].open()))
    assert [r["method"] for r in rows] == ["mixtures", "pca_rotation", "pca_whitening", "ica"]
    betas = [float(b) for b in rows[-1]["fitted_betas"].split(";")]
    assert betas[0] < 2.0 < min(betas[1:])  # in source order: Laplace super-, the others sub-Gaussian
