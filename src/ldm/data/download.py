"""Verified, atomic file acquisition: temp file in the target folder → checksum → rename.

Rules every acquisition in ``ldm.data`` follows (design.md "Data"):

* A file appears under its final name only after its checksum matched the manifest; downloads go
  to ``.<name>.<random>.part`` beside it and are renamed on success, removed on any failure.
* A valid file already present — downloaded earlier or placed by hand — is never fetched again.
  A present file with the wrong checksum is refused (never overwritten), naming the expected and
  the actual checksum.
* A truncated transfer (fewer bytes than the server announced) or a corrupt one (wrong checksum)
  is detected, the partial file removed, and the error says so.
* Without network the error names every URL tried and the exact path where a hand-placed copy
  will be picked up.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import uuid
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from ldm.data.manifest import FileSpec

CHUNK = 1 << 20
USER_AGENT = "ldm-data/0.1 (+https://github.com/; python-urllib)"


class DatasetError(RuntimeError):
    """A dataset could not be acquired or prepared; the message says what to do."""


class DownloadError(DatasetError):
    """Every source of a file failed (network down, HTTP error, truncated or corrupt transfer)."""


class ChecksumError(DatasetError):
    """A file's checksum differs from the manifest (a refused hand-placed copy, or a corrupt file)."""


class _Truncated(Exception):
    pass


class _Corrupt(Exception):
    pass


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of a file under ``algorithm`` (md5, sha256, ...), read in 1-MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str | os.PathLike, spec: FileSpec, *, what: str = "file") -> str:
    """Check ``path`` against ``spec``'s checksum; return the digest or raise :class:`ChecksumError`.

    The error names the file, the expected and the actual checksum. ``what`` says what the file is
    in the message (e.g. "hand-placed or previously downloaded file").
    """
    path = Path(path)
    if spec.algorithm is None:
        raise ChecksumError(
            f"{what} {path}: the manifest pins no checksum for {spec.name!r}, so it cannot be verified"
        )
    actual = file_digest(path, spec.algorithm)
    if actual != spec.digest:
        size = path.stat().st_size
        size_note = f" ({size} bytes; expected {spec.size})" if spec.size and size != spec.size else f" ({size} bytes)"
        raise ChecksumError(
            f"refusing {what} {path.resolve()}{size_note}: {spec.algorithm} checksum mismatch\n"
            f"  expected {spec.algorithm} {spec.digest}\n"
            f"  actual   {spec.algorithm} {actual}\n"
            f"Delete it to download again, or replace it with a correct copy."
        )
    return actual


def source_urls(spec: FileSpec, mirror: str | None = None) -> list[str]:
    """The URLs to try for ``spec``: ``<mirror>/<name>`` if a mirror is set, else the manifest's."""
    if mirror:
        return [mirror.rstrip("/") + "/" + spec.name]
    return list(spec.urls)


def ensure_file(
    spec: FileSpec,
    directory: str | os.PathLike,
    *,
    dataset: str,
    mirror: str | None = None,
    timeout: float = 60.0,
    standin_hint: str | None = None,
) -> Path:
    """Return ``directory/spec.name``, verified; download it first if it is not there.

    A present file is verified and used (never fetched again) or refused with
    :class:`ChecksumError`. Otherwise each source URL is tried in turn (``mirror`` replaces the
    manifest's URLs); the bytes go to a temporary file in ``directory``, are hashed on the fly,
    checked against the announced length and the pinned checksum, then renamed into place.
    """
    directory = Path(directory)
    target = directory / spec.name
    if target.exists():
        verify_file(target, spec, what=f"{dataset}: existing (downloaded or hand-placed) file")
        return target
    if spec.algorithm is None:
        raise DatasetError(f"{dataset}: manifest entry for {spec.name!r} pins no checksum; refusing to download unverified data")
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(directory, spec.name)
    failures: list[tuple[str, str]] = []
    for url in source_urls(spec, mirror):
        try:
            _download_verified(url, target, spec, timeout=timeout)
            return target
        except _Truncated as err:
            failures.append((url, f"truncated transfer: {err}; the partial file was removed"))
        except _Corrupt as err:
            failures.append((url, f"corrupt transfer: {err}; the downloaded file was removed"))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as err:
            failures.append((url, _describe_network_error(err)))
    message = _failure_message(dataset, spec, target, failures, standin_hint)
    if any(why.startswith("corrupt") for _, why in failures):
        raise ChecksumError(message)
    raise DownloadError(message)


