"""The paper's qualitative claims about the image grid (Sec. 6, Fig. 3, Fig. A2), checked on measured runs.

Each check returns rows ``{claim, dataset, subject, value, reference, holds, detail}`` so a table can show
the evidence next to the verdict. The thresholds are stated in ``detail`` and in docs/images.md:

* **MI changes accuracy little** — for every MI/no-MI pair (row ``x`` and ``x_mi``), the difference of the
  mean top-1 over seeds lies within the seed spread: |mean(x_mi) − mean(x)| ≤ the larger of the two
  rows' ranges (max − min over seeds). Needs ≥ 2 seeds per row.
* **Plane LogDet has the most spread spectrum** — the participation ratio (Σλ)²/Σλ² of the test-embedding
  covariance, mean over seeds, of both plane LogDet rows (with and without MI) exceeds that of every other
  row (Fig. 3 spectra; the paper's "dimensionality": 333 and 514 against at most 118 for the others).
* **Gradient cosines mostly positive, near 0 for plane LogDet** — over every logged step of every row
  except plane LogDet, the share of cosines > 0 is ≥ 0.5 ("mostly"); for the plane LogDet (no-MI) run,
  the mean cosine over the second half of training is below 0.2 and below every other row's (the paper
  reads ≈ 0.1 early and ≈ 0 later, the others ≈ 0.5–1).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

import numpy as np

MI_SUFFIX = "_mi"
PLANE_LOGDET = "plane_logdet"
NEAR_ZERO = 0.2


def _by_row(evals: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    out: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for ev in evals:
        out[(str(ev["dataset"]), str(ev["row"]))].append(ev)
    return out


def _values(runs: list[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(r[key]) for r in runs if r.get(key) is not None], dtype=float)


def mi_changes_little(evals: Iterable[Mapping[str, Any]], metric: str = "linear_top1") -> list[dict[str, Any]]:
    """One row per MI/no-MI pair: Δ = mean(x_mi) − mean(x) of ``metric`` against the seed spread."""
    rows = _by_row(evals)
    out = []
    for (ds, row), runs in sorted(rows.items()):
        if row.endswith(MI_SUFFIX) or (ds, row + MI_SUFFIX) not in rows:
            continue
        a, b = _values(runs, metric), _values(rows[(ds, row + MI_SUFFIX)], metric)
        if len(a) < 2 or len(b) < 2:
            holds, spread = None, float("nan")
        else:
            spread = float(max(np.ptp(a), np.ptp(b)))
            holds = bool(abs(b.mean() - a.mean()) <= spread)
        out.append({"claim": "MI changes accuracy little", "dataset": ds, "subject": f"{row} vs {row}{MI_SUFFIX}",
                    "value": round(float(b.mean() - a.mean()), 2), "reference": round(spread, 2), "holds": holds,
                    "detail": f"{metric}: no-MI {a.mean():.2f} (seeds {np.round(a, 1).tolist()}), MI {b.mean():.2f} "
                              f"(seeds {np.round(b, 1).tolist()}); holds if |Δ| <= seed range (larger of the two)"
                              + ("" if holds is not None else "; needs >= 2 seeds per row")})
    return out


def plane_logdet_most_spread(evals: Iterable[Mapping[str, Any]], key: str = "participation_ratio") -> list[dict[str, Any]]:
    """Per dataset: the smaller mean participation ratio of the two plane LogDet rows (with and without MI;
    the paper's Fig. 3 shows both as the most spread, 333 and 514 dimensions) against the largest of every
    other row."""
    rows = _by_row(evals)
    out = []
    for ds in sorted({d for d, _ in rows}):
        means = {row: float(_values(runs, key).mean()) for (d, row), runs in rows.items() if d == ds and len(_values(runs, key))}
        mine = {r: m for r, m in means.items() if r in (PLANE_LOGDET, PLANE_LOGDET + MI_SUFFIX)}
        if not mine:
            continue
        others = {r: m for r, m in means.items() if r not in mine}
        best_other = max(others, key=others.get) if others else None
        ranking = sorted(means, key=means.get, reverse=True)
        out.append({"claim": "plane LogDet has the most spread spectrum", "dataset": ds,
                    "subject": " and ".join(sorted(mine)), "value": round(min(mine.values()), 2),
                    "reference": round(others[best_other], 2) if best_other else float("nan"),
                    "holds": bool(best_other is None or min(mine.values()) > others[best_other]),
                    "detail": f"{key} (mean over seeds); value = the smaller of the plane LogDet rows, reference = "
                              f"the largest other ({best_other}); order: "
                              + ", ".join(f"{r} {means[r]:.1f}" for r in ranking)})
    return out


def _late_mean(cos: list[float]) -> float:
    c = np.asarray(cos, dtype=float)
    return float(c[len(c) // 2:].mean()) if len(c) else float("nan")


def gradient_cosines(evals: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset: share of positive gradient cosines over all other rows' logged steps, and plane
    LogDet's late-training mean cosine against the other rows'."""
    rows = _by_row(evals)
    out = []
    for ds in sorted({d for d, _ in rows}):
        late: dict[str, float] = {}
        pooled: list[float] = []
        for (d, row), runs in rows.items():
            if d != ds:
                continue
            cos = [c for r in runs for c in (r.get("grad_cos") or [])]
            if not cos:
                continue
            late[row] = float(np.mean([_late_mean(r.get("grad_cos") or []) for r in runs if r.get("grad_cos")]))
            if row != PLANE_LOGDET:
                pooled.extend(cos)
        if pooled:
            share = float(np.mean(np.asarray(pooled) > 0))
            out.append({"claim": "gradient cosines mostly positive", "dataset": ds, "subject": "all rows but plane LogDet",
                        "value": round(share, 3), "reference": 0.5, "holds": bool(share >= 0.5),
                        "detail": f"share of {len(pooled)} logged per-step cosines > 0; late-training means: "
                                  + ", ".join(f"{r} {m:.2f}" for r, m in sorted(late.items(), key=lambda t: -t[1]))})
        if PLANE_LOGDET in late:
            others = [m for r, m in late.items() if r != PLANE_LOGDET]
            lowest = min(others) if others else float("nan")
            mine = late[PLANE_LOGDET]
            out.append({"claim": "gradient cosine near 0 for plane LogDet", "dataset": ds, "subject": PLANE_LOGDET,
                        "value": round(mine, 3), "reference": round(lowest, 3) if others else float("nan"),
                        "holds": bool(abs(mine) < NEAR_ZERO and (not others or mine < lowest)),
                        "detail": f"mean cosine over the second half of training (mean over seeds); holds if "
                                  f"|value| < {NEAR_ZERO} and below every other row's (reference = lowest other)"})
    return out


def qualitative_claims(evals: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every check above on the runs' eval.json contents (the offline linear probe for accuracies)."""
    evals = list(evals)
    return [*mi_changes_little(evals), *plane_logdet_most_spread(evals), *gradient_cosines(evals)]


def claims_markdown(claims: list[dict[str, Any]], profile: str, seeds: list[int]) -> str:
    """The claims table as markdown, with the verdict spelled out (n/a where the runs cannot decide)."""
    verdict = {True: "holds", False: "does not hold", None: "n/a"}
    head = (f"# The paper's qualitative claims, checked (profile `{profile}`, seeds {seeds})\n\n"
            "| claim | dataset | subject | value | reference | verdict | evidence |\n|---|---|---|---|---|---|---|\n")
    return head + "\n".join(f"| {c['claim']} | {c['dataset']} | {c['subject']} | {c['value']} | {c['reference']} | "
                            f"{verdict[c['holds']]} | {c['detail']} |" for c in claims) + "\n"
