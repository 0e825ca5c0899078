"""CIFAR-10, CIFAR-100, SVHN and MNIST through torchvision's dataset classes (paper Table 2/A1, App. A.8).

Acquisition: the archives are fetched by :func:`ldm.data.download.ensure_file` (temp file, checksum,
rename; hand-placed copies accepted) from the manifest's URLs or a mirror; then torchvision's own
class — given the manifest's URLs and checksums — verifies, extracts and parses them in a scratch
folder. The parsed arrays become the prepared artifact ``<out>/{train,test}.npz`` +
``meta.json`` (:mod:`ldm.data.artifacts`), which :func:`load_images` reads into uint8 tensors in
one go, so training never decodes one PIL image at a time.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ldm.data.artifacts import begin, write_image_artifact
from ldm.data.download import DatasetError, ensure_file
from ldm.data.manifest import DatasetEntry, FileSpec, manifest_entry

SMALL_IMAGE_DATASETS = ("cifar10", "cifar100", "svhn", "mnist")
N_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "mnist": 10}

IMAGE_DEFAULTS: dict[str, Any] = {
    "standin": False,
    "download_dir": None,  # default data/raw/<name>
    "mirror": None,  # base URL replacing the manifest's URL directory: <mirror>/<file name>
    "manifest": None,  # path of another manifest (default: the bundled one)
    "timeout": 60.0,
    "extra": False,  # svhn only: also prepare the `extra` split
    "standin_options": {},
}

#: Stand-in generator options (photo_crops / digits_standin), per dataset family.
STANDIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "photos": {
        "n_train": 5000,
        "n_test": 1000,
        "seed": 1,
        "scale": [0.02, 1.0],
        "brightness": 0.4,
        "contrast": 0.4,
        "saturation": 0.8,
        "hue": 0.5,
        "grayscale": 0.3,
        "photographs": None,  # None: the dataset's default (STANDIN_PHOTOGRAPHS)
        "cells_per_photograph": None,  # None: the dataset's default
    },
    "digits": {"seed": 1, "test_fraction": 0.2},
}


#: Default stand-in classes: 10 classes = 5 colour photographs x 2 halves (left/right) — similar
#: colours and textures within a photograph make the classes hard for random-init features (see
#: docs/datasets.md); CIFAR-100's 100 classes = 18 photographs x 6 grid cells (first 100).
STANDIN_PHOTOGRAPHS: dict[str, tuple[tuple[str, ...] | None, int | None]] = {
    "cifar10": (("astronaut", "chelsea", "coffee", "rocket", "motorcycle"), 2),
    "svhn": (("astronaut", "chelsea", "coffee", "rocket", "motorcycle"), 2),
    "cifar100": (None, None),
}


def image_settings(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in; unknown keys are an error naming the key."""
    unknown = sorted(set(settings) - set(IMAGE_DEFAULTS))
    if unknown:
        raise KeyError(f"datasets.{name}: unknown setting(s) {unknown}; known: {sorted(IMAGE_DEFAULTS)}")
    out = {**IMAGE_DEFAULTS, **settings}
    family = "digits" if name == "mnist" else "photos"
    opts = dict(out.get("standin_options") or {})
    unknown = sorted(set(opts) - set(STANDIN_DEFAULTS[family]))
    if unknown:
        raise KeyError(f"datasets.{name}.standin_options: unknown key(s) {unknown}; known: {sorted(STANDIN_DEFAULTS[family])}")
    out["standin_options"] = {**STANDIN_DEFAULTS[family], **opts}
    if out["download_dir"] is None:
        out["download_dir"] = str(Path("data") / "raw" / name)
    if out["extra"] and name != "svhn":
        raise KeyError(f"datasets.{name}.extra: only svhn has an `extra` split")
    return out


# ------------------------------------------------------------------------------------------
# torchvision clients, with URLs and checksums from the manifest
# ------------------------------------------------------------------------------------------


def _base_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + "/"


