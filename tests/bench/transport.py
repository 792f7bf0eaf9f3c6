"""Capacity per agent transport: sandboxes per GiB and execs per second per server
process, with the unix socket (the baseline) and the network transport
(``SANDBOX_AGENT_TRANSPORT=tcp``) measured in the same run, one server each.

- memory: ``count`` idle sandboxes are started and left to settle; each container's
  own memory (its cgroup's usage less the page cache it can give back) plus what
  the engine keeps per container on the host (its shim; with tcp the proxy process
  of the published port). Sandboxes per GiB is 1024 MiB over that sum. (The host's
  MemAvailable is no measure here: other work on the machine moves it more.)
- execs/s: ``concurrency`` clients, spread over those sandboxes, posting
  ``exec(["true"])`` back to back for ``seconds``; the median of ``runs`` runs, the
  two servers' runs taking turns.

``python -m tests.bench.transport`` runs it alone (``BENCH_TRANSPORT_SANDBOXES``,
``BENCH_TRANSPORT_CONCURRENCY``); ``make bench`` runs it as the ``transport`` section.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import docker
import httpx

from tests.server import LiveServer, running_server

ROOT = Path(__file__).resolve().parents[2]


def _pss_mib(marks: list[str]) -> float:
    """The proportional memory (PSS: shared pages split between their users) of the
    engine's processes whose command line holds any of ``marks`` (a container's id
    names its shim, a published port its proxy), together."""
    total = 0
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if not any(mark in cmdline for mark in marks):
                continue
            for line in (proc / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return total / 1024


def _container_mib(engine: docker.DockerClient, name: str) -> float:
    """The container's own memory: its cgroup's usage less the page cache it can
    give back."""
    stats = engine.containers.get(name).stats(stream=False)["memory_stats"]
    inner = stats.get("stats") or {}
    cache = inner.get("inactive_file", inner.get("total_inactive_file", 0))
    return float(stats.get("usage", 0) - cache) / 2**20


async def _exec_rate(server: LiveServer, ids: list[str], concurrency: int, seconds: float) -> float:
    headers = {"Authorization": f"Bearer {server.token('transport')}"}
    done = 0
    deadline = time.monotonic() + seconds

    async def client(sandbox_id: str) -> None:
        nonlocal done
        async with httpx.AsyncClient(
            base_url=server.url + "/api/v1", headers=headers, timeout=60
        ) as http:
            while time.monotonic() < deadline:
                reply = await http.post(f"/sandboxes/{sandbox_id}/exec", json={"command": ["true"]})
                reply.raise_for_status()
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(client(ids[i % len(ids)]) for i in range(concurrency)))
    return done / (time.monotonic() - started)


def start_idle(server: LiveServer, count: int) -> dict[str, Any]:
    """``count`` idle sandboxes on ``server`` (each answered once) and the memory
    each costs: the container's own, and the engine's processes for it (its shim;
    with tcp the proxy of its published port), counted by their PSS."""
    engine = docker.from_env()
    ids: list[str] = []
    try:
        with server.client("transport") as api:
            for _ in range(count):
                name = "t-" + secrets.token_hex(4)
                reply = api.post("/sandboxes", json={"name": name, "keep_alive": True})
                reply.raise_for_status()
                ids.append(reply.json()["id"])
                api.post(f"/sandboxes/{ids[-1]}/exec", json={"command": ["true"]})
        time.sleep(5)  # let start-up work settle
        found = [engine.containers.get(f"{server.prefix}-{i}") for i in ids]
        containers = [_container_mib(engine, c.name) for c in found]
        shim = _pss_mib([f"-id {c.id}" for c in found]) / count
        ports = [
            b["HostPort"]
            for c in found
            for b in ((c.attrs["NetworkSettings"]["Ports"] or {}).get("7077/tcp") or [])
        ]
        proxy = _pss_mib([f"-host-port {p} " for p in ports]) / count if ports else 0.0
    finally:
        engine.close()
    per_sandbox = statistics.median(containers) + shim + proxy
    return {
        "ids": ids,
        "sandboxes": count,
        "container_mib_median": round(statistics.median(containers), 1),
        "engine_shim_mib_per_sandbox": round(shim, 1),
        "engine_proxy_mib_per_sandbox": round(proxy, 1),
        "host_mib_per_sandbox": round(per_sandbox, 1),
        "sandboxes_per_gib": round(1024 / per_sandbox, 1),
    }


def bench_transport(
    count: int = 10, concurrency: int = 16, seconds: float = 5.0, runs: int = 7
) -> dict[str, Any]:
    """Both transports, one server each, running side by side; their exec runs
    alternate, so both see the machine's load of the same moments."""
    base = {"LOG_LEVEL": "WARNING", "SANDBOX_MAX_PER_USER": "1000"}
    with (
        running_server("sbxbenchunix", {**base, "SANDBOX_AGENT_TRANSPORT": "unix"}) as unix,
        running_server("sbxbenchtcp", {**base, "SANDBOX_AGENT_TRANSPORT": "tcp"}) as tcp,
    ):
        servers = {"unix": unix, "tcp": tcp}
        results = {name: start_idle(server, count) for name, server in servers.items()}
        rates: dict[str, list[float]] = {name: [] for name in servers}
        for name, server in servers.items():  # warm-up
            asyncio.run(_exec_rate(server, results[name]["ids"], concurrency, 1.0))
        for _ in range(runs):
            for name, server in servers.items():
                ids = results[name]["ids"]
                rates[name].append(asyncio.run(_exec_rate(server, ids, concurrency, seconds)))
        for name, server in servers.items():
            with server.client("transport") as api:
                for sandbox_id in results[name].pop("ids"):
                    api.delete(f"/sandboxes/{sandbox_id}")
            results[name][f"execs_per_s_{concurrency}_clients_median"] = round(
                statistics.median(rates[name]), 1
            )
            results[name]["execs_per_s_runs"] = [round(r, 1) for r in rates[name]]
    return results


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from sandboxes.images import image_tag

    os.environ["SANDBOX_IMAGE"] = image_tag()
    results = bench_transport(
        int(os.environ.get("BENCH_TRANSPORT_SANDBOXES", "10")),
        int(os.environ.get("BENCH_TRANSPORT_CONCURRENCY", "16")),
    )
    for transport, numbers in results.items():
        print(transport)
        for key, value in numbers.items():
            print(f"  {key:44s} {value}")


if __name__ == "__main__":
    main()
