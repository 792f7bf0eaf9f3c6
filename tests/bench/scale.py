"""Scale benchmarks: many running sandboxes on one machine, and many
terminal WebSockets on one server process.

``bench_sandboxes``: start sandboxes in steps and measure exec p50 on one of them at
each step, with the machine's available memory. ``bench_terminals``: open N terminal
WebSockets (16 per sandbox, the default limit) and have every client type at once;
echo latency p50/p99 over all of them, beside a single client alone.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from typing import Any

import websockets

from tests.server import LiveServer


def _mem_available_mib() -> float:
    with open("/proc/meminfo") as meminfo:
        return next(int(line.split()[1]) for line in meminfo if "MemAvailable" in line) / 1024


def bench_sandboxes(server: LiveServer, total: int = 300, step: int = 50) -> dict[str, Any]:
    ramp = []
    ids: list[str] = []
    with server.client("scale") as api:
        before = _mem_available_mib()
        while len(ids) < total:
            for _ in range(min(step, total - len(ids))):
                name = "s-" + secrets.token_hex(4)
                response = api.post("/sandboxes", json={"name": name, "keep_alive": True})
                response.raise_for_status()
                ids.append(response.json()["id"])
            probe = f"/sandboxes/{ids[-1]}/exec"
            samples = []
            for _ in range(25):
                started = time.perf_counter()
                api.post(probe, json={"command": ["true"]}).raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)
            ramp.append(
                {
                    "running": len(ids),
                    "exec_p50_ms": round(statistics.median(samples[5:]), 2),
                    "mem_used_mib": round(before - _mem_available_mib()),
                }
            )
        for sandbox_id in ids:
            api.delete(f"/sandboxes/{sandbox_id}")
    return {"ramp": ramp}


async def _echo(ws: Any, rounds: int) -> list[float]:
    latencies = []
    for i in range(rounds):
        marker = f"{i % 10}"
        started = time.perf_counter()
        await ws.send(marker.encode())
        while True:
            frame = await asyncio.wait_for(ws.recv(), 60)
            if isinstance(frame, bytes) and marker.encode() in frame:
                break
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.05)
    await ws.send(b"\x15")  # clear the line again
    return latencies


async def _terminals(server: LiveServer, count: int, rounds: int) -> dict[str, Any]:
    token = server.token("scale")
    per_sandbox = 16
    sockets = []
    with server.client("scale") as api:
        boxes = [
            api.post("/sandboxes", json={"name": "t-" + secrets.token_hex(4)}).json()["id"]
            for _ in range((count + per_sandbox - 1) // per_sandbox)
        ]
    base = server.url.replace("http://", "ws://")
    for i in range(count):
        url = f"{base}/ws/sandboxes/{boxes[i // per_sandbox]}/terminals/t{i % per_sandbox}"
        ws = await websockets.connect(f"{url}?token={token}", max_size=None, open_timeout=120)
        sockets.append(ws)
    await asyncio.sleep(3)  # prompts printed, replays drained below
    for ws in sockets:
        with_timeout = asyncio.wait_for(ws.recv(), 0.05)
        try:
            while True:
                await with_timeout
                with_timeout = asyncio.wait_for(ws.recv(), 0.05)
        except TimeoutError:
            pass
    alone = await _echo(sockets[0], rounds)
    together = [
        x for xs in await asyncio.gather(*[_echo(ws, rounds) for ws in sockets]) for x in xs
    ]
    for ws in sockets:
        await ws.close()
    with server.client("scale") as api:
        for sandbox_id in boxes:
            api.delete(f"/sandboxes/{sandbox_id}")
    together.sort()
    return {
        "websockets": count,
        "one_client_alone_p50_ms": statistics.median(alone),
        "all_typing_p50_ms": statistics.median(together),
        "all_typing_p99_ms": together[int(len(together) * 0.99) - 1],
    }


def bench_terminals(server: LiveServer, count: int = 200, rounds: int = 10) -> dict[str, Any]:
    return asyncio.run(_terminals(server, count, rounds))
