"""pyproject.toml is the single source of dependencies; the conda files agree with it."""

from __future__ import annotations

import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from conftest import REPO


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _pip_section(env: dict) -> list[str]:
    for dep in env["dependencies"]:
        if isinstance(dep, dict) and "pip" in dep:
            return dep["pip"]
    raise AssertionError("no pip section")


def _python_pin(env: dict) -> str:
    pins = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python")]
    assert len(pins) == 1, pins
    return pins[0].split("=", 1)[1]


def test_installed_environment_satisfies_pyproject() -> None:
    """The environment the tests run in has every declared dependency at a version pyproject allows
    (a pin that drifted from what is installed fails here)."""
    from importlib.metadata import PackageNotFoundError, version

    for dep in map(Requirement, _pyproject()["project"]["dependencies"]):
        try:
            installed = version(dep.name)
        except PackageNotFoundError:
            raise AssertionError(f"{dep.name} is declared in pyproject.toml but not installed") from None
        assert dep.specifier.contains(installed, prereleases=True), f"{dep.name} {installed} does not satisfy {dep}"


def test_environment_yml_installs_the_project_with_a_compatible_python() -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"][0] == "conda-forge"
    pip = _pip_section(env)
    assert any(entry.startswith("-e .") for entry in pip), pip
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert _python_pin(env) + ".0" in requires


def test_rule_environment_mirrors_pyproject() -> None:
    env = yaml.safe_load((REPO / "workflow" / "envs" / "ldm.yaml").read_text())
    rule_deps = {Requirement(d).name: Requirement(d).specifier for d in _pip_section(env)}
    project = {Requirement(d).name: Requirement(d).specifier for d in _pyproject()["project"]["dependencies"]}
    assert rule_deps == project
    assert _python_pin(env) + ".0" in SpecifierSet(_pyproject()["project"]["requires-python"])
