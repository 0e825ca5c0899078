"""Results of the categorical experiment (App. A.8, Fig. A8/A9): the record of one trained run, the record
of the same-run baselines, the flat summary metrics, the per-seed table and the paper's values.

A run's record holds its clustering accuracy under both assignments (greedy = the paper's notebook,
Hungarian), the confusion matrices, entropy statistics in bits (Fig. A9: DM codes at higher entropy,
MI codes near zero) and its p schedule — only for objectives that have one: pure MI maximisation has no
latent model, so it records no p at all. Numbers from :func:`ldm.evaluation.clustering.clustering_report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ldm.pipeline.summary import aggregate

__all__ = ["PAPER", "KEYS", "BASELINE_KEYS", "TABLE_COLUMNS", "PAPER_ORDER", "run_record", "baseline_record",
           "summary_metrics", "runs_table", "run_order"]

#: The paper's clustering accuracies (greedy assignment, MNIST test set, seed 1; images.md §2, notebook).
PAPER: dict[str, tuple[float | None, str]] = {
    "dm/accuracy_greedy_mean": (0.989, "App. A.8 / Fig. A8, notebook 'DM p=0.99' (exact, p 0.8 -> 0.992)"),
    "dm_mi/accuracy_greedy_mean": (0.892, "App. A.8 / Fig. A8, notebook 'DM+MI p=0.99' (approx m=2, p 0.8 -> 0.992)"),
    "dm_mi_p08/accuracy_greedy_mean": (0.989, "App. A.8 / Fig. A8, notebook 'DM+MI p=0.8' (approx m=2, p = 0.8)"),
    "mi/accuracy_greedy_mean": (0.699, "App. A.8 / Fig. A8, notebook 'MI' (pure MI maximisation)"),
    "dm/median_entropy_bits_mean": (None, "Fig. A9: DM codes concentrated at higher entropy (qualitative)"),
    "mi/frac_entropy_below_1e-3_mean": (None, "Fig. A9: MI codes with many near-zero entropies (qualitative)"),
}
#: The paper's four runs in its order (figures and tables list them first).
PAPER_ORDER = ("dm", "dm_mi", "dm_mi_p08", "mi")

#: Per-run numbers aggregated over seeds (metrics.json) and listed per seed (tables/runs.csv).
KEYS = ["accuracy_greedy", "accuracy_hungarian", "mean_entropy_bits", "median_entropy_bits",
        "frac_entropy_below_1e-3", "clusters_used", "p_final", "train_time_s"]
#: Baselines measured in the same run (per seed).
BASELINE_KEYS = ["random_init_accuracy_greedy", "random_init_accuracy_hungarian", "random_init_mean_entropy_bits",
                 "random_init_kmeans_features_accuracy_greedy", "random_init_kmeans_features_accuracy_hungarian",
                 "kmeans_raw_pixels_accuracy_greedy", "kmeans_raw_pixels_accuracy_hungarian"]
TABLE_COLUMNS = ["name", "seed", "objective", "p_start", "p_final", "p_end", "encoder", "accuracy_greedy",
                 "accuracy_hungarian", "paper_accuracy_greedy", "mean_entropy_bits", "median_entropy_bits",
                 "frac_entropy_below_1e-3", "clusters_used", "train_time_s", "n_test"]


def _entropy_stats(h: np.ndarray) -> dict[str, float]:
    h = np.asarray(h, dtype=np.float64)
    return {"mean_entropy_bits": float(h.mean()), "median_entropy_bits": float(np.median(h)),
            "frac_entropy_below_1e-3": float((h < 1e-3).mean())}


def run_record(name: str, cfg: Mapping[str, Any], report: Mapping[str, Any], train_time_s: float,
               p_final: float | None) -> dict[str, Any]:
    """eval.json of one run x seed: ``report`` from :func:`ldm.evaluation.clustering.clustering_report`,
    ``cfg`` the run's resolved settings, ``p_final`` the p of its last epoch (None for pure MI)."""
    uses_p = cfg["objective"] != "mi"
    res: dict[str, Any] = {"name": name, "seed": int(cfg["seed"]), "objective": cfg["objective"]}
    if uses_p:  # pure MI has no latent model: no p to record
        res.update({"p_start": cfg["p_start"], "p_end": cfg["p_end"], "p_final": p_final})
    res.update({
        "encoder": cfg["encoder"]["name"], "n_test": int(np.asarray(report["confusion"]).sum()),
        "accuracy_greedy": report["accuracy_greedy"], "accuracy_hungarian": report["accuracy_hungarian"],
        **_entropy_stats(report["entropy_bits"]), "clusters_used": report["clusters_used"],
        "train_time_s": float(train_time_s),
        "confusion": np.asarray(report["confusion"]).tolist(),
        "confusion_greedy": np.asarray(report["confusion_greedy"]).tolist(),
        "assignment_greedy": {str(c): y for c, y in report["assignment_greedy"].items()},
        "assignment_hungarian": {str(c): y for c, y in report["assignment_hungarian"].items()},
    })
    return res


