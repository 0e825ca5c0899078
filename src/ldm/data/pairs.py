"""Pairs of two *different* images of the same class (App. A.8, images.md §2).

The official MNIST sampler draws, for every item, a label uniformly, then a random training image of
that label and a *different* random image of the same label (the dataset index is ignored). Here one
epoch's pairs are drawn at once from a generator seeded by ``(seed, epoch)``, so the pairs of an epoch
depend only on the epoch (a resumed run sees the same pairs; no per-worker NumPy seeding issue, see
images.md §7).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = ["SameClassPairs"]


class SameClassPairs:
    """Sampler of index pairs (i, j), i ≠ j, labels[i] == labels[j].

    ``label_weights`` = ``"uniform"`` draws the label of a pair uniformly over classes (official,
    power-law exponent 0); ``"empirical"`` draws it in proportion to the class frequencies.
    Classes with fewer than two images cannot form a pair and are never drawn.
    """

    def __init__(self, labels: np.ndarray, seed: int = 0, label_weights: str = "uniform") -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
        if label_weights not in ("uniform", "empirical"):
            raise ValueError(f"label_weights must be one of ['uniform', 'empirical'], got {label_weights!r}")
        classes, counts = np.unique(labels, return_counts=True)
        keep = counts >= 2
        if not keep.any():
            raise ValueError("no class has two or more images; same-class pairs cannot be formed")
        self.classes = classes[keep]
        order = np.argsort(labels, kind="stable")
        starts = np.searchsorted(labels[order], self.classes)
        self._order = order
        self._starts = starts
        self._counts = counts[keep]
        w = np.ones(len(self.classes)) if label_weights == "uniform" else self._counts.astype(float)
        self._weights = w / w.sum()
        self.seed = int(seed)

    def sample(self, n_pairs: int, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n_pairs`` index pairs for ``epoch`` (deterministic given seed and epoch)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        c = rng.choice(len(self.classes), size=int(n_pairs), p=self._weights)
        cnt = self._counts[c]
        a = rng.integers(0, cnt)
        # a different image of the same class: uniform over the cnt − 1 others
        b = rng.integers(0, cnt - 1)
        b = b + (b >= a)
        base = self._starts[c]
        return self._order[base + a], self._order[base + b]

    def batches(self, n_pairs: int, batch_size: int, epoch: int = 0,
                drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The epoch's pairs in consecutive batches of ``batch_size``."""
        i1, i2 = self.sample(n_pairs, epoch)
        stop = (len(i1) // batch_size) * batch_size if drop_last else len(i1)
        for s in range(0, stop, batch_size):
            yield i1[s:s + batch_size], i2[s:s + batch_size]