def _describe_network_error(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return f"{type(err).__name__}: {err.reason}"
    return f"{type(err).__name__}: {err}"


def _failure_message(
    dataset: str, spec: FileSpec, target: Path, failures: list[tuple[str, str]], standin_hint: str | None
) -> str:
    lines = [f"{dataset}: could not download {spec.name!r} ({spec.describe()}):"]
    lines += [f"  {url}\n    -> {why}" for url, why in failures]
    lines.append("To use a copy obtained elsewhere (e.g. on a machine without network), place it by hand at")
    lines.append(f"  {target.resolve()}")
    lines.append(f"It is verified against the {spec.algorithm} above and then used as is, never downloaded again.")
    if standin_hint:
        lines.append(standin_hint)
    return "\n".join(lines)


def _remove_stale_parts(directory: Path, name: str) -> None:
    """Remove temporary files left by an interrupted earlier download of ``name``."""
    for stale in directory.glob(f".{name}.*.part"):
        stale.unlink(missing_ok=True)


def _part_path(target: Path) -> Path:
    """A fresh temporary name beside ``target`` (``.<name>.<random>.part``; never trusted, removed on failure)."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")


def _download_verified(url: str, target: Path, spec: FileSpec, *, timeout: float) -> None:
    """Stream ``url`` into a temp file beside ``target``; verify length and checksum; rename."""
    tmp = _part_path(target)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with open(tmp, "xb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if status not in (None, 200):
                # e.g. figshare's HTTP 202 "accepted, come back later" (hc11.md §4): not the file
                raise urllib.error.HTTPError(url, status, f"unexpected status {status} (expected 200)", response.headers, None)
            announced = response.headers.get("Content-Length")
            announced = int(announced) if announced and announced.isdigit() else None
            h = hashlib.new(spec.algorithm)  # type: ignore[arg-type]
            received = 0
            with _progress(spec.name, announced or spec.size) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
        if announced is not None and received != announced:
            raise _Truncated(f"received {received} of {announced} bytes announced by the server")
        actual = h.hexdigest()
        if actual != spec.digest:
            size_note = f", {received} bytes" + (f" of expected {spec.size}" if spec.size else "")
            raise _Corrupt(f"{spec.algorithm} {actual} != expected {spec.digest}{size_note}")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _NullBar:
    def __enter__(self) -> "_NullBar":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _progress(name: str, total: int | None):
    """A tqdm byte counter on a terminal, nothing otherwise."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NullBar()
    return tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=None, file=sys.stderr, leave=False)


def gunzip_verified(source: Path, extracted: dict, *, dataset: str) -> Path:
    """Decompress ``source`` (a verified ``.gz``) to ``extracted['name']`` beside it, atomically,
    verifying the extracted file's checksum (the manifest's ``extracted`` entry)."""
    spec = FileSpec(
        name=str(extracted["name"]),
        urls=(),
        checksums={k: str(extracted[k]).lower() for k in ("sha256", "md5") if extracted.get(k)},
        size=extracted.get("size"),
    )
    target = source.parent / spec.name
    if target.exists():
        verify_file(target, spec, what=f"{dataset}: existing extracted file")
        return target
    tmp = _part_path(target)
    try:
        with open(tmp, "xb") as out, gzip.open(source, "rb") as src:
            shutil.copyfileobj(src, out, CHUNK)
        try:
            verify_file(tmp, spec, what=f"{dataset}: file extracted from {source.name}")
        except ChecksumError as err:
            raise ChecksumError(str(err).replace(str(tmp), f"{target} (extracted, removed)")) from None
        os.replace(tmp, target)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ChecksumError(f"{dataset}: {source} is not a valid gzip file ({err})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def ensure_files(
    specs: Iterable[FileSpec], directory: str | os.PathLike, *, dataset: str, mirror: str | None = None, **kwargs
) -> dict[str, Path]:
    """:func:`ensure_file` for several files; returns name → verified path."""
    return {spec.name: ensure_file(spec, directory, dataset=dataset, mirror=mirror, **kwargs) for spec in specs}
