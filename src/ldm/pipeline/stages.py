"""Pipeline stages: the unit of work a Snakemake rule (or DVC stage) runs through ``ldm stage``.

An experiment is a package ``ldm.experiments.<name>`` whose ``stages`` module registers its stage
functions with :func:`stage`. Each stage may name a *settings resolver*: a function of the whole config
and the job's wildcards returning exactly the settings that job uses. The pipeline hashes those settings
(Snakemake's params trigger, DVC params) and the stage's code (:func:`code_files`), so a change reruns
exactly the jobs it affects. Code counts by what it runs (:func:`source_digest`): a comment or a formatting
edit reruns nothing. Snakemake sees one digest file per source file (:func:`code_digest_file`, under
``.ldm/code/``), rewritten only when the digest changes; DVC keeps the source files themselves as deps.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldm.pipeline.paths import repo_root

StageFn = Callable[["Job"], None]
SettingsFn = Callable[[Mapping[str, Any], Mapping[str, str]], Any]


@dataclass(frozen=True)
class StageSpec:
    """A registered stage: its function and the resolver of the settings it reads."""

    name: str
    fn: StageFn
    settings: SettingsFn | None


_STAGES: dict[str, StageSpec] = {}


@dataclass
class Job:
    """One pipeline job: what a stage function reads, writes and tags its MLflow run with."""

    stage: str
    settings: Any
    input: dict[str, Path] = field(default_factory=dict)
    output: dict[str, Path] = field(default_factory=dict)
    wildcards: dict[str, str] = field(default_factory=dict)
    code: list[str] = field(default_factory=list)
    log: Path | None = None
    threads: int = 1

    @classmethod
    def from_json(cls, stage_name: str, text: str) -> "Job":
        data = json.loads(text)
        return cls(
            stage=stage_name,
            settings=data.get("settings", {}),
            input={k: Path(v) for k, v in data.get("input", {}).items()},
            output={k: Path(v) for k, v in data.get("output", {}).items()},
            wildcards=dict(data.get("wildcards", {})),
            code=list(data.get("code", [])),
            log=Path(data["log"]) if data.get("log") else None,
            threads=int(data.get("threads", 1)),
        )

    @property
    def rule(self) -> str:
        return self.stage.replace(".", "_", 1)

    @property
    def context(self) -> dict[str, Any]:
        """Provenance tags for MLflow: rule, wildcards, profile, config and input hashes."""
        return {
            "snakemake.rule": self.rule,
            "snakemake.wildcards": self.wildcards,
            "profile": os.environ.get("LDM_PROFILE", "unknown"),
            "settings_hash": settings_hash(self.settings),
            "provenance": self.provenance(),
        }

    def provenance(self) -> str:
        """Hash of everything that determines this job's outputs: its settings, the content of the
        code it runs and of its input files. A checkpoint is resumed only under the same hash."""
        h = hashlib.sha256(json.dumps(self.settings, sort_keys=True, default=str).encode())
        for path in sorted(self.code):
            h.update(path.encode())
            h.update(source_digest(Path(path)).encode())
        for path in sorted(str(p) for p in self.input.values()):
            h.update(path.encode())
            h.update(file_digest(Path(path)).encode())
        return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """md5 of a file's content (of every file, sorted, for a folder); 'missing' if absent."""
    path = Path(path)
    h = hashlib.md5()
    if path.is_dir():
        for sub in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(sub.relative_to(path)).encode())
            h.update(file_digest(sub).encode())
        return h.hexdigest()
    if not path.is_file():
        return "missing"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_digest(path: Path) -> str:
    """md5 of what a source file runs: for Python its syntax tree, so comments, blank lines and formatting
    do not count (docstrings do: they are values a program can read); any other file byte for byte."""
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        return file_digest(path)
    try:
        tree = ast.parse(path.read_text())
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return file_digest(path)
    return hashlib.md5(ast.dump(tree).encode()).hexdigest()


