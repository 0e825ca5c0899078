"""hc-11: the pynwb reader and the 25-ms binning on NWB files written in the DANDI 000044 layout; the
dandi client against a local DANDI API serving such a file (happy path, checksum mismatch, truncated
transfer, server down, hand-placed copies); CEBRA's preprocessed arrays over HTTP; the stand-in."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
import yaml

from datasets_server import LocalServer, wait_closed
from ldm.data import datasets
from ldm.data.artifacts import read_meta
from ldm.data.download import ChecksumError, DownloadError
from ldm.data.hc11 import BIN_SIZE, bin_session, load_spikes, read_nwb_session, sample_direction
from ldm.data.hc11_standin import POSITION_PERIOD, PlaceCellSimulation, simulate_session, write_standin_nwb
from ldm.data.manifest import MANIFEST_PATH

ASSET = "sub-Achilles/sub-Achilles_ses-Achilles-10252013_behavior+ecephys.nwb"
NWB_NAME = ASSET.split("/")[1]
SMALL = PlaceCellSimulation(seed=5, maze_duration=150.0, n_traversals=12, pre_duration=5.0, post_duration=5.0, n_excitatory=12, n_inhibitory=3)


@pytest.fixture(scope="module")
def small_nwb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_standin_nwb(tmp_path_factory.mktemp("nwb") / "small.nwb", SMALL)


# -- reader and binning ---------------------------------------------------------------------------


def test_reader_takes_excitatory_units_position_and_maze_epoch(small_nwb: Path) -> None:
    s = read_nwb_session(small_nwb)
    truth = simulate_session(SMALL)
    assert len(s.spike_times) == 12 and list(s.unit_ids) == list(range(12))
    for got, want in zip(s.spike_times, truth["spike_times"][:12]):
        np.testing.assert_allclose(got, want)
    assert s.maze_epoch == (5.0, 155.0)
    assert s.maze_name == "1.6mLinearMaze"
    # timestamps rebuilt from starting_time + i * 0.0256 (the `rate` quirk), ending at the epoch end
    np.testing.assert_allclose(s.position_time[:3], 5.0 + POSITION_PERIOD * np.arange(3))
    assert abs(s.position_time[-1] + POSITION_PERIOD - 155.0) < POSITION_PERIOD
    np.testing.assert_array_equal(np.isnan(s.position), np.isnan(truth["linearized"]))
    assert "warning" not in s.info


def test_reader_accepts_a_true_rate_too(tmp_path: Path, small_nwb: Path) -> None:
    fixed = write_standin_nwb(tmp_path / "rate.nwb", SMALL, period_as_rate=False)
    np.testing.assert_allclose(read_nwb_session(fixed).position_time, read_nwb_session(small_nwb).position_time)


def test_running_binning_follows_the_cebra_preprocessing(small_nwb: Path) -> None:
    s = read_nwb_session(small_nwb)
    out = bin_session(s, "running")
    valid = ~np.isnan(s.position)
    bins = np.floor(s.position_time[valid] / BIN_SIZE).astype(int)
    # one kept bin per position sample (25.6 ms > 25 ms: never two samples in one bin), in time order
    assert len(np.unique(bins)) == valid.sum() == len(out["time"])
    np.testing.assert_allclose(out["time"], np.unique(bins) * BIN_SIZE)
    np.testing.assert_allclose(out["position"], s.position[valid])
    # counts = spikes whose 25-ms bin is a kept bin, per unit
    for u in (0, 5, 11):
        st = s.spike_times[u]
        st = st[(st >= s.maze_epoch[0]) & (st <= s.maze_epoch[1])]
        want = np.isin(np.floor(st / BIN_SIZE).astype(int), bins).sum()
        assert out["counts"][:, u].sum() == want
    assert out["counts"].dtype == np.int32 and out["counts"].shape == (len(out["time"]), 12)
    assert set(np.unique(out["direction"])) == {-1, 1}


def test_direction_matches_the_simulated_running_direction(small_nwb: Path) -> None:
    s = read_nwb_session(small_nwb)
    truth = simulate_session(SMALL)["direction"]
    got = sample_direction(s.position_time, s.position)
    running = truth != 0
    assert np.all(got[~running] == 0)
    assert (got[running] == truth[running]).mean() > 0.97  # only the turning samples at the ends may differ


def test_maze_binning_covers_the_whole_epoch(small_nwb: Path) -> None:
    s = read_nwb_session(small_nwb)
    out = bin_session(s, "maze")
    start, stop = s.maze_epoch
    assert len(out["time"]) == int(np.ceil(stop / BIN_SIZE)) - int(np.floor(start / BIN_SIZE))
    n_maze = sum(((st >= start) & (st <= stop)).sum() for st in s.spike_times)
    assert out["counts"].sum() == n_maze
    not_running = np.isnan(out["position"])
    assert np.all(out["direction"][not_running] == 0) and np.all(out["direction"][~not_running] != 0)
    assert 0.3 < not_running.mean() < 0.95
    np.testing.assert_allclose(np.diff(out["time"]), BIN_SIZE)


def test_standin_place_cells_encode_position(tmp_path: Path) -> None:
    """The stand-in is useful data: position decodes from the population counts (kNN on 250-ms sums)."""
    from sklearn.neighbors import KNeighborsRegressor

    out = tmp_path / "hc11"
    datasets.prepare("hc11", {"standin": True, "download_dir": str(tmp_path / "raw")}, out)
    meta = read_meta(out)
    assert meta["source"] == "stand-in" and "STAND-IN" in meta["description"]
    assert meta["n_units"] == 120 and 8000 < meta["n_bins"] < 12000  # real option A: 10 178 bins
    a = load_spikes(out / "spikes.npz")
    x = np.stack([np.convolve(c, np.ones(10), "same") for c in a["counts"].T], 1)
    feats = np.concatenate([x, 40 * a["direction"][:, None]], 1)
    cut = int(0.8 * len(x))
    knn = KNeighborsRegressor(n_neighbors=25).fit(feats[:cut], a["position"][:cut])
    err = np.median(np.abs(knn.predict(feats[cut:]) - a["position"][cut:]))
    assert err < 0.15  # metres (chance ≈ 0.4 m)


# -- the dandi client against a local DANDI API ---------------------------------------------------


@pytest.fixture
def archive(small_nwb: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DANDI_NO_ET", "1")
    monkeypatch.setenv("DANDI_CACHE", "ignore")
    import dandi.download

    class NoWait:  # dandi sleeps random() * 5 * attempt seconds between attempts
        @staticmethod
        def random() -> float:
            return 0.0

    monkeypatch.setattr(dandi.download, "random", NoWait)
    # 64-KiB chunks (what DANDI_MAX_CHUNK_SIZE=65536 sets at import), so a truncated transfer of the
    # small test file has already written data when it breaks and the client resumes with Range
    from dandi.dandiapi import BaseRemoteBlobAsset

    monkeypatch.setattr(BaseRemoteBlobAsset.get_download_file_iter, "__defaults__", (65536,))
    srv = LocalServer()
    digests = srv.add_dandi_asset("000044", "0.250624.0426", ASSET, small_nwb)
    yield srv, digests
    srv.stop()


def dandi_settings(tmp_path: Path, srv: LocalServer, **extra) -> dict:
    return {"dandi_api_url": f"{srv.url}/api", "download_dir": str(tmp_path / "raw"), "timeout": 5, **extra}


def downloads(srv: LocalServer) -> list:
    return [r for r in srv.requests if r[1].endswith("/download/")]


def test_dandi_happy_path(tmp_path: Path, archive, small_nwb: Path) -> None:
    srv, digests = archive
    out = tmp_path / "data" / "hc11" / "running"
    datasets.prepare("hc11", dandi_settings(tmp_path, srv), out)
    raw = tmp_path / "raw"
    assert sorted(p.name for p in raw.iterdir()) == [NWB_NAME]  # staging folder gone
    assert (raw / NWB_NAME).read_bytes() == small_nwb.read_bytes()
    meta = read_meta(out)
    assert meta["source"] == "real" and meta["origin"]["sha256"] == digests["sha256"]
    assert meta["origin"]["asset_id"] == digests["asset_id"] and meta["n_units"] == 12
    # asset resolved by path and version (never a hard-coded id)
    assert any("/versions/0.250624.0426/assets/" in p and "path=" in p for _, p, _ in srv.requests)
    # a present, valid file is never fetched again
    n = len(downloads(srv))
    datasets.prepare("hc11", {**dandi_settings(tmp_path, srv), "epoch": "maze"}, tmp_path / "data" / "hc11" / "maze")
    assert len(downloads(srv)) == n
    assert read_meta(tmp_path / "data" / "hc11" / "maze")["epoch"] == "maze"


def test_dandi_checksum_mismatch_is_detected_and_removed(tmp_path: Path, archive) -> None:
    srv, digests = archive
    for path in list(srv.files):
        srv.modes[path] = "corrupt"
    out = tmp_path / "out"
    with pytest.raises(ChecksumError) as err:
        datasets.prepare("hc11", dandi_settings(tmp_path, srv), out)
    msg = str(err.value)
    assert f"expected sha256 {digests['sha256']}" in msg and "actual   sha256" in msg and "removed" in msg
    raw = tmp_path / "raw"
    assert not (raw / NWB_NAME).exists()
    assert not list(raw.rglob(NWB_NAME))  # nothing under the final name anywhere, staging included
    assert not (out / "meta.json").exists()


def test_dandi_truncated_transfer_is_resumed(tmp_path: Path, archive, small_nwb: Path) -> None:
    srv, _ = archive
    for path in list(srv.files):
        srv.modes[path] = "truncate-once"
    datasets.prepare("hc11", dandi_settings(tmp_path, srv), tmp_path / "out")
    assert (tmp_path / "raw" / NWB_NAME).read_bytes() == small_nwb.read_bytes()
    ranges = [rng for _, path, rng in downloads(srv) if rng]
    assert ranges and ranges[0].startswith("bytes=") and ranges[0] != "bytes=0-"  # resumed, not restarted


def test_dandi_persistently_truncated_transfer_fails_cleanly(tmp_path: Path, archive) -> None:
    srv, _ = archive
    for path in list(srv.files):
        srv.modes[path] = "truncate"
    with pytest.raises(DownloadError, match="dandi client failed"):
        datasets.prepare("hc11", dandi_settings(tmp_path, srv), tmp_path / "out")
    assert not list((tmp_path / "raw").rglob(NWB_NAME))  # the partial stays in dandi's resume folder only
    assert not (tmp_path / "out" / "meta.json").exists()


def test_dandi_server_down_names_the_archive_and_the_hand_placement_path(tmp_path: Path, archive) -> None:
    srv, _ = archive
    srv.stop()
    wait_closed(srv.port)
    with pytest.raises(DownloadError) as err:
        datasets.prepare("hc11", dandi_settings(tmp_path, srv), tmp_path / "out")
    msg = str(err.value)
    assert f"{srv.url}/api" in msg and "000044" in msg and "0.250624.0426" in msg
    assert str((tmp_path / "raw" / NWB_NAME).resolve()) in msg and "datasets.hc11.sha256" in msg
    assert not (tmp_path / "raw" / NWB_NAME).exists() and not (tmp_path / "out" / "meta.json").exists()


def test_hand_placed_nwb_with_pinned_sha256_is_used_offline(tmp_path: Path, small_nwb: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / NWB_NAME).write_bytes(small_nwb.read_bytes())
    sha = hashlib.sha256(small_nwb.read_bytes()).hexdigest()
    settings = {"download_dir": str(raw), "sha256": sha, "dandi_api_url": "http://127.0.0.1:9/api"}  # nothing listens on port 9
    datasets.prepare("hc11", settings, tmp_path / "out")
    assert read_meta(tmp_path / "out")["origin"]["verified_against"] == "pinned sha256"
    with pytest.raises(ChecksumError) as err:
        datasets.prepare("hc11", {**settings, "sha256": "0" * 64}, tmp_path / "out2")
    assert f"expected sha256 {'0' * 64}" in str(err.value) and f"actual   sha256 {sha}" in str(err.value)
    # without a pinned sha256 and without the archive, a hand-placed copy cannot be verified: refused
    with pytest.raises(DownloadError, match="sha256 is not pinned"):
        datasets.prepare("hc11", {**settings, "sha256": None}, tmp_path / "out3")


def test_hand_placed_nwb_with_wrong_content_is_refused_against_the_archive(tmp_path: Path, archive) -> None:
    srv, digests = archive
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / NWB_NAME).write_bytes(b"not the asset")
    with pytest.raises(ChecksumError) as err:
        datasets.prepare("hc11", dandi_settings(tmp_path, srv), tmp_path / "out")
    assert f"expected sha256 {digests['sha256']}" in str(err.value)
    assert (raw / NWB_NAME).read_bytes() == b"not the asset" and not downloads(srv)


# -- CEBRA's preprocessed arrays ----------------------------------------------------------------


@pytest.fixture
def cebra(tmp_path: Path):
    import joblib

    rng = np.random.default_rng(0)
    pos = np.abs(np.sin(np.linspace(0, 12, 500))) * 1.6
    right = (np.gradient(pos) > 0).astype(float)
    data = {"spikes": rng.poisson(0.3, size=(500, 120)).astype(float), "position": np.stack([pos, right, 1 - right], 1)}
    buf = io.BytesIO()
    joblib.dump(data, buf)
    jl = buf.getvalue()
    gz = gzip.compress(jl, mtime=0)
    real = yaml.safe_load(MANIFEST_PATH.read_text())
    srv = LocalServer()
    srv.files["/rat_hippocampus/achilles.jl.gz"] = gz
    spec = real["hc11"]["alternatives"]["cebra"]["files"][0]
    spec.update(urls=[f"{srv.url}/rat_hippocampus/achilles.jl.gz"], size=len(gz), md5=hashlib.md5(gz).hexdigest(),
                extracted={"name": "achilles.jl", "size": len(jl), "md5": hashlib.md5(jl).hexdigest()})
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump(real, sort_keys=False))
    yield srv, manifest, data
    srv.stop()


def test_cebra_source_happy_path(tmp_path: Path, cebra) -> None:
    srv, manifest, data = cebra
    out = tmp_path / "out"
    datasets.prepare("hc11", {"source": "cebra", "manifest": str(manifest), "download_dir": str(tmp_path / "raw")}, out)
    a = load_spikes(out / "spikes.npz")
    np.testing.assert_array_equal(a["counts"], data["spikes"].astype(np.int32))
    np.testing.assert_allclose(a["position"], data["position"][:, 0])
    assert set(np.unique(a["direction"])) <= {-1, 1}
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["achilles.jl", "achilles.jl.gz"]


def test_cebra_corrupt_download_is_detected(tmp_path: Path, cebra) -> None:
    srv, manifest, _ = cebra
    srv.modes["/rat_hippocampus/achilles.jl.gz"] = "corrupt"
    with pytest.raises(ChecksumError, match="corrupt transfer"):
        datasets.prepare("hc11", {"source": "cebra", "manifest": str(manifest), "download_dir": str(tmp_path / "raw")}, tmp_path / "out")
    assert list((tmp_path / "raw").iterdir()) == []


def test_bad_hc11_settings_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="datasets.hc11.epoch"):
        datasets.prepare("hc11", {"epoch": "all"}, tmp_path)
    with pytest.raises(KeyError, match="standin_options.*'n_cells'"):
        datasets.prepare("hc11", {"standin": True, "standin_options": {"n_cells": 3}}, tmp_path)
    with pytest.raises(ValueError, match="cebra"):
        datasets.prepare("hc11", {"source": "cebra", "epoch": "maze"}, tmp_path)
