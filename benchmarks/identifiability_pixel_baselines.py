"""How hard is the wobbly state to read out of the frames linearly? (issue 11, the raw-pixel baseline)

For each renderer (``swirl_dot`` = the paper's swirled blob, ``dot`` = the same blob without swirl,
``random_mlp`` = the frozen-MLP observation of predictive.md §1.1), on the same trajectories, prints the
held-out affine R² (OLS with intercept on the training sequences, R² on the test sequences; all frames and
unclamped frames) of
  * ``ols_pixels``  — all P pixels → state (supervised, uses the labels for P·k + k parameters),
  * ``pca_d``       — PCA of the pixels to d = state_dim components, then affine (unsupervised reduction,
                       same bottleneck as the learned encoder),
  * ``swirl_rank``  — rank of the swirl matrix (the swirl is a fixed linear map of the image).
If ``ols_pixels`` is equally high with and without the swirl, the swirl does not make the state→pixel map
nonlinear for a linear readout: the blob's centre of mass is (nearly) linear in the pixels.

    PYTHONPATH=src python benchmarks/identifiability_pixel_baselines.py --n-train 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ldm.data import wobbly as w
from ldm.evaluation.identifiability import identifiability_r2, pca_fit, pca_transform


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    print(f"{'renderer':11s} {'ols_pixels unc/all':>19s} {'pca_d unc/all':>15s} {'clamped':>8s} {'s':>5s}")
    for renderer in ("swirl_dot", "dot", "random_mlp"):
        t0 = time.perf_counter()
        cfg = w.WobblyConfig(n_train=a.n_train, n_test=a.n_test, renderer=renderer)
        tr, te = w.generate_dataset(cfg, a.seed)
        ols = identifiability_r2(tr["frames"], tr["state"], tr["clamped"], te["frames"], te["state"], te["clamped"],
                                 max_train_frames=100_000)
        mu, axes = pca_fit(tr["frames"], cfg.state_dim, max_rows=200_000)
        pca = identifiability_r2(pca_transform(tr["frames"], mu, axes), tr["state"], tr["clamped"],
                                 pca_transform(te["frames"], mu, axes), te["state"], te["clamped"],
                                 max_train_frames=100_000)
        print(f"{renderer:11s} {ols['r2_unclamped']:9.4f}/{ols['r2_all']:.4f} {pca['r2_unclamped']:7.4f}/"
              f"{pca['r2_all']:.4f} {tr['clamped'].mean():8.3f} {time.perf_counter() - t0:5.1f}", flush=True)
    M = w.swirl_matrix(10, 10.0, 200.0)
    print(f"swirl matrix: shape {M.shape}, rank {np.linalg.matrix_rank(M)} (a fixed linear map of the image)")


if __name__ == "__main__":
    main()
