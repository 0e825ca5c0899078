"""Bad config stops the run before any job starts, with a message naming the key and allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import REPO, run
from ldm.pipeline.config import ConfigError, load_profile, validate_config


def _default() -> dict:
    return load_profile(REPO / "config" / "config.yaml")


@pytest.mark.parametrize("profile", sorted((REPO / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_profiles_are_valid(profile: Path) -> None:
    validate_config(load_profile(profile))


def test_negative_iterations_named_with_bound() -> None:
    cfg = _default()
    cfg["ica"]["images"]["fit"]["n_iter"] = -5
    with pytest.raises(ConfigError, match=r"'ica\.images\.fit\.n_iter' = -5 is out of range \(must be >= 1\)"):
        validate_config(cfg)


def test_unknown_key_named_with_allowed_keys() -> None:
    cfg = _default()
    cfg["ica"]["images"]["mixing"]["strength"] = 2
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "unknown config key 'ica.images.mixing.strength'" in str(err.value)
    assert "a, angle_deg, condition_number, kind, matrix, min_pca_amari, seed" in str(err.value)


def test_unknown_experiment_lists_allowed() -> None:
    cfg = _default()
    cfg["experiments"] = ["ica", "cifar"]
    with pytest.raises(ConfigError, match=r"'experiments\[1\]' = 'cifar' is not allowed \(allowed values: .*'ica',.*'kalman'"):
        validate_config(cfg)


def test_unknown_dataset_name_lists_allowed() -> None:
    cfg = _default()
    cfg["ica"]["images"]["sources"]["names"] = ["chelsea", "lena"]
    with pytest.raises(ConfigError, match=r"'ica\.images\.sources\.names\[1\]' = 'lena' is not allowed .*'coffee'"):
        validate_config(cfg)


def test_all_violations_reported_together() -> None:
    cfg = _default()
    cfg["bogus"] = 1
    cfg["ica"]["ou"]["sources"]["sigma"] = -1.0
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "'bogus'" in str(err.value) and "'ica.ou.sources.sigma'" in str(err.value)


def test_missing_profile_file_named() -> None:
    with pytest.raises(ConfigError, match="config profile .*nope.yaml does not exist"):
        load_profile(REPO / "config" / "nope.yaml")


def _snakemake_with(tmp_path: Path, cfg: dict | None, name: str = "bad.yaml"):
    path = tmp_path / name
    if cfg is not None:
        path.write_text(yaml.safe_dump(cfg))
    return run(["snakemake", "-n", "--configfile", str(path)], REPO, check=False, timeout=120)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["ica"]["images"]["fit"].update(n_iter=-1), "'ica.images.fit.n_iter' = -1 is out of range"),
        (lambda c: c.update(colour="red"), "unknown config key 'colour'"),
        (lambda c: c.update(experiments=["ica", "wobbly"]), "'experiments[1]' = 'wobbly' is not allowed"),
        (lambda c: c["ica"]["images"]["sources"].update(names=["chelsea", "x"]), "'ica.images.sources.names[1]' = 'x' is not allowed"),
    ],
    ids=["negative", "unknown-key", "unknown-experiment", "unknown-dataset"],
)
def test_snakemake_stops_before_any_job(tmp_path: Path, edit, message: str) -> None:
    cfg = _default()
    edit(cfg)
    done = _snakemake_with(tmp_path, cfg)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert message in out
    assert "Job stats" not in out and "rule ica_" not in out  # no job was even planned


def test_snakemake_names_missing_profile(tmp_path: Path) -> None:
    done = _snakemake_with(tmp_path, None, "does-not-exist.yaml")
    assert done.returncode != 0
    assert "does-not-exist.yaml" in done.stdout + done.stderr


def test_make_run_names_missing_profile() -> None:
    done = run(["make", "-s", "run", "PROFILE=config/nope.yaml", "VENV=" + str(Path(__import__('sys').executable).parents[1])], REPO, check=False, timeout=60)
    assert done.returncode != 0
    assert "config profile config/nope.yaml does not exist" in done.stderr


def test_profile_with_some_experiments_plans_only_those(tmp_path: Path) -> None:
    """A profile without an `ica` section is valid and plans without touching it (was: KeyError 'ica')."""
    cfg = load_profile(REPO / "config" / "smoke.yaml")
    del cfg["ica"]
    cfg["experiments"] = ["kalman"]
    done = _snakemake_with(tmp_path, cfg, "kalman-only.yaml")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "kalman_train" in out and "rule ica_" not in out


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("profile: x\nexperiments: [ica\nica: {}\n")
    with pytest.raises(ConfigError, match=rf"{bad}:3:\d+: config profile is not valid YAML"):
        load_profile(bad)
    done = run(["ldm", "validate", str(bad)], REPO, check=False)
    assert done.returncode == 1 and f"{bad}:3:" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["ldm", "dvc-yaml", "--configfile"], ["ldm", "validate"]])
def test_missing_profile_is_one_line_without_traceback(command: list[str]) -> None:
    done = run([*command, "config/nope.yaml"], REPO, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == "config profile config/nope.yaml does not exist"


def test_merge_settings_merges_nested_overrides_without_touching_the_defaults():
    from ldm.pipeline.config import merge_settings

    base = {"optim": {"lr": 0.1, "epochs": 5}, "model": {"width": 1.0}}
    out = merge_settings(base, {"optim": {"lr": 0.3}, "seed": 2})
    assert out == {"optim": {"lr": 0.3, "epochs": 5}, "model": {"width": 1.0}, "seed": 2}
    out["optim"]["epochs"] = 9
    assert base["optim"] == {"lr": 0.1, "epochs": 5}  # a copy, not a view
    assert merge_settings(base, None) == base


def test_strict_merge_names_the_unknown_key_by_its_path_and_shallow_keys_merge_one_level():
    from ldm.pipeline.config import merge_settings

    base = {"optim": {"lr": 0.1, "sched": {"warmup": 10}}, "augment": {"hue": 0.1}}
    with pytest.raises(KeyError, match=r"run: unknown key 'optim.sched.warmpu'; known: \['warmup'\]"):
        merge_settings(base, {"optim": {"sched": {"warmpu": 5}}}, "run")
    with pytest.raises(TypeError, match=r"run: 'optim' must be a mapping"):
        merge_settings(base, {"optim": 0.3}, "run")
    # a shallow key takes new sub-keys (its own schema checks them) and keeps the others
    out = merge_settings(base, {"augment": {"size": 16}}, "run", shallow=("augment",))
    assert out["augment"] == {"hue": 0.1, "size": 16}
    with pytest.raises(KeyError, match="unknown key 'augment.size'"):
        merge_settings(base, {"augment": {"size": 16}}, "run")
    assert merge_settings(base, {"new": 1}) == {**base, "new": 1}  # not strict: anything goes


def test_layered_settings_apply_the_levels_in_order():
    from ldm.pipeline.config import layered_settings

    section = {"defaults": {"optim": {"lr": 0.1, "epochs": 5}},
               "dataset_overrides": {"svhn": {"optim": {"lr": 0.2}}},
               "row_overrides": {"plane_kde": {"optim": {"lr": 0.3, "epochs": 7}}}}
    assert layered_settings(section, dataset="svhn") == {"optim": {"lr": 0.2, "epochs": 5}}
    assert layered_settings(section, dataset="svhn", row="plane_kde") == {"optim": {"lr": 0.3, "epochs": 7}}
    assert layered_settings(section, dataset="cifar10", row=None) == {"optim": {"lr": 0.1, "epochs": 5}}
    assert layered_settings({}, dataset="svhn") == {}
