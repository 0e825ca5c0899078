"""Config → objective: every Table A1 row and every predictive loss builds; bad configs fail
with messages naming the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ldm.objectives import objective as ob
from ldm.objectives.registry import (
    CATEGORICAL_RUNS,
    PREDICTIVE_LOSSES,
    TABLE_A1,
    ObjectiveConfigError,
    build_objective,
    table_a1_config,
)

torch.set_num_threads(1)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "objectives.md"

# Table A1 of the paper (space, estimator label, MI column)
PAPER_ROWS = [
    ("Plane", "Contr.", False), ("Plane", "Contr.", True),
    ("Plane", "kNN", False), ("Plane", "kNN", True),
    ("Plane", "LogDet", False), ("Plane", "LogDet", True),
    ("Sphere", "Contr.", False), ("Sphere", "Contr.", True),
    ("Sphere", "kNN", False), ("Sphere", "kNN", True),
    ("Sphere", "LogDet", False), ("Sphere", "LogDet", True),
    ("Simplex", "Contr.", None),
]
DATASETS = ("cifar10", "cifar100", "svhn", "imagenet100")


def test_table_a1_has_every_paper_row():
    got = [(r["row"].split()[0], r["row"].split()[1], r["mi"]) for r in TABLE_A1]
    assert got == PAPER_ROWS


@pytest.mark.parametrize("variant", ["official", "paper"])
@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("row", [r["row"] for r in TABLE_A1])
def test_every_table_a1_row_builds_and_runs(row, dataset, variant):
    cfg = table_a1_config(row, dataset, variant)
    obj = build_objective(cfg)
    z1 = torch.randn(32, 24, requires_grad=True)
    z2 = z1.detach() + 0.1 * torch.randn(32, 24)
    loss, parts = obj(z1, z2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z1.grad).all()
    assert isinstance(parts["loss"], float)
    if cfg.get("objective", "ldm") == "ldm" and cfg["space"] != "categorical":
        row_mi = next(r["mi"] for r in TABLE_A1 if r["row"] == row)
        assert row_mi is None or obj.mi == row_mi


def test_table_a1_official_configs_match_reference():
    plane_logdet = build_objective(table_a1_config("Plane LogDet"))
    assert isinstance(plane_logdet, ob.VICRegObjective)
    assert (plane_logdet.sim_weight, plane_logdet.var_weight, plane_logdet.cov_weight, plane_logdet.cov_mode) == (
        25.0, 17.5, 0.75, "pooled")
    vicreg = build_objective(table_a1_config("Plane LogDet + MI"))
    assert (vicreg.sim_weight, vicreg.var_weight, vicreg.cov_weight, vicreg.cov_mode) == (25.0, 25.0, 1.0, "per_view")
    sphere_ld = build_objective(table_a1_config("Sphere LogDet"))
    est = sphere_ld.estimator
    assert (est.mode, est.power, est.joint_cov, est.scaling, est.jitter_all_entries) == (
        "taylor", 4, "pooled", "official", True)
    sphere_ld_paper = build_objective(table_a1_config("Sphere LogDet", variant="paper"))
    est = sphere_ld_paper.estimator  # paper: exact log det (Eq. 34) per dimension, joint of [z1 || z2] (issue 9)
    assert (est.mode, est.scaling, est.joint_cov, est.jitter_all_entries) == ("exact", "official", "concat", False)
    est = build_objective(table_a1_config("Sphere LogDet + MI", variant="paper")).estimator
    assert (est.mode, est.scaling) == ("exact", "official")
    # per-dataset precisions (images.md §1.4)
    assert build_objective(table_a1_config("Plane kNN", "cifar10")).model.lam == 12.5
    assert build_objective(table_a1_config("Plane kNN", "cifar100")).model.lam == 5.0
    assert build_objective(table_a1_config("Sphere Contr.", "cifar100")).model.lam == 2.5
    assert build_objective(table_a1_config("Sphere Contr.", "cifar10")).model.lam == 5.0
    assert build_objective(table_a1_config("Sphere Contr. + MI", "imagenet100")).model.lam == 5.0
    knn = build_objective(table_a1_config("Sphere kNN + MI")).estimator
    assert (knn.k, knn.p, knn.clip_quantile, knn.full) == (3, 2.0, 0.9, False)


@pytest.mark.parametrize("name", list(PREDICTIVE_LOSSES))
def test_every_predictive_loss_builds_and_runs(name):
    obj = build_objective(PREDICTIVE_LOSSES[name])
    assert isinstance(obj, ob.PredictiveObjective)
    z = torch.randn(8, 100, 2, requires_grad=True)
    mean = torch.randn(8, 99, 2, requires_grad=True)
    kw = {"cov": torch.eye(2).expand(8, 99, 2, 2)} if name.startswith("kalman") else {"var": torch.ones(8, 99, 2)}
    loss, parts = obj(z[:, 1:], mean, z_entropy=z, **kw)
    loss.backward()
    assert torch.isfinite(loss) and mean.grad is not None


def test_predictive_configs_match_reference():
    kp = build_objective(PREDICTIVE_LOSSES["kalman_procrustes"])
    assert kp.knn.scale_by_dim and kp.model.jitter == 1e-6 and kp.entropy_weight == "seq_len"
    lk = build_objective(PREDICTIVE_LOSSES["lstm_knn"])
    assert not lk.knn.scale_by_dim and lk.subset_size == 640
    assert build_objective(PREDICTIVE_LOSSES["kalman_regular"]).estimator == "stopgrad"


@pytest.mark.parametrize("name", list(CATEGORICAL_RUNS))
def test_categorical_runs_build(name):
    obj = build_objective(CATEGORICAL_RUNS[name])
    s = torch.softmax(torch.randn(16, 10), -1)
    assert torch.isfinite(obj(s, s)[0])
    assert obj.mode == {"dm": "exact", "dm_mi": "approx", "mi_only": "mi"}[name]


@pytest.mark.parametrize("objective", ["simclr", "vicreg", "vicreg_nomi", "byol", "simsiam", "infonce"])
def test_baselines_build(objective):
    obj = build_objective({"objective": objective})
    z = torch.randn(16, 8)
    assert torch.isfinite(obj(z, z + 0.1)[0])


BAD_CONFIGS = [
    ({"objective": "barlow"}, ["objective", "'barlow'", "simclr", "vicreg"]),
    ({"space": "torus", "estimator": "kde", "mi": False}, ["space", "'torus'", "plane", "sphere", "simplex"]),
    ({"space": "plane", "estimator": "kde"}, ["mi=None", "false", "true"]),
    ({"space": "plane", "estimator": "kde", "mi": "yes"}, ["mi='yes'", "false, true"]),
    ({"space": "simplex", "estimator": "knn", "mi": False}, ["'knn'", "'simplex'", "['kde']"]),
    ({"space": "simplex", "estimator": "logdet", "mi": True}, ["'logdet'", "['kde']"]),
    ({"space": "plane", "estimator": "entropy", "mi": True}, ["'entropy'", "['kde', 'knn', 'logdet']"]),
    ({"space": "plane", "estimator": "kde", "mi": True, "gamma": 5.0}, ["unknown key", "'gamma'", "kappa"]),
    ({"space": "sphere", "estimator": "kde", "mi": True, "kappa": 5.0}, ["unknown key", "'kappa'", "gamma"]),
    ({"space": "plane", "estimator": "kde", "mi": True, "kappa": -1.0}, ["kappa=-1.0", "> 0"]),
    ({"space": "plane", "estimator": "knn", "mi": True, "k": 0}, ["k=0", "integer >= 1"]),
    ({"space": "plane", "estimator": "knn", "mi": True, "clip_quantile": 1.5}, ["clip_quantile=1.5", "(0, 1]"]),
    ({"space": "plane", "estimator": "knn", "mi": True, "full": True, "scale_by_dim": True}, ["scale_by_dim", "full"]),
    ({"space": "sphere", "estimator": "logdet", "mi": True, "taylor_power": 3}, ["taylor_power=3", "[2, 4]"]),
    ({"space": "sphere", "estimator": "logdet", "mi": True, "logdet": "svd"}, ["logdet='svd'", "['exact', 'taylor']"]),
    ({"space": "sphere", "estimator": "logdet", "mi": False, "joint_cov": "stack"}, ["joint_cov='stack'", "concat"]),
    ({"space": "plane", "estimator": "logdet", "mi": True, "jitter_all_entries": True}, ["jitter_all_entries", "taylor"]),
    ({"space": "categorical", "mi": False, "p": 0.05}, ["p=0.05", "(0.1, 1)"]),
    ({"space": "categorical", "mi": True, "mode": "exact"}, ["mode='exact'", "mi=True"]),
    ({"space": "predictive", "estimator": "stopgrad", "mi": True}, ["mi=True", "'stopgrad'"]),
    ({"space": "predictive", "estimator": "infonce"}, ["'infonce'", "['stopgrad', 'knn', 'logdet', 'kde']"]),
    ({"space": "predictive", "estimator": "knn", "entropy_weight": "T"}, ["entropy_weight='T'", "seq_len"]),
    ({"objective": "simclr", "temperature": 0}, ["temperature=0", "> 0"]),
    ({"objective": "vicreg", "lambda": 5.0}, ["unknown key", "'lambda'", "sim_weight"]),
    ({"objective": "infonce", "similarity": "l2"}, ["similarity='l2'", "['dot', 'cosine']"]),
]


@pytest.mark.parametrize("cfg,fragments", BAD_CONFIGS, ids=[str(i) for i in range(len(BAD_CONFIGS))])
def test_invalid_configs_fail_with_helpful_message(cfg, fragments):
    with pytest.raises(ObjectiveConfigError) as info:
        build_objective(cfg)
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


def test_invalid_table_lookup():
    with pytest.raises(ObjectiveConfigError, match="allowed values"):
        table_a1_config("Torus kNN")
    with pytest.raises(ObjectiveConfigError, match="cifar10"):
        table_a1_config("Plane kNN", dataset="mnist")


def test_contrastive_alias():
    obj = build_objective({"space": "plane", "estimator": "contrastive", "mi": False})
    assert isinstance(obj.estimator, ob.GaussianKDE)


def test_docs_map_every_row_and_loss():
    text = DOCS.read_text()
    for r in TABLE_A1:
        assert f"| {r['row']} |" in text, r["row"]
    for name in [*PREDICTIVE_LOSSES, *CATEGORICAL_RUNS]:
        assert f"`{name}`" in text, name
