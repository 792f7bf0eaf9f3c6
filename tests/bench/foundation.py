"""Foundation: create-to-first-exec beside a bare ``docker run``, and exec latency
(one at a time and 20 at once) beside ``docker exec`` of the same container."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from tests.server import LiveServer


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn) for _ in range(runs))


def concurrent_p50(fn: Callable[[], object], clients: int, rounds: int) -> float:
    """p50 of each call's latency when ``clients`` calls start together."""
    latencies: list[float] = []
    lock = threading.Lock()
    for _ in range(rounds):
        barrier = threading.Barrier(clients)

        def worker(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            ms = timed(fn)
            with lock:
                latencies.append(ms)

        threads = [threading.Thread(target=worker) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return statistics.median(latencies)


async def api_concurrent_p50(server: LiveServer, url: str, clients: int, rounds: int) -> float:
    """p50 of each exec's latency when ``clients`` start together (one asyncio client,
    one connection each, so the client's own overhead stays out of the number)."""
    headers = {"Authorization": f"Bearer {server.token('bench')}"}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(
        base_url=server.url + "/api/v1", headers=headers, limits=limits, timeout=120
    ) as client:

        async def one() -> float:
            started = time.perf_counter()
            response = await client.post(url, json={"command": "true"})
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000

        await asyncio.gather(*[one() for _ in range(clients)])  # open the connections
        for _ in range(rounds):
            latencies += await asyncio.gather(*[one() for _ in range(clients)])
    return statistics.median(latencies)


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True)


def bench_foundation(server: LiveServer, image: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = server.client("bench")
        return local.client

    # create-to-first-exec, beside a bare `docker run` of the same image
    def create_and_exec() -> None:
        c = client()
        box = c.post("/sandboxes", json={"name": "c-" + secrets.token_hex(4)}).json()
        c.post(f"/sandboxes/{box['id']}/exec", json={"command": ["true"]}).raise_for_status()
        create_and_exec.ids.append(box["id"])  # type: ignore[attr-defined]

    create_and_exec.ids = []  # type: ignore[attr-defined]
    ours = median_ms(create_and_exec, runs=7, warmup=1)
    bare = median_ms(lambda: docker("run", "--rm", image, "true"), runs=7, warmup=1)
    for sandbox_id in create_and_exec.ids:  # type: ignore[attr-defined]
        client().delete(f"/sandboxes/{sandbox_id}")
    results["create_to_first_exec_ms"] = ours
    results["docker_run_true_ms"] = bare
    results["create_ratio_vs_docker_run"] = ours / bare

    box = client().post("/sandboxes", json={"name": "exec-bench", "keep_alive": True}).json()
    container = f"{server.prefix}-{box['id']}"
    exec_url = f"/sandboxes/{box['id']}/exec"

    def api_exec(command: object) -> Callable[[], None]:
        return lambda: client().post(exec_url, json={"command": command}).raise_for_status()

    results["api_exec_true_shell_ms"] = median_ms(api_exec("true"), runs=200, warmup=10)
    results["api_exec_true_argv_ms"] = median_ms(api_exec(["true"]), runs=200, warmup=10)
    results["docker_exec_true_ms"] = median_ms(
        lambda: docker("exec", "-u", "sandbox", container, "true"), 30
    )
    results["exec_speedup_vs_docker_exec"] = (
        results["docker_exec_true_ms"] / results["api_exec_true_shell_ms"]
    )
    results["api_exec_20_concurrent_p50_ms"] = asyncio.run(
        api_concurrent_p50(server, exec_url, clients=20, rounds=5)
    )
    results["docker_exec_20_concurrent_p50_ms"] = concurrent_p50(
        lambda: docker("exec", "-u", "sandbox", container, "true"), 20, rounds=2
    )
    client().delete(f"/sandboxes/{box['id']}")
    return results
