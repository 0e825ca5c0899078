"""Summaries every experiment shares: seed aggregation into flat metrics, per-run CSV tables and the
table of the paper's values beside ours (shown in the Snakemake report)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ldm.pipeline.io import atomic_write


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def aggregate(rows: Sequence[Mapping[str, Any]], keys: Iterable[str], by: str = "name") -> dict[str, Any]:
    """Flat ``{"<group>/<key>_mean": ..., "<group>/<key>_std": ..., "<group>/seeds": [...]}`` over the
    rows of each group (one row per seed; every seed counts, none is dropped or picked)."""
    out: dict[str, Any] = {}
    keys = list(keys)
    for group in sorted({str(r[by]) for r in rows}):
        rs = [r for r in rows if str(r[by]) == group]
        out[f"{group}/seeds"] = sorted(int(r["seed"]) for r in rs if "seed" in r)
        for key in keys:
            vals = [v for v in (_number(r.get(key)) for r in rs) if v is not None]
            if vals:
                out[f"{group}/{key}_mean"] = float(np.mean(vals))
                out[f"{group}/{key}_std"] = float(np.std(vals))
                out[f"{group}/{key}_min"] = float(np.min(vals))
    return out


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """One row per mapping, the given columns (missing values empty), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    text = buf.getvalue()
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_paper_table(path: str | Path, metrics: Mapping[str, Any],
                      paper: Mapping[str, tuple[float | None, str]]) -> Path:
    """CSV of every headline number: metric, ours, the paper's value and where that value is from."""
    rows = [{"metric": key, "ours": metrics.get(key, ""), "paper": value if value is not None else "",
             "paper_source": source} for key, (value, source) in paper.items()]
    return write_csv(path, rows, ["metric", "ours", "paper", "paper_source"])
