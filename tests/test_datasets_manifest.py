"""The manifest (pinned sources), its table in docs/datasets.md, the registry, the config schema of the
`datasets:` section, and the download helper's own rules (temp file, stale parts, no unpinned data)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from datasets_server import LocalServer
from ldm.data import datasets, image_datasets
from ldm.data.download import DatasetError, ensure_file, verify_file
from ldm.data.hc11 import HC11_DEFAULTS
from ldm.data.imagenet100 import IMAGENET_DEFAULTS
from ldm.data.manifest import FileSpec, load_manifest, markdown_table, TABLE_BEGIN, TABLE_END

REPO = Path(__file__).resolve().parents[1]


def test_manifest_pins_every_dataset_with_source_version_licence_citation() -> None:
    entries = load_manifest()
    assert set(entries) == {"cifar10", "cifar100", "svhn", "mnist", "imagenet100", "hc11"}
    for entry in entries.values():
        assert entry.title and entry.version and entry.licence and entry.citation and entry.homepage
        for spec in entry.files:
            assert spec.urls, spec.name
            if entry.name != "hc11":  # the DANDI asset's digest comes from the archive (or a pin)
                assert spec.algorithm and spec.size, spec.name


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn", "mnist"])
def test_manifest_matches_torchvision_published_checksums(name: str) -> None:
    """The pinned URLs/checksums are torchvision's own; the client class carries them unchanged."""
    from torchvision import datasets as tvd

    entry = load_manifest()[name]
    cls = image_datasets.torchvision_class(name, entry)
    if name in ("cifar10", "cifar100"):
        base = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        assert (cls.url, cls.filename, cls.tgz_md5) == (base.url, base.filename, base.tgz_md5)
        assert cls.train_list == base.train_list and cls.test_list == base.test_list and cls.meta == base.meta
    elif name == "svhn":
        assert cls.split_list == tvd.SVHN.split_list
    else:
        assert list(cls.resources) == list(tvd.MNIST.resources)
        assert cls.mirrors == tvd.MNIST.mirrors
    assert cls.__name__ == cls.__mro__[1].__name__  # MNIST's folders are named after the class


def test_docs_list_the_manifest() -> None:
    text = (REPO / "docs" / "datasets.md").read_text()
    block = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()
    assert block == markdown_table(), "docs/datasets.md is stale: run `python -m ldm.data.manifest docs/datasets.md`"


def test_registry_covers_the_manifest_and_the_contract() -> None:
    assert datasets.dataset_names() == ["cifar10", "cifar100", "svhn", "mnist", "imagenet100", "hc11"]
    assert datasets.artifact_files("cifar10") == ["train.npz", "test.npz", "meta.json"]
    assert datasets.artifact_files("svhn", {"extra": True}) == ["train.npz", "test.npz", "extra.npz", "meta.json"]
    assert datasets.artifact_files("hc11") == ["spikes.npz", "meta.json"]
    for name in datasets.dataset_names():
        spec = datasets.get_dataset(name)
        module, fn = spec.loader.rsplit(".", 1)
        assert hasattr(__import__(module, fromlist=[fn]), fn)


def _schema_defaults(section: dict) -> dict:
    from ldm.pipeline.config import load_schema, validate_config

    config = {"profile": "t", "experiments": [], "datasets": section}
    validate_config(config, load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return config["datasets"]


def test_schema_defaults_equal_the_code_defaults() -> None:
    filled = _schema_defaults({"cifar10": {}, "imagenet100": {}, "hc11": {}})
    for key, value in filled["cifar10"].items():
        assert image_datasets.IMAGE_DEFAULTS[key] == value, key
    for key, value in filled["imagenet100"].items():
        assert IMAGENET_DEFAULTS[key] == value, key
    for key, value in filled["hc11"].items():
        assert HC11_DEFAULTS[key] == value, key
    assert set(HC11_DEFAULTS) - set(filled["hc11"]) == {"epoch"}  # the rule's wildcard


def test_profiles_validate_and_name_bad_keys() -> None:
    from ldm.pipeline.config import ConfigError, load_profile, load_schema, validate_config

    schema = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
    for profile in ("config.yaml", "paper.yaml"):
        config = load_profile(REPO / "config" / profile)
        validate_config(config, schema)
        assert config["datasets"]["build"]
    with pytest.raises(ConfigError, match="datasets.cifar10"):
        validate_config({"profile": "t", "experiments": [], "datasets": {"cifar10": {"standn": True}}}, schema)
    with pytest.raises(ConfigError, match="datasets.hc11.source"):
        validate_config({"profile": "t", "experiments": [], "datasets": {"hc11": {"source": "figshare"}}}, schema)


# -- the download helper ----------------------------------------------------------------------------


@pytest.fixture
def server():
    srv = LocalServer()
    yield srv
    srv.stop()


def spec_for(data: bytes, url: str, algo: str = "sha256") -> FileSpec:
    return FileSpec("blob.bin", (url,), {algo: hashlib.new(algo, data).hexdigest()}, len(data))


def test_download_goes_through_a_temp_file_and_removes_stale_parts(server: LocalServer, tmp_path: Path) -> None:
    data = b"x" * 300_000
    server.files["/blob.bin"] = data
    (tmp_path / ".blob.bin.deadbeef.part").write_bytes(b"left by a killed run")
    path = ensure_file(spec_for(data, f"{server.url}/blob.bin"), tmp_path, dataset="t")
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin"]


def test_second_source_is_tried_after_a_failing_one(server: LocalServer, tmp_path: Path) -> None:
    data = b"payload"
    server.files["/good/blob.bin"] = data
    spec = FileSpec("blob.bin", (f"{server.url}/missing/blob.bin", f"{server.url}/good/blob.bin"), {"md5": hashlib.md5(data).hexdigest()})
    assert ensure_file(spec, tmp_path, dataset="t").read_bytes() == data


def test_unpinned_files_are_never_downloaded_or_trusted(server: LocalServer, tmp_path: Path) -> None:
    server.files["/blob.bin"] = b"data"
    spec = FileSpec("blob.bin", (f"{server.url}/blob.bin",), {})
    with pytest.raises(DatasetError, match="pins no checksum"):
        ensure_file(spec, tmp_path, dataset="t")
    (tmp_path / "blob.bin").write_bytes(b"data")
    with pytest.raises(DatasetError, match="cannot be verified"):
        verify_file(tmp_path / "blob.bin", spec)
    assert not server.requests


def test_source_summary_for_metrics(tmp_path: Path) -> None:
    from ldm.data.artifacts import source_summary

    datasets.prepare("mnist", {"standin": True}, tmp_path / "mnist")
    summary = source_summary(tmp_path / "mnist")
    assert summary["data.mnist.source"] == "stand-in"
    assert summary["data.mnist.description"].startswith("STAND-IN (not MNIST)")
