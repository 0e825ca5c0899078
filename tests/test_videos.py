"""Dot-motion video generation (ldm.data.videos): trajectories, rendering, noise types, seeds, files."""

from __future__ import annotations

import numpy as np
import pytest

from ldm.data import videos
from ldm.data.videos import VideoConfig


def small(**kw) -> VideoConfig:
    base = dict(motion="circular", seq_len=30, n_train=40, n_test=6, dt=0.1, period=2.0,
                noise_type="gaussian", observation_noise=0.05, prediction_noise=0.01)
    base.update(kw)
    return VideoConfig(**base)


def test_shapes_dtypes_and_labels():
    tr, te = videos.generate_dataset(small(), seed=3)
    assert tr["frames"].shape == (40, 30, 100) and tr["frames"].dtype == np.float32
    assert te["frames"].shape == (6, 30, 100)
    assert tr["position"].shape == (40, 30, 2)
    assert tr["noise_level"].shape == (40, 30)
    assert tr["jumps"].shape == (40, 30)
    sq, _ = videos.generate_dataset(small(motion="square", period=4.0, dt=0.2), seed=1)
    assert sq["sin_pos"].shape == (40, 30, 2)


def test_deterministic_given_seed_and_independent_splits():
    a_tr, a_te = videos.generate_dataset(small(), seed=5)
    b_tr, b_te = videos.generate_dataset(small(), seed=5)
    for k in a_tr:
        np.testing.assert_array_equal(a_tr[k], b_tr[k])
        np.testing.assert_array_equal(a_te[k], b_te[k])
    c_tr, _ = videos.generate_dataset(small(), seed=6)
    assert not np.allclose(a_tr["frames"], c_tr["frames"])
    # the official code reuses training trajectories as the test set -- here they are independent
    assert not np.allclose(a_tr["position"][:6], a_te["position"])


def test_circular_motion_on_unit_circle_and_rotation():
    tr, _ = videos.generate_dataset(small(prediction_noise=0.0), seed=0)
    np.testing.assert_allclose(np.linalg.norm(tr["position"], axis=-1), 1.0, atol=1e-5)
    ang = np.angle(tr["position"][0, :, 0] + 1j * tr["position"][0, :, 1])
    step = np.rad2deg(np.angle(np.exp(1j * np.diff(ang))))
    np.testing.assert_allclose(step, 18.0, atol=1e-3)  # 360 * dt / period
    np.testing.assert_allclose(tr["position"][:, 0], [[1.0, 0.0]] * 40)


def test_jumps_rotate_by_135_degrees():
    tr, _ = videos.generate_dataset(small(prediction_noise=0.0, jump_rate=1.0), seed=0)
    assert tr["jumps"][:, 1:].all() and not tr["jumps"][:, 0].any()
    ang = np.angle(tr["position"][0, :, 0] + 1j * tr["position"][0, :, 1])
    step = np.rad2deg(np.angle(np.exp(1j * np.diff(ang))))
    np.testing.assert_allclose(step, np.rad2deg(np.angle(np.exp(1j * np.deg2rad(18.0 + 135.0)))), atol=1e-3)
    none, _ = videos.generate_dataset(small(jump_rate=0.0), seed=0)
    assert not none["jumps"].any()


def test_figure8_and_square_formulas():
    p = videos.figure8_trajectories(2, 25, dt=0.1, period=1.0)
    th = np.arange(25) * 0.1 * np.pi
    np.testing.assert_allclose(p[1, :, 0], np.cos(th), atol=1e-12)
    np.testing.assert_allclose(p[1, :, 1], np.sin(th) * np.cos(th), atol=1e-12)
    np.testing.assert_allclose(p[:, 20], p[:, 0], atol=1e-12)  # 20 steps per loop
    sq, sin_pos = videos.square_trajectories(1, 21, dt=0.2, period=4.0)
    np.testing.assert_allclose(sq[0, [0, 5, 10, 15, 20]], [[1, -1], [1, 1], [-1, 1], [-1, -1], [1, -1]], atol=1e-6)
    assert np.all(np.max(np.abs(sq), axis=-1) > 0.999)  # always on the square's boundary
    np.testing.assert_allclose(sin_pos[0, 5], [0.0, 1.0], atol=1e-12)


