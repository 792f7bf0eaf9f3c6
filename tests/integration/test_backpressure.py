"""Streams, not buffers: what a program prints never piles up in the server or on disk."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import httpx

from tests.server import LiveServer


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_slow_reader_of_a_flood_keeps_server_memory_flat(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    assert server.process is not None
    pid = server.process.pid
    before = rss_mb(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    received = 0
    try:
        with api.stream(
            "POST",
            f"/sandboxes/{shared_sandbox['id']}/exec",
            json={"command": "head -c 300000000 /dev/zero | tr '\\0' x"},
            headers={"Accept": "text/event-stream"},
        ) as response:
            started = time.monotonic()
            for chunk in response.iter_raw(65536):
                received += len(chunk)
                if time.monotonic() - started < 4:
                    time.sleep(0.01)  # a slow client for the first seconds
    finally:
        done.set()
        sampler.join()
    assert received > 300_000_000  # everything arrived (SSE framing adds a little)
    assert peak[0] - before < 60, f"server RSS grew from {before:.0f} to {peak[0]:.0f} MB"


def test_buffered_exec_output_is_capped(api: httpx.Client, shared_sandbox: dict) -> None:
    out = api.post(
        f"/sandboxes/{shared_sandbox['id']}/exec",
        json={"command": "head -c 40000000 /dev/zero | tr '\\0' y; echo done >&2"},
    ).json()
    assert out["exit_code"] == 0 and out["stderr"] == "done\n"
    assert out["truncated"] is True
    assert len(out["stdout"]) == 16 * 1024 * 1024  # EXEC_OUTPUT_LIMIT's default


def test_container_stdout_flood_cannot_fill_the_host_disk(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    container = f"{server.prefix}-{shared_sandbox['id']}"
    out = api.post(
        f"/sandboxes/{shared_sandbox['id']}/exec",
        json={"command": "head -c 200000000 /dev/zero | tr '\\0' z > /proc/1/fd/1; echo ok"},
        timeout=300,
    ).json()
    assert out["stdout"] == "ok\n", out
    log_path = subprocess.run(
        ["docker", "inspect", "-f", "{{.LogPath}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    log_dir = os.path.dirname(log_path)
    total = sum(
        os.path.getsize(os.path.join(log_dir, name))
        for name in os.listdir(log_dir)
        if name.startswith(os.path.basename(log_path))
    )
    assert total < 25 * 1024 * 1024, f"container logs hold {total} bytes"
