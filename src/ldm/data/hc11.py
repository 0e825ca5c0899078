"""hc-11 (Grosmark & Buzsáki 2016), rat Achilles: 25-ms spike counts of the 120 pyramidal units with
linearised position, running direction and time — the data of the hippocampus experiment (paper Sec.
6.1, Fig. 4E–G, App. B).

Acquisition (``datasets.hc11.source``):

* ``dandi`` (default): the NWB asset of DANDI 000044 (version and path pinned in the manifest),
  downloaded with the ``dandi`` client (``dandi.download.download``: resumable via HTTP Range,
  dandi-etag verified), staged in ``<download_dir>/.dandi-staging/``, then checked against the
  asset's sha256 and renamed into ``<download_dir>/<file name>``. A hand-placed copy there is used
  as is once its sha256 matches (the pinned one, or the archive's when online).
* ``cebra``: CEBRA's preprocessed ``achilles.jl.gz`` (MD5-pinned gz and extracted file; running-only
  concatenation only).

Reading (:func:`read_nwb_session`, pynwb; hc11.md §1.3): ``units`` filtered on
``cell_type == "excitatory"``; the linearised position from the behaviour interface whose name ends
in ``LinearizedPosition`` (timestamps rebuilt from ``starting_time`` and ``rate``, where a ``rate``
below 1 is the converter's period quirk); the maze epoch from ``epochs`` (``label == "MazeEpoch"``).
The LFP is never touched.

Binning (:func:`bin_session`), option ``epoch``:

* ``running`` (A, default; CEBRA / pi-VAE preprocessing, hc11.md §2.1): spikes of the maze epoch in
  25-ms bins on the absolute clock (bin = floor(t / 0.025)); every non-NaN position sample is written
  into its bin; only bins that received a sample are kept — a running-only concatenation.
* ``maze`` (B): every 25-ms bin of the maze epoch; position linearly interpolated at bin centres
  inside running segments, NaN elsewhere; direction 0 while not running.

Direction: +1 running right (position increasing), −1 left, from the sign of the smoothed velocity
within each running segment.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ldm.data.artifacts import atomic_save_npz, atomic_write_json, begin, sha256_of
from ldm.data.download import ChecksumError, DatasetError, DownloadError, ensure_file, file_digest, gunzip_verified, verify_file
from ldm.data.manifest import FileSpec, manifest_entry, parse_file_spec

BIN_SIZE = 0.025
VARIANTS = ("running", "maze")

HC11_DEFAULTS: dict[str, Any] = {
    "standin": False,
    "source": "dandi",  # dandi | cebra
    "epoch": "running",  # running (option A, CEBRA) | maze (option B, whole maze epoch)
    "download_dir": None,  # default data/raw/hc11
    "bin_size": BIN_SIZE,
    "cell_type": "excitatory",
    "dandi_api_url": None,  # default: the manifest's (https://api.dandiarchive.org/api)
    "dandi_version": None,  # default: the manifest's pinned published version
    "sha256": None,  # pin the NWB asset's sha256 (needed to accept a hand-placed copy offline)
    "mirror": None,  # cebra only: base URL replacing the manifest's
    "manifest": None,
    "timeout": 60.0,
    "standin_options": {},
}


def hc11_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in; unknown keys and bad values are errors naming the key."""
    from ldm.data.hc11_standin import PlaceCellSimulation

    unknown = sorted(set(settings) - set(HC11_DEFAULTS))
    if unknown:
        raise KeyError(f"datasets.hc11: unknown setting(s) {unknown}; known: {sorted(HC11_DEFAULTS)}")
    out = {**HC11_DEFAULTS, **settings}
    if out["epoch"] not in VARIANTS:
        raise ValueError(f"datasets.hc11.epoch must be one of {VARIANTS}, got {out['epoch']!r}")
    if out["source"] not in ("dandi", "cebra"):
        raise ValueError(f"datasets.hc11.source must be 'dandi' or 'cebra', got {out['source']!r}")
    if out["source"] == "cebra" and out["epoch"] != "running" and not out["standin"]:
        raise ValueError("datasets.hc11: source 'cebra' holds only the running-only concatenation (epoch: running)")
    known = set(PlaceCellSimulation.__dataclass_fields__)
    bad = sorted(set(out["standin_options"] or {}) - known)
    if bad:
        raise KeyError(f"datasets.hc11.standin_options: unknown key(s) {bad}; known: {sorted(known)}")
    if out["download_dir"] is None:
        out["download_dir"] = str(Path("data") / "raw" / "hc11")
    return out


