"""``python -m tests.bench.profile [exec] [preview]``: where a hot path's time goes.

For each path, on a server of its own: the latency a client sees, the server's CPU
per request (its process's CPU time over the requests), a py-spy sample of the
server while the path is driven (``bench-results/profile-PATH.txt``, collapsed
stacks that speedscope opens; summarised here by layer), and the floor: the same
operation with the server's share taken away, timed in the same run, alternately.

- exec: the floor is the agent round trip alone (``AgentClient`` straight to the
  agent, no HTTP, no database); between them, the service call (``exec_collect``:
  activity, limits, output budgets) without HTTP.
- preview: the floor is one request over a kept tunnel to the app (the agent's relay
  without Daphne); the preview layer's own 404 for an unknown host shows the cost of
  Daphne alone.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.bench.preview import APP_PORT, LOADGEN, _start_app
from tests.server import LiveServer, running_server

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench-results"

# A thread whose innermost frame is one of these waits for work: left out of the shares.
IDLE = ("select (selectors.py", "_worker (concurrent/futures", "wait (threading.py")
# The innermost frame is a socket call: the kernel's loopback TCP (or Unix socket) work.
SOCKET = ("writeSomeData", "untilConcludes", "_SelectorSocketTransport.write", "sock_connect")
# Layers a sample is charged to: the innermost frame whose file matches decides.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("socket calls (kernel loopback)", SOCKET),
    ("database (sqlite, ORM)", ("sqlite3", "django/db/")),
    ("thread hops (asgiref, executor)", ("asgiref/", "concurrent/futures", "threading.py")),
    ("agent protocol (frames, HMAC)", ("container/agent/", "sandboxes/agent/", "hmac.py")),
    ("JSON and validation (ninja, pydantic)", ("ninja/", "pydantic", "json/")),
    ("Django request handling", ("django/",)),
    ("HTTP parsing and sockets (Daphne, Twisted)", ("daphne/", "twisted/", "autobahn/")),
    ("h11 (preview relay)", ("h11/",)),
    ("our code (sandboxes/, ide/)", ("sandboxes/", "ide/")),
    ("asyncio event loop", ("asyncio/", "selectors.py")),
)

# Run with the server's environment (its database): the server's share taken away.
_FLOOR = r"""
import asyncio, json, os, statistics, sys, time
sys.path.insert(0, os.getcwd())
import django
django.setup()
from asgiref.sync import sync_to_async
from container.agent.protocol import Exec
from sandboxes.agent.client import AgentClient, exec_events
from sandboxes.backends import get_backend
from sandboxes.execs import ExecRequest, exec_collect
from sandboxes.models import Sandbox
from sandboxes.preview.tunnel import open_tunnel

mode, sandbox_id, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def main():
    sandbox = await Sandbox.objects.aget(pk=sandbox_id)
    client = AgentClient(get_backend().agent_address(sandbox.backend_state))

    async def agent_only():
        channel = await client.open(Exec(command="true"))
        try:
            async for _ in exec_events(channel):
                pass
        finally:
            await channel.close()

    async def service():
        await exec_collect(sandbox, ExecRequest(command="true"))

    async def thread_hop():
        await sync_to_async(int)()

    request = f"GET /status/200 HTTP/1.1\r\nHost: localhost:{sys.argv[4]}\r\n\r\n".encode()

    async def tunnel_requests(channel):
        started = time.perf_counter()
        channel.writer.write(request)
        await channel.writer.drain()
        head = await channel.reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        await channel.reader.readexactly(length)
        return (time.perf_counter() - started) * 1000

    if mode == "exec":
        cases = {"agent_only": agent_only, "service_no_http": service, "thread_hop": thread_hop}
        times = {name: [] for name in cases}
        for i in range(rounds):
            for name, call in (cases.items() if i % 2 else reversed(cases.items())):
                started = time.perf_counter()
                await call()
                times[name].append((time.perf_counter() - started) * 1000)
        print(json.dumps({name: statistics.median(t[5:]) for name, t in times.items()}))
    else:
        channel = await open_tunnel(sandbox, int(sys.argv[4]))
        times = [await tunnel_requests(channel) for _ in range(rounds)]
        await channel.close()
        print(json.dumps({"tunnel_request_p50_ms": statistics.median(times[5:])}))

asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def layers(collapsed: Path) -> dict[str, float]:
    """Share of the server's busy samples per layer (``LAYERS``), from py-spy's raw
    output; ``idle_samples_pct`` is the share of samples that only waited."""
    counts: Counter[str] = Counter()
    idle = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if any(mark in stack.split(";")[-1] for mark in IDLE):
            idle += int(count)
            continue
        layer = "other"
        for frame in reversed(stack.split(";")):
            found = next((name for name, marks in LAYERS if any(m in frame for m in marks)), None)
            if found:
                layer = found
                break
        counts[layer] += int(count)
    total = sum(counts.values()) or 1
    shares = {name: round(100 * n / total, 1) for name, n in counts.most_common()}
    return {**shares, "idle_samples_pct": round(100 * idle / ((total + idle) or 1), 1)}


