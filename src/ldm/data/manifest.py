"""The dataset manifest (``manifest.yaml``): every external file the pipeline uses, pinned.

Each dataset lists source URL(s), version, size, checksum(s), licence and citation. The download
helper (:mod:`ldm.data.download`) verifies every file against its entry; ``docs/datasets.md``
shows the same table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

MANIFEST_PATH = Path(__file__).with_name("manifest.yaml")
#: Checksum algorithms the manifest may name, strongest first (the first present is verified).
ALGORITHMS = ("sha256", "md5")


class ManifestError(ValueError):
    """The manifest (or a settings override of it) is malformed; the message names the key."""


@dataclass(frozen=True)
class FileSpec:
    """One pinned file: where it comes from and how to recognise a correct copy."""

    name: str
    urls: tuple[str, ...]
    checksums: dict[str, str]
    size: int | None = None
    split: str | None = None
    optional: bool = False
    members: dict[str, str] = field(default_factory=dict)
    extracted: dict[str, Any] | None = None

    @property
    def algorithm(self) -> str | None:
        """The checksum algorithm verified for this file (None: not pinned)."""
        for algo in ALGORITHMS:
            if self.checksums.get(algo):
                return algo
        return None

    @property
    def digest(self) -> str | None:
        """The expected hex digest under :attr:`algorithm`."""
        algo = self.algorithm
        return self.checksums[algo] if algo else None

    def describe(self) -> str:
        """``md5 c58f…, 170498071 bytes``: how a correct copy is recognised, for messages."""
        parts = [f"{self.algorithm} {self.digest}" if self.algorithm else "checksum not pinned"]
        if self.size:
            parts.append(f"{self.size} bytes")
        return ", ".join(parts)


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of the manifest."""

    name: str
    title: str
    version: str
    client: str
    homepage: str
    licence: str
    citation: str
    splits: dict[str, int]
    files: tuple[FileSpec, ...]
    extra: dict[str, Any]

    def file(self, name: str) -> FileSpec:
        """The file called ``name`` (KeyError naming the dataset and the known files)."""
        for spec in self.files:
            if spec.name == name:
                return spec
        raise KeyError(f"manifest entry {self.name!r} has no file {name!r} (has {[f.name for f in self.files]})")

    def provenance(self) -> dict[str, Any]:
        """What meta.json records about the source: title, version, homepage, licence, citation."""
        return {
            "title": self.title,
            "version": self.version,
            "client": self.client,
            "homepage": self.homepage,
            "licence": self.licence,
            "citation": " ".join(self.citation.split()),
        }


def parse_file_spec(raw: dict[str, Any], where: str) -> FileSpec:
    if not isinstance(raw, dict) or "name" not in raw:
        raise ManifestError(f"{where}: every file needs a `name`")
    urls = raw.get("urls") or []
    if isinstance(urls, str):
        urls = [urls]
    checksums = {algo: str(raw[algo]).lower() for algo in ALGORITHMS if raw.get(algo)}
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise ManifestError(f"{where}.size must be a byte count, got {size!r}")
    members = {str(k): str(v).lower() for k, v in (raw.get("members") or {}).items()}
    return FileSpec(
        name=str(raw["name"]),
        urls=tuple(str(u) for u in urls),
        checksums=checksums,
        size=size,
        split=raw.get("split"),
        optional=bool(raw.get("optional", False)),
        members=members,
        extracted=raw.get("extracted"),
    )


def parse_manifest(raw: dict[str, Any], source: str = "manifest") -> dict[str, DatasetEntry]:
    """Turn the YAML mapping into :class:`DatasetEntry` objects, checking the required keys."""
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: top level must be a mapping of dataset name -> entry")
    out: dict[str, DatasetEntry] = {}
    required = ("title", "version", "client", "homepage", "licence", "citation")
    for name, entry in raw.items():
        where = f"{source}: {name}"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where} must be a mapping")
        missing = [k for k in required if not entry.get(k)]
        if missing:
            raise ManifestError(f"{where} lacks {', '.join(missing)}")
        files = tuple(parse_file_spec(f, f"{where}.files[{i}]") for i, f in enumerate(entry.get("files") or []))
        extra = {k: v for k, v in entry.items() if k not in (*required, "files", "splits")}
        out[name] = DatasetEntry(
            name=name,
            title=str(entry["title"]),
            version=str(entry["version"]),
            client=str(entry["client"]),
            homepage=str(entry["homepage"]),
            licence=" ".join(str(entry["licence"]).split()),
            citation=str(entry["citation"]),
            splits=dict(entry.get("splits") or {}),
            files=files,
            extra=extra,
        )
    return out


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> dict[str, DatasetEntry]:
    with open(path) as fh:
        raw = yaml.safe_load(fh)
    return parse_manifest(raw, source=path)


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, DatasetEntry]:
    """Read the manifest (the bundled ``manifest.yaml`` unless ``path`` names another)."""
    path = Path(path) if path else MANIFEST_PATH
    if not path.exists():
        raise FileNotFoundError(f"dataset manifest {path} does not exist")
    return _load_cached(str(path.resolve()), path.stat().st_mtime_ns)


