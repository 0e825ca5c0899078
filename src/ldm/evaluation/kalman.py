"""Evaluation of a trained Kalman predictive-SSL run (paper Sec. 6.1, Fig. 4, A3, A4): held-out OLS R²
of position from the filtered state, with the raw-pixel and untrained-model baselines measured in the
same call, the paper's online-probe number, rotation angles, noise decoding and the decoded position's
propagated uncertainty."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from ldm.data.videos import load_npz
from ldm.evaluation import probes
from ldm.evaluation.rotation import dominant_rotation_deg, rotation_angles_deg
from ldm.models.kalman_ssl import KalmanSSL
from ldm.pipeline.io import save_npz, write_json
from ldm.training.kalman import filter_all, load_model, matched_rotation_deg, true_rotation_angles, true_rotation_deg


def baselines(cfg: Mapping[str, Any], train_arr: Mapping[str, np.ndarray], test_arr: Mapping[str, np.ndarray],
              batch: int = 256) -> dict[str, float]:
    """What learning must beat, on the same split: OLS from the raw pixels to position, and the same
    model (same seed) at initialisation, filtered state and encoder output."""
    frames_tr, frames_te = train_arr["frames"], test_arr["frames"]
    raw = probes.heldout_r2(frames_tr, train_arr["position"], frames_te, test_arr["position"])["r2"]
    untrained = KalmanSSL(cfg["model"], seed=int(cfg["seed"]), loss=cfg.get("loss")).eval()
    tr = filter_all(untrained, torch.from_numpy(frames_tr), batch)
    te = filter_all(untrained, torch.from_numpy(frames_te), batch)
    return {
        "baseline_raw_pixels_r2": raw,
        "baseline_untrained_r2": probes.heldout_r2(tr["h"], train_arr["position"], te["h"], test_arr["position"])["r2"],
        "baseline_untrained_encoder_r2": probes.heldout_r2(tr["z"], train_arr["position"], te["z"], test_arr["position"])["r2"],
    }


def random_phase_test(cfg: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """Test videos of the run's motion with a random phase per sequence (the trained-on motion with
    ``random_phase: false`` shows every sequence the same trajectory, so a regressor on the frame index
    would score 1.0 on the standard test set). Seeded from the data seed (a third child seed)."""
    from ldm.data.videos import VideoConfig, generate_split

    vc = VideoConfig.from_dict({**{k: v for k, v in cfg["data"].items() if k not in ("seed", "name")},
                                "random_phase": True})
    seed = np.random.SeedSequence(int(cfg["data"].get("seed", 1))).spawn(3)[2]
    return generate_split(vc, int(n), seed)


def heldout_set_r2(model: KalmanSSL, train_arr: Mapping[str, np.ndarray], tr: Mapping[str, np.ndarray],
                   test_arr: Mapping[str, np.ndarray], batch: int) -> dict[str, float]:
    """Filtered-state, encoder-only and raw-pixel held-out R^2 on ``test_arr`` (OLS fitted on train)."""
    te = filter_all(model, torch.from_numpy(test_arr["frames"]), batch)
    pos_tr, pos_te = train_arr["position"], test_arr["position"]
    return {
        "r2": probes.heldout_r2(tr["h"], pos_tr, te["h"], pos_te)["r2"],
        "r2_encoder": probes.heldout_r2(tr["z"], pos_tr, te["z"], pos_te)["r2"],
        "raw_pixels": probes.heldout_r2(train_arr["frames"], pos_tr, test_arr["frames"], pos_te)["r2"],
    }


def noise_baseline(train_arr: Mapping[str, np.ndarray], test_arr: Mapping[str, np.ndarray]) -> float:
    """The simplest decoder of the per-frame noise level (Fig. A4's claim that Sigma_D tracks the noise):
    the same OLS decoder on the frame's pixel variance (and its log), no learning."""
    def pix_var(a: Mapping[str, np.ndarray]) -> np.ndarray:
        return a["frames"].astype(np.float64).var(-1, keepdims=True)

    return probes.noise_level_decoding(pix_var(train_arr), train_arr["noise_level"], pix_var(test_arr),
                                       test_arr["noise_level"])["r2"]


@torch.no_grad()
def filter_constant_noise(model: KalmanSSL, frames: torch.Tensor, obs_var: np.ndarray, batch: int = 256) -> np.ndarray:
    """Filtered states [N, T, S] of the trained model with its inferred Sigma_D(t) replaced by the constant
    diagonal ``obs_var`` [L] (the counterfactual "noise not inferred": same encoder, A, b, Sigma_A)."""
    model.eval()
    kf = model.kalman
    A = kf.transition()
    S, L = kf.S, kf.L
    out = []
    for i in range(0, frames.shape[0], batch):
        z = model.encoder(frames[i:i + batch])
        T = z.shape[1]
        R = torch.as_tensor(obs_var, dtype=z.dtype).reshape(1, 1, L).expand(1, T, L)
        Q = (kf.log_scale.exp() * kf.log_process.exp()).reshape(1, 1, S).expand(1, T, S)
        out.append(kf._precomputed(z, A, Q, R, constant=True).filt_mean.numpy())
    return np.concatenate(out, 0)


def noise_aware_filtering(model: KalmanSSL, train_arr: Mapping[str, np.ndarray], tr: Mapping[str, np.ndarray],
                          test_arr: Mapping[str, np.ndarray], te: Mapping[str, np.ndarray], batch: int,
                          noisy_quantile: float = 0.75) -> dict[str, float]:
    """What inferring the noise does for the filter (Fig. A4): held-out position R^2 with the inferred
    Sigma_D(t) vs with Sigma_D fixed at its mean over the training frames (same trained model), on all test
    frames and on the noisiest quarter (true noise level >= its 75 % quantile). A filter that uses the
    inferred noise trusts noisy frames less, so its gain shows on the noisy frames."""
    const = tr["obs_var"].reshape(-1, tr["obs_var"].shape[-1]).mean(0)
    h_tr = filter_constant_noise(model, torch.from_numpy(train_arr["frames"]), const, batch)
    h_te = filter_constant_noise(model, torch.from_numpy(test_arr["frames"]), const, batch)
    pos_tr, pos_te = train_arr["position"], test_arr["position"]
    level = test_arr["noise_level"]
    noisy = level >= np.quantile(level, noisy_quantile)
    res = {}
    for tag, (htr, hte) in {"inferred": (tr["h"], te["h"]), "const": (h_tr, h_te)}.items():
        fit = probes.heldout_r2(htr, pos_tr, hte, pos_te)
        pred = probes.predict(hte, fit["W"], fit["c"])
        res[f"r2_heldout_noise_{tag}"] = fit["r2"]
        res[f"r2_noisy_frames_noise_{tag}"] = probes.r2_score(pos_te[noisy], pred[noisy])
    res["noise_inference_gain_r2"] = res["r2_heldout_noise_inferred"] - res["r2_heldout_noise_const"]
    res["noise_inference_gain_noisy_r2"] = res["r2_noisy_frames_noise_inferred"] - res["r2_noisy_frames_noise_const"]
    return res


def evaluate(cfg: Optional[Mapping[str, Any]], videos_dir: Path | str, run_dir: Path | str) -> dict[str, Any]:
    """Held-out OLS R^2 (train latents -> all test sequences; primary), the paper's online-probe
    R^2, noise-level decoding and noise-aware filtering (inferred Sigma_D), learned rotation angle.

    Writes ``run_dir/eval.json`` and ``run_dir/latents_test.npz`` (what the figures need).
    """
    run_dir = Path(run_dir)
    videos_dir = Path(videos_dir)
    model, saved_cfg = load_model(run_dir)
    cfg = dict(saved_cfg if cfg is None else cfg)
    train_arr, _ = load_npz(videos_dir / "train.npz")
    test_arr, _ = load_npz(videos_dir / "test.npz")
    bs = int(cfg.get("eval_batch", 256))
    tr = filter_all(model, torch.from_numpy(train_arr["frames"]), bs)
    te = filter_all(model, torch.from_numpy(test_arr["frames"]), bs)
    pos_tr, pos_te = train_arr["position"], test_arr["position"]
    fitres = probes.heldout_r2(tr["h"], pos_tr, te["h"], pos_te)
    W, c = fitres["W"], fitres["c"]
    enc_fit = probes.heldout_r2(tr["z"], pos_tr, te["z"], pos_te)
    skip = 10
    fit_skip = probes.heldout_r2(tr["h"][:, skip:], pos_tr[:, skip:], te["h"][:, skip:], pos_te[:, skip:])
    b = model.kalman.offset.detach().numpy()
    Wp = model.pos_probe.weight.detach().numpy()
    vid = min(int(cfg.get("paper_probe_video", 2)), pos_te.shape[0] - 1)
    A = model.kalman.transition().detach()
    hist_path = run_dir / "history.json"
    hist = json.loads(hist_path.read_text()) if hist_path.is_file() else {"steps": [], "epochs": []}
    cos = [s["grad_cos"] for s in hist["steps"] if "grad_cos" in s]
    res: dict[str, Any] = {
        "name": cfg["name"], "seed": int(cfg["seed"]), "loss": cfg["loss"], "dataset": cfg["dataset"],
        "r2_heldout": fitres["r2"],
        "r2_heldout_train_fit": fitres["r2_train"],
        "r2_heldout_skip10": fit_skip["r2"],
        "r2_heldout_encoder": enc_fit["r2"],
        "r2_online_paper": probes.paper_probe_r2(te["h"][vid], b, Wp, pos_te[vid]),
        "r2_online_bias_all_test": probes.r2_score(
            pos_te.reshape(-1, 2), ((te["h"] - b) @ Wp.T + model.pos_probe.bias.detach().numpy()).reshape(-1, 2)),
        "rotation_deg": matched_rotation_deg(A, true_rotation_deg(cfg["data"])),
        "rotation_dominant_deg": dominant_rotation_deg(A),
        "rotation_angles_deg": rotation_angles_deg(A),
        "rotation_true_deg": true_rotation_deg(cfg["data"]),
        "rotation_true_angles_deg": true_rotation_angles(cfg["data"]),
        "spectral_radius": float(torch.linalg.eigvals(A).abs().max()),
        "grad_cos_min": float(np.min(cos)) if cos else float("nan"),
        "grad_cos_max": float(np.max(cos)) if cos else float("nan"),
        "grad_cos_mean": float(np.mean(cos)) if cos else float("nan"),
        "grad_cos_positive_fraction": float(np.mean(np.asarray(cos) > 0)) if cos else float("nan"),
        "n_train_sequences": int(pos_tr.shape[0]), "n_test_sequences": int(pos_te.shape[0]),
    }
    tm = run_dir / "train_metrics.json"
    if tm.is_file():
        tmj = json.loads(tm.read_text())
        res["train_time_s"] = tmj.get("train_time_total_s")
    # uncertainty of the decoded position, propagated through the OLS probe: W^T P W
    pos_std = probes.probe_std(W, te["P"])
    pos_hat = probes.predict(te["h"], W, c)
    res["position_coverage_2sd"] = float(np.mean(np.abs(pos_hat - pos_te) <= 2 * pos_std))
    extra_arrays: dict[str, np.ndarray] = {}
    if model.kalman.obs_noise != "fixed":
        nl = probes.noise_level_decoding(tr["obs_var"], train_arr["noise_level"], te["obs_var"], test_arr["noise_level"])
        res.update({f"noise_decoding_{k}": v for k, v in nl.items()})
        res["baseline_noise_pixel_var_r2"] = noise_baseline(train_arr, test_arr)
        untrained = KalmanSSL(cfg["model"], seed=int(cfg["seed"]), loss=cfg.get("loss")).eval()
        utr = filter_all(untrained, torch.from_numpy(train_arr["frames"]), bs)
        ute = filter_all(untrained, torch.from_numpy(test_arr["frames"]), bs)
        res["baseline_noise_untrained_r2"] = probes.noise_level_decoding(
            utr["obs_var"], train_arr["noise_level"], ute["obs_var"], test_arr["noise_level"])["r2"]
        res["noise_decoding_margin"] = res["noise_decoding_r2"] - max(res["baseline_noise_pixel_var_r2"],
                                                                      res["baseline_noise_untrained_r2"])
        # noise-aware filtering: position error of the filtered state vs the raw encoding, per noise bin
        err_f = np.linalg.norm(pos_hat - pos_te, axis=-1)
        z_hat = probes.predict(te["z"], enc_fit["W"], enc_fit["c"])
        err_z = np.linalg.norm(z_hat - pos_te, axis=-1)
        extra_arrays.update({"err_filtered": err_f, "err_encoder": err_z})
        res["err_filtered_mean"] = float(err_f.mean())
        res["err_encoder_mean"] = float(err_z.mean())
        if model.kalman.obs_noise == "inferred":
            res.update(noise_aware_filtering(model, train_arr, tr, test_arr, te, bs))
    if model.kalman.process_noise != "fixed" and "jumps" in train_arr and train_arr["jumps"].any():
        # jump configs: does the innovation-driven process noise rise at the jumps?
        q = tr["process_var"].mean(-1)
        jm = train_arr["jumps"].astype(bool)
        res["process_var_at_jumps"] = float(q[jm].mean())
        res["process_var_elsewhere"] = float(q[~jm].mean())
        res["process_var_jump_ratio"] = res["process_var_at_jumps"] / res["process_var_elsewhere"]
    np_b = {"offset": b, "D": model.kalman.D.numpy(), "A": A.numpy(), "W_ols": W, "c_ols": c,
            "W_enc": enc_fit["W"], "c_enc": enc_fit["c"]}
    save_npz(run_dir / "latents_test.npz", position=pos_te, noise_level=test_arr["noise_level"],
             frames=test_arr["frames"], pos_hat=pos_hat, pos_std=pos_std, **te, **np_b, **extra_arrays)
    res.update(baselines(cfg, train_arr, test_arr, bs))
    res["margin_over_raw_pixels"] = res["r2_heldout"] - res["baseline_raw_pixels_r2"]
    # a learned model that decodes position worse than OLS on the raw pixels is useless as a result,
    # collapsed or not: flagged beside the collapse flag (issue 13)
    res["below_raw_pixels"] = bool(res["margin_over_raw_pixels"] < 0)
    if res["below_raw_pixels"]:
        import logging

        logging.getLogger("ldm").warning(
            f"kalman {res['name']} seed {res['seed']}: held-out R2 {res['r2_heldout']:.4f} is BELOW the raw-pixel "
            f"OLS baseline {res['baseline_raw_pixels_r2']:.4f} (flagged 'below_raw_pixels')")
    # random-phase test sequences of the same motion (a trajectory the training set may never show)
    rp = heldout_set_r2(model, train_arr, tr, random_phase_test(cfg, pos_te.shape[0]), bs)
    res.update({"r2_random_phase": rp["r2"], "r2_random_phase_encoder": rp["r2_encoder"],
                "baseline_raw_pixels_random_phase_r2": rp["raw_pixels"],
                "margin_random_phase_over_raw_pixels": rp["r2"] - rp["raw_pixels"]})
    # collapse diagnostics recorded during training (ldm.training.kalman.collapse_flags)
    final = hist["epochs"][-1] if hist["epochs"] else {}
    res["collapsed"] = bool(final.get("collapse/flag", False))
    res["collapse_epochs"] = [int(e["epoch"]) for e in hist["epochs"] if e.get("collapse/flag")]
    res["a_at_bound"] = bool(final.get("collapse/a_at_bound", False))
    res["encoding_spread_ratio"] = float(final.get("collapse/spread_ratio", float("nan")))
    res["r2_drop_from_peak"] = float(final.get("collapse/r2_drop", float("nan")))
    write_json(run_dir / "eval.json", res)
    return res
