"""``make bench``: medians of what the issues ask us to measure, each beside a
baseline measured in the same run (never a lone absolute time).

Runs its own test server (tests/server.py) on the real engine and prints a table;
the raw numbers go to bench-results/bench.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.server import LiveServer, _remove_prefixed, make_server

ROOT = Path(__file__).resolve().parent.parent


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


SECTIONS = ("foundation", "lifecycle", "terminal", "preview", "code", "files", "scale", "classroom")


def run_section(name: str, server: LiveServer, image: str) -> dict[str, Any]:
    if name == "foundation":
        return bench_foundation(server, image)
    if name == "lifecycle":
        from tests.bench_lifecycle import bench_lifecycle

        return bench_lifecycle(server)
    if name == "terminal":
        from tests.bench_terminal import bench_terminal

        pid = server.process.pid if server.process else None
        return bench_terminal(server.url, server.token("bench"), server_pid=pid)
    if name == "preview":
        from tests.bench_preview import bench_preview

        return bench_preview(server.url, server.token("bench"))
    if name == "code":
        from tests.bench_code import bench_code

        with server.client("bench") as client:
            box = client.post("/sandboxes", json={"name": "code-bench", "keep_alive": True})
            box.raise_for_status()
            return bench_code(server.url, server.token("bench"), box.json()["id"])
    if name == "files":
        from tests.bench_files import bench_files

        return bench_files(server, int(os.environ.get("BENCH_FILES_MB", "1024")))
    if name == "classroom":
        from tests.bench_classroom import bench_classroom

        return bench_classroom(server)
    if name == "scale":
        from tests.bench_scale import bench_sandboxes, bench_terminals

        return {
            "terminals": bench_terminals(server, int(os.environ.get("BENCH_WEBSOCKETS", "200"))),
            "sandboxes": bench_sandboxes(server, int(os.environ.get("BENCH_SANDBOXES", "300"))),
        }
    raise SystemExit(f"unknown section {name!r}; choose from {', '.join(SECTIONS)}")


def show(value: Any, indent: int = 2) -> None:
    pad = " " * indent
    for key, item in value.items():
        if isinstance(item, dict):
            print(f"{pad}{key}")
            show(item, indent + 2)
        elif isinstance(item, float):
            print(f"{pad}{key:44s} {item:10.2f}")
        else:
            print(f"{pad}{key:44s} {item}")


def main() -> None:
    """``python -m tests.bench [SECTION ...]``: every section by default, one server."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    import django

    django.setup()
    from sandboxes.images import image_tag

    image = image_tag()
    os.environ["SANDBOX_IMAGE"] = image
    sections = sys.argv[1:] or list(SECTIONS)
    prefix = "sbxbench-" + secrets.token_hex(3)
    server = make_server(
        prefix,
        {
            "LOG_LEVEL": "WARNING",
            "SANDBOX_MAX_PER_USER": "1000",
            # the classroom surge pools a whole class for one teacher
            "WARM_POOL_MAX_PER_USER": "1000",
            "WARM_POOL_MAX_TOTAL": "1000",
        },
    )
    server.start()
    results: dict[str, Any] = {}
    try:
        for name in sections:
            print(f"running {name} ...", flush=True)
            results[name] = run_section(name, server, image)
    finally:
        server.stop()
        _remove_prefixed(prefix)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    for name, numbers in results.items():
        print(f"\n{name}")
        show(numbers)


if __name__ == "__main__":
    main()
