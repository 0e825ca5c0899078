"""The qualitative-claim checks of the image grid decide on hand-made runs as their definitions say."""

from __future__ import annotations

from ldm.evaluation.image_claims import (
    claims_markdown,
    gradient_cosines,
    mi_changes_little,
    plane_logdet_most_spread,
    qualitative_claims,
)


def _ev(row, seed, acc, pr=10.0, cos=(0.6, 0.7, 0.8, 0.9), ds="cifar10"):
    return {"dataset": ds, "row": row, "seed": seed, "linear_top1": acc, "participation_ratio": pr,
            "grad_cos": list(cos)}


def test_mi_pair_within_and_outside_the_seed_spread():
    close = [_ev("plane_knn", 1, 70.0), _ev("plane_knn", 2, 74.0), _ev("plane_knn_mi", 1, 71.0), _ev("plane_knn_mi", 2, 75.0)]
    far = [_ev("sphere_kde", 1, 70.0), _ev("sphere_kde", 2, 71.0), _ev("sphere_kde_mi", 1, 80.0), _ev("sphere_kde_mi", 2, 81.0)]
    out = {c["subject"]: c for c in mi_changes_little(close + far)}
    assert out["plane_knn vs plane_knn_mi"]["holds"] is True
    assert out["plane_knn vs plane_knn_mi"]["value"] == 1.0 and out["plane_knn vs plane_knn_mi"]["reference"] == 4.0
    assert out["sphere_kde vs sphere_kde_mi"]["holds"] is False
    # one seed cannot decide; an unpaired row is not a pair
    one = mi_changes_little([_ev("plane_kde", 1, 70.0), _ev("plane_kde_mi", 1, 70.5), _ev("simplex_kde", 1, 60.0)])
    assert len(one) == 1 and one[0]["holds"] is None


def test_plane_logdet_spectrum_must_be_the_widest():
    evs = [_ev("plane_logdet", 1, 70, pr=30.0), _ev("plane_logdet", 2, 70, pr=26.0), _ev("plane_logdet_mi", 1, 70, pr=40.0),
           _ev("sphere_kde", 1, 70, pr=20.0)]
    (c,) = plane_logdet_most_spread(evs)
    assert c["holds"] is True and c["value"] == 28.0 and c["reference"] == 20.0
    assert c["subject"] == "plane_logdet and plane_logdet_mi"
    (c,) = plane_logdet_most_spread(evs + [_ev("plane_knn", 1, 70, pr=29.0)])
    assert c["holds"] is False and c["reference"] == 29.0 and "(plane_knn)" in c["detail"]


def test_gradient_cosines_mostly_positive_and_plane_logdet_near_zero():
    evs = [_ev("plane_knn", 1, 70, cos=(0.5, 0.6, 0.7, 0.8)), _ev("sphere_kde", 1, 70, cos=(0.9, -0.1, 0.9, 0.95)),
           _ev("plane_logdet", 1, 70, cos=(0.4, 0.2, 0.05, -0.02))]
    out = {c["claim"]: c for c in gradient_cosines(evs)}
    assert out["gradient cosines mostly positive"]["holds"] is True
    assert out["gradient cosines mostly positive"]["value"] == 0.875  # 7 of 8 logged cosines
    assert out["gradient cosine near 0 for plane LogDet"]["value"] == 0.015  # mean of the late half
    assert out["gradient cosine near 0 for plane LogDet"]["holds"] is True
    evs[2] = _ev("plane_logdet", 1, 70, cos=(0.9, 0.9, 0.9, 0.9))
    out = {c["claim"]: c for c in gradient_cosines(evs)}
    assert out["gradient cosine near 0 for plane LogDet"]["holds"] is False
    evs = [_ev("plane_knn", 1, 70, cos=(-0.5, -0.6, 0.1, -0.8))]
    assert gradient_cosines(evs)[0]["holds"] is False


def test_claims_table_names_every_verdict():
    evs = [_ev("plane_logdet", 1, 70, pr=30), _ev("plane_logdet_mi", 1, 71, pr=25)]
    claims = qualitative_claims(evs)
    md = claims_markdown(claims, "images-cpu", [1])
    assert "n/a" in md and "holds" in md and "images-cpu" in md
    assert len(md.strip().splitlines()) == 4 + len(claims)
