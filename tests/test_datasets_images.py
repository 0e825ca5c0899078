"""CIFAR-10/100, SVHN and MNIST through the real client code (download helper + torchvision's classes),
served in the exact upstream formats from 127.0.0.1: the happy path, a checksum mismatch, a truncated
transfer and the server down, per format; hand-placed copies; the offline stand-ins; load_images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datasets_fixtures import make_upstream_files, write_test_manifest
from datasets_server import LocalServer, wait_closed
from ldm.data import datasets
from ldm.data.artifacts import read_meta
from ldm.data.download import ChecksumError, DatasetError, DownloadError
from ldm.data.image_datasets import load_images

FORMATS = ["cifar10", "cifar100", "svhn", "mnist"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return make_upstream_files(tmp_path_factory.mktemp("upstream"))


@pytest.fixture
def server(upstream: dict):
    srv = LocalServer()
    for name, info in upstream.items():
        for file_name, data in info["files"].items():
            srv.files[f"/{name}/{file_name}"] = data
    yield srv
    srv.stop()


@pytest.fixture
def manifest(tmp_path: Path, server: LocalServer, upstream: dict) -> Path:
    return write_test_manifest(tmp_path / "manifest.yaml", server.url, upstream)


def settings(tmp_path: Path, manifest: Path, **extra) -> dict:
    return {"manifest": str(manifest), "download_dir": str(tmp_path / "raw"), "timeout": 5, **extra}


def first_file(upstream: dict, name: str) -> str:
    """The first file ``name`` fetches, in manifest order (SVHN's `extra` is optional)."""
    return next(f for f in upstream[name]["files"] if f != "extra_32x32.mat")


def assert_nothing_trusted(raw: Path, out: Path) -> None:
    """After a failure: no file under a final name, no temp/part file, no meta.json."""
    leftovers = sorted(p.name for p in raw.iterdir()) if raw.exists() else []
    assert leftovers == [], f"left in the download folder: {leftovers}"
    assert not (out / "meta.json").exists()


@pytest.mark.parametrize("name", FORMATS)
def test_happy_path_writes_the_prepared_artifact(name: str, tmp_path: Path, manifest: Path, upstream: dict, server: LocalServer) -> None:
    out = tmp_path / "data" / name
    datasets.prepare(name, settings(tmp_path, manifest), out)
    meta = read_meta(out)
    assert meta["source"] == "real" and meta["name"] == name
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "test.npz", "train.npz"]
    for split in ("train", "test"):
        images, labels = load_images(out / f"{split}.npz")
        want_x, want_y = upstream[name]["arrays"][split]
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        np.testing.assert_array_equal(images.numpy(), want_x)  # the upstream format decoded exactly
        np.testing.assert_array_equal(labels.numpy(), want_y)
    assert set(meta["checksums"]) == set(upstream[name]["files"]) - {"extra_32x32.mat"}
    # the scratch extraction folder is gone; only the verified downloads remain
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(set(upstream[name]["files"]) - {"extra_32x32.mat"})


@pytest.mark.parametrize("name", FORMATS)
def test_checksum_mismatch_is_detected_and_removed(name: str, tmp_path: Path, manifest: Path, server: LocalServer, upstream: dict) -> None:
    first = first_file(upstream, name)
    server.modes[f"/{name}/{first}"] = "corrupt"
    out = tmp_path / "data" / name
    with pytest.raises(ChecksumError, match=r"corrupt transfer: md5 [0-9a-f]{32} != expected [0-9a-f]{32}.*removed") as err:
        datasets.prepare(name, settings(tmp_path, manifest), out)
    assert first in str(err.value)
    raw = tmp_path / "raw"
    assert not (raw / first).exists() and not list(raw.glob(".*.part"))
    assert not (out / "meta.json").exists()


@pytest.mark.parametrize("name", FORMATS)
def test_truncated_transfer_is_detected_and_removed(name: str, tmp_path: Path, manifest: Path, server: LocalServer, upstream: dict) -> None:
    first = first_file(upstream, name)
    server.modes[f"/{name}/{first}"] = "truncate"
    out = tmp_path / "data" / name
    with pytest.raises(DownloadError, match=r"truncated transfer: received \d+ of \d+ bytes .*partial file was removed"):
        datasets.prepare(name, settings(tmp_path, manifest), out)
    raw = tmp_path / "raw"
    assert not (raw / first).exists() and not list(raw.glob(".*.part"))
    assert not (out / "meta.json").exists()