def baseline_record(seed: int, encoder: str, random_init: Mapping[str, Any], kmeans_features: Mapping[str, float],
                    kmeans_raw: Mapping[str, float]) -> dict[str, Any]:
    """eval.json of the baselines of one seed: the untrained encoder's argmax clusters (``random_init``, a
    clustering report), k-means on its backbone features and k-means on raw pixels."""
    return {"seed": int(seed), "encoder": encoder,
            "random_init_accuracy_greedy": random_init["accuracy_greedy"],
            "random_init_accuracy_hungarian": random_init["accuracy_hungarian"],
            "random_init_mean_entropy_bits": random_init["mean_entropy_bits"],
            "random_init_entropy_bits_median": float(np.median(random_init["entropy_bits"])),
            "random_init_kmeans_features_accuracy_greedy": kmeans_features["accuracy_greedy"],
            "random_init_kmeans_features_accuracy_hungarian": kmeans_features["accuracy_hungarian"],
            "kmeans_raw_pixels_accuracy_greedy": kmeans_raw["accuracy_greedy"],
            "kmeans_raw_pixels_accuracy_hungarian": kmeans_raw["accuracy_hungarian"]}


def _p_text(row: Mapping[str, Any]) -> str:
    if row["objective"] == "mi":
        return "unused (pure MI has no latent model)"
    if row.get("p_end") is None:
        return f"{row['p_start']}"
    return f"{row['p_start']} -> {row['p_final']:.4g} (target {row['p_end']})"


def summary_metrics(rows: Sequence[Mapping[str, Any]], baselines: Sequence[Mapping[str, Any]],
                    header: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json: ``header`` (experiment, profile, ...), mean/std/min over seeds of every run's
    :data:`KEYS` and of the baselines' :data:`BASELINE_KEYS`, each run's objective, p schedule and encoder,
    and DM − MI."""
    metrics: dict[str, Any] = {
        **header,
        "accuracy": "clustering accuracy on the test split: argmax category, one-to-one cluster -> digit map by the "
                    "paper's greedy assignment (accuracy_greedy) and by the Hungarian method (accuracy_hungarian)",
        "entropy": "per-image entropy of the category probabilities in bits",
        "baselines": "random_init: the untrained encoder of categorical.defaults (same seed): its argmax clusters "
                     "and k-means (k = n) on its backbone features; kmeans_raw_pixels: k-means on the pixels",
    }
    metrics.update(aggregate(rows, KEYS, by="name"))
    for name in sorted({r["name"] for r in rows}):
        first = next(r for r in rows if r["name"] == name)
        metrics[f"{name}/objective"] = first["objective"]
        metrics[f"{name}/p"] = _p_text(first)
        metrics[f"{name}/encoder"] = first["encoder"]
    metrics.update(aggregate([{**b, "name": "baselines"} for b in baselines], BASELINE_KEYS, by="name"))
    if "dm/accuracy_greedy_mean" in metrics and "mi/accuracy_greedy_mean" in metrics:
        metrics["dm_minus_mi_accuracy_greedy_mean"] = metrics["dm/accuracy_greedy_mean"] - metrics["mi/accuracy_greedy_mean"]
    return metrics


def runs_table(rows: Sequence[Mapping[str, Any]], baselines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """tables/runs.csv rows (columns :data:`TABLE_COLUMNS`): every run x seed with the paper's accuracy, then
    per seed the untrained encoder, k-means on its features and k-means on raw pixels."""
    table = [{**r, "paper_accuracy_greedy": PAPER.get(f"{r['name']}/accuracy_greedy_mean", ("", ""))[0]}
             for r in sorted(rows, key=lambda r: (r["name"], r["seed"]))]
    for b in baselines:
        table.append({"name": "baseline_random_init", "seed": b["seed"], "encoder": b["encoder"],
                      "accuracy_greedy": b["random_init_accuracy_greedy"],
                      "accuracy_hungarian": b["random_init_accuracy_hungarian"],
                      "mean_entropy_bits": b["random_init_mean_entropy_bits"],
                      "median_entropy_bits": b["random_init_entropy_bits_median"]})
    for b in baselines:
        table.append({"name": "baseline_random_init_kmeans_features", "seed": b["seed"], "encoder": b["encoder"],
                      "accuracy_greedy": b["random_init_kmeans_features_accuracy_greedy"],
                      "accuracy_hungarian": b["random_init_kmeans_features_accuracy_hungarian"]})
    for b in baselines:
        table.append({"name": "baseline_kmeans_raw_pixels", "seed": b["seed"],
                      "accuracy_greedy": b["kmeans_raw_pixels_accuracy_greedy"],
                      "accuracy_hungarian": b["kmeans_raw_pixels_accuracy_hungarian"]})
    return table


def run_order(names: Sequence[str]) -> list[str]:
    """The paper's runs first in its order, then any others sorted."""
    return [r for r in PAPER_ORDER if r in names] + sorted(r for r in set(names) if r not in PAPER_ORDER)
