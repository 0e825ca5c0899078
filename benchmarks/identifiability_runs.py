"""Train + evaluate identifiability runs and print one row per run (held-out affine R², baselines, wall
times; ``--per-epoch``: each epoch's alignment, R² and encoding spread). Used to size the profiles: each ``--run`` is ``NAME|OVERRIDES_JSON|SEED`` (overrides of
``ldm.training.identifiability.resolve_config``), optionally ``|INIT`` with the name of an earlier run (same
architecture) whose trained encoder weights this run starts from (``INIT+all``: the whole model, encoder,
predictor and probe); the data set is generated once per folder.

    PYTHONPATH=src python benchmarks/identifiability_runs.py --data /tmp/wobbly2000 --n-train 2000 \\
        --run 'knn|{"loss":"knn","model":{"encoder":{"preset":"released_code"}},"optim":{"epochs":70,"multipliers":{"encoder":20}}}|1'
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from ldm.data import wobbly as w
from ldm.training import identifiability as T


def print_epochs(name: str, seed: str, epochs: list) -> None:
    """Per-epoch diagnostics: mean training alignment CE, held-out R² (subset fit), raw encoder spread."""
    print(f"  {name} s{seed}: epoch  align_ce  R2unc   std_min  std_max  eig_min   eig_max  eig_min/max", flush=True)
    for i, e in enumerate(epochs):
        ce = e.get("train/alignment_ce", e.get("alignment_ce", float("nan")))
        print(f"  {'':{len(name) + len(seed) + 2}s}  {i + 1:5d} {ce:9.3f} {e.get('test/r2_unclamped_subsetfit', float('nan')):6.3f} "
              f"{e.get('enc/std_min', float('nan')):8.2e} {e.get('enc/std_max', float('nan')):8.2e} "
              f"{e.get('enc/cov_eig_min', float('nan')):9.2e} {e.get('enc/cov_eig_max', float('nan')):9.2e} "
              f"{e.get('enc/cov_eig_ratio', float('nan')):9.2e}", flush=True)


def _starting_from(build: type, runs_dir: Path, init: str, seed: str) -> type:
    """``build`` whose encoder (``init`` = ``NAME+all``: whole model) starts from run NAME's trained weights."""
    name, _, whole = init.partition("+")
    state = torch.load(runs_dir / f"{name}_s{seed}" / "model.pt", weights_only=False)["model"]
    if not whole:
        state = {k: v for k, v in state.items() if k.startswith("encoder.")}

    class WarmStarted(build):
        def __init__(self, *args, **kw) -> None:
            super().__init__(*args, **kw)
            missing = set(state) - set(self.state_dict())
            if missing:
                raise KeyError(f"run {name}: weights {sorted(missing)} have no place in this model")
            self.load_state_dict(state, strict=False)

    return WarmStarted


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="data folder (train.npz/test.npz; generated if missing)")
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=32)
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--data-config", default="{}", help="JSON overrides of WobblyConfig")
    p.add_argument("--runs-dir", default="/tmp/identifiability_runs")
    p.add_argument("--run", action="append", required=True, help="NAME|OVERRIDES_JSON|SEED[|INIT_RUN_NAME]")
    p.add_argument("--per-epoch", action="store_true",
                   help="also print every epoch's training alignment, held-out R² and the raw encodings' spread")
    a = p.parse_args()
    data = Path(a.data)
    if not (data / "test.npz").is_file():
        t0 = time.perf_counter()
        cfg = w.WobblyConfig(n_train=a.n_train, n_test=a.n_test, **json.loads(a.data_config))
        w.write_dataset(cfg, a.data_seed, data)
        print(f"data: {a.n_train} train / {a.n_test} test sequences in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"torch threads per run: set by the config (default 1); torch {torch.__version__}")
    head = (f"{'run':14s} {'seed':>4s} {'steps':>6s} {'train s':>8s} {'eval s':>7s} {'R2 unc':>7s} {'R2 all':>7s} "
            f"{'notebk':>7s} {'orient b->a':>11s} | {'rand unc/all':>13s} {'pixPCA unc/all':>13s} {'pixOLS unc/all':>13s}")
    print(head, flush=True)
    build = T.PredictiveLDM
    for spec in a.run:
        name, over, seed, *init = spec.split("|")
        over = {"progress": False, **json.loads(over)}
        cfg = T.resolve_config(over, seed=int(seed))
        run = Path(a.runs_dir) / f"{name}_s{seed}"
        shutil.rmtree(run, ignore_errors=True)
        T.PredictiveLDM = build if not init else _starting_from(build, Path(a.runs_dir), init[0], seed)
        t0 = time.perf_counter()
        s = T.train(cfg, data, run)
        t1 = time.perf_counter()
        if a.per_epoch:
            print_epochs(name, seed, json.loads((run / "history.json").read_text())["epochs"])
        r = T.evaluate(run, data)
        t2 = time.perf_counter()
        print(f"{name:14s} {seed:>4s} {s['steps']:6d} {t1 - t0:8.1f} {t2 - t1:7.1f} {r['learned/r2_unclamped']:7.3f} "
              f"{r['learned/r2_all']:7.3f} {r['learned/r2_notebook']:7.3f} "
              f"{r['grid_before/orientation_consistency']:5.2f}->{r['grid_after/orientation_consistency']:4.2f} | "
              f"{r['random_init/r2_unclamped']:6.3f}/{r['random_init/r2_all']:6.3f} "
              f"{r['pixels_pca_unsupervised/r2_unclamped']:6.3f}/{r['pixels_pca_unsupervised/r2_all']:6.3f} "
              f"{r['pixels_ols_supervised/r2_unclamped']:6.3f}/{r['pixels_ols_supervised/r2_all']:6.3f}", flush=True)


if __name__ == "__main__":
    main()
