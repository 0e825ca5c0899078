"""Clustering accuracy of categorical codes and their per-image uncertainty (App. A.8, Fig. A8/A9).

A categorical encoder assigns image x to cluster argmax_c s_c(x). Clusters carry no label, so a
one-to-one cluster → label assignment is chosen on the confusion matrix:

* ``greedy`` (the paper's notebook, images.md §2): visit the cells of the confusion matrix in
  descending order of count and assign cluster c → label y whenever both are still free;
* ``hungarian``: the assignment maximising the matched count (``scipy.optimize.linear_sum_assignment``).

Both agree for near-diagonal matrices; greedy can be worse (never better) otherwise.
Accuracy = matched count / total. Entropies are in bits, −Σ_c s_c log₂ s_c (0 log 0 = 0).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = [
    "ASSIGNMENTS",
    "confusion_matrix",
    "greedy_assignment",
    "hungarian_assignment",
    "assign_clusters",
    "clustering_accuracy",
    "reorder_confusion",
    "entropy_bits",
    "clustering_report",
    "kmeans_accuracy",
    "kmeans_baseline",
]

ASSIGNMENTS = ("greedy", "hungarian")


def confusion_matrix(clusters: np.ndarray, labels: np.ndarray, n_clusters: int | None = None,
                     n_labels: int | None = None) -> np.ndarray:
    """Counts ``cm[c, y]`` of images in cluster c with label y (int64, shape (n_clusters, n_labels))."""
    clusters = np.asarray(clusters).astype(np.int64).ravel()
    labels = np.asarray(labels).astype(np.int64).ravel()
    if clusters.shape != labels.shape:
        raise ValueError(f"clusters and labels differ in length: {clusters.shape[0]} vs {labels.shape[0]}")
    if clusters.size and (clusters.min() < 0 or labels.min() < 0):
        raise ValueError("clusters and labels must be non-negative integers")
    kc = int(n_clusters) if n_clusters is not None else int(clusters.max(initial=-1)) + 1
    ky = int(n_labels) if n_labels is not None else int(labels.max(initial=-1)) + 1
    if clusters.size and (clusters.max() >= kc or labels.max() >= ky):
        raise ValueError(f"a cluster or label index exceeds the matrix size ({kc}, {ky})")
    cm = np.zeros((kc, ky), dtype=np.int64)
    np.add.at(cm, (clusters, labels), 1)
    return cm


def greedy_assignment(cm: np.ndarray) -> dict[int, int]:
    """The paper's greedy one-to-one cluster → label map: cells in descending count order (ties: row-major
    order), a cell is taken when its cluster and label are both unassigned."""
    cm = np.asarray(cm)
    flat = np.argsort(-cm.ravel(), kind="stable")
    mapping: dict[int, int] = {}
    used: set[int] = set()
    for f in flat:
        c, y = divmod(int(f), cm.shape[1])
        if c in mapping or y in used:
            continue
        mapping[c] = y
        used.add(y)
        if len(mapping) == min(cm.shape):
            break
    return mapping


def hungarian_assignment(cm: np.ndarray) -> dict[int, int]:
    """The one-to-one cluster → label map maximising the matched count."""
    rows, cols = linear_sum_assignment(np.asarray(cm), maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols)}


def assign_clusters(cm: np.ndarray, method: str = "greedy") -> dict[int, int]:
    """Cluster → label map by ``method`` in :data:`ASSIGNMENTS`."""
    if method == "greedy":
        return greedy_assignment(cm)
    if method == "hungarian":
        return hungarian_assignment(cm)
    raise ValueError(f"assignment method must be one of {list(ASSIGNMENTS)}, got {method!r}")


def _matched(cm: np.ndarray, mapping: dict[int, int]) -> int:
    return int(sum(cm[c, y] for c, y in mapping.items()))


def clustering_accuracy(clusters: np.ndarray, labels: np.ndarray, method: str = "greedy",
                        n_clusters: int | None = None, n_labels: int | None = None) -> float:
    """Fraction of images whose cluster is mapped to their label (one-to-one map by ``method``)."""
    cm = confusion_matrix(clusters, labels, n_clusters, n_labels)
    total = int(cm.sum())
    if total == 0:
        raise ValueError("clustering accuracy of an empty set is undefined")
    return _matched(cm, assign_clusters(cm, method)) / total


def reorder_confusion(cm: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Rows permuted so that the cluster assigned to label y is row y (the diagonal = matched counts);
    unassigned clusters follow in index order."""
    cm = np.asarray(cm)
    by_label = {y: c for c, y in mapping.items()}
    order = [by_label[y] for y in sorted(by_label)]
    order += [c for c in range(cm.shape[0]) if c not in mapping]
    return cm[order]


def entropy_bits(probs: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-row entropy in bits −Σ_c s_c log₂ s_c of category probabilities (N, n); 0 log 0 = 0."""
    p = torch.as_tensor(np.asarray(probs) if not isinstance(probs, torch.Tensor) else probs).double()
    h = -torch.special.xlogy(p, p).sum(-1) / math.log(2.0)
    return h.clamp_min(0.0).cpu().numpy()


def clustering_report(probs: np.ndarray | torch.Tensor, labels: np.ndarray) -> dict:
    """Accuracy under both assignments, confusion matrices (raw and greedy-reordered), the greedy map
    and the per-image entropies (bits) of categorical codes ``probs`` (N, n)."""
    p = probs.detach().cpu().numpy() if isinstance(probs, torch.Tensor) else np.asarray(probs)
    clusters = p.argmax(1)
    n = p.shape[1]
    labels = np.asarray(labels)
    cm = confusion_matrix(clusters, labels, n, max(n, int(labels.max(initial=-1)) + 1))
    total = int(cm.sum())
    greedy = greedy_assignment(cm)
    hung = hungarian_assignment(cm)
    h = entropy_bits(p)
    return {
        "accuracy_greedy": _matched(cm, greedy) / total,
        "accuracy_hungarian": _matched(cm, hung) / total,
        "confusion": cm,
        "confusion_greedy": reorder_confusion(cm, greedy),
        "assignment_greedy": greedy,
        "assignment_hungarian": hung,
        "entropy_bits": h,
        "mean_entropy_bits": float(h.mean()) if h.size else float("nan"),
        "clusters_used": int((cm.sum(1) > 0).sum()),
    }


def kmeans_accuracy(train_x: np.ndarray, test_x: np.ndarray, test_labels: np.ndarray, k: int = 10,
                    seed: int = 1) -> dict[str, float]:
    """k-means (k clusters, 10 inits) fitted on ``train_x`` (N, D), test points assigned to the nearest
    centre, scored with both assignments."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(np.asarray(train_x, dtype=np.float32))
    clusters = km.predict(np.asarray(test_x, dtype=np.float32))
    test_labels = np.asarray(test_labels)
    cm = confusion_matrix(clusters, test_labels, k, max(k, int(test_labels.max()) + 1))
    total = cm.sum()
    return {"accuracy_greedy": _matched(cm, greedy_assignment(cm)) / total,
            "accuracy_hungarian": _matched(cm, hungarian_assignment(cm)) / total}


def kmeans_baseline(train_images: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
                    k: int = 10, seed: int = 1) -> dict[str, float]:
    """The simplest clustering baseline: k-means on raw pixels (uint8 images scaled to [0, 1])."""

    def flat(a: np.ndarray) -> np.ndarray:
        return np.asarray(a).reshape(len(a), -1).astype(np.float32) / 255.0

    return kmeans_accuracy(flat(train_images), flat(test_images), test_labels, k, seed)
