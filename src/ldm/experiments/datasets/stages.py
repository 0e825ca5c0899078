"""Stages of dataset acquisition (issue 8): each writes one prepared artifact under data/<dataset>/.

Glue only: the clients, stand-ins and verification are in :mod:`ldm.data` (registry:
:mod:`ldm.data.datasets`). Each stage imports only its family's module, so a change to the hc-11 reader
does not rerun the CIFAR job. A job's settings are exactly its dataset's config section
(``datasets.<name>``; for hc-11 plus the variant of the wildcard as ``epoch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ldm.pipeline.stages import Job, stage


def _section(name: str) -> Any:
    return lambda config, wc: config["datasets"][wc.get("dataset", name)]


def _hc11_settings(config: Mapping[str, Any], wc: Mapping[str, str]) -> dict[str, Any]:
    return {**config["datasets"]["hc11"], "epoch": wc["variant"]}


@stage("datasets.images", settings=_section("images"))
def prepare_images(job: Job) -> None:
    """CIFAR-10/100, SVHN or MNIST (real through torchvision, or the stand-in): data/<dataset>/{train,test}.npz + meta.json."""
    from ldm.data.image_datasets import prepare_images as prepare

    prepare(job.wildcards["dataset"], dict(job.settings), Path(job.output["meta"]).parent)


@stage("datasets.imagenet100", settings=_section("imagenet100"))
def prepare_imagenet100(job: Job) -> None:
    """ImageNet-100: class list and index of the user's ILSVRC-2012 folder (or the stand-in tree)."""
    from ldm.data.imagenet100 import prepare_imagenet100 as prepare

    prepare(dict(job.settings), Path(job.output["meta"]).parent)


@stage("datasets.hc11", settings=_hc11_settings)
def prepare_hc11(job: Job) -> None:
    """hc-11 Achilles, variant running (option A) or maze (option B): data/hc11/<variant>/spikes.npz + meta.json."""
    from ldm.data.hc11 import prepare_hc11 as prepare

    prepare(dict(job.settings), Path(job.output["meta"]).parent)
