"""Print the Kalman generalisation table (issue 13) from a finished profile run: one row per motion x
seed with the learned model's held-out R² (filtered state, encoder only, random-phase test sequences),
the raw-pixel and untrained-model baselines measured in the same evaluation, the margin over raw pixels
and the collapse flags, then the per-run minimum.

    snakemake --cores 2 kalman --configfile config/kalman-generalisation.yaml
    PYTHONPATH=src python benchmarks/kalman_generalisation_table.py --config config/kalman-generalisation.yaml
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config/kalman-generalisation.yaml")
    ap.add_argument("--table", default="results/kalman/tables/runs.csv")
    a = ap.parse_args()
    from ldm.experiments.kalman.settings import kalman_section

    section = kalman_section(yaml.safe_load(open(a.config)))
    rows = list(csv.DictReader(open(Path(a.table))))
    cols = [("r2_heldout", "R2"), ("r2_heldout_encoder", "R2 enc"), ("r2_random_phase", "R2 rand-ph"),
            ("baseline_raw_pixels_r2", "raw px"), ("baseline_untrained_r2", "untrained"),
            ("margin_over_raw_pixels", "margin"), ("spectral_radius", "rho(A)")]
    print(f"{'run':<16}{'motion':<58}{'seed':>5}" + "".join(f"{h:>11}" for _, h in cols)
          + f"{'collapsed':>10}{'<raw px':>8}{'A@bound':>9}")
    for r in rows:
        d = section["datasets"][section["runs"][r["name"]]["dataset"]]
        mp = ",".join(f"{k}={v:g}" for k, v in dict(d.get("motion_params", {})).items())
        motion = f"{d['motion']}({mp}) T={d['period']:g}"
        print(f"{r['name']:<16}{motion:<58}{r['seed']:>5}" + "".join(f"{float(r[k]):>11.4f}" for k, _ in cols)
              + f"{r['collapsed']:>10}{r.get('below_raw_pixels', '?'):>8}{r['a_at_bound']:>9}")
    r2 = [float(r["r2_heldout"]) for r in rows]
    marg = [float(r["margin_over_raw_pixels"]) for r in rows]
    print(f"\n{len(rows)} runs: min R2 {min(r2):.4f}, runs with R2 >= 0.95: {sum(x >= 0.95 for x in r2)}/{len(r2)}, "
          f"collapsed: {sum(r['collapsed'] == 'True' for r in rows)}, below raw pixels: "
          f"{sum(r.get('below_raw_pixels') == 'True' for r in rows)}, min margin over raw pixels {min(marg):+.4f}")


if __name__ == "__main__":
    main()