def torchvision_class(name: str, entry: DatasetEntry, mirror: str | None = None) -> type:
    """A subclass of torchvision's dataset class whose URLs and checksums are the manifest's.

    Same class name (MNIST's folders are named after the class), same parsing code; only the
    class attributes torchvision reads its sources and checksums from are replaced.
    """
    from torchvision import datasets as tvd

    if name in ("cifar10", "cifar100"):
        base = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        (archive,) = entry.files
        folder = base.base_folder

        def member_md5(file: str) -> str:
            key = f"{folder}/{file}"
            if key not in archive.members:
                raise DatasetError(f"manifest entry {name}: file {archive.name} lists no checksum for member {key!r}")
            return archive.members[key]

        attrs = {
            "url": mirror.rstrip("/") + "/" + archive.name if mirror else archive.urls[0],
            "filename": archive.name,
            "tgz_md5": archive.checksums["md5"],
            "train_list": [[f, member_md5(f)] for f, _ in base.train_list],
            "test_list": [[f, member_md5(f)] for f, _ in base.test_list],
            "meta": {**base.meta, "md5": member_md5(base.meta["filename"])},
        }
        return type(base.__name__, (base,), attrs)
    if name == "svhn":
        split_list = {}
        for spec in entry.files:
            url = mirror.rstrip("/") + "/" + spec.name if mirror else spec.urls[0]
            split_list[spec.split] = [url, spec.name, spec.checksums["md5"]]
        return type("SVHN", (tvd.SVHN,), {"split_list": split_list})
    if name == "mnist":
        mirrors = [mirror.rstrip("/") + "/"] if mirror else list(dict.fromkeys(_base_url(u) for u in entry.files[0].urls))
        resources = [(spec.name, spec.checksums["md5"]) for spec in entry.files]
        return type("MNIST", (tvd.MNIST,), {"mirrors": mirrors, "resources": resources})
    raise KeyError(f"{name!r} is not a torchvision dataset of this pipeline ({SMALL_IMAGE_DATASETS})")


@contextlib.contextmanager
def _scratch_root(files: dict[str, Path], layout: dict[str, str], parent: Path) -> Iterator[Path]:
    """A temporary torchvision root in ``parent`` holding symlinks to the verified downloads."""
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=parent) as tmp:
        root = Path(tmp)
        for name, rel in layout.items():
            link = root / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(files[name].resolve())
        yield root


def _quiet(fn, *args, **kwargs):
    """Run a torchvision constructor with its "Files already downloaded" chatter captured."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        return fn(*args, **kwargs)


def acquire(name: str, settings: dict[str, Any]) -> dict[str, Path]:
    """Fetch (or accept hand-placed) every file ``name`` needs; returns file name → verified path."""
    entry = manifest_entry(name, settings.get("manifest"))
    hint = f"Or set `datasets.{name}.standin: true` to use the offline stand-in (docs/datasets.md)."
    specs = [s for s in entry.files if not s.optional or (name == "svhn" and settings.get("extra"))]
    return {
        spec.name: ensure_file(
            spec,
            settings["download_dir"],
            dataset=name,
            mirror=settings.get("mirror"),
            timeout=float(settings.get("timeout", 60.0)),
            standin_hint=hint,
        )
        for spec in specs
    }


def read_real(
    name: str, settings: dict[str, Any]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], DatasetEntry, dict[str, Path]]:
    """Acquire ``name`` and parse it with torchvision: ({split: (images NHWC uint8, labels int64)}, classes, entry, files)."""
    entry = manifest_entry(name, settings.get("manifest"))
    files = acquire(name, settings)
    cls = torchvision_class(name, entry, settings.get("mirror"))
    parent = Path(settings["download_dir"])
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        if name in ("cifar10", "cifar100"):
            with _scratch_root(files, {n: n for n in files}, parent) as root:
                for split in ("train", "test"):
                    ds = _quiet(cls, str(root), train=split == "train", download=True)
                    splits[split] = (np.ascontiguousarray(ds.data, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64))
                classes = list(ds.classes)
        elif name == "svhn":
            with _scratch_root(files, {n: n for n in files}, parent) as root:
                for spec in entry.files:
                    if spec.name not in files:
                        continue
                    ds = _quiet(cls, str(root), split=spec.split, download=False)
                    images = np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1), dtype=np.uint8)
                    splits[spec.split] = (images, np.asarray(ds.labels, dtype=np.int64))
                classes = [str(d) for d in range(10)]
        elif name == "mnist":
            with _scratch_root(files, {n: f"MNIST/raw/{n}" for n in files}, parent) as root:
                for split in ("train", "test"):
                    ds = _quiet(cls, str(root), train=split == "train", download=True)
                    splits[split] = (ds.data.numpy().astype(np.uint8)[..., None], ds.targets.numpy().astype(np.int64))
                classes = list(ds.classes)
        else:
            raise KeyError(name)
    except RuntimeError as err:
        if isinstance(err, DatasetError):
            raise
        # torchvision's "Dataset not found or corrupted" / a member's md5 after extraction
        raise DatasetError(
            f"{name}: torchvision could not read the verified files {sorted(str(p) for p in files.values())}: {err}. "
            f"An archive member's checksum differs from the manifest, or the file is not in the upstream format."
        ) from err
    return splits, classes, entry, files


def prepare_images(name: str, settings: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write the prepared artifact of a small image dataset (real or stand-in) to ``out_dir``."""
    settings = image_settings(name, settings)
    begin(out_dir)  # a previous meta.json goes first: a failed run leaves nothing that looks finished
    if settings["standin"]:
        return _prepare_standin(name, settings, Path(out_dir))
    splits, classes, entry, files = read_real(name, settings)
    # every file was verified against these digests by ensure_file (and again by torchvision)
    checksums = {}
    for file_name in files:
        spec: FileSpec = entry.file(file_name)
        checksums[file_name] = {spec.algorithm: spec.digest}
    meta = {
        "name": name,
        "source": "real",
        "description": f"{entry.title} ({entry.version}), parsed by {entry.client}",
        "classes": classes,
        "checksums": checksums,
        "provenance": entry.provenance(),
        "settings": settings,
    }
    return write_image_artifact(out_dir, splits, meta)