def sampled(pid: int, name: str, drive: Any, seconds: float) -> dict[str, float]:
    """Run ``drive(stop_event)`` while py-spy samples the server; its layers."""
    out = OUT / f"profile-{name}.txt"
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "500",
            "--format",
            "raw",
            "--duration",
            str(int(seconds)),
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    worker = threading.Thread(target=drive, args=(stop,))
    time.sleep(1)  # py-spy attaches
    worker.start()
    spy.wait(seconds + 30)
    stop.set()
    worker.join()
    return layers(out)


def floor(server: LiveServer, mode: str, sandbox_id: str, rounds: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _FLOOR, mode, sandbox_id, str(rounds), str(APP_PORT)],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def profile_exec(server: LiveServer, pid: int, rounds: int = 300) -> dict[str, Any]:
    api = server.client("bench")
    sid = api.post("/sandboxes", json={"name": "profile-exec", "keep_alive": True}).json()["id"]
    url = f"/sandboxes/{sid}/exec"

    def one() -> float:
        started = time.perf_counter()
        api.post(url, json={"command": "true"}).raise_for_status()
        return (time.perf_counter() - started) * 1000

    def get() -> float:
        started = time.perf_counter()
        api.get(f"/sandboxes/{sid}").raise_for_status()
        return (time.perf_counter() - started) * 1000

    for _ in range(10):
        one()
    cpu = cpu_seconds(pid)
    http = statistics.median(one() for _ in range(rounds))
    cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / rounds
    cpu = cpu_seconds(pid)
    api_get = statistics.median(get() for _ in range(rounds))
    get_cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / rounds
    floors = floor(server, "exec", sid, rounds)

    def drive(stop: threading.Event) -> None:
        while not stop.is_set():
            one()

    result = {
        "http_exec_p50_ms": round(http, 3),
        "server_cpu_ms_per_exec": round(cpu_ms, 3),
        "http_get_sandbox_p50_ms": round(api_get, 3),
        "server_cpu_ms_per_get_sandbox": round(get_cpu_ms, 3),
        **{f"{k}_p50_ms": round(v, 3) for k, v in floors.items()},
        "profile_layers_pct": sampled(pid, "exec", drive, 10),
    }
    api.delete(f"/sandboxes/{sid}")
    api.close()
    return result


def _loadgen(server: LiveServer, host: str, threads: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            LOADGEN,
            "127.0.0.1",
            str(server.port),
            host,
            "/status/200",
            str(threads),
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(json.loads(out))


def profile_preview(server: LiveServer, pid: int) -> dict[str, Any]:
    api = server.client("bench")
    sid = api.post("/sandboxes", json={"name": "profile-preview"}).json()["id"]
    _start_app(api, sid)
    host = urlsplit(api.post(f"/sandboxes/{sid}/ports", json={"port": APP_PORT}).json()["url"])
    one_client = _loadgen(server, host.netloc, 1, 3)
    cpu = cpu_seconds(pid)
    loaded = _loadgen(server, host.netloc, 4, 5)
    cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / loaded["requests"]
    unknown = _loadgen(server, "unknown.preview.localhost", 1, 3)
    tunnel = floor(server, "preview", sid, 300)

    def drive(stop: threading.Event) -> None:
        _loadgen(server, host.netloc, 4, 10)

    big = 200 * 2**20

    def download() -> float:
        """MB/s of one large download through the preview, read by curl (C, not a
        Python client, so the client's own cost stays out)."""
        started = time.perf_counter()
        subprocess.run(
            [
                "curl",
                "-sf",
                "-o",
                "/dev/null",
                "-H",
                f"Host: {host.netloc}",
                f"{server.url}/download?size={big}",
            ],
            check=True,
        )
        return big / 1e6 / (time.perf_counter() - started)

    def downloads(stop: threading.Event) -> None:
        while not stop.is_set():
            download()

    result = {
        "one_client_p50_ms": one_client["p50_ms"],
        "four_clients": loaded,
        "server_cpu_ms_per_request": round(cpu_ms, 3),
        "unknown_host_404_p50_ms": unknown["p50_ms"],
        "tunnel_only_p50_ms": round(tunnel["tunnel_request_p50_ms"], 3),
        "profile_layers_pct": sampled(pid, "preview", drive, 10),
        "download_200mb_by_curl_mb_s": round(statistics.median(download() for _ in range(3)), 1),
        "download_profile_layers_pct": sampled(pid, "preview-download", downloads, 8),
    }
    api.delete(f"/sandboxes/{sid}")
    api.close()
    return result


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    import django

    django.setup()
    from sandboxes.images import image_tag

    os.environ["SANDBOX_IMAGE"] = image_tag()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    paths = sys.argv[1:] or ["exec", "preview"]
    OUT.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    with running_server("sbxprof", {"LOG_LEVEL": "WARNING"}) as server:
        assert server.process is not None
        for path in paths:
            print(f"profiling {path} ...", flush=True)
            run = profile_exec if path == "exec" else profile_preview
            results[path] = run(server, server.process.pid)
    (OUT / "profile.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
