"""Terminal benchmark: keystroke-to-echo latency and output throughput
through the WebSocket, beside the same through ``docker exec`` in the same run.

``bench_terminal(server_url, token)`` returns the numbers; ``python -m tests.bench
terminal`` runs it against a test server of its own and prints them.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

BIG_FILE = "/tmp/bench-terminal.txt"
BIG_MB = 64


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _drain(ws: ClientConnection, quiet: float = 0.3) -> None:
    while True:
        try:
            ws.recv(timeout=quiet)
        except TimeoutError:
            return


def _read_until(ws: ClientConnection, needle: bytes, timeout: float = 120) -> int:
    """Bytes received until ``needle`` (which may span frames)."""
    total = 0
    tail = b""
    deadline = time.monotonic() + timeout
    while needle not in tail:
        message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(message, bytes):
            total += len(message)
            tail = tail[-len(needle) :] + message
    return total


def _ws_echo_latencies(ws: ClientConnection, samples: int) -> list[float]:
    """Type a key, wait for its echo; alternate a letter and a backspace (readline
    echoes both), so the line never grows."""
    latencies = []
    for i in range(samples):
        key = b"x" if i % 2 == 0 else b"\x7f"
        started = time.perf_counter()
        ws.send(key)
        ws.recv(timeout=10)
        latencies.append((time.perf_counter() - started) * 1000)
        _drain(ws, 0.002)  # the rest of a multi-frame echo, if any
    return latencies


def _docker_echo_latencies(container: str, samples: int) -> list[float]:
    """Bytes echoed by ``docker exec -i <container> cat`` (no terminal, no shell)."""
    proc = subprocess.Popen(
        ["docker", "exec", "-u", "sandbox", "-i", container, "cat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"w")  # warm up
        proc.stdout.read(1)
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            proc.stdin.write(b"x")
            proc.stdout.read(1)
            latencies.append((time.perf_counter() - started) * 1000)
        return latencies
    finally:
        proc.stdin.close()
        proc.wait(10)


@contextmanager
def ready_terminal(
    server_url: str, sandbox_id: str, name: str, token: str
) -> Iterator[ClientConnection]:
    """A terminal WebSocket whose shell has answered, drained, its echo warmed up."""
    url = server_url.replace("http", "ws", 1)
    with connect(
        f"{url}/ws/sandboxes/{sandbox_id}/terminals/{name}?token={token}",
        max_size=None,
        compression=None,
        open_timeout=60,
    ) as ws:
        ws.send(b"echo ready-$((1+1))\n")
        _read_until(ws, b"ready-2")
        _drain(ws)
        _ws_echo_latencies(ws, 20)
        yield ws


def _docker_tty_echo_latencies(container: str, samples: int) -> list[float]:
    """The same keystrokes through ``docker exec -it <container> bash`` (readline
    echo over the container's PTY), from a raw local PTY."""
    import select
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen(
        [
            "docker",
            "exec",
            "-u",
            "sandbox",
            "-it",
            container,
            "bash",
            "--norc",
            "--noprofile",
            "-i",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)

    def read_some(timeout: float) -> bytes:
        ready, _, _ = select.select([master], [], [], timeout)
        return os.read(master, 65536) if ready else b""

    try:
        deadline = time.monotonic() + 30
        while b"$ " not in read_some(1) and time.monotonic() < deadline:
            pass
        while read_some(0.3):
            pass
        latencies = []
        for i in range(samples + 20):
            key = b"x" if i % 2 == 0 else b"\x7f"
            started = time.perf_counter()
            os.write(master, key)
            if not read_some(10):
                raise RuntimeError("docker exec -it did not echo")
            if i >= 20:
                latencies.append((time.perf_counter() - started) * 1000)
            while read_some(0.002):
                pass
        return latencies
    finally:
        os.write(master, b"\x15exit\n")
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.close(master)


def _docker_throughput(container: str) -> float:
    """MB/s of ``docker exec -t <container> cat BIG_FILE`` (with a terminal)."""
    started = time.perf_counter()
    result = subprocess.run(
        ["docker", "exec", "-u", "sandbox", "-t", container, "cat", BIG_FILE],
        capture_output=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    return len(result.stdout) / seconds / 2**20


def _rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def bench_terminal(
    server_url: str, token: str, samples: int = 400, server_pid: int | None = None
) -> dict[str, Any]:
    """Latency (ms, p50/p99) and throughput (MB/s) of a terminal over the WebSocket
    and through ``docker exec``; ``server_pid`` adds the server's RSS before/after."""
    api = httpx.Client(
        base_url=server_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    )
    box = api.post("/sandboxes", json={"name": "bench-terminal", "keep_alive": True})
    box.raise_for_status()
    sandbox_id = box.json()["id"]
    api.post(
        f"/sandboxes/{sandbox_id}/exec",
        json={"command": f"head -c {BIG_MB * 3 // 4}M /dev/urandom | base64 > {BIG_FILE}"},
    ).raise_for_status()
    size = int(
        api.post(f"/sandboxes/{sandbox_id}/exec", json={"command": ["stat", "-c%s", BIG_FILE]})
        .json()["stdout"]
        .strip()
    )
    container = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=sandbox-ide.sandbox-id={sandbox_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    name = "bench-" + secrets.token_hex(3)
    results: dict[str, Any] = {}
    with ready_terminal(server_url, sandbox_id, name, token) as ws:
        latencies = _ws_echo_latencies(ws, samples)
        results["ws_echo_p50_ms"] = statistics.median(latencies)
        results["ws_echo_p99_ms"] = _percentile(latencies, 0.99)
        ws.send(b"\x15")
        _drain(ws)
        rss_before = _rss_mb(server_pid)
        ws.send(f"cat {BIG_FILE}; echo done-$((6*7))\n".encode())
        started = time.perf_counter()
        received = _read_until(ws, b"done-42")
        seconds = time.perf_counter() - started
        results["ws_cat_mb_per_s"] = received / seconds / 2**20
        results["cat_file_mb"] = size / 2**20
        if rss_before is not None:
            results["server_rss_before_mb"] = rss_before
            results["server_rss_after_mb"] = _rss_mb(server_pid)
    tty_latencies = _docker_tty_echo_latencies(container, samples)
    results["docker_exec_it_echo_p50_ms"] = statistics.median(tty_latencies)
    results["docker_exec_it_echo_p99_ms"] = _percentile(tty_latencies, 0.99)
    docker_latencies = _docker_echo_latencies(container, samples)
    results["docker_exec_echo_p50_ms"] = statistics.median(docker_latencies)
    results["docker_exec_echo_p99_ms"] = _percentile(docker_latencies, 0.99)
    results["docker_exec_t_cat_mb_per_s"] = _docker_throughput(container)
    api.delete(f"/sandboxes/{sandbox_id}/terminals/{name}")
    api.delete(f"/sandboxes/{sandbox_id}")
    api.close()
    return results