# ------------------------------------------------------------------------------------------
# reading the NWB file (DANDI 000044 layout)
# ------------------------------------------------------------------------------------------


@dataclass
class Session:
    """What the hippocampus experiment needs from one hc-11 session (absolute session clock, s)."""

    spike_times: list[np.ndarray]
    unit_ids: np.ndarray
    position_time: np.ndarray
    position: np.ndarray  # linearised, m; NaN while not running
    maze_epoch: tuple[float, float]
    maze_name: str
    info: dict[str, Any] = field(default_factory=dict)


def read_nwb_session(path: str | os.PathLike, cell_type: str = "excitatory") -> Session:
    """Read units, linearised position and the maze epoch of an hc-11 NWB file with pynwb."""
    from pynwb import NWBHDF5IO

    path = Path(path)
    try:
        io = NWBHDF5IO(str(path), "r", load_namespaces=True)
    except Exception as err:  # h5py OSError on a truncated / non-HDF5 file
        raise DatasetError(f"{path} is not a readable NWB file ({type(err).__name__}: {err})") from err
    with io:
        nwb = io.read()
        units = nwb.units
        if units is None or "cell_type" not in units.colnames:
            raise DatasetError(f"{path}: no units table with a cell_type column (not the DANDI 000044 layout)")
        kinds = np.asarray(units["cell_type"][:]).astype(str)
        keep = np.flatnonzero(kinds == cell_type)
        if keep.size == 0:
            raise DatasetError(f"{path}: no units with cell_type == {cell_type!r} (found {sorted(set(kinds))})")
        ids = np.asarray(units.id[:])
        spike_times = [np.asarray(units["spike_times"][int(i)], dtype=np.float64) for i in keep]
        behavior = nwb.processing.get("behavior") if nwb.processing else None
        if behavior is None:
            raise DatasetError(f"{path}: no processing/behavior module")
        names = [n for n in behavior.data_interfaces if n.endswith("LinearizedPosition")]
        if len(names) != 1:
            raise DatasetError(f"{path}: expected one behavior interface named '*LinearizedPosition', found {names}")
        container = behavior[names[0]]
        (series,) = container.spatial_series.values()
        data = np.asarray(series.data[:], dtype=np.float64).reshape(-1)
        if series.timestamps is not None:
            t = np.asarray(series.timestamps[:], dtype=np.float64)
            period = None
        else:
            rate = float(series.rate)
            # the converter stored the sampling period (0.0256 s) in `rate` (hc11.md §1.2 quirk)
            period = rate if rate < 1.0 else 1.0 / rate
            t = float(series.starting_time) + np.arange(len(data)) * period
        epochs = nwb.epochs.to_dataframe() if nwb.epochs is not None else None
        if epochs is None or "label" not in epochs:
            raise DatasetError(f"{path}: no epochs table with a label column")
        maze = epochs[epochs["label"] == "MazeEpoch"]
        if len(maze) != 1:
            raise DatasetError(f"{path}: expected one MazeEpoch in epochs, found {len(maze)} (labels {sorted(set(epochs['label']))})")
        maze_epoch = (float(maze["start_time"].iloc[0]), float(maze["stop_time"].iloc[0]))
        info = {
            "identifier": nwb.identifier,
            "session_id": nwb.session_id,
            "session_description": nwb.session_description,
            "n_units_total": int(len(ids)),
            "position_series": f"processing/behavior/{names[0]}/{series.name}",
            "position_period": period,
        }
    if period is not None:
        span = len(data) * period
        duration = maze_epoch[1] - maze_epoch[0]
        if abs(span - duration) > 0.02 * duration:
            info["warning"] = f"position covers {span:.1f} s but MazeEpoch lasts {duration:.1f} s"
    return Session(
        spike_times=spike_times,
        unit_ids=ids[keep],
        position_time=t,
        position=data,
        maze_epoch=maze_epoch,
        maze_name=names[0][: -len("LinearizedPosition")],
        info=info,
    )


