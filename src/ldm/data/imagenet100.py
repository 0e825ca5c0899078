"""ImageNet-100 (paper Table 2/A1): the 100-class ILSVRC-2012 subset of Tian et al. (CMC, 2019).

Built from the user's own ILSVRC-2012 folder (``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG``,
the ImageFolder layout; its path is config key ``datasets.imagenet100.ilsvrc_root``); nothing is
downloaded. The prepared artifact (``data/imagenet100/``) holds

* ``classes.txt`` — the 100 WordNet ids in CMC order (label = line number),
* ``train_index.csv`` / ``val_index.csv`` — ``path,label`` with paths relative to the ILSVRC root,
* ``meta.json`` — root, per-class counts and the verification result (written last),
* optionally ``predecoded_<size>/{train,val}_{images,labels}.npy`` — every image decoded once,
  shorter side resized to ``size`` and centre-cropped, as a uint8 [N, size, size, 3] array.

Verification: every class folder must exist and be non-empty (missing classes are listed by WordNet
id), val must hold 50 images per class and train 732–1300 per class (ILSVRC-2012); the train total is
compared with the 126 689 images of CMC/solo-learn's ImageNet-100 and recorded. Training decodes
JPEGs in DataLoader worker processes (:class:`IndexedImageFolder`).
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ldm.data.artifacts import atomic_write_json, begin, sha256_of
from ldm.data.download import DatasetError, file_digest
from ldm.data.manifest import manifest_entry
from ldm.pipeline.io import atomic_path

CLASS_LIST = Path(__file__).with_name("imagenet100_classes.txt")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
SPLITS = ("train", "val")

IMAGENET_DEFAULTS: dict[str, Any] = {
    "standin": False,
    "ilsvrc_root": None,  # folder holding train/ and val/ in ImageFolder layout
    "download_dir": None,  # stand-in only: where the stand-in ILSVRC tree is written
    "manifest": None,
    "predecode_size": None,  # e.g. 64: write a resized, pre-decoded uint8 copy once
    "workers": 2,  # decoding processes for the pre-decoded copy
    "standin_options": {},
}
STANDIN_DEFAULTS: dict[str, Any] = {"n_train": 12, "n_val": 4, "image_size": 72, "seed": 1}


class MissingClassesError(DatasetError):
    """The ILSVRC folder lacks class folders (or images) of ImageNet-100; lists them by WordNet id."""


def read_class_list(path: str | os.PathLike = CLASS_LIST) -> list[str]:
    """The WordNet ids of ImageNet-100, one a line, in CMC order (blank lines and # comments skipped)."""
    ids = [ln.strip() for ln in Path(path).read_text().splitlines()]
    ids = [i for i in ids if i and not i.startswith("#")]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate WordNet ids")
    return ids


def imagenet_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in; unknown keys are an error naming the key."""
    unknown = sorted(set(settings) - set(IMAGENET_DEFAULTS))
    if unknown:
        raise KeyError(f"datasets.imagenet100: unknown setting(s) {unknown}; known: {sorted(IMAGENET_DEFAULTS)}")
    out = {**IMAGENET_DEFAULTS, **settings}
    opts = dict(out.get("standin_options") or {})
    unknown = sorted(set(opts) - set(STANDIN_DEFAULTS))
    if unknown:
        raise KeyError(f"datasets.imagenet100.standin_options: unknown key(s) {unknown}; known: {sorted(STANDIN_DEFAULTS)}")
    out["standin_options"] = {**STANDIN_DEFAULTS, **opts}
    if out["download_dir"] is None:
        out["download_dir"] = str(Path("data") / "raw" / "imagenet100")
    return out


def scan_split(root: Path, split: str, classes: Sequence[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Image files of every class folder of ``root/split``: ({wnid: sorted relative paths}, missing wnids)."""
    base = root / split
    found: dict[str, list[str]] = {}
    missing: list[str] = []
    for wnid in classes:
        folder = base / wnid
        files = sorted(
            f"{split}/{wnid}/{entry.name}"
            for entry in (os.scandir(folder) if folder.is_dir() else ())
            if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
        )
        if files:
            found[wnid] = files
        else:
            missing.append(wnid)
    return found, missing


def check_counts(
    counts: dict[str, dict[str, int]], expected: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """Compare per-class counts with ``expected`` ({"val_per_class", "train_per_class": [lo, hi],
    "train_total"}); returns (errors, warnings)."""
    errors, warnings = [], []
    want_val = expected.get("val_per_class")
    if want_val is not None and "val" in counts:
        bad = {w: n for w, n in counts["val"].items() if n != want_val}
        if bad:
            errors.append(f"val must hold {want_val} images per class; these differ: " + ", ".join(f"{w}: {n}" for w, n in sorted(bad.items())))
    rng = expected.get("train_per_class")
    if rng is not None and "train" in counts:
        lo, hi = rng
        bad = {w: n for w, n in counts["train"].items() if not lo <= n <= hi}
        if bad:
            errors.append(f"train must hold {lo}-{hi} images per class; these do not: " + ", ".join(f"{w}: {n}" for w, n in sorted(bad.items())))
    total = expected.get("train_total")
    if total is not None and "train" in counts:
        got = sum(counts["train"].values())
        if got != total:
            warnings.append(f"train holds {got} images; ImageNet-100 as used by CMC/solo-learn has {total}")
    return errors, warnings


def build_index(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    expected: dict[str, Any] | None = None,
    source: str = "real",
    description: str = "",
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Index ``root/{train,val}/<wnid>/`` for the ImageNet-100 classes and write the artifact.

    Raises :class:`MissingClassesError` listing every missing class by WordNet id (per split) and
    :class:`DatasetError` for per-class counts outside ``expected``; writes nothing that looks
    finished in either case. Returns the meta.json content.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"ILSVRC-2012 folder {root} does not exist (config key datasets.imagenet100.ilsvrc_root)")
    classes = list(classes or read_class_list())
    found: dict[str, dict[str, list[str]]] = {}
    problems = []
    for split in SPLITS:
        if not (root / split).is_dir():
            problems.append(f"{split}: folder {root / split} does not exist")
            continue
        found[split], missing = scan_split(root, split, classes)
        if missing:
            problems.append(f"{split}: {len(missing)} of {len(classes)} classes missing or empty: {' '.join(missing)}")
    if problems:
        raise MissingClassesError(f"ImageNet-100 at {root.resolve()} is incomplete:\n  " + "\n  ".join(problems))
    counts = {split: {w: len(found[split][w]) for w in classes} for split in SPLITS}
    errors, warnings = check_counts(counts, expected or {})
    if errors:
        raise DatasetError(f"ImageNet-100 at {root.resolve()}: unexpected image counts:\n  " + "\n  ".join(errors))
    for w in warnings:
        print(f"warning: {w}")
    out_dir = begin(out_dir)
    _atomic_text(out_dir / "classes.txt", "\n".join(classes) + "\n")
    files = {"classes.txt": {"sha256": sha256_of(out_dir / "classes.txt")}}
    for split in SPLITS:
        rows = [(path, label) for label, w in enumerate(classes) for path in found[split][w]]
        path = out_dir / f"{split}_index.csv"
        _atomic_csv(path, rows)
        files[path.name] = {"sha256": sha256_of(path), "n": len(rows)}
    meta = {
        "name": "imagenet100",
        "source": source,
        "description": description,
        "root": str(root.resolve()),
        "classes": classes,
        "splits": {split: sum(counts[split].values()) for split in SPLITS},
        "per_class_counts": counts,
        "count_warnings": warnings,
        "files": files,
        **(extra_meta or {}),
    }
    atomic_write_json(out_dir / "meta.json", meta)
    return meta


def _atomic_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _atomic_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label"])
            writer.writerows(rows)


def read_index(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(relative paths, labels int64) of an ``<split>_index.csv``."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != ["path", "label"]:
            raise ValueError(f"{path} is not an ImageNet-100 index (header {header})")
        rows = list(reader)
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows], dtype=np.int64)


def decode_image(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Decode one image to uint8 RGB [H, W, 3]; with ``size``: shorter side → size, centre crop size×size."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None:
            w, h = im.size
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8)


class IndexedImageFolder:
    """A map-style torch Dataset over an index: decodes one JPEG per item (run it in DataLoader workers).

    ``transform`` receives the PIL image (torchvision transforms); without it the item is a uint8
    [H, W, 3] numpy array (or [size, size, 3] with ``size``).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        index: str | os.PathLike,
        transform: Callable | None = None,
        size: int | None = None,
    ) -> None:
        self.root = Path(root)
        self.paths, self.labels = read_index(index)
        self.transform = transform
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.root / self.paths[i]
        if self.transform is not None:
            from PIL import Image

            with Image.open(path) as im:
                return self.transform(im.convert("RGB")), int(self.labels[i])
        return decode_image(path, self.size), int(self.labels[i])


def predecode(
    root: str | os.PathLike,
    index: str | os.PathLike,
    out_images: str | os.PathLike,
    out_labels: str | os.PathLike,
    *,
    size: int,
    workers: int = 2,
    batch_size: int = 64,
) -> int:
    """Decode every image of ``index`` once (in ``workers`` processes) into a uint8 [N, size, size, 3]
    ``.npy`` (written to a temp file and renamed); returns N."""
    from torch.utils.data import DataLoader

    ds = IndexedImageFolder(root, index, size=size)
    out_images, out_labels = Path(out_images), Path(out_labels)
    with atomic_path(out_images) as tmp:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ds), size, size, 3))
        loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=_stack_items)
        pos = 0
        for images, _ in _progress(loader, desc=f"decode {Path(index).name}"):
            arr[pos : pos + len(images)] = images
            pos += len(images)
        arr.flush()
        del arr
    with atomic_path(out_labels) as tmp:
        np.save(tmp, ds.labels)
    return len(ds)


def _stack_items(items: list) -> tuple[np.ndarray, list[int]]:
    return np.stack([x for x, _ in items]), [y for _, y in items]


def _progress(it, desc: str):
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, disable=None, leave=False)


def write_standin_tree(root: str | os.PathLike, classes: Sequence[str], *, n_train: int, n_val: int, image_size: int, seed: int) -> Path:
    """A small ILSVRC-style tree of JPEG photo crops (``train/<wnid>/``, ``val/<wnid>/``) for the
    ImageNet-100 stand-in and tests: class k is stand-in photo class k (ldm.data.image_standins)."""
    from PIL import Image

    from ldm.data.image_standins import photo_crops

    root = Path(root)
    seeds = np.random.SeedSequence(seed).spawn(2)
    for split, n, ss in (("train", n_train, seeds[0]), ("val", n_val, seeds[1])):
        total = n * len(classes)
        images, labels, _ = photo_crops(total, len(classes), seed=int(ss.generate_state(1)[0]), size=image_size)
        counters = {k: 0 for k in range(len(classes))}
        for img, lab in zip(images, labels):
            folder = root / split / classes[lab]
            folder.mkdir(parents=True, exist_ok=True)
            i = counters[int(lab)]
            counters[int(lab)] += 1
            Image.fromarray(img).save(folder / f"{classes[lab]}_{split}_{i:05d}.JPEG", quality=90)
    return root


def prepare_imagenet100(settings: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write the ImageNet-100 artifact (index of the user's ILSVRC folder, or of the stand-in tree)."""
    settings = imagenet_settings(settings)
    begin(out_dir)  # a previous meta.json goes first: a failed run leaves nothing that looks finished
    entry = manifest_entry("imagenet100", settings.get("manifest"))
    class_spec = entry.extra["class_list"]
    actual = file_digest(CLASS_LIST, "md5")
    if actual != class_spec["md5"]:
        raise DatasetError(f"{CLASS_LIST}: md5 {actual} differs from the manifest's {class_spec['md5']} (class list edited?)")
    classes = read_class_list()
    out_dir = Path(out_dir)
    if settings["standin"]:
        opts = settings["standin_options"]
        root = Path(settings["download_dir"]) / "standin-ilsvrc"
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        write_standin_tree(root, classes, n_train=int(opts["n_train"]), n_val=int(opts["n_val"]), image_size=int(opts["image_size"]), seed=int(opts["seed"]))
        expected = {"val_per_class": int(opts["n_val"]), "train_per_class": [int(opts["n_train"])] * 2}
        source = "stand-in"
        description = (
            "STAND-IN (not ImageNet-100): an ILSVRC-style folder of JPEG crops of photographs bundled with "
            "scikit-image, one class per ImageNet-100 WordNet id, indexed by the same builder as the real data."
        )
    else:
        if not settings["ilsvrc_root"]:
            raise DatasetError(
                "datasets.imagenet100.ilsvrc_root is not set: ImageNet-100 is built from your own ILSVRC-2012 copy "
                "(folders train/<wnid>/ and val/<wnid>/, ImageFolder layout; get it from https://image-net.org). "
                "Or set datasets.imagenet100.standin: true."
            )
        root = Path(settings["ilsvrc_root"])
        expected = dict(entry.extra["counts"])
        source = "real"
        description = f"{entry.title}: index of the ILSVRC-2012 folder {root}"
    extra_meta: dict[str, Any] = {"provenance": entry.provenance(), "settings": dict(settings)}
    size = settings["predecode_size"]
    if size:
        # the pre-decoded copy is written before meta.json (build_index writes meta.json last)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-index-", dir=out_dir.parent))
        try:
            build_index(root, staging, classes=classes, expected=expected, source=source, description=description)
            pre = begin(out_dir) / f"predecoded_{int(size)}"
            for split in SPLITS:
                predecode(root, staging / f"{split}_index.csv", pre / f"{split}_images.npy", pre / f"{split}_labels.npy", size=int(size), workers=int(settings["workers"]))
            extra_meta["predecoded"] = {"size": int(size), "folder": pre.name, "layout": "NHWC uint8, shorter side resized then centre-cropped"}
        finally:
            import shutil

            shutil.rmtree(staging, ignore_errors=True)
    build_index(root, out_dir, classes=classes, expected=expected, source=source, description=description, extra_meta=extra_meta)
    return out_dir