@pytest.mark.parametrize("name", FORMATS)
def test_server_down_names_the_url_and_the_hand_placement_path(name: str, tmp_path: Path, manifest: Path, server: LocalServer, upstream: dict) -> None:
    server.stop()
    wait_closed(server.port)
    out = tmp_path / "data" / name
    with pytest.raises(DownloadError) as err:
        datasets.prepare(name, settings(tmp_path, manifest), out)
    msg = str(err.value)
    first = first_file(upstream, name)
    assert f"{server.url}/{name}/{first}" in msg
    assert str((tmp_path / "raw" / first).resolve()) in msg
    assert "place it by hand" in msg and "standin: true" in msg
    assert_nothing_trusted(tmp_path / "raw", out)


def test_hand_placed_valid_file_is_used_without_network(tmp_path: Path, manifest: Path, server: LocalServer, upstream: dict) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for file_name, data in upstream["cifar10"]["files"].items():
        (raw / file_name).write_bytes(data)
    server.stop()
    datasets.prepare("cifar10", settings(tmp_path, manifest), tmp_path / "out")
    assert read_meta(tmp_path / "out")["source"] == "real"


def test_present_valid_file_is_never_fetched_again(tmp_path: Path, manifest: Path, server: LocalServer) -> None:
    datasets.prepare("mnist", settings(tmp_path, manifest), tmp_path / "a")
    n = len(server.requests)
    datasets.prepare("mnist", settings(tmp_path, manifest), tmp_path / "b")
    assert len(server.requests) == n