def test_render_blob_and_half_flip():
    img = videos.render_clean(np.array([[0.0, 0.0]]), image_dim=10)[0].reshape(10, 10)
    c = (0 + 3) * 10 / 6  # 5.0
    assert img.max() == pytest.approx(1.0) and img[5, 5] == pytest.approx(np.exp(-(5 - c) ** 2))
    # the row index follows x
    im_x = videos.render_clean(np.array([[1.0, 0.0]]))[0].reshape(10, 10)
    assert np.argmax(im_x.sum(1)) > np.argmax(img.sum(1))
    # half_flip: y mirrored where x > 0, unchanged where x <= 0
    a = videos.render_clean(np.array([[0.5, 0.3]]), half_flip=True)
    b = videos.render_clean(np.array([[0.5, -0.3]]), half_flip=False)
    np.testing.assert_allclose(a, b)
    c1 = videos.render_clean(np.array([[-0.5, 0.3]]), half_flip=True)
    c2 = videos.render_clean(np.array([[-0.5, 0.3]]), half_flip=False)
    np.testing.assert_allclose(c1, c2)
    # out-of-window positions clamp to the border
    far = videos.render_clean(np.array([[10.0, 10.0]]))[0].reshape(10, 10)
    assert far[9, 9] == pytest.approx(1.0)


def test_noise_types():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-1, 1, size=(200, 50, 2))
    g = videos.noise_levels("gaussian", 0.3, pos, rng)
    assert np.all(g == 0.3)
    r = videos.noise_levels("random_gaussian", 0.3, pos, rng)
    assert r.min() == 0.0 and abs((r == 0).mean() - (1 - np.exp(-0.3))) < 0.02
    s = videos.noise_levels("state_dependent_gaussian", 0.1, pos, rng)
    np.testing.assert_allclose(s, 0.1 * np.abs((pos[..., 0] + 1) / 2))
    # pixel noise has the stated variance
    tr, _ = videos.generate_dataset(small(observation_noise=0.2, n_train=200), seed=2)
    clean = videos.render_clean(tr["position"].astype(np.float64))
    assert np.var(tr["frames"] - clean) == pytest.approx(0.2, rel=0.03)


def test_renoise_keeps_trajectory_changes_noise():
    cfg = small()
    tr, _ = videos.generate_dataset(cfg, seed=1)
    f1 = videos.renoise(tr, cfg, seed=10)
    f2 = videos.renoise(tr, cfg, seed=11)
    assert not np.allclose(f1, f2)
    np.testing.assert_array_equal(f1, videos.renoise(tr, cfg, seed=10))
    clean = videos.render_clean(tr["position"].astype(np.float64))
    assert np.var(f1 - clean) == pytest.approx(0.05, rel=0.05)


def test_save_load_roundtrip_and_errors(tmp_path):
    paths = videos.write_dataset(small(), 4, tmp_path / "d")
    arrays, meta = videos.load_npz(paths["train"])
    assert meta["seed"] == 4 and meta["split"] == "train" and meta["config"]["motion"] == "circular"
    assert arrays["frames"].shape == (40, 30, 100)
    assert not list((tmp_path / "d").glob("*.tmp*"))  # no temp files left behind
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"truncated or corrupt .*delete it .*rerun snakemake"):
        videos.load_npz(bad)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(paths["train"].read_bytes()[:5000])
    with pytest.raises(ValueError, match=rf"{truncated} is truncated or corrupt .*rm {truncated}"):
        videos.load_npz(truncated)
    with pytest.raises(FileNotFoundError, match="missing"):
        videos.load_npz(tmp_path / "missing.npz")


def test_config_validation():
    with pytest.raises(ValueError, match="motion"):
        VideoConfig(motion="wobbly")
    with pytest.raises(ValueError, match="noise_type"):
        VideoConfig(noise_type="poisson")
    with pytest.raises(ValueError, match="unknown config key"):
        VideoConfig.from_dict({"motion": "figure8", "colour": 1})
    with pytest.raises(ValueError, match="jump_rate"):
        VideoConfig(jump_rate=2.0)


# --------------------------------------------------------------------------------------------------
# motion registry (issue 13)
# --------------------------------------------------------------------------------------------------

from ldm.data import motions  # noqa: E402


