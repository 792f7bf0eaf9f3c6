"""File transfer benchmark: ``BENCH_FILES_MB=1024 python -m tests.bench files``.

A round trip of SIZE MB through the API (PUT files/content, then a streamed GET),
beside the same bytes through ``docker exec -i ... cat`` in the same run, and the
server's peak resident memory during the API transfers (VmHWM after resetting it
through /proc/PID/clear_refs) and the server's CPU seconds for each direction (a
number that does not depend on how busy the machine is).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.server import LiveServer

BLOCK = 1024 * 1024


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (independent of machine load)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _blocks(count: int, block: bytes, digest: Any) -> Iterator[bytes]:
    for _ in range(count):
        digest.update(block)
        yield block


def bench_files(server: LiveServer, size_mb: int = 1024) -> dict[str, float]:
    assert server.process is not None
    pid = server.process.pid
    block = bytes(range(256)) * (BLOCK // 256)
    results: dict[str, float] = {"size_mb": size_mb}
    with server.client("bench") as client:
        box = client.post("/sandboxes", json={"name": "files-bench", "keep_alive": True}).json()
        url = f"/sandboxes/{box['id']}/files/content"
        container = f"{server.prefix}-{box['id']}"
        try:
            rss_before = _status_kb(pid, "VmRSS")
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak

            sent = hashlib.sha256()
            started = time.perf_counter()
            cpu = _cpu_s(pid)
            response = client.put(
                url, params={"path": "bench.bin"}, content=_blocks(size_mb, block, sent)
            )
            response.raise_for_status()
            results["api_upload_s"] = time.perf_counter() - started
            results["server_cpu_upload_s"] = _cpu_s(pid) - cpu
            cpu = _cpu_s(pid)

            received = hashlib.sha256()
            started = time.perf_counter()
            with client.stream("GET", url, params={"path": "bench.bin"}) as download:
                for chunk in download.iter_bytes(BLOCK):
                    received.update(chunk)
            results["api_download_s"] = time.perf_counter() - started
            results["server_cpu_download_s"] = _cpu_s(pid) - cpu
            if received.hexdigest() != sent.hexdigest():
                raise AssertionError("the downloaded bytes differ from the uploaded ones")
            results["server_rss_before_mb"] = rss_before / 1024
            results["server_peak_rss_mb"] = _status_kb(pid, "VmHWM") / 1024
            results["server_peak_growth_mb"] = (
                results["server_peak_rss_mb"] - results["server_rss_before_mb"]
            )

            # the same bytes through `docker exec`, for scale
            started = time.perf_counter()
            with subprocess.Popen(
                [
                    "docker",
                    "exec",
                    "-u",
                    "sandbox",
                    "-i",
                    container,
                    "sh",
                    "-c",
                    "cat > /workspace/baseline.bin",
                ],
                stdin=subprocess.PIPE,
            ) as proc:
                assert proc.stdin is not None
                for chunk in _blocks(size_mb, block, hashlib.sha256()):
                    proc.stdin.write(chunk)
                proc.stdin.close()
            results["docker_exec_upload_s"] = time.perf_counter() - started
            started = time.perf_counter()
            with subprocess.Popen(
                ["docker", "exec", "-u", "sandbox", container, "cat", "/workspace/baseline.bin"],
                stdout=subprocess.PIPE,
            ) as proc:
                assert proc.stdout is not None
                while proc.stdout.read(BLOCK):
                    pass
            results["docker_exec_download_s"] = time.perf_counter() - started
            for direction in ("upload", "download"):
                results[f"api_{direction}_mb_per_s"] = size_mb / results[f"api_{direction}_s"]
                results[f"docker_exec_{direction}_mb_per_s"] = (
                    size_mb / results[f"docker_exec_{direction}_s"]
                )
        finally:
            client.delete(f"/sandboxes/{box['id']}")
    return results
