"""Config profiles: loading, validation against ``workflow/schemas/config.schema.yaml``, hashing.

Errors name the offending key (dotted path) and, where the schema knows them, the allowed values,
so a bad profile stops the pipeline before any job starts.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ldm.pipeline.paths import repo_root

SCHEMA_RELPATH = Path("workflow") / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config profile is invalid; the message names the key and the allowed values."""


def schema_path(root: Path | None = None) -> Path:
    """Path of the JSON schema every profile is validated against."""
    return (root or repo_root()) / SCHEMA_RELPATH


def load_schema(path: Path | None = None) -> dict[str, Any]:
    """The config schema: ``workflow/schemas/config.schema.yaml`` plus, for every experiment found in
    ``src/ldm/experiments/<name>/``, its fragment ``config.schema.yaml`` as the section ``<name>``."""
    path = Path(path or schema_path())
    schema = yaml.safe_load(path.read_text())
    root = path.resolve().parents[2]
    from ldm.pipeline.stages import experiments

    names = experiments(root)
    schema["properties"]["experiments"]["items"] = {"enum": names}
    for name in names:
        fragment = root / "src" / "ldm" / "experiments" / name / "config.schema.yaml"
        if fragment.is_file():
            part = yaml.safe_load(fragment.read_text())
            schema.setdefault("$defs", {}).update(part.pop("$defs", {}))
            schema["properties"][name] = part
    return schema


def load_profile(path: str | Path) -> dict[str, Any]:
    """Read a YAML profile, failing with the file name if it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config profile {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: config profile is not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config profile {path} must be a mapping of keys to values")
    return data


def _key_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        where = "top level" if key == "<top level>" else f"'{key}'"
        names = ", ".join(f"'{_key_path([*error.absolute_path, e])}'" for e in extra)
        return f"unknown config key {names} (allowed keys at {where}: {', '.join(allowed)})"
    if error.validator == "enum":
        return f"config key '{key}' = {error.instance!r} is not allowed (allowed values: {', '.join(map(repr, error.validator_value))})"
    if error.validator == "required":
        missing = [k for k in error.validator_value if isinstance(error.instance, dict) and k not in error.instance]
        names = ", ".join(f"'{_key_path([*error.absolute_path, m])}'" for m in missing)
        return f"missing config key {names}"
    if error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[error.validator]
        return f"config key '{key}' = {error.instance!r} is out of range (must be {op} {error.validator_value})"
    if error.validator == "type":
        return f"config key '{key}' = {error.instance!r} has the wrong type (expected {error.validator_value})"
    return f"config key '{key}': {error.message}"


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        return root["$defs"][ref.removeprefix("#/$defs/")]
    return schema


def _fill_defaults(instance: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> None:
    """Insert the schema's ``default`` values for absent keys, recursively (follows local $refs)."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if not isinstance(instance, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if name not in instance and "default" in sub:
            instance[name] = copy.deepcopy(sub["default"])
        if name in instance:
            _fill_defaults(instance[name], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name, value in instance.items():
            if name not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def validate_config(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``config`` in place (filling schema defaults) and return it.

    Raises :class:`ConfigError` listing every violation, each naming its key and allowed values.
    """
    schema = schema if schema is not None else load_schema()
    _fill_defaults(config, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    problems = list(dict.fromkeys(_describe(e) for e in errors)) or _reference_errors(config)
    if problems:
        lines = "\n  - ".join(problems)
        raise ConfigError(f"invalid config:\n  - {lines}")
    return config


def _reference_errors(config: Mapping[str, Any]) -> list[str]:
    """Cross-references the schema cannot express: every Kalman run names a defined data set."""
    problems = []
    kalman = config.get("kalman") or {}
    datasets = sorted(kalman.get("datasets") or {})
    for run, settings in (kalman.get("runs") or {}).items():
        if settings.get("dataset") not in datasets:
            problems.append(
                f"config key 'kalman.runs.{run}.dataset' = {settings.get('dataset')!r} is not a data set "
                f"defined under kalman.datasets (allowed values: {', '.join(map(repr, datasets))})"
            )
    for name in config.get("experiments", []):
        if not config.get(name):
            problems.append(f"config key '{name}' is missing but '{name}' is listed in 'experiments'")
    ica = config.get("ica") or {}
    for part in ica.get("parts", []):
        if part not in ica:
            problems.append(f"config key 'ica.{part}' is missing but '{part}' is listed in 'ica.parts'")
    return problems


def merge_settings(base: Mapping[str, Any], over: Mapping[str, Any] | None, strict: str | None = None,
                   shallow: Collection[str] = (), _path: str = "") -> dict[str, Any]:
    """``over`` merged into a copy of ``base``, recursively for nested mappings (a profile's defaults and
    per-run overrides; the one merge of every experiment).

    ``strict`` (a label that starts the message) checks ``over`` against ``base``: a key that ``base`` lacks
    raises a KeyError naming its dotted path and the known keys, a non-mapping over a mapping a TypeError.
    The mappings under a key in ``shallow`` are updated one level only (their own schema checks them).
    """
    out = copy.deepcopy(dict(base))
    for k, v in (over or {}).items():
        path = _path + str(k)
        if strict is not None and k not in out:
            raise KeyError(f"{strict}: unknown key {path!r}; known: {sorted(out)}")
        if isinstance(out.get(k), Mapping) and isinstance(v, Mapping):
            out[k] = ({**out[k], **copy.deepcopy(dict(v))} if k in shallow
                      else merge_settings(out[k], v, strict, shallow, path + "."))
        elif strict is not None and isinstance(out.get(k), Mapping):
            raise TypeError(f"{strict}: {path!r} must be a mapping (keys {sorted(out[k])}), got {v!r}")
        else:
            out[k] = copy.deepcopy(v)
    return out


def layered_settings(section: Mapping[str, Any], **levels: str | None) -> dict[str, Any]:
    """A run's overrides from an experiment's config section: ``defaults`` ← ``<level>_overrides.<value>`` for
    each level in the order given (e.g. ``dataset=`` then ``row=``: ``images.defaults`` ←
    ``images.dataset_overrides.<dataset>`` ← ``images.row_overrides.<row>``); a level whose value is None is
    skipped."""
    over = merge_settings(section.get("defaults") or {}, None)
    for level, value in levels.items():
        if value is not None:
            over = merge_settings(over, (section.get(f"{level}_overrides") or {}).get(value, {}))
    return over


def config_hash(config: Mapping[str, Any]) -> str:
    """Short md5 of the canonical JSON form of a (validated) config, used to tag runs."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.md5(blob).hexdigest()[:12]


def section(config: Mapping[str, Any], dotted: str) -> Any:
    """Return the config value at a dotted key such as ``ica.images``, naming the key if absent."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"config key '{dotted}' is missing")
        node = node[part]
    return node