@pytest.mark.parametrize("name", sorted(motions.MOTIONS))
def test_every_registered_motion_renders_and_random_phase_differs(name):
    fixed, _ = videos.generate_dataset(small(motion=name, prediction_noise=0.0, period=2.0), seed=1)
    rand, _ = videos.generate_dataset(small(motion=name, prediction_noise=0.0, period=2.0, random_phase=True), seed=1)
    assert fixed["position"].shape == rand["position"].shape == (40, 30, 2)
    assert np.isfinite(rand["frames"]).all()
    # fixed phase: every sequence shows the same trajectory; random phase: they differ
    np.testing.assert_allclose(fixed["position"], np.broadcast_to(fixed["position"][:1], fixed["position"].shape), atol=1e-9)
    assert np.abs(rand["position"] - rand["position"][:1]).max(axis=(1, 2))[1:].min() > 1e-3


def test_random_phase_is_a_time_shift_of_the_same_curve():
    cfg = small(motion="ellipse", period=2.0, random_phase=True, motion_params={"rx": 1.0, "ry": 0.5})
    tr, _ = videos.generate_dataset(cfg, seed=4)
    p = tr["position"][:, 0]
    # every start point lies on the ellipse x^2 + (y / 0.5)^2 = 1
    np.testing.assert_allclose(p[:, 0] ** 2 + (p[:, 1] / 0.5) ** 2, 1.0, atol=1e-5)


def test_registry_plugs_in_a_new_motion_and_derives_its_rotation():
    @motions.register_motion("_test_line", {"speed": 1.0}, harmonics=lambda p: [2.0])
    def _line(cfg, n, rng):
        t = np.arange(cfg.seq_len) * cfg.dt * motions.motion_params(cfg)["speed"]
        return {"position": np.broadcast_to(np.stack([np.cos(t), 0 * t], -1), (n, cfg.seq_len, 2)).copy()}

    try:
        cfg = small(motion="_test_line", period=4.0, dt=0.2)
        tr, _ = videos.generate_dataset(cfg, seed=0)
        np.testing.assert_allclose(tr["position"][0, :, 0], np.cos(np.arange(30) * 0.2), atol=1e-6)
        assert motions.rotation_angles_deg(cfg) == pytest.approx([2 * 360 * 0.2 / 4.0])
        with pytest.raises(ValueError, match="unknown motion_params"):
            small(motion="_test_line", motion_params={"sped": 2.0})
    finally:
        del motions.MOTIONS["_test_line"]
    with pytest.raises(ValueError, match="unknown motion '_test_line'"):
        small(motion="_test_line")


def test_true_rotation_angles_come_from_the_motion():
    from ldm.training.kalman import true_rotation_angles

    assert true_rotation_angles(dict(motion="figure8", dt=0.1, period=1.0)) == pytest.approx([18.0, 36.0])
    assert true_rotation_angles(dict(motion="square", dt=0.2, period=4.0)) == pytest.approx([18.0])
    # lissajous 3:2 over a 4 s loop at dt 0.1: 27 and 18 degrees per step (fundamental = the slower)
    assert true_rotation_angles(dict(motion="lissajous", dt=0.1, period=4.0, motion_params={"a": 3, "b": 2})) \
        == pytest.approx([18.0, 27.0])
    # the angles match the motion's own trajectory: the two strongest frequencies of x + i y
    cfg = small(motion="epicycle", period=3.0, seq_len=300, motion_params={"k": 3.0, "c": 0.2, "r": 1.0})
    p = videos.generate_split(cfg, 1, 0)["position"][0]
    spec = np.abs(np.fft.fft(p[:, 0] + 1j * p[:, 1]))
    f = np.argsort(spec)[-2:] / 300 * 360  # degrees per step of the two strongest harmonics
    f = np.where(f > 180, 360 - f, f)
    assert sorted(f) == pytest.approx(sorted(motions.rotation_angles_deg(cfg)), abs=1e-6)


def test_draw_motions_is_seeded_and_covers_the_families():
    a, b, c = motions.draw_motions(3, 5), motions.draw_motions(3, 5), motions.draw_motions(4, 5)
    assert a == b and a != c
    assert {m["motion"] for m in a} == set(motions.GENERALISATION_FAMILIES)
    assert all(m["random_phase"] for m in a)
    for m in a:  # every drawn motion is a valid, renderable data set whose angles stay below 180 degrees
        cfg = small(**m)
        assert 0 < max(motions.rotation_angles_deg(cfg)) < 180
        assert np.isfinite(videos.generate_split(cfg, 2, 0)["frames"]).all()
