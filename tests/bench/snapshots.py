"""Snapshot benchmark: ``BENCH_SNAPSHOT_MB=1024 BENCH_SNAPSHOT_PACKAGES_MB=300
python -m tests.bench snapshots``.

A sandbox with SIZE MB in its workspace and PACKAGES MB installed on its root
filesystem (many files under ``~/.local``, as ``pip install --user`` leaves them).
Measured, run by run and interleaved with the baseline so both see the same load:

- a snapshot (the API call, and how long the sandbox was frozen: ``paused_ms``);
- a sandbox made from it to its first exec;
- a fork (its own snapshot, then a new sandbox) to the copy's first exec;
- the baseline: ``docker commit`` of the same container, then ``docker run`` of the
  committed image to its first ``docker exec``. It does not copy the workspace
  (a volume, which a commit leaves out), so it is the floor for the root filesystem.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

import httpx

from tests.server import LiveServer

# Workspace: 16 MiB files of random data (incompressible, like real data); packages:
# 100 KiB files in 100 directories, like site-packages.
FILL = """
set -e
mkdir -p /workspace/data
for i in $(seq 1 $(( {workspace_mb} / 16 ))); do
  head -c 16M /dev/urandom > /workspace/data/blob-$i
done
for d in $(seq 1 100); do
  mkdir -p ~/.local/lib/pkgs/p$d
  for f in $(seq 1 $(( {packages_mb} * 10 / 100 ))); do
    head -c 100K /dev/urandom > ~/.local/lib/pkgs/p$d/m$f.py
  done
done
du -sm /workspace ~/.local | cut -f1
"""


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def _first_exec(api: httpx.Client, sandbox_id: str) -> None:
    api.post(f"/sandboxes/{sandbox_id}/exec", json={"command": ["true"]}).raise_for_status()


def _baseline(container: str, image: str) -> tuple[float, float]:
    """``docker commit`` (ms), then ``docker run`` of the image to a first exec (ms)."""
    started = time.perf_counter()
    _docker("commit", container, image)
    commit_ms = _ms(started)
    name = image.replace(":", "-")
    started = time.perf_counter()
    _docker("run", "-d", "--name", name, "--user", "0:0", image)
    while subprocess.run(["docker", "exec", name, "true"], capture_output=True).returncode:
        time.sleep(0.01)
    run_ms = _ms(started)
    _docker("rm", "-f", name)
    _docker("rmi", image)
    return commit_ms, run_ms


def bench_snapshots(
    server: LiveServer, workspace_mb: int = 256, packages_mb: int = 100, runs: int = 3
) -> dict[str, Any]:
    results: dict[str, Any] = {"workspace_mb": workspace_mb, "packages_mb": packages_mb}
    series: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        series.setdefault(key, []).append(value)

    with server.client("snapshot-bench") as api:
        api.timeout = httpx.Timeout(1800)
        box = api.post("/sandboxes", json={"name": "snap-bench", "keep_alive": True}).json()
        sid = box["id"]
        container = f"{server.prefix}-{sid}"
        filled = api.post(
            f"/sandboxes/{sid}/exec",
            json={"command": FILL.format(workspace_mb=workspace_mb, packages_mb=packages_mb)},
        ).json()
        assert filled["exit_code"] == 0, filled
        results["measured_mb"] = filled["stdout"].split()
        for run in range(runs):
            started = time.perf_counter()
            snap = api.post(f"/sandboxes/{sid}/snapshots", json={}).json()
            add("snapshot_ms", _ms(started))
            add("paused_ms", snap["paused_ms"])
            results["snapshot_size_mb"] = round(snap["size_bytes"] / 2**20)

            started = time.perf_counter()
            made = api.post("/sandboxes", json={"name": f"from-{run}", "snapshot": snap["id"]})
            _first_exec(api, made.json()["id"])
            add("create_from_snapshot_to_first_exec_ms", _ms(started))

            started = time.perf_counter()
            fork = api.post(f"/sandboxes/{sid}/fork", json={"count": 1}).json()
            add("fork_call_ms", _ms(started))
            _first_exec(api, fork["sandboxes"][0]["id"])
            add("fork_to_first_exec_ms", _ms(started))
            add("fork_paused_ms", fork["snapshot"]["paused_ms"])

            commit_ms, run_ms = _baseline(container, f"{server.prefix}-bench:{run}")
            add("docker_commit_ms", commit_ms)
            add("docker_run_to_first_exec_ms", run_ms)
            add("docker_commit_plus_run_ms", commit_ms + run_ms)

            for sandbox_id in (made.json()["id"], fork["sandboxes"][0]["id"]):
                api.delete(f"/sandboxes/{sandbox_id}")
            for snapshot_id in (snap["id"], fork["snapshot"]["id"]):
                api.delete(f"/snapshots/{snapshot_id}")
        api.delete(f"/sandboxes/{sid}")
    for key, values in series.items():
        results[f"{key}_p50"] = statistics.median(values)
    results["runs"] = runs
    results["each_run"] = {key: [round(v) for v in values] for key, values in series.items()}
    return results
