"""The dataset registry: name → how to acquire it, how to load it, what its prepared artifact is.

One entry point per dataset for the pipeline, :func:`prepare` (``prepare(name, settings, out_dir)``),
which writes the prepared artifact of ``docs/datasets.md`` into ``out_dir`` (each file atomic,
``meta.json`` last); experiments read the artifact with the registry's loader
(:func:`ldm.data.image_datasets.load_images`, :func:`ldm.data.hc11.load_spikes`,
:func:`ldm.data.imagenet100.read_index`). Settings are one dataset's section of the config
(``datasets.<name>``); ``standin: true`` writes the offline stand-in to the same paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldm.data import hc11, image_datasets, imagenet100


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset."""

    name: str
    description: str
    acquire: str  # how the real data is obtained (for docs and messages)
    standin: str  # what the offline stand-in is
    prepare: Callable[[dict[str, Any], Path], Path]
    outputs: Callable[[dict[str, Any]], list[str]]  # artifact files, relative to out_dir
    loader: str  # dotted name of the function experiments read the artifact with
    defaults: dict[str, Any]


def _image_outputs(name: str) -> Callable[[dict[str, Any]], list[str]]:
    def outputs(settings: dict[str, Any]) -> list[str]:
        splits = ["train.npz", "test.npz"]
        if name == "svhn" and settings.get("extra") and not settings.get("standin"):
            splits.append("extra.npz")
        return [*splits, "meta.json"]

    return outputs


def _image_spec(name: str, title: str, torchvision_name: str, standin: str) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        description=f"{title}: images uint8 [N, H, W, C] + labels int64 per split",
        acquire=f"torchvision.datasets.{torchvision_name} with the manifest's URLs and checksums (or a mirror / hand-placed copy)",
        standin=standin,
        prepare=lambda settings, out_dir, _n=name: image_datasets.prepare_images(_n, settings, out_dir),
        outputs=_image_outputs(name),
        loader="ldm.data.image_datasets.load_images",
        defaults=image_datasets.IMAGE_DEFAULTS,
    )


PHOTO_STANDIN = "crops of photographs bundled with scikit-image, the class is the photograph (ldm.data.image_standins)"

REGISTRY: dict[str, DatasetSpec] = {
    "cifar10": _image_spec("cifar10", "CIFAR-10", "CIFAR10", PHOTO_STANDIN),
    "cifar100": _image_spec("cifar100", "CIFAR-100", "CIFAR100", PHOTO_STANDIN + "; 100 classes = grid cells of the photographs"),
    "svhn": _image_spec("svhn", "SVHN", "SVHN", PHOTO_STANDIN),
    "mnist": _image_spec("mnist", "MNIST", "MNIST", "scikit-learn's 8x8 digits resized to 28x28 (ldm.data.image_standins.digits_standin)"),
    "imagenet100": DatasetSpec(
        name="imagenet100",
        description="ImageNet-100: class list + index (path, label) of the user's ILSVRC-2012 folder",
        acquire="the user's own ILSVRC-2012 train/val folders (config datasets.imagenet100.ilsvrc_root)",
        standin="an ILSVRC-style tree of JPEG photo crops, one folder per ImageNet-100 WordNet id",
        prepare=imagenet100.prepare_imagenet100,
        outputs=lambda settings: ["classes.txt", "train_index.csv", "val_index.csv", "meta.json"],
        loader="ldm.data.imagenet100.IndexedImageFolder",
        defaults=imagenet100.IMAGENET_DEFAULTS,
    ),
    "hc11": DatasetSpec(
        name="hc11",
        description="hc-11 Achilles: spike counts of the 120 pyramidal units in 25-ms bins, position, direction, time",
        acquire="DANDI 000044 through the dandi client (or CEBRA's preprocessed arrays), read with pynwb",
        standin="simulated place cells on a 1.6-m track written with pynwb in the DANDI layout (ldm.data.hc11_standin)",
        prepare=hc11.prepare_hc11,
        outputs=lambda settings: ["spikes.npz", "meta.json"],
        loader="ldm.data.hc11.load_spikes",
        defaults=hc11.HC11_DEFAULTS,
    ),
}


def dataset_names() -> list[str]:
    """Every registered dataset."""
    return list(REGISTRY)


def get_dataset(name: str) -> DatasetSpec:
    """The registry entry of ``name`` (KeyError listing the known names)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known: {dataset_names()}")
    return REGISTRY[name]


def prepare(name: str, settings: dict[str, Any], out_dir: str | os.PathLike) -> None:
    """Acquire (or generate the stand-in of) dataset ``name`` and write its prepared artifact to ``out_dir``.

    ``settings`` is the config section ``datasets.<name>`` (for hc-11 with ``epoch`` set to the
    variant being written). Raises :class:`ldm.data.download.DatasetError` (with what to do) when
    the data cannot be obtained; ``out_dir`` then holds no ``meta.json``.
    """
    get_dataset(name).prepare(dict(settings or {}), Path(out_dir))


def artifact_files(name: str, settings: dict[str, Any] | None = None) -> list[str]:
    """The files :func:`prepare` writes for ``name``, relative to ``out_dir`` (for Snakemake outputs)."""
    return get_dataset(name).outputs(dict(settings or {}))