# ------------------------------------------------------------------------------------------
# binning: option A (running-only, CEBRA) and option B (whole maze epoch)
# ------------------------------------------------------------------------------------------


def running_segments(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of consecutive True values."""
    edges = np.diff(np.concatenate([[0], valid.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def sample_direction(t: np.ndarray, x: np.ndarray, smooth: int = 5) -> np.ndarray:
    """Running direction per position sample: +1 right (x increasing), −1 left, 0 where x is NaN.

    Sign of the velocity smoothed over ``smooth`` samples within each running segment; where it is
    zero the segment's net displacement decides.
    """
    out = np.zeros(len(x), dtype=np.int8)
    for a, b in running_segments(~np.isnan(x)):
        seg_x, seg_t = x[a:b], t[a:b]
        if b - a == 1:
            v = np.zeros(1)
        else:
            v = np.gradient(seg_x, seg_t)
            if b - a >= smooth:
                v = np.convolve(v, np.ones(smooth) / smooth, mode="same")
        net = np.sign(seg_x[-1] - seg_x[0]) or 1.0
        out[a:b] = np.where(v > 0, 1, np.where(v < 0, -1, net)).astype(np.int8)
    return out


def bin_session(session: Session, epoch: str = "running", bin_size: float = BIN_SIZE) -> dict[str, np.ndarray]:
    """Spike counts [T, n_units] in ``bin_size`` bins with position, direction and time (see module doc)."""
    if epoch not in VARIANTS:
        raise ValueError(f"epoch must be one of {VARIANTS}, got {epoch!r}")
    start, stop = session.maze_epoch
    first, last = int(np.floor(start / bin_size)), int(np.ceil(stop / bin_size))  # bins [first, last)
    n_bins = last - first
    counts = np.zeros((n_bins, len(session.spike_times)), dtype=np.int32)
    for u, st in enumerate(session.spike_times):
        st = st[(st >= start) & (st <= stop)]
        idx = np.floor(st / bin_size).astype(np.int64) - first
        idx = idx[(idx >= 0) & (idx < n_bins)]
        counts[:, u] = np.bincount(idx, minlength=n_bins)
    t, x = session.position_time, session.position
    in_epoch = (t >= start) & (t <= stop)
    t, x = t[in_epoch], x[in_epoch]
    direction_s = sample_direction(t, x)
    valid = ~np.isnan(x)
    bins_of_samples = np.floor(t[valid] / bin_size).astype(np.int64) - first
    ok = (bins_of_samples >= 0) & (bins_of_samples < n_bins)
    bins_of_samples = bins_of_samples[ok]
    bin_time = (first + np.arange(n_bins)) * bin_size
    if epoch == "running":
        position = np.full(n_bins, np.nan)
        direction = np.zeros(n_bins, dtype=np.int8)
        position[bins_of_samples] = x[valid][ok]  # later samples overwrite earlier ones in a bin
        direction[bins_of_samples] = direction_s[valid][ok]
        keep = np.zeros(n_bins, dtype=bool)
        keep[bins_of_samples] = True
        return {"counts": counts[keep], "position": position[keep], "direction": direction[keep], "time": bin_time[keep]}
    # option B: whole maze epoch; interpolate inside running segments only
    centres = bin_time + bin_size / 2
    position = np.full(n_bins, np.nan)
    direction = np.zeros(n_bins, dtype=np.int8)
    for a, b in running_segments(valid):
        lo, hi = t[a], t[b - 1]
        sel = (centres >= lo) & (centres <= hi)
        if b - a == 1:
            sel = np.floor(t[a] / bin_size).astype(np.int64) - first == np.arange(n_bins)
        position[sel] = np.interp(centres[sel], t[a:b], x[a:b])
        nearest = np.clip(np.searchsorted(t[a:b], centres[sel]), 0, b - a - 1)
        direction[sel] = direction_s[a:b][nearest]
    return {"counts": counts, "position": position, "direction": direction, "time": bin_time}


# ------------------------------------------------------------------------------------------
# acquisition: DANDI (dandi client) and CEBRA (HTTP + MD5)
# ------------------------------------------------------------------------------------------


def _dandi_spec(settings: dict[str, Any]) -> tuple[dict[str, Any], FileSpec]:
    entry = manifest_entry("hc11", settings.get("manifest"))
    dandi = dict(entry.extra["dandi"])
    if settings.get("dandi_api_url"):
        dandi["api_url"] = settings["dandi_api_url"]
    if settings.get("dandi_version"):
        dandi["version"] = settings["dandi_version"]
    spec = entry.files[0]
    if settings.get("sha256"):
        spec = FileSpec(spec.name, spec.urls, {"sha256": str(settings["sha256"]).lower()}, spec.size)
    return dandi, spec


def _dandi_url(dandi: dict[str, Any]) -> str:
    return f"dandi {dandi['api_url']} dandiset {dandi['dandiset']} version {dandi['version']} path {dandi['asset_path']}"


def _archive_digests(dandi: dict[str, Any], timeout: float) -> tuple[str, dict[str, Any]]:
    """Resolve the asset by path and version (never a hard-coded asset id): (asset id, {sha256, etag, size})."""
    import requests

    os.environ.setdefault("DANDI_NO_ET", "1")  # no version check against GitHub from a pipeline job
    from dandi.dandiapi import DandiAPIClient

    api = str(dandi["api_url"]).rstrip("/")
    # one quick reachability probe first: the client retries unreachable servers for minutes
    requests.get(f"{api}/info/", timeout=timeout).raise_for_status()
    with DandiAPIClient(api_url=api) as client:
        dandiset = client.get_dandiset(str(dandi["dandiset"]), str(dandi["version"]), lazy=False)
        asset = dandiset.get_asset_by_path(str(dandi["asset_path"]))
        digest = asset.get_raw_metadata().get("digest", {})
        return asset.identifier, {
            "sha256": digest.get("dandi:sha2-256"),
            "dandi-etag": digest.get("dandi:dandi-etag"),
            "size": asset.size,
        }


def ensure_dandi_asset(settings: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The verified NWB file of the hc-11 session, downloaded with the dandi client if needed.

    Returns (path, provenance). A present file is verified against the pinned sha256 (config
    ``datasets.hc11.sha256`` or the manifest), else against the archive's; it is never fetched again.
    """
    dandi, spec = _dandi_spec(settings)
    directory = Path(settings["download_dir"])
    target = directory / Path(dandi["asset_path"]).name
    timeout = float(settings.get("timeout", 60.0))
    provenance = {"dandi": dandi}
    api = str(dandi["api_url"]).rstrip("/")
    hand_hint = (
        f"To use a copy obtained elsewhere, place it by hand at\n  {target.resolve()}\n"
        f"and pin its sha256 in config key datasets.hc11.sha256. The archive publishes it as digest "
        f"'dandi:sha2-256' in the asset's metadata: {api}/dandisets/{dandi['dandiset']}/versions/{dandi['version']}"
        f"/assets/?path={dandi['asset_path']} gives the asset_id, .../assets/<asset_id>/ the metadata.\n"
        f"Or set datasets.hc11.standin: true for the offline stand-in."
    )
    if target.exists() and spec.algorithm:
        verify_file(target, spec, what="hc11: existing (downloaded or hand-placed) file")
        return target, {**provenance, "sha256": spec.digest, "verified_against": "pinned sha256"}
    try:
        asset_id, remote = _archive_digests(dandi, timeout)
    except Exception as err:
        if target.exists():
            raise DownloadError(
                f"hc11: {target} is present but its sha256 is not pinned and the archive could not be reached to "
                f"verify it ({type(err).__name__}: {err}).\nPin it in config key datasets.hc11.sha256 to use it offline."
            ) from err
        raise DownloadError(f"hc11: could not reach the DANDI archive for {_dandi_url(dandi)}:\n  {type(err).__name__}: {err}\n{hand_hint}") from err
    expected = spec.digest if spec.algorithm == "sha256" else remote["sha256"]
    if spec.algorithm == "sha256" and remote["sha256"] and remote["sha256"] != spec.digest:
        raise ChecksumError(
            f"hc11: the archive's sha256 of {dandi['asset_path']} at version {dandi['version']} is {remote['sha256']}, "
            f"but {spec.digest} is pinned (datasets.hc11.sha256 / manifest): wrong version or wrong pin"
        )
    if not expected:
        raise DatasetError(f"hc11: the archive publishes no sha256 for {dandi['asset_path']}; pin one in datasets.hc11.sha256")
    check = FileSpec(target.name, (), {"sha256": expected}, remote["size"])
    provenance.update(asset_id=asset_id, size=remote["size"], sha256=expected, dandi_etag=remote["dandi-etag"])
    if target.exists():
        verify_file(target, check, what="hc11: existing (downloaded or hand-placed) file")
        return target, {**provenance, "verified_against": "archive sha256"}
    staging = directory / ".dandi-staging"
    staging.mkdir(parents=True, exist_ok=True)
    staged = staging / target.name
    url = f"{str(dandi['api_url']).rstrip('/')}/dandisets/{dandi['dandiset']}/versions/{dandi['version']}/assets/{asset_id}/download/"
    from dandi.download import DownloadExisting, DownloadFormat, download

    try:
        # resumes from <staging>/<name>.dandidownload/ after an interruption; verifies the dandi-etag
        download(url, staging, existing=DownloadExisting.OVERWRITE_DIFFERENT, format=DownloadFormat.DEBUG, get_metadata=False)
    except Exception as err:
        if not staged.exists():
            raise DownloadError(f"hc11: the dandi client failed to download {url} ({type(err).__name__}: {err})\n{hand_hint}") from err
        # a file the client wrote but then flagged (e.g. dandi-etag mismatch) is checked below
    if not staged.exists():
        raise DownloadError(f"hc11: the dandi client reported success but wrote no file {staged}\n{hand_hint}")
    actual = file_digest(staged, "sha256")
    if actual != expected:
        staged.unlink()
        raise ChecksumError(
            f"hc11: downloaded {url} is corrupt: sha256 checksum mismatch\n  expected sha256 {expected}\n  actual   sha256 {actual}\n"
            f"The downloaded file was removed."
        )
    os.replace(staged, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target, {**provenance, "verified_against": "archive sha256"}


def read_cebra(settings: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """CEBRA's ``achilles.jl`` (gz and extracted MD5-pinned) as binned arrays (running-only; time = bin index × 25 ms)."""
    import joblib

    entry = manifest_entry("hc11", settings.get("manifest"))
    (raw,) = entry.extra["alternatives"]["cebra"]["files"]
    spec = parse_file_spec(raw, "hc11.alternatives.cebra.files[0]")
    gz = ensure_file(
        spec,
        settings["download_dir"],
        dataset="hc11 (cebra)",
        mirror=settings.get("mirror"),
        timeout=float(settings.get("timeout", 60.0)),
        standin_hint="Or set datasets.hc11.standin: true for the offline stand-in (docs/datasets.md).",
    )
    jl = gunzip_verified(gz, spec.extracted, dataset="hc11 (cebra)")
    data = joblib.load(jl)
    spikes, position = np.asarray(data["spikes"]), np.asarray(data["position"])
    if spikes.ndim != 2 or position.shape != (len(spikes), 3):
        raise DatasetError(f"{jl}: expected spikes [T, n] and position [T, 3], got {spikes.shape} and {position.shape}")
    direction = (position[:, 1] - position[:, 2]).astype(np.int8)
    arrays = {
        "counts": np.rint(spikes).astype(np.int32),
        "position": position[:, 0].astype(np.float64),
        "direction": direction,
        "time": np.arange(len(spikes)) * BIN_SIZE,
    }
    return arrays, {"file": str(jl), "md5": spec.extracted["md5"], "time_note": "the source has no session clock: time = bin index x 25 ms"}


# ------------------------------------------------------------------------------------------
# the prepared artifact
# ------------------------------------------------------------------------------------------


def prepare_hc11(settings: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``<out>/spikes.npz`` (counts, position, direction, time, unit_ids) and ``meta.json`` (last)."""
    from ldm.data.hc11_standin import PlaceCellSimulation, write_standin_nwb

    settings = hc11_settings(settings)
    out_dir = begin(out_dir)  # a previous meta.json goes first: a failed run leaves nothing that looks finished
    entry = manifest_entry("hc11", settings.get("manifest"))
    bin_size = float(settings["bin_size"])
    meta: dict[str, Any] = {
        "name": "hc11",
        "epoch": settings["epoch"],
        "epoch_option": {"running": "A: running-only concatenation (CEBRA / pi-VAE)", "maze": "B: whole maze epoch"}[settings["epoch"]],
        "bin_size": bin_size,
        "settings": settings,
    }
    if settings["standin"]:
        sim = PlaceCellSimulation(**_tuples(settings["standin_options"]))
        nwb_path = write_standin_nwb(Path(settings["download_dir"]) / f"standin-seed{sim.seed}.nwb", sim)
        session = read_nwb_session(nwb_path, settings["cell_type"])
        arrays = bin_session(session, settings["epoch"], bin_size)
        meta.update(
            source="stand-in",
            description=(
                "STAND-IN (not hc-11): simulated place cells on a 1.6 m linear track (ldm.data.hc11_standin), "
                "written with pynwb in the DANDI 000044 layout and read by the same reader as the real file"
            ),
            origin={"file": str(nwb_path), "sha256": sha256_of(nwb_path), "simulation": _jsonable(sim.__dict__)},
            session=session.info,
            maze_epoch=list(session.maze_epoch),
        )
        unit_ids = session.unit_ids
    elif settings["source"] == "cebra":
        arrays, origin = read_cebra(settings)
        if bin_size != BIN_SIZE:
            raise ValueError(f"datasets.hc11.bin_size: the cebra source is binned at {BIN_SIZE} s")
        meta.update(source="real", description="hc-11 Achilles_10252013, CEBRA's preprocessed arrays (running-only)", origin=origin)
        meta["provenance"] = {**entry.provenance(), "alternative": "cebra"}
        unit_ids = np.arange(arrays["counts"].shape[1])
    else:
        nwb_path, origin = ensure_dandi_asset(settings)
        session = read_nwb_session(nwb_path, settings["cell_type"])
        arrays = bin_session(session, settings["epoch"], bin_size)
        meta.update(
            source="real",
            description=f"hc-11 session from {entry.version}, {session.maze_name} maze epoch, {settings['cell_type']} units",
            origin={**origin, "file": str(nwb_path)},
            session=session.info,
            maze_epoch=list(session.maze_epoch),
            provenance=entry.provenance(),
        )
        unit_ids = session.unit_ids
    arrays["unit_ids"] = np.asarray(unit_ids, dtype=np.int64)
    running = arrays["direction"] != 0
    meta.update(
        n_bins=int(arrays["counts"].shape[0]),
        n_units=int(arrays["counts"].shape[1]),
        duration_s=float(arrays["counts"].shape[0] * bin_size),
        running_fraction=float(running.mean()) if len(running) else 0.0,
        arrays={k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()},
    )
    begin(out_dir)
    path = atomic_save_npz(out_dir / "spikes.npz", arrays)
    meta["files"] = {"spikes.npz": {"sha256": sha256_of(path)}}
    atomic_write_json(out_dir / "meta.json", meta)
    return out_dir


def load_spikes(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a prepared ``spikes.npz`` (counts, position, direction, time, unit_ids)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prepared hc-11 file {path} does not exist (run the datasets rule that writes it)")
    with np.load(path, allow_pickle=False) as data:
        out = {k: data[k] for k in data.files}
    missing = {"counts", "position", "direction", "time"} - set(out)
    if missing:
        raise KeyError(f"{path} lacks array(s) {sorted(missing)}")
    return out


def _tuples(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (opts or {}).items()}


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