def manifest_entry(name: str, path: str | os.PathLike | None = None) -> DatasetEntry:
    """The manifest entry of dataset ``name`` (KeyError listing the known names)."""
    entries = load_manifest(path)
    if name not in entries:
        raise KeyError(f"dataset {name!r} is not in the manifest {path or MANIFEST_PATH} (known: {sorted(entries)})")
    return entries[name]


# --------------------------------------------------------------------------------------------------
# the manifest as a Markdown table (docs/datasets.md shows it; tests keep the two in sync)
# --------------------------------------------------------------------------------------------------

TABLE_BEGIN = "<!-- manifest-table:begin (generated by `python -m ldm.data.manifest docs/datasets.md`) -->"
TABLE_END = "<!-- manifest-table:end -->"


def _checksum_cell(spec: FileSpec, entry: DatasetEntry) -> str:
    if spec.algorithm:
        cell = f"{spec.algorithm} `{spec.digest}`"
        if spec.extracted:
            cell += f"; extracted {spec.extracted['name']}: md5 `{spec.extracted.get('md5')}`"
        if spec.members:
            cell += f" (+ {len(spec.members)} members)"
        return cell
    if entry.name == "hc11":
        return "sha256 + dandi-etag published by DANDI for the pinned version (pin: `datasets.hc11.sha256`)"
    return "—"


def markdown_table(entries: dict[str, DatasetEntry] | None = None) -> str:
    """One row per pinned file: dataset, version, file, size, checksum, URL(s), licence, citation."""
    entries = entries or load_manifest()
    rows = [
        "| Dataset | Version | File | Size (bytes) | Checksum | Source | Licence | Citation |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def row(entry: DatasetEntry, spec: FileSpec | None, version: str, licence: str, citation: str) -> None:
        if spec is None:
            rows.append(f"| {entry.name} | {version} | — | — | — | {entry.homepage} | {licence} | {citation} |")
            return
        urls = "<br>".join(spec.urls) or entry.homepage
        size = f"{spec.size:,}".replace(",", " ") if spec.size else "—"
        optional = " (optional)" if spec.optional else ""
        rows.append(
            f"| {entry.name} | {version} | `{spec.name}`{optional} | {size} | {_checksum_cell(spec, entry)} | {urls} | {licence} | {citation} |"
        )

    for entry in entries.values():
        citation = " ".join(entry.citation.split())
        if not entry.files:
            row(entry, None, entry.version, entry.licence, citation)
        for spec in entry.files:
            row(entry, spec, entry.version, entry.licence, citation)
        for alt_name, alt in (entry.extra.get("alternatives") or {}).items():
            for i, raw in enumerate(alt.get("files") or []):
                spec = parse_file_spec(raw, f"{entry.name}.alternatives.{alt_name}.files[{i}]")
                alt_entry = DatasetEntry(**{**entry.__dict__, "name": f"{entry.name} ({alt_name})"})
                row(
                    alt_entry,
                    spec,
                    f"alternative: {alt_name}",
                    " ".join(str(alt.get("licence", entry.licence)).split()),
                    " ".join(str(alt.get("citation", "")).split()) or "—",
                )
    return "\n".join(rows)


def update_docs(path: str | os.PathLike) -> bool:
    """Rewrite the table between the markers of ``path``; True if it changed."""
    path = Path(path)
    text = path.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise ValueError(f"{path} lacks the manifest-table markers")
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    new = f"{head}{TABLE_BEGIN}\n{markdown_table()}\n{TABLE_END}{tail}"
    if new != text:
        path.write_text(new)
        return True
    return False


if __name__ == "__main__":  # python -m ldm.data.manifest docs/datasets.md
    import sys

    for arg in sys.argv[1:] or ["docs/datasets.md"]:
        print(f"{arg}: {'updated' if update_docs(arg) else 'up to date'}")