#: Snakemake's code inputs: one digest file per source file, relative to the repository root.
CODE_DIGESTS = Path(".ldm") / "code"


def code_digest_file(source: str, root: Path) -> str:
    """The digest file of ``source`` (a path relative to ``root``), brought up to date: written when
    absent or when :func:`source_digest` changed, else left untouched (so a comment edit reruns nothing). A
    written file takes the source's modification time, so outputs made after the source (or restored by
    ``dvc pull`` into a fresh clone) stay newer than it. Returns its path relative to ``root``."""
    rel = CODE_DIGESTS / f"{source}.md5"
    target, src = Path(root) / rel, Path(root) / source
    digest = source_digest(src)
    if not target.is_file() or target.read_text() != digest:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        tmp.write_text(digest)
        if src.exists():
            st = src.stat()
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, target)
    return str(rel)


def code_source(path: str) -> str:
    """The source file of a digest path from :func:`code_digest_file` (any prefix kept); other paths as given."""
    marker = f"{CODE_DIGESTS.as_posix()}/"
    head, sep, tail = path.replace(os.sep, "/").partition(marker)
    if not sep or not tail.endswith(".md5"):
        return path
    return head + tail[: -len(".md5")]


def settings_hash(settings: Any) -> str:
    """Short md5 of the canonical JSON of a job's settings."""
    return hashlib.md5(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def stage(name: str, settings: SettingsFn | None = None) -> Callable[[StageFn], StageFn]:
    """Register ``fn`` as stage ``<experiment>.<stage>``; ``settings(config, wildcards)`` returns the
    settings the job reads (default: the whole ``config[<experiment>]`` section)."""

    def register(fn: StageFn) -> StageFn:
        _STAGES[name] = StageSpec(name, fn, settings)
        return fn

    return register


def experiments(root: Path | None = None) -> list[str]:
    """Experiments found in ``src/ldm/experiments/<name>/stages.py`` (discovered, not registered)."""
    base = _src(root) / "ldm" / "experiments"
    return sorted(p.parent.name for p in base.glob("*/stages.py"))


def get_stage(name: str) -> StageSpec:
    """Look up a stage, importing its experiment's ``stages`` module on demand."""
    experiment = name.split(".", 1)[0]
    known = experiments()
    if experiment not in known:
        raise KeyError(f"unknown experiment '{experiment}' in stage '{name}' (known: {', '.join(known)})")
    importlib.import_module(f"ldm.experiments.{experiment}.stages")
    if name not in _STAGES:
        names = sorted(s for s in _STAGES if s.startswith(experiment + "."))
        raise KeyError(f"unknown stage '{name}' (known: {', '.join(names)})")
    return _STAGES[name]


def run_stage(job: Job) -> None:
    """Run ``job``; on failure remove its declared outputs so no rerun mistakes them for done."""
    spec = get_stage(job.stage)
    try:
        spec.fn(job)
    except BaseException:
        import shutil

        for path in job.output.values():
            path = Path(path)
            if path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------------------
# settings: what a job reads from the config, recorded key by key
# --------------------------------------------------------------------------------------------------


class TracedConfig(Mapping):
    """Read-only view of a config mapping that records the dotted keys read through it.

    Reading a leaf records its key; iterating a mapping (``items()``, ``dict(...)``) records the
    mapping's key, i.e. its whole subtree. The recorded keys are the job's DVC params.
    """

    def __init__(self, data: Mapping[str, Any], path: str = "", seen: set[str] | None = None) -> None:
        self._data = data
        self._path = path
        self.seen: set[str] = seen if seen is not None else set()

    def _key(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else str(key)

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        if isinstance(value, Mapping):
            return TracedConfig(value, self._key(key), self.seen)
        self.seen.add(self._key(key))
        return value

    def __iter__(self) -> Iterator[str]:
        if self._path:
            self.seen.add(self._path)
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


def plain(value: Any) -> Any:
    """Deep copy of ``value`` with every mapping a plain dict (reading traced subtrees whole)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def minimal_keys(keys: set[str]) -> list[str]:
    """Drop every key whose ancestor is also in ``keys``."""
    out = []
    for key in sorted(keys):
        parts = key.split(".")
        if not any(".".join(parts[:i]) in keys for i in range(1, len(parts))):
            out.append(key)
    return out


def job_settings(stage_name: str, config: Mapping[str, Any], wildcards: Mapping[str, str]) -> tuple[Any, list[str]]:
    """The settings job ``stage_name``/``wildcards`` reads and the config keys they come from."""
    spec = get_stage(stage_name)
    traced = TracedConfig(config)
    experiment = stage_name.split(".", 1)[0]
    if spec.settings is None:
        settings = plain(traced[experiment])
    else:
        settings = plain(spec.settings(traced, dict(wildcards)))
    return settings, minimal_keys(traced.seen)


# --------------------------------------------------------------------------------------------------
# code: the source files a stage runs
# --------------------------------------------------------------------------------------------------


def _src(root: Path | None) -> Path:
    return (root or repo_root()).resolve() / "src"


def _module_file(src: Path, name: str) -> Path | None:
    path = src / Path(*name.split("."))
    if path.is_dir() and (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


def _imports(nodes: list[ast.AST], module: str, is_package: bool) -> list[str]:
    """ldm modules named by the import statements among ``nodes`` (relative imports resolved)."""
    out: list[str] = []
    package = module if is_package else module.rsplit(".", 1)[0]
    for top in nodes:
        for node in ast.walk(top):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "ldm":
                    continue
                out.append(target)
                out.extend(f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                out.extend(a.name for a in node.names if a.name.split(".")[0] == "ldm")
    return out


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def module_closure(roots: list[str], root: Path | None = None, known: dict[str, Path] | None = None) -> dict[str, Path]:
    """Every ldm module (and the packages holding it) imported, transitively, by ``roots``; modules in
    ``known`` are included as they are, without following their imports."""
    src = _src(root)
    seen: dict[str, Path] = dict(known or {})
    todo = [m for r in roots for m in _with_parents(r)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(src, name)
        if path is None:
            continue
        seen[name] = path
        tree = ast.parse(path.read_text())
        for target in _imports(list(tree.body), name, path.name == "__init__.py"):
            todo.extend(_with_parents(target))
    return seen


def code_files(stage_name: str, root: Path | None = None) -> list[str]:
    """Source files (relative to the repo root) the stage runs: its experiment's ``stages`` module
    with its module-level imports, plus the modules imported inside the stage function itself
    (and, transitively, everything those import). A change to any of them reruns the stage; a
    module only another stage imports (a figure module, say) does not."""
    root = (root or repo_root()).resolve()
    src = _src(root)
    experiment, fn_stage = stage_name.split(".", 1)
    module = f"ldm.experiments.{experiment}.stages"
    path = _module_file(src, module)
    if path is None:
        raise KeyError(f"no stages module for experiment '{experiment}' ({src / 'ldm/experiments' / experiment})")
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    helpers = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    fn = next((n for n in helpers.values() if _registers(n, stage_name)), None)
    if fn is None:
        raise KeyError(f"stage '{stage_name}' is not registered in {path.relative_to(root)}")
    # the stage function, and the module-level helpers it calls (by name), transitively
    used: dict[str, ast.AST] = {}
    todo: list[ast.AST] = [fn]
    while todo:
        node = todo.pop()
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in helpers and sub.id not in used:
                used[sub.id] = helpers[sub.id]
                todo.append(helpers[sub.id])
    roots = [module, *_imports([*top, fn, *used.values()], module, False)]
    files = module_closure(roots, root, known={module: path})
    return sorted(str(p.relative_to(root)) for p in files.values())


def _registers(fn: ast.AST, stage_name: str) -> bool:
    for dec in getattr(fn, "decorator_list", []):
        if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "stage" and dec.args:
            arg = dec.args[0]
            if isinstance(arg, ast.Constant) and arg.value == stage_name:
                return True
    return False
