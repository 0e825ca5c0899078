"""Why stopgrad stalls on the wobbly system (issue 11): diagnostics of trained identifiability runs.

For each run folder (``model.pt`` from ``ldm.training.identifiability.train``) it prints

* the held-out R² of the true state (unclamped frames) from the encodings through an **affine** map, a
  cubic polynomial and a 10-nearest-neighbour regression: a high kNN-regression R² with a low affine R² means
  the encoder is injective but not affine (a warped map, not a fold or a collapse);
* the gradient *coherence* of the encoder under two losses evaluated at the same trained model: the stopgrad
  loss and the kNN LDM loss (alignment − T·Ĥ_kNN). For ``--batches`` independent batches of B sequences it
  takes the encoder gradient g_i and reports the mean pairwise cosine between batches and
  ‖mean g‖ / mean ‖g‖ (1: every batch pushes the same way; ~1/√n: pure noise). With a predictor that
  fits E[z_t | z_<t], the expected stopgrad gradient Σ_t J_pᵀ E[p_{t−1} − z_t] vanishes for *any* encoder,
  so a stopgrad run stops where its predictor catches up; the LDM loss keeps a coherent gradient towards the
  affine map (the entropy term penalises non-uniform local scaling).

    PYTHONPATH=src python benchmarks/identifiability_stopgrad_mechanism.py --data /tmp/wobbly2000 RUN_DIR...
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch


def readout_r2(ztr, ytr, zte, yte) -> dict[str, float]:
    from sklearn.metrics import r2_score
    from sklearn.neighbors import KNeighborsRegressor

    def poly(z: np.ndarray, k: int = 3) -> np.ndarray:
        cols = [np.ones(len(z))]
        for i in range(k + 1):
            for j in range(k + 1 - i):
                if i + j:
                    cols.append(z[:, 0] ** i * z[:, 1] ** j)
        return np.stack(cols, 1)

    aff = lambda z: np.c_[z, np.ones(len(z))]  # noqa: E731
    out = {}
    for name, f in (("affine", aff), ("poly3", poly)):
        W = np.linalg.lstsq(f(ztr), ytr, rcond=None)[0]
        out[name] = float(r2_score(yte, f(zte) @ W))
    out["knn_reg"] = float(r2_score(yte, KNeighborsRegressor(10).fit(ztr, ytr).predict(zte)))
    return out


def coherence(model, frames: torch.Tensor, loss: str, batches: int, B: int, seed: int) -> tuple[float, float]:
    from ldm.objectives.predictive_losses import build_objective, predictive_loss

    obj = build_objective(loss, B)
    g = torch.Generator().manual_seed(seed)
    grads = []
    model.train()
    for _ in range(batches):
        idx = torch.randperm(frames.shape[0], generator=g)[:B]
        model.zero_grad()
        z, pred = model(frames[idx])
        predictive_loss(obj, z, pred)[0].backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.encoder.parameters()]).clone())
    G = torch.stack(grads)
    cos = [float(torch.nn.functional.cosine_similarity(G[i], G[j], 0)) for i, j in itertools.combinations(range(len(G)), 2)]
    return float(np.mean(cos)), float(G.mean(0).norm() / G.norm(dim=1).mean())


def main() -> None:
    from ldm.data.wobbly import load_split
    from ldm.training import identifiability as T

    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--fit-sequences", type=int, default=500)
    p.add_argument("runs", nargs="+")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tr, _ = load_split(Path(a.data) / "train.npz")
    te, _ = load_split(Path(a.data) / "test.npz")
    n = a.fit_sequences
    frames = torch.from_numpy(tr["frames"])
    print(f"{'run':22s} {'loss':>8s} | R² unclamped held-out: {'affine':>6s} {'poly3':>6s} {'kNN-reg':>7s} | "
          f"grad coherence (mean cos / |mean g|/mean|g|): {'stopgrad':>15s} {'kNN LDM':>15s}")
    for run in a.runs:
        model, cfg = T.load_model(run, tr["frames"].shape[-1], tr["state"].shape[-1])
        ztr, zte = T.encode(model, tr["frames"][:n]), T.encode(model, te["frames"])
        mtr, mte = ~tr["clamped"][:n], ~te["clamped"]
        r = readout_r2(ztr[mtr], tr["state"][:n][mtr], zte[mte], te["state"][mte])
        sg = coherence(model, frames, "stopgrad", a.batches, int(cfg["optim"]["batch_size"]), 1)
        kn = coherence(model, frames, "knn", a.batches, int(cfg["optim"]["batch_size"]), 1)
        print(f"{Path(run).name:22s} {cfg['loss']:>8s} | {'':22s} {r['affine']:6.3f} {r['poly3']:6.3f} {r['knn_reg']:7.3f} | "
              f"{'':46s} {sg[0]:7.3f}/{sg[1]:6.3f} {kn[0]:7.3f}/{kn[1]:6.3f}", flush=True)


if __name__ == "__main__":
    main()
