"""A real `mlflow server` on 127.0.0.1 serves the pipeline's tracking store: ICA runs with their
provenance tags, a metric history and a figure artifact, over the REST API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import tool_env

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(smoke_workspace: Path):
    port = _free_port()
    store = smoke_workspace / "results" / "mlflow"
    proc = subprocess.Popen(
        ["mlflow", "server", "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=smoke_workspace, env=tool_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # a loaded machine can take minutes to start the server: wait on every kind of request
        # failure (refused, reset, read timeout), bounded by one overall deadline
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(f"{base}/health", timeout=10).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, "mlflow server exited early"
            assert time.monotonic() < deadline, "mlflow server did not become healthy in 300 s"
            time.sleep(1)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_rest_api_serves_ica_runs(mlflow_server: str, smoke_workspace: Path) -> None:
    api = f"{mlflow_server}/api/2.0/mlflow"
    exps = requests.post(f"{api}/experiments/search", json={"max_results": 50}, timeout=30).json()["experiments"]
    ica = next(e for e in exps if e["name"] == "ica")
    runs = requests.post(
        f"{api}/runs/search",
        json={"experiment_ids": [ica["experiment_id"]], "filter": "tags.`snakemake.rule` = 'ica_fit'"},
        timeout=30,
    ).json()["runs"]
    parts = yaml.safe_load((smoke_workspace / "config/smoke.yaml").read_text())["ica"]["parts"]
    assert {"images", "ou"} <= set(parts)
    assert {r["info"]["run_name"] for r in runs} == {f"{part}_fit" for part in parts}
    run = next(r for r in runs if r["info"]["run_name"] == "images_fit")
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["ldm.profile"] == "smoke"
    assert tags["snakemake.wildcards"] == "part=images"
    assert len(tags["git_commit"]) == 40 and tags["git_dirty"] in ("true", "false")
    assert len(tags["ldm.settings_hash"]) == 12 and len(tags["ldm.provenance"]) == 16

    run_id = run["info"]["run_id"]
    history = requests.get(
        f"{api}/metrics/get-history", params={"run_id": run_id, "metric_key": "objective"}, timeout=30
    ).json()["metrics"]
    assert len(history) >= 2
    steps = [m["step"] for m in history]
    assert steps == sorted(steps) and history[-1]["value"] >= history[0]["value"]  # objective is maximised

    fig_runs = requests.post(
        f"{api}/runs/search",
        json={"experiment_ids": [ica["experiment_id"]], "filter": "attributes.run_name = 'images_figures'"},
        timeout=30,
    ).json()["runs"]
    run_id = fig_runs[0]["info"]["run_id"]
    listed = requests.get(f"{api}/artifacts/list", params={"run_id": run_id, "path": "figures"}, timeout=30).json()
    names = {Path(f["path"]).name for f in listed["files"]}
    assert {"images_histograms.png", "images_recovered.png", "images_objective.pdf"} <= names
    png = requests.get(
        f"{mlflow_server}/get-artifact", params={"path": "figures/images_recovered.png", "run_uuid": run_id}, timeout=30
    )
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.content == (smoke_workspace / "results/ica/figures/images_recovered.png").read_bytes()
