"""ImageNet-100 builder on a fake ILSVRC tree of tiny JPEGs: complete, with missing classes, with wrong
per-class counts; the pre-decoded copy; worker-process decoding; the stand-in."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ldm.data import datasets
from ldm.data.artifacts import read_meta
from ldm.data.download import DatasetError
from ldm.data.imagenet100 import (
    CLASS_LIST,
    IndexedImageFolder,
    MissingClassesError,
    build_index,
    read_class_list,
    read_index,
    write_standin_tree,
)

CLASSES = read_class_list()


@pytest.fixture(scope="module")
def fake_ilsvrc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/<wnid>/ with 3 JPEGs and val/<wnid>/ with 2, for the 100 classes, plus a class outside ImageNet-100."""
    root = write_standin_tree(tmp_path_factory.mktemp("ilsvrc"), CLASSES, n_train=3, n_val=2, image_size=20, seed=1)
    extra = root / "train" / "n99999999"
    extra.mkdir()
    shutil.copy(next((root / "train" / CLASSES[0]).iterdir()), extra / "x.JPEG")
    return root


EXPECTED = {"val_per_class": 2, "train_per_class": [3, 3]}


def test_class_list_is_cmc_imagenet100() -> None:
    assert len(CLASSES) == 100 and len(set(CLASSES)) == 100
    assert CLASSES[:3] == ["n02869837", "n01749939", "n02488291"] and CLASSES[-1] == "n02090622"
    assert all(w.startswith("n") and len(w) == 9 for w in CLASSES)


def test_complete_tree_is_indexed(fake_ilsvrc: Path, tmp_path: Path) -> None:
    meta = build_index(fake_ilsvrc, tmp_path, expected=EXPECTED)
    assert meta["splits"] == {"train": 300, "val": 200}
    assert (tmp_path / "classes.txt").read_text().split() == CLASSES
    paths, labels = read_index(tmp_path / "train_index.csv")
    assert len(paths) == 300 and np.bincount(labels).tolist() == [3] * 100
    assert all((fake_ilsvrc / p).is_file() for p in paths)
    assert all(p.split("/")[1] == CLASSES[l] for p, l in zip(paths, labels))  # label = position in the CMC list
    assert not any("n99999999" in p for p in paths)  # classes outside ImageNet-100 are ignored
    assert read_meta(tmp_path)["per_class_counts"]["val"][CLASSES[5]] == 2


def test_missing_classes_are_listed_by_wordnet_id(fake_ilsvrc: Path, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(fake_ilsvrc, partial)
    shutil.rmtree(partial / "train" / CLASSES[7])
    shutil.rmtree(partial / "val" / CLASSES[42])
    for f in (partial / "val" / CLASSES[99]).iterdir():  # an empty folder counts as missing
        f.unlink()
    out = tmp_path / "out"
    with pytest.raises(MissingClassesError) as err:
        build_index(partial, out, expected=EXPECTED)
    msg = str(err.value)
    assert f"train: 1 of 100 classes missing or empty: {CLASSES[7]}" in msg
    assert f"val: 2 of 100 classes missing or empty: {CLASSES[42]} {CLASSES[99]}" in msg
    assert not (out / "meta.json").exists()


def test_missing_split_folder_is_named(tmp_path: Path, fake_ilsvrc: Path) -> None:
    only_train = tmp_path / "t"
    shutil.copytree(fake_ilsvrc / "train", only_train / "train")
    with pytest.raises(MissingClassesError, match=r"val: folder .*/t/val does not exist"):
        build_index(only_train, tmp_path / "out", expected=EXPECTED)


def test_wrong_per_class_counts_are_errors(fake_ilsvrc: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"val must hold 50 images per class; these differ: n\d{8}: 2") as err:
        build_index(fake_ilsvrc, tmp_path, expected={"val_per_class": 50})
    assert all(f"{w}: 2" in str(err.value) for w in CLASSES)
    with pytest.raises(DatasetError, match="train must hold 732-1300 images per class"):
        build_index(fake_ilsvrc, tmp_path, expected={"train_per_class": [732, 1300]})
    meta = build_index(fake_ilsvrc, tmp_path, expected={"train_total": 126689})
    assert meta["count_warnings"] == ["train holds 300 images; ImageNet-100 as used by CMC/solo-learn has 126689"]


def test_real_settings_check_ilsvrc_counts_and_need_the_root(fake_ilsvrc: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="datasets.imagenet100.ilsvrc_root is not set"):
        datasets.prepare("imagenet100", {}, tmp_path / "a")
    with pytest.raises(DatasetError, match="val must hold 50 images per class"):  # the manifest's ILSVRC counts
        datasets.prepare("imagenet100", {"ilsvrc_root": str(fake_ilsvrc)}, tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="datasets.imagenet100.ilsvrc_root"):
        datasets.prepare("imagenet100", {"ilsvrc_root": str(tmp_path / "nowhere")}, tmp_path / "c")


def test_workers_decode_and_predecoded_copy(tmp_path: Path) -> None:
    out = tmp_path / "imagenet100"
    settings = {"standin": True, "download_dir": str(tmp_path / "raw"), "predecode_size": 16, "workers": 2,
                "standin_options": {"n_train": 2, "n_val": 1, "image_size": 24}}
    datasets.prepare("imagenet100", settings, out)
    meta = read_meta(out)
    assert meta["source"] == "stand-in" and meta["splits"] == {"train": 200, "val": 100}
    assert sorted(p.name for p in out.iterdir()) == sorted([*datasets.artifact_files("imagenet100"), "predecoded_16"])
    images = np.load(out / "predecoded_16" / "train_images.npy", mmap_mode="r")
    labels = np.load(out / "predecoded_16" / "train_labels.npy")
    assert images.shape == (200, 16, 16, 3) and images.dtype == np.uint8
    paths, idx_labels = read_index(out / "train_index.csv")
    np.testing.assert_array_equal(labels, idx_labels)
    ds = IndexedImageFolder(meta["root"], out / "train_index.csv", size=16)
    np.testing.assert_array_equal(ds[5][0], images[5])  # the pre-decoded copy is what a worker decodes
    from torch.utils.data import DataLoader
    import torchvision.transforms as T

    loader = DataLoader(IndexedImageFolder(meta["root"], out / "val_index.csv", transform=T.Compose([T.Resize(16), T.CenterCrop(16), T.ToTensor()])), batch_size=50, num_workers=2)
    x, y = next(iter(loader))
    assert tuple(x.shape) == (50, 3, 16, 16) and y.dtype.is_floating_point is False


def test_class_list_file_is_pinned() -> None:
    from ldm.data.download import file_digest
    from ldm.data.manifest import manifest_entry

    assert file_digest(CLASS_LIST, "md5") == manifest_entry("imagenet100").extra["class_list"]["md5"]
