"""Held-out evaluation of a Kalman LDM trained on binned spikes (paper Sec. 6.1 / App. B, Fig. 4E-G, A4C),
with every baseline measured on the same split in the same run.

The whole recording is encoded and filtered as one causal sequence (unsupervised; no labels enter); the
readouts are fitted on the training block (first 80 % of the bins) and scored on the held-out block:

* ours: linear readout (analytic 95 % interval, w^T P_t w + readout noise), MLP readout (95 % interval
  from 1000 samples of N(h_t, P_t)), direction by logistic regression;
* random init: the same model at its initialisation (same seed), same readouts;
* PCA: PCA of the binned spikes to the latent's dimension, same readouts (no latent uncertainty);
* kNN on raw binned spikes: CEBRA's demo decoder (k = 36, cosine);
* Bayesian decoder (causal forward filter) with tuning curves estimated on the training block, and, on the
  simulated stand-in, with the simulation's own tuning curves (the bound).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ldm.data.spike_windows import load_spike_series, time_split, transform_counts
from ldm.evaluation.bayes_decoder import bayes_filter_decode, empirical_tuning
from ldm.evaluation.position_decoding import decoding_metrics, knn_decoder, latent_readouts

GRID_STEP = 0.02  # m, Bayesian decoder grid


def _flat(prefix: str, res: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{prefix}/{k}": v for k, v in res.items() if k != "arrays" and k != "pred"}


def true_tuning_from_meta(meta: Mapping[str, Any], grid: np.ndarray) -> Optional[np.ndarray]:
    """The stand-in simulation's tuning curves (None for real data)."""
    if meta.get("source") != "stand-in":
        return None
    from ldm.data.hc11_standin import PlaceCellSimulation, tuning_curves

    params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["origin"]["simulation"].items()}
    return tuning_curves(PlaceCellSimulation(**params), grid)


def evaluate(spikes_path: Path | str, run_dir: Path | str,
             meta_path: Optional[Path | str] = None, n_samples: int = 1000, knn_k: int = 36) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics (flat keys ``<method>/<metric>``) and the arrays for the figures (held-out block) of the model in
    ``run_dir`` (its settings come with ``model.pt``); ``meta_path``: the data's meta.json (stand-in: the
    simulation whose tuning curves give the Bayesian bound)."""
    from ldm.training.kalman_spikes import build_model, filter_series, load_model

    t0 = time.perf_counter()
    model, mcfg = load_model(run_dir)
    dcfg = mcfg["data"]
    series = load_spike_series(spikes_path, dcfg["n_units"])
    meta = json.loads(Path(meta_path).read_text()) if meta_path else {}
    tr, te = time_split(series.n_bins, float(dcfg["train_fraction"]))
    x = transform_counts(series.counts, dcfg["input_transform"])
    # bins with a known position (all of them in the running-only variant)
    ok = np.isfinite(series.position)
    ktr = ok[tr]
    kte = ok[te]
    y_tr, y_te = series.position[tr][ktr], series.position[te][kte]
    d_tr, d_te = series.direction[tr][ktr], series.direction[te][kte]
    seed = int(mcfg["seed"])
    res: dict[str, Any] = {"seed": seed, "n_train_bins": int(ktr.sum()), "n_test_bins": int(kte.sum()),
                           "source": meta.get("source", "unknown")}

    f = filter_series(model, x)
    ours = latent_readouts(f["h"][tr][ktr], y_tr, d_tr, f["h"][te][kte], y_te, d_te, f["P"][te][kte],
                           n_samples=n_samples, seed=seed, P_tr=f["P"][tr][ktr])
    res.update(_flat("ours", ours))

    f0 = filter_series(build_model(mcfg), x)
    rnd = latent_readouts(f0["h"][tr][ktr], y_tr, d_tr, f0["h"][te][kte], y_te, d_te, f0["P"][te][kte],
                          n_samples=n_samples, seed=seed, P_tr=f0["P"][tr][ktr])
    res.update(_flat("random_init", rnd))

    from sklearn.decomposition import PCA

    n_pc = int(mcfg["model"]["state_dim"])
    pca = PCA(n_components=n_pc, random_state=seed).fit(x[tr][ktr])
    p_tr, p_te = pca.transform(x[tr][ktr]), pca.transform(x[te][kte])
    res.update(_flat("pca", latent_readouts(p_tr, y_tr, d_tr, p_te, y_te, d_te, None, seed=seed)))

    knn = knn_decoder(series.counts[tr][ktr], y_tr, d_tr, series.counts[te][kte], y_te, d_te, k=knn_k)
    res.update(_flat("knn_raw", knn))

    bin_size = float(meta.get("bin_size", 0.025))
    lo_hi = (np.nanmin(series.position), np.nanmax(series.position))
    grid = np.arange(min(0.0, lo_hi[0]), max(1.6, lo_hi[1]) + 1e-9, GRID_STEP)
    emp = empirical_tuning(series.counts[tr][ktr], y_tr, d_tr, grid, bin_size)
    bd = bayes_filter_decode(series.counts[te][kte], emp, grid, bin_size)
    res.update(_flat("bayes_empirical", {**decoding_metrics(y_te, bd["position"], bd["lo"], bd["hi"]),
                                        "direction_accuracy": float(np.mean(bd["direction"] == d_te))}))
    true_rates = true_tuning_from_meta(meta, grid)
    if true_rates is not None:
        bt = bayes_filter_decode(series.counts[te][kte], true_rates, grid, bin_size)
        res.update(_flat("bayes_true", {**decoding_metrics(y_te, bt["position"], bt["lo"], bt["hi"]),
                                       "direction_accuracy": float(np.mean(bt["direction"] == d_te))}))
        res["ours/excess_over_bayes_bound_cm"] = res["ours/mlp/median_error_cm"] - res["bayes_true/median_error_cm"]
    res["eval_time_s"] = time.perf_counter() - t0

    arrays = {
        "time": series.time[te][kte], "position": y_te, "direction": d_te,
        "h": f["h"][te][kte], "P": f["P"][te][kte], "obs_var": f["obs_var"][te][kte],
        "z": f["z"][te][kte], "pop_count": series.counts[te][kte].sum(1).astype(np.float64),
        **{f"ours_{k}": v for k, v in ours["arrays"].items()},
        "knn_raw_pred": knn["pred"],
        "bayes_empirical": bd["position"],
    }
    return res, arrays
