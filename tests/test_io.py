"""Atomic writers: outputs appear whole or not at all, with the permissions the umask gives."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from ldm.pipeline import io


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_writer_respects_the_umask(tmp_path: Path, umask_022) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    written = [
        io.write_json(tmp_path / "a.json", {"x": 1}),
        io.save_npz(tmp_path / "b.npz", x=np.arange(3)),
        io.save_torch({"x": 1}, tmp_path / "c.pt"),
        *io.save_figure(fig, tmp_path / "d"),
    ]
    assert [_mode(p) for p in written] == [0o644] * len(written)  # mkstemp would give 0600
    assert not list(tmp_path.glob(".*tmp*"))


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.json"

    def boom(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, boom)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_truncated_json_names_the_file_and_the_way_forward(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text('{"r2": 0.9')
    with pytest.raises(io.CorruptFileError, match=rf"{path} is not valid JSON .*delete it \(rm {path}\) and rerun snakemake"):
        io.read_json(path)