STANDIN_DESCRIPTIONS = {
    "photos": (
        "STAND-IN (not {title}): {n_classes}-class 32x32 RGB crops of photographs bundled with scikit-image; "
        "the class is the photograph{cells}. Random crop position/scale/aspect, flip and colour changes per sample; "
        "same files and shapes as the real data."
    ),
    "digits": (
        "STAND-IN (not MNIST): scikit-learn's bundled 8x8 handwritten digits (1797 images) upsampled to a 20x20 "
        "digit centred in a 28x28 frame; same files and shapes as the real data."
    ),
}


def _prepare_standin(name: str, settings: dict[str, Any], out_dir: Path) -> Path:
    from ldm.data import image_standins as st

    opts = settings["standin_options"]
    titles = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN", "mnist": "MNIST"}
    if name == "mnist":
        splits = st.digits_standin(seed=int(opts["seed"]), test_fraction=float(opts["test_fraction"]))
        classes = [str(d) for d in range(10)]
        description = STANDIN_DESCRIPTIONS["digits"]
    else:
        n_classes = N_CLASSES[name]
        default_photos, default_cells = STANDIN_PHOTOGRAPHS[name]
        photos = tuple(opts["photographs"] or default_photos or st.PHOTOGRAPHS)
        cells = opts["cells_per_photograph"] or (default_cells if not opts["photographs"] else None)
        kw = {
            "scale": tuple(opts["scale"]),
            "brightness": float(opts["brightness"]),
            "contrast": float(opts["contrast"]),
            "saturation": float(opts["saturation"]),
            "hue": float(opts["hue"]),
            "grayscale": float(opts["grayscale"]),
            "photographs": photos,
            "cells_per_photograph": cells,
        }
        # train and test come from independent child seeds of the stand-in seed
        train_seed, test_seed = np.random.SeedSequence(int(opts["seed"])).spawn(2)
        tr_x, tr_y, classes = st.photo_crops(int(opts["n_train"]), n_classes, seed=_int_seed(train_seed), **kw)
        te_x, te_y, _ = st.photo_crops(int(opts["n_test"]), n_classes, seed=_int_seed(test_seed), **kw)
        splits = {"train": (tr_x, tr_y), "test": (te_x, te_y)}
        cell_note = " (a grid cell of a photograph)" if n_classes > len(photos) or (cells or 1) > 1 else ""
        description = STANDIN_DESCRIPTIONS["photos"].format(title=titles[name], n_classes=n_classes, cells=cell_note)
    meta = {
        "name": name,
        "source": "stand-in",
        "description": description,
        "classes": classes,
        "checksums": {},
        "standin_of": titles[name],
        "settings": settings,
    }
    return write_image_artifact(out_dir, splits, meta)


def _int_seed(seq: np.random.SeedSequence) -> int:
    return int(seq.generate_state(1, dtype=np.uint32)[0])


# ------------------------------------------------------------------------------------------
# loading the prepared artifact
# ------------------------------------------------------------------------------------------


def load_images(path: str | os.PathLike, *, channels_first: bool = False):
    """Read a prepared ``<split>.npz`` into memory: (images torch.uint8 [N, H, W, C], labels torch.int64 [N]).

    One read of the whole array — no per-image decoding. ``channels_first=True`` returns a
    contiguous [N, C, H, W] tensor instead.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prepared image file {path} does not exist (run the datasets rule that writes it)")
    with np.load(path, allow_pickle=False) as data:
        missing = {"images", "labels"} - set(data.files)
        if missing:
            raise KeyError(f"{path} lacks array(s) {sorted(missing)} (has {data.files})")
        images, labels = data["images"], data["labels"]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{path}: images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    x = torch.from_numpy(images)
    if channels_first:
        x = x.permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(labels.astype(np.int64, copy=False))