def test_hand_placed_file_with_wrong_checksum_is_refused(tmp_path: Path, manifest: Path, server: LocalServer, upstream: dict) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (name, data), = upstream["cifar10"]["files"].items()
    bad = bytearray(data)
    bad[len(bad) // 2] ^= 0xFF
    (raw / name).write_bytes(bytes(bad))
    import hashlib

    with pytest.raises(ChecksumError) as err:
        datasets.prepare("cifar10", settings(tmp_path, manifest), tmp_path / "out")
    msg = str(err.value)
    assert f"expected md5 {hashlib.md5(data).hexdigest()}" in msg
    assert f"actual   md5 {hashlib.md5(bytes(bad)).hexdigest()}" in msg
    assert (raw / name).read_bytes() == bytes(bad)  # refused, not overwritten or deleted
    assert not server.requests  # and not replaced by a download


def test_http_202_is_not_taken_for_the_file(tmp_path: Path, manifest: Path, server: LocalServer) -> None:
    server.modes["/cifar10/cifar-10-python.tar.gz"] = "status-202"
    with pytest.raises(DownloadError, match="HTTP 202"):
        datasets.prepare("cifar10", settings(tmp_path, manifest), tmp_path / "out")
    assert_nothing_trusted(tmp_path / "raw", tmp_path / "out")


def test_mirror_replaces_the_manifest_urls(tmp_path: Path, manifest: Path, server: LocalServer, upstream: dict) -> None:
    for file_name, data in upstream["svhn"]["files"].items():
        server.files[f"/mirror/svhn/{file_name}"] = data
    server.modes["/svhn/train_32x32.mat"] = "corrupt"  # the manifest's own URL would fail
    datasets.prepare("svhn", settings(tmp_path, manifest, mirror=f"{server.url}/mirror/svhn", extra=True), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["extra.npz", "meta.json", "test.npz", "train.npz"]
    assert all(path.startswith("/mirror/") for _, path, _ in server.requests)


def test_a_corrupt_archive_member_is_reported(tmp_path: Path, server: LocalServer, upstream: dict) -> None:
    """The archive checksum matches but a member's does not: torchvision's own check fails, clearly."""
    info = {k: dict(v) for k, v in upstream.items()}
    info["cifar10"]["members"] = {**info["cifar10"]["members"], "cifar-10-batches-py/test_batch": "0" * 32}
    manifest = write_test_manifest(tmp_path / "m.yaml", server.url, info)
    with pytest.raises(DatasetError, match="member's checksum differs"):
        datasets.prepare("cifar10", settings(tmp_path, manifest), tmp_path / "out")
    assert not (tmp_path / "out" / "meta.json").exists()


def test_failed_rerun_removes_the_previous_meta(tmp_path: Path, manifest: Path, server: LocalServer) -> None:
    out = tmp_path / "out"
    datasets.prepare("mnist", settings(tmp_path, manifest), out)
    assert (out / "meta.json").exists()
    server.stop()
    with pytest.raises(DownloadError):
        datasets.prepare("mnist", {**settings(tmp_path, manifest), "download_dir": str(tmp_path / "raw2")}, out)
    assert not (out / "meta.json").exists()


# -- stand-ins ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name,shape,n_classes", [("cifar10", (32, 32, 3), 10), ("cifar100", (32, 32, 3), 100), ("svhn", (32, 32, 3), 10), ("mnist", (28, 28, 1), 10)])
def test_standins_have_the_real_files_and_shapes(name: str, shape: tuple, n_classes: int, tmp_path: Path) -> None:
    opts = {} if name == "mnist" else {"n_train": 300, "n_test": 200}
    out = tmp_path / name
    datasets.prepare(name, {"standin": True, "standin_options": opts}, out)
    meta = read_meta(out)
    assert meta["source"] == "stand-in" and "STAND-IN" in meta["description"]
    assert len(meta["classes"]) == n_classes
    for split in ("train", "test"):
        x, y = load_images(out / f"{split}.npz")
        assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == shape
        assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < n_classes
    assert sorted(datasets.artifact_files(name, {"standin": True})) == sorted(p.name for p in out.iterdir())


def test_image_standin_is_deterministic_with_independent_splits(tmp_path: Path) -> None:
    opts = {"n_train": 200, "n_test": 200, "seed": 3}
    datasets.prepare("cifar10", {"standin": True, "standin_options": opts}, tmp_path / "a")
    datasets.prepare("cifar10", {"standin": True, "standin_options": opts}, tmp_path / "b")
    for split in ("train", "test"):
        assert (tmp_path / "a" / f"{split}.npz").read_bytes() == (tmp_path / "b" / f"{split}.npz").read_bytes()
    tr, _ = load_images(tmp_path / "a" / "train.npz")
    te, _ = load_images(tmp_path / "a" / "test.npz")
    assert not torch.equal(tr, te)
    datasets.prepare("cifar10", {"standin": True, "standin_options": {**opts, "seed": 4}}, tmp_path / "c")
    assert not torch.equal(load_images(tmp_path / "c" / "train.npz")[0], tr)


def test_image_standin_is_natural_image_content(tmp_path: Path) -> None:
    """Crops of photographs: strong spatial correlation between neighbouring pixels (noise has none)
    and classes that differ in their images (a linear classifier on 8x8 thumbnails beats chance clearly)."""
    from sklearn.linear_model import RidgeClassifier

    datasets.prepare("cifar10", {"standin": True, "standin_options": {"n_train": 600, "n_test": 300}}, tmp_path)
    x, y = load_images(tmp_path / "train.npz")
    xt, yt = load_images(tmp_path / "test.npz")
    g = x.float().mean(-1)
    corr = np.corrcoef(g[:, :, :-1].reshape(-1).numpy(), g[:, :, 1:].reshape(-1).numpy())[0, 1]
    assert corr > 0.8

    def thumbs(images: torch.Tensor) -> np.ndarray:
        return images.float().reshape(len(images), 8, 4, 8, 4, 3).mean((2, 4)).reshape(len(images), -1).numpy() / 255.0

    probe = RidgeClassifier(alpha=1.0).fit(thumbs(x), y.numpy())
    assert probe.score(thumbs(xt), yt.numpy()) > 0.25  # chance: 0.1


def test_mnist_standin_is_the_sklearn_digits_in_an_mnist_frame(tmp_path: Path) -> None:
    datasets.prepare("mnist", {"standin": True}, tmp_path)
    x, y = load_images(tmp_path / "train.npz")
    xt, _ = load_images(tmp_path / "test.npz")
    assert len(x) + len(xt) == 1797
    assert int(x[:, :4].max()) == 0 and int(x[:, 24:].max()) == 0  # 4-pixel empty border like MNIST
    assert sorted(torch.bincount(y).tolist())[0] > 100  # every digit well represented in train


def test_unknown_setting_is_an_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="datasets.cifar10: unknown setting.*'standn'"):
        datasets.prepare("cifar10", {"standn": True}, tmp_path)
    with pytest.raises(KeyError, match="unknown dataset 'cifar1'"):
        datasets.prepare("cifar1", {}, tmp_path)


def test_load_images_channels_first_and_errors(tmp_path: Path) -> None:
    datasets.prepare("mnist", {"standin": True}, tmp_path)
    x, _ = load_images(tmp_path / "test.npz")
    xc, _ = load_images(tmp_path / "test.npz", channels_first=True)
    assert xc.shape == (x.shape[0], 1, 28, 28) and xc.is_contiguous()
    assert torch.equal(xc.permute(0, 2, 3, 1), x)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_images(tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 3, 3, 1), np.uint8))
    with pytest.raises(KeyError, match="lacks array"):
        load_images(tmp_path / "bad.npz")
