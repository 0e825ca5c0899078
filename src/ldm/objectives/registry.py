"""Config → objective.  ``build_objective({"space": "sphere", "estimator": "knn", "mi": False,
"lambda": 5.0})`` returns a callable ``(z1, z2, ...) -> (loss, parts)``.

Schema (all keys are checked; unknown keys, invalid combinations and out-of-range values
raise ``ObjectiveConfigError`` naming the key and the allowed values):

* ``objective``: ``ldm`` (default) | ``simclr`` | ``vicreg`` | ``vicreg_nomi`` | ``byol`` |
  ``simsiam`` | ``infonce``.
* ``objective: ldm`` needs ``space``:
  ``plane`` | ``sphere`` | ``simplex`` | ``categorical`` | ``predictive``, and (except for
  ``predictive``) ``mi``: ``false`` (J_LDM, joint entropy) | ``true`` (J_MI, H(z1)+H(z2)).
  ``estimator``: plane/sphere ``kde`` | ``knn`` | ``logdet``; simplex ``kde``;
  categorical ``plugin``; predictive ``stopgrad`` | ``knn`` | ``logdet`` | ``kde``.
  (``contrastive`` is accepted as an alias of ``kde``.)

See ``docs/objectives.md`` for every parameter, its default and the Table A1 mapping
(:data:`TABLE_A1`, :func:`table_a1_config`) and the predictive losses
(:data:`PREDICTIVE_LOSSES`).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping

from .latent_models import CategoricalModel, PlaneModel, SimplexModel, SphereModel
from .objective import (
    KNN,
    VMFKDE,
    CategoricalObjective,
    DirichletKDE,
    GaussianKDE,
    InfoNCEObjective,
    LDMObjective,
    LogDet,
    Objective,
    PredictiveObjective,
    SimCLRObjective,
    StopgradObjective,
    VICRegObjective,
)

__all__ = [
    "ObjectiveConfigError",
    "build_objective",
    "TABLE_A1",
    "table_a1_config",
    "PREDICTIVE_LOSSES",
    "CATEGORICAL_RUNS",
    "OBJECTIVES",
    "SPACES",
    "ESTIMATORS",
]


class ObjectiveConfigError(ValueError):
    """An objective config names an unknown key, value or combination."""


OBJECTIVES = ("ldm", "simclr", "vicreg", "vicreg_nomi", "byol", "simsiam", "infonce")
SPACES = ("plane", "sphere", "simplex", "categorical", "predictive")
ESTIMATORS: dict[str, tuple[str, ...]] = {
    "plane": ("kde", "knn", "logdet"),
    "sphere": ("kde", "knn", "logdet"),
    "simplex": ("kde",),
    "categorical": ("plugin",),
    "predictive": ("stopgrad", "knn", "logdet", "kde"),
}
_ESTIMATOR_ALIASES = {"contrastive": "kde", "contr": "kde"}
_SPACE_NOTES = {
    "simplex": " (paper App. A.6.1: kNN and LogDet do not converge on the simplex)",
    "categorical": " (the categorical model uses exact plug-in entropies of the batch category probabilities)",
}

# ---- parameter specs: name -> (default, validator description, validator) -----------------
_Spec = tuple[Any, str, Any]


def _pos(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _nonneg(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _posint(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _one_of(*vals: Any):
    return lambda v: v in vals


def _quantile(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1)


def _pnorm(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 1


def _weight(v: Any) -> bool:
    return v == "seq_len" or _nonneg(v)


_COMMON = {"entropy_weight": (1.0, "a number >= 0", _nonneg)}
_KNN = {
    "k": (3, "an integer >= 1", _posint),
    "p": (2.0, "a number >= 1 (p-norm; inf allowed)", _pnorm),
    "clip_quantile": (0.9, "a number in (0, 1] or null", _quantile),
    "scale_by_dim": (False, "true or false", _bool),
    "full": (False, "true or false", _bool),
}
_LOGDET = {
    "logdet": ("exact", "one of ['exact', 'taylor']", _one_of("exact", "taylor")),
    "taylor_power": (2, "one of [2, 4]", _one_of(2, 4)),
    "jitter": (1e-6, "a number >= 0", _nonneg),
    "joint_cov": ("concat", "one of ['concat', 'pooled']", _one_of("concat", "pooled")),
    "scaling": ("entropy", "one of ['entropy', 'official']", _one_of("entropy", "official")),
    "jitter_all_entries": (False, "true or false", _bool),
}
_PARAMS: dict[tuple[str, str], dict[str, _Spec]] = {
    ("plane", "kde"): {"kappa": (5.0, "a number > 0", _pos)},
    ("plane", "knn"): _KNN,
    ("plane", "logdet"): _LOGDET,
    ("sphere", "kde"): {"gamma": (5.0, "a number > 0", _pos)},
    ("sphere", "knn"): _KNN,
    ("sphere", "logdet"): _LOGDET,
    ("simplex", "kde"): {"kernel_beta": (None, "a number > 0 or null (= beta)", lambda v: v is None or _pos(v))},
    ("categorical", "plugin"): {
        "mode": (None, "one of ['exact', 'approx', 'mi'] or null (from mi)", _one_of(None, "exact", "approx", "mi")),
        "multiplier": (2.0, "a number >= 0", _nonneg),
    },
    ("predictive", "stopgrad"): {},
    ("predictive", "knn"): {**_KNN, "subset_size": (None, "an integer >= 1 or null", lambda v: v is None or _posint(v))},
    ("predictive", "logdet"): {
        "logdet_jitter": (1e-8, "a number >= 0", _nonneg),
        "subset_size": (None, "an integer >= 1 or null", lambda v: v is None or _posint(v)),
    },
    ("predictive", "kde"): {
        "kde_bandwidth": ("mean_std", "'mean_std' or a number > 0", lambda v: v == "mean_std" or _pos(v)),
        "subset_size": (None, "an integer >= 1 or null", lambda v: v is None or _posint(v)),
    },
}
_SPACE_PARAMS: dict[str, dict[str, _Spec]] = {
    "plane": {"lambda": (5.0, "a number >= 0", _nonneg),
              "alignment_reduction": ("mean", "one of ['mean', 'sum']", _one_of("mean", "sum")), **_COMMON},
    "sphere": {"lambda": (5.0, "a number >= 0", _nonneg), **_COMMON},
    "simplex": {"beta": (5.0, "a number > 0", _pos), "from_logits": (True, "true or false", _bool), **_COMMON},
    "categorical": {"p": (0.8, "a number in (1/n, 1)", _pos), "n": (10, "an integer >= 2", lambda v: _posint(v) and v >= 2),
                    "from_logits": (False, "true or false", _bool)},
    "predictive": {"cov_jitter": (0.0, "a number >= 0", _nonneg),
                   "entropy_weight": ("seq_len", "'seq_len' or a number >= 0", _weight)},
}
_BASELINE_PARAMS: dict[str, dict[str, _Spec]] = {
    "simclr": {"temperature": (0.2, "a number > 0", _pos)},
    "vicreg": {"sim_weight": (25.0, "a number >= 0", _nonneg), "var_weight": (25.0, "a number >= 0", _nonneg),
               "cov_weight": (1.0, "a number >= 0", _nonneg),
               "cov_mode": ("per_view", "one of ['per_view', 'pooled']", _one_of("per_view", "pooled"))},
    "vicreg_nomi": {"sim_weight": (25.0, "a number >= 0", _nonneg), "var_weight": (17.5, "a number >= 0", _nonneg),
                    "cov_weight": (0.75, "a number >= 0", _nonneg),
                    "cov_mode": ("pooled", "one of ['per_view', 'pooled']", _one_of("per_view", "pooled"))},
    "byol": {},
    "simsiam": {},
    "infonce": {"temperature": (1.0, "a number > 0", _pos),
                "similarity": ("dot", "one of ['dot', 'cosine']", _one_of("dot", "cosine"))},
}
_GENERIC = {"objective", "float_parts", "name"}


def _err(msg: str) -> ObjectiveConfigError:
    return ObjectiveConfigError(msg)


def _resolve(cfg: Mapping[str, Any], specs: dict[str, _Spec], where: str, fixed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(cfg) - set(specs) - fixed - _GENERIC)
    if unknown:
        raise _err(f"unknown key(s) {unknown} for {where}; allowed keys: {sorted(set(specs) | fixed | _GENERIC)}")
    out = {}
    for key, (default, desc, ok) in specs.items():
        val = cfg.get(key, default)
        if not ok(val):
            raise _err(f"invalid value {key}={val!r} for {where}; allowed: {desc}")
        out[key] = val
    return out


def build_objective(config: Mapping[str, Any]) -> Objective:
    """Build an objective from a config mapping (see module docstring / docs/objectives.md)."""
    if not isinstance(config, Mapping):
        raise _err(f"objective config must be a mapping, got {type(config).__name__}")
    cfg = dict(config)
    kind = cfg.get("objective", "ldm")
    if kind not in OBJECTIVES:
        raise _err(f"unknown objective {kind!r}; allowed values: {list(OBJECTIVES)}")
    float_parts = cfg.get("float_parts", True)
    if not isinstance(float_parts, bool):
        raise _err(f"invalid value float_parts={float_parts!r}; allowed: true or false")

    if kind != "ldm":
        p = _resolve(cfg, _BASELINE_PARAMS[kind], f"objective {kind!r}", set())
        if kind == "simclr":
            return SimCLRObjective(p["temperature"], float_parts=float_parts)
        if kind in ("vicreg", "vicreg_nomi"):
            o = VICRegObjective(p["sim_weight"], p["var_weight"], p["cov_weight"], p["cov_mode"], float_parts)
            o.name = kind
            return o
        if kind in ("byol", "simsiam"):
            return StopgradObjective(kind, float_parts=float_parts)
        return InfoNCEObjective(p["temperature"], p["similarity"], float_parts=float_parts)

    space = cfg.get("space")
    if space not in SPACES:
        raise _err(f"unknown or missing space {space!r} for objective 'ldm'; allowed values: {list(SPACES)}")
    allowed_est = ESTIMATORS[space]
    est = cfg.get("estimator", allowed_est[0] if len(allowed_est) == 1 else None)
    est = _ESTIMATOR_ALIASES.get(est, est)
    if est not in allowed_est:
        raise _err(
            f"estimator {cfg.get('estimator')!r} is not allowed for space {space!r}; "
            f"allowed values: {list(allowed_est)}{_SPACE_NOTES.get(space, '')}"
        )
    mi = cfg.get("mi")
    if space == "predictive":
        if mi is not None and mi != (est != "stopgrad"):
            raise _err(
                f"mi={mi!r} contradicts predictive estimator {est!r}: 'stopgrad' is the conditional-entropy "
                f"(mi=false) loss, 'knn'/'logdet'/'kde' maximise single-timestep entropy (mi=true)"
            )
    elif not isinstance(mi, bool):
        raise _err(f"missing or invalid mi={mi!r} for space {space!r}; allowed values: [false, true] "
                   f"(false = joint entropy H(z1,z2), true = H(z1)+H(z2))")
    where = f"space {space!r} with estimator {est!r}"
    specs = {**_SPACE_PARAMS[space], **_PARAMS[(space, est)]}
    p = _resolve(cfg, specs, where, {"space", "estimator", "mi"})

    if space == "categorical":
        mode = p["mode"] or ("approx" if mi else "exact")
        if p["mode"] in ("exact", "approx") and (p["mode"] == "approx") != mi:
            raise _err(f"mode={p['mode']!r} contradicts mi={mi!r}; 'exact' is mi=false, 'approx' is mi=true")
        n = p["n"]
        if not (1.0 / n < p["p"] < 1.0):
            raise _err(f"invalid value p={p['p']!r} for {where}; allowed: a number in (1/n, 1) = ({1 / n:g}, 1)")
        model = CategoricalModel(p["p"], n, from_logits=p["from_logits"])
        return CategoricalObjective(model, mode=mode, multiplier=p["multiplier"], float_parts=float_parts)

    if space == "predictive":
        knn = None
        if est == "knn":
            knn = KNN(p["k"], p["p"], p["clip_quantile"], p["scale_by_dim"], p["full"])
        return PredictiveObjective(
            estimator=est, cov_jitter=p["cov_jitter"], entropy_weight=p["entropy_weight"], knn=knn,
            logdet_jitter=p.get("logdet_jitter", 1e-8), subset_size=p.get("subset_size"),
            kde_bandwidth=p.get("kde_bandwidth", "mean_std"), float_parts=float_parts,
        )

    if space == "plane":
        model = PlaneModel(p["lambda"], reduction=p["alignment_reduction"])
    elif space == "sphere":
        model = SphereModel(p["lambda"])
    else:
        model = SimplexModel(p["beta"], from_logits=p["from_logits"])

    if est == "kde":
        if space == "plane":
            estimator = GaussianKDE(p["kappa"])
        elif space == "sphere":
            estimator = VMFKDE(p["gamma"])
        else:
            estimator = DirichletKDE(p["kernel_beta"] if p["kernel_beta"] is not None else p["beta"])
    elif est == "knn":
        if p["full"] and p["scale_by_dim"]:
            raise _err(f"scale_by_dim=true is not allowed with full=true for {where} (full already includes d)")
        estimator = KNN(p["k"], p["p"], p["clip_quantile"], p["scale_by_dim"], p["full"])
    else:
        if p["logdet"] == "exact" and p["jitter_all_entries"]:
            raise _err(f"jitter_all_entries=true needs logdet='taylor' for {where}")
        if p["logdet"] == "exact" and p["taylor_power"] != 2:
            raise _err(f"taylor_power={p['taylor_power']} needs logdet='taylor' for {where}")
        estimator = LogDet(
            mode=p["logdet"], power=p["taylor_power"], jitter=p["jitter"], joint_cov=p["joint_cov"],
            scaling=p["scaling"], jitter_all_entries=p["jitter_all_entries"],
        )
    return LDMObjective(model, estimator, mi=mi, entropy_weight=p["entropy_weight"], float_parts=float_parts)


# ======================================================================================
# Paper Table A1 (the authors' code) and the predictive / categorical losses
# ======================================================================================
_SPHERE_LOGDET_OFFICIAL = {"logdet": "taylor", "taylor_power": 4, "scaling": "official",
                           "jitter_all_entries": True}
#: Paper variant of the sphere LogDet rows: the exact Gaussian log-det of Eq. 34 (the Taylor expansion of
#: App. A.5.3 is offered there only as intuition and assumes small off-diagonal correlations, which unit-norm
#: embeddings of a ReLU network violate from initialisation on), per dimension (log det C / d, the official
#: code's normalisation, for which λ = 5 was tuned; ½ log det in nats weighs the entropy d/2 times more).
#: Taylor ρ² with ½ log det collapsed every images-cpu run to ~2 dimensions, below the random-init network
#: (issue 9; benchmarks/sphere_logdet_collapse.py).
_SPHERE_LOGDET_PAPER = {"logdet": "exact", "scaling": "official"}

#: Table A1 rows → config that reproduces the official code (which produced the published
#: numbers).  ``overrides``: per-dataset precision changes; ``paper``: the paper-default
#: alternative where the code deviates from the paper.
TABLE_A1: list[dict[str, Any]] = [
    {"row": "Plane Contr.", "mi": False,
     "config": {"space": "plane", "estimator": "kde", "mi": False, "lambda": 5.0, "kappa": 5.0}},
    {"row": "Plane Contr. + MI", "mi": True,
     "config": {"space": "plane", "estimator": "kde", "mi": True, "lambda": 5.0, "kappa": 5.0}},
    {"row": "Plane kNN", "mi": False,
     "config": {"space": "plane", "estimator": "knn", "mi": False, "lambda": 5.0, "k": 3, "p": 2.0, "clip_quantile": 0.9},
     "overrides": {"cifar10": {"lambda": 12.5}}},
    {"row": "Plane kNN + MI", "mi": True,
     "config": {"space": "plane", "estimator": "knn", "mi": True, "lambda": 5.0, "k": 3, "p": 2.0, "clip_quantile": 0.9},
     "overrides": {"cifar10": {"lambda": 12.5}}},
    {"row": "Plane LogDet", "mi": False,
     "config": {"objective": "vicreg_nomi", "sim_weight": 25.0, "var_weight": 17.5, "cov_weight": 0.75, "cov_mode": "pooled"},
     "paper": {"space": "plane", "estimator": "logdet", "mi": False, "logdet": "exact", "joint_cov": "concat"}},
    {"row": "Plane LogDet + MI", "mi": True,
     "config": {"objective": "vicreg", "sim_weight": 25.0, "var_weight": 25.0, "cov_weight": 1.0},
     "paper": {"space": "plane", "estimator": "logdet", "mi": True, "logdet": "exact"}},
    {"row": "Sphere Contr.", "mi": False,
     "config": {"space": "sphere", "estimator": "kde", "mi": False, "lambda": 5.0, "gamma": 5.0},
     "overrides": {"cifar100": {"lambda": 2.5}, "imagenet100": {"lambda": 2.5}}},
    {"row": "Sphere Contr. + MI", "mi": True,
     "config": {"space": "sphere", "estimator": "kde", "mi": True, "lambda": 5.0, "gamma": 5.0}},
    {"row": "Sphere kNN", "mi": False,
     "config": {"space": "sphere", "estimator": "knn", "mi": False, "lambda": 5.0, "k": 3, "p": 2.0, "clip_quantile": 0.9},
     "overrides": {"cifar100": {"lambda": 2.5}, "imagenet100": {"lambda": 2.5}}},
    {"row": "Sphere kNN + MI", "mi": True,
     "config": {"space": "sphere", "estimator": "knn", "mi": True, "lambda": 5.0, "k": 3, "p": 2.0, "clip_quantile": 0.9}},
    {"row": "Sphere LogDet", "mi": False,
     "config": {"space": "sphere", "estimator": "logdet", "mi": False, "lambda": 5.0, "jitter": 1e-6,
                "joint_cov": "pooled", **_SPHERE_LOGDET_OFFICIAL},
     "overrides": {"cifar100": {"lambda": 2.5}, "imagenet100": {"lambda": 2.5}},
     "paper": {"space": "sphere", "estimator": "logdet", "mi": False, **_SPHERE_LOGDET_PAPER, "joint_cov": "concat"}},
    {"row": "Sphere LogDet + MI", "mi": True,
     "config": {"space": "sphere", "estimator": "logdet", "mi": True, "lambda": 5.0, "jitter": 1e-6,
                **_SPHERE_LOGDET_OFFICIAL},
     "paper": {"space": "sphere", "estimator": "logdet", "mi": True, **_SPHERE_LOGDET_PAPER}},
    # No code for this row in the official snapshot; β, K and the MI setting are unknown
    # (the authors' code).  Assumption: J_LDM (mi=false), β = 50. With α = β z1 + 1 over K categories the
    # Dirichlet is nearly flat when β << K: β = 5 at K = 32 (images-cpu) barely moved the loss and gave
    # linear top-1 42.3 / 59.7 (random init 52.4 / 57.3), β = 20 74.1 / 67.7, β = 50 72.3 / 72.9 (seeds 2 / 1,
    # benchmarks/sphere_logdet_collapse.py --row simplex_kde, docs/images.md).
    {"row": "Simplex Contr.", "mi": None,
     "config": {"space": "simplex", "estimator": "kde", "mi": False, "beta": 50.0}},
]

#: Predictive losses named in the authors' code
PREDICTIVE_LOSSES: dict[str, dict[str, Any]] = {
    # Kalman `regular`: predictive stopgrad, Σ_t mean_b CE(sg z_t | ẑ_t, S_z + Σ_D), no jitter
    "kalman_regular": {"space": "predictive", "estimator": "stopgrad", "cov_jitter": 0.0},
    # Kalman `procrustes` ("kNN entropy", the paper's CPC in Fig. 4C): CE with +1e-6 I, − T·d·Ĥ_kNN
    "kalman_procrustes": {"space": "predictive", "estimator": "knn", "cov_jitter": 1e-6, "k": 3, "p": 2.0,
                          "clip_quantile": 0.9, "scale_by_dim": True, "entropy_weight": "seq_len"},
    # LSTM (wobbly) losses, unit variances diag(v_t)
    "lstm_stopgrad": {"space": "predictive", "estimator": "stopgrad"},
    "lstm_knn": {"space": "predictive", "estimator": "knn", "k": 3, "p": 2.0, "clip_quantile": 0.9,
                 "scale_by_dim": False, "subset_size": 640, "entropy_weight": "seq_len"},
    "lstm_logdet": {"space": "predictive", "estimator": "logdet", "logdet_jitter": 1e-8, "entropy_weight": "seq_len"},
    "lstm_kde": {"space": "predictive", "estimator": "kde", "kde_bandwidth": "mean_std", "entropy_weight": "seq_len"},
}

#: App. A.8 MNIST runs (the authors' code); p is the start value (annealed to 0.992 except the constant run).
CATEGORICAL_RUNS: dict[str, dict[str, Any]] = {
    "dm": {"space": "categorical", "mi": False, "p": 0.8},
    "dm_mi": {"space": "categorical", "mi": True, "p": 0.8, "multiplier": 2.0},
    "mi_only": {"space": "categorical", "mi": True, "mode": "mi"},
}


def table_a1_config(row: str, dataset: str = "cifar10", variant: str = "official") -> dict[str, Any]:
    """Config of a Table A1 row for a dataset (``cifar10``, ``cifar100``, ``svhn``,
    ``imagenet100``); ``variant="paper"`` returns the paper-default alternative where one
    exists (LogDet rows), else the official config."""
    rows = {r["row"]: r for r in TABLE_A1}
    if row not in rows:
        raise _err(f"unknown Table A1 row {row!r}; allowed values: {list(rows)}")
    if variant not in ("official", "paper"):
        raise _err(f"variant must be one of ['official', 'paper'], got {variant!r}")
    datasets = ("cifar10", "cifar100", "svhn", "imagenet100")
    if dataset not in datasets:
        raise _err(f"unknown dataset {dataset!r}; allowed values: {list(datasets)}")
    r = rows[row]
    if variant == "paper" and "paper" in r:
        cfg = copy.deepcopy(r["paper"])
        base = r["config"]
        for key in ("lambda",):
            if key in base:
                cfg.setdefault(key, base[key])
    else:
        cfg = copy.deepcopy(r["config"])
    if "lambda" in cfg or cfg.get("space") in ("plane", "sphere"):
        cfg.update(r.get("overrides", {}).get(dataset, {}))
    return cfg
