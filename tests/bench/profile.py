"""``python -m tests.bench.profile [exec] [preview] [terminal] [wake]``: where a hot
path's time goes (all four without arguments).

For each path, on a server of its own: the latency a client sees, the server's CPU
per request (its process's CPU time over the requests), a py-spy sample of the
server while the path is driven (``bench-results/profile-PATH.txt``, collapsed
stacks that speedscope opens; summarised here by layer), and the floor: the same
operation with the server's share taken away, timed in the same run, alternately.

- exec: the floor is the agent round trip alone (``AgentClient`` straight to the
  agent, no HTTP, no database); between them, the service call (``exec_collect``:
  activity, limits, output budgets) without HTTP. For 20 execs at once, the floor
  is 20 such round trips at once.
- preview: the floor is one request over a kept tunnel to the app (the agent's relay
  without Daphne); the preview layer's own 404 for an unknown host shows the cost of
  Daphne alone. For a 200 MB body: the same download over a tunnel read by a client
  process (no Daphne), and Daphne sending 200 MB from memory (no agent), beside the
  download inside the sandbox.
- terminal: the floor is the same keystrokes on a terminal of the agent's, typed
  straight from a client process (the agent, the PTY and bash); ``docker exec -it``
  of the same run is the baseline.
- wake: the floor is a wake from a separate process with no HTTP and no database
  (the engine's start of the stopped container, the agent's start until it answers
  a ping, one exec), each part timed; ``docker start`` of the same run is the baseline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.bench.foundation import api_concurrent_p50
from tests.bench.preview import APP_PORT, LOADGEN, _exec, _start_app
from tests.bench.terminal import (
    _docker_tty_echo_latencies,
    _percentile,
    _ws_echo_latencies,
    ready_terminal,
)
from tests.server import LiveServer, free_port, running_server

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

    async def terminal_echo():
        # Keystroke to echo on a terminal of the agent's, straight from here: the
        # agent, the PTY and bash, with the server's share taken away.
        from container.agent.protocol import Kind, TerminalAttach
        from sandboxes.agent.client import receive_message
        channel = await client.open(TerminalAttach(name="profile-floor"))
        await receive_message(channel)  # TerminalAttached

        async def drain(quiet):
            try:
                while True:
                    await asyncio.wait_for(channel.receive(), quiet)
            except asyncio.TimeoutError:
                pass

        await channel.send_data(Kind.STDIN, b"echo ready\n")
        await drain(0.3)
        times = []
        for i in range(rounds + 20):
            started = time.perf_counter()
            await channel.send_data(Kind.STDIN, b"x" if i % 2 == 0 else b"\x7f")
            while (await channel.receive())[0] != Kind.DATA:
                pass
            times.append((time.perf_counter() - started) * 1000)
            await drain(0.002)
        await channel.close()
        return times[20:]

    async def wake():
        # A wake with the server's share taken away: the engine's start of the
        # stopped container, the agent's start until it answers, then one exec.
        backend = get_backend()
        await backend.stop(sandbox.backend_state)
        started = time.perf_counter()
        await backend.start(sandbox.backend_state)
        engine = time.perf_counter()
        await client.wait_ready(30)
        ready = time.perf_counter()
        await agent_only()
        done = time.perf_counter()
        return {"engine_start_ms": (engine - started) * 1000,
                "agent_start_ms": (ready - engine) * 1000,
                "first_exec_ms": (done - ready) * 1000,
                "total_ms": (done - started) * 1000}

    if mode == "wake":
        print(json.dumps(await wake()))
    elif mode == "terminal":
        times = await terminal_echo()
        times.sort()
        print(json.dumps({"agent_echo_p50_ms": statistics.median(times),
                          "agent_echo_p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))]}))
    elif mode == "exec":
        cases = {"agent_only": agent_only, "service_no_http": service, "thread_hop": thread_hop}
        times = {name: [] for name in cases}
        for i in range(rounds):
            for name, call in (cases.items() if i % 2 else reversed(cases.items())):
                started = time.perf_counter()
                await call()
                times[name].append((time.perf_counter() - started) * 1000)
        floors = {name: statistics.median(t[5:]) for name, t in times.items()}
        # 20 at once with the server's share taken away: the agent starting 20 shells
        # together is the floor of the "20 execs at once" row.
        async def timed():
            started = time.perf_counter()
            await agent_only()
            return (time.perf_counter() - started) * 1000

        together = []
        for _ in range(10):
            together += await asyncio.gather(*[timed() for _ in range(20)])
        floors["agent_only_20_at_once"] = statistics.median(together)
        print(json.dumps(floors))
    else:
        channel = await open_tunnel(sandbox, int(sys.argv[4]))
        times = [await tunnel_requests(channel) for _ in range(rounds)]
        await channel.close()
        # 200 MB over a tunnel, read here: the large body without the server's share
        big = 200 * 2**20
        rates = []
        for _ in range(3):
            channel = await open_tunnel(sandbox, int(sys.argv[4]))
            started = time.perf_counter()
            channel.writer.write(f"GET /download?size={big} HTTP/1.1\r\n"
                                 f"Host: localhost\r\nConnection: close\r\n\r\n".encode())
            await channel.writer.drain()
            received = 0
            while chunk := await channel.reader.read(1 << 20):
                received += len(chunk)
            rates.append(big / 1e6 / (time.perf_counter() - started))
            await channel.close()
            assert received > big, received
        print(json.dumps({"tunnel_request_p50_ms": statistics.median(times[5:]),
                          "tunnel_200mb_mb_s": statistics.median(rates)}))

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
    at_once = asyncio.run(api_concurrent_p50(server, url, clients=20, rounds=10))
    floors = floor(server, "exec", sid, rounds)

    def drive(stop: threading.Event) -> None:
        while not stop.is_set():
            one()

    result = {
        "http_exec_p50_ms": round(http, 3),
        "server_cpu_ms_per_exec": round(cpu_ms, 3),
        "http_get_sandbox_p50_ms": round(api_get, 3),
        "server_cpu_ms_per_get_sandbox": round(get_cpu_ms, 3),
        "http_exec_20_at_once_p50_ms": round(at_once, 3),
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

    def direct() -> float:
        """MB/s of the same download inside the sandbox, by curl, no preview."""
        command = f"curl -s -o /dev/null http://127.0.0.1:{APP_PORT}/download?size={big}"
        started = time.perf_counter()
        _exec(api, sid, command)
        return big / 1e6 / (time.perf_counter() - started)

    result = {
        "one_client_p50_ms": one_client["p50_ms"],
        "four_clients": loaded,
        "server_cpu_ms_per_request": round(cpu_ms, 3),
        "unknown_host_404_p50_ms": unknown["p50_ms"],
        "tunnel_only_p50_ms": round(tunnel["tunnel_request_p50_ms"], 3),
        "tunnel_only_200mb_mb_s": round(tunnel["tunnel_200mb_mb_s"], 1),
        "profile_layers_pct": sampled(pid, "preview", drive, 10),
        "download_200mb_by_curl_mb_s": round(statistics.median(download() for _ in range(3)), 1),
        "direct_200mb_mb_s": round(statistics.median(direct() for _ in range(3)), 1),
        "daphne_alone_200mb_mb_s": round(_daphne_alone(big), 1),
        "download_profile_layers_pct": sampled(pid, "preview-download", downloads, 8),
    }
    api.delete(f"/sandboxes/{sid}")
    api.close()
    return result


# An ASGI application answering every request with ``size`` bytes from memory, in
# the preview relay's 1 MB chunks: what Daphne alone (with our backpressure) sends.
_BODY_APP = """
CHUNK = b"x" * (1024 * 1024)

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    size = int(scope["query_string"].decode().partition("=")[2])
    headers = [(b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    while True:
        body = CHUNK[: min(size, len(CHUNK))]
        size -= len(body)
        await send({"type": "http.response.body", "body": body, "more_body": size > 0})
        if size <= 0:
            return
"""


def _daphne_alone(size: int) -> float:
    """MB/s of a ``size``-byte download from Daphne with nothing behind it (median of
    3, read by curl): the large-body floor of a preview served by Daphne."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "body_app.py").write_text(_BODY_APP)
        port = free_port()
        serve = "from ide.daphne_internals import command_line; command_line()"
        env = {**os.environ, "PYTHONPATH": f"{folder}:{ROOT}"}
        server = subprocess.Popen(
            [
                sys.executable,
                "-c",
                serve,
                "-v",
                "0",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "body_app:app",
            ],
            cwd=folder,
            env=env,
        )
        try:
            url = f"http://127.0.0.1:{port}/?size={size}"
            ready = f"http://127.0.0.1:{port}/?size=0"
            for _ in range(100):
                if subprocess.run(["curl", "-sf", "-o", "/dev/null", ready]).returncode == 0:
                    break
                time.sleep(0.1)
            rates = []
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True)
                rates.append(size / 1e6 / (time.perf_counter() - started))
            return statistics.median(rates)
        finally:
            server.terminate()
            server.wait(10)


def profile_terminal(server: LiveServer, pid: int, samples: int = 300) -> dict[str, Any]:
    """Keystroke echo through the WebSocket, beside the floor (the same keystrokes on
    a terminal of the agent's, straight from a client process) and ``docker exec -it``
    (bash's readline over the container's PTY), all in the same run."""
    api = server.client("bench")
    sid = api.post("/sandboxes", json={"name": "profile-term", "keep_alive": True}).json()["id"]
    token = server.token("bench")
    with ready_terminal(server.url, sid, "profile", token) as ws:
        cpu = cpu_seconds(pid)
        latencies = _ws_echo_latencies(ws, samples)
        cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / samples
        floors = floor(server, "terminal", sid, samples)
        container = f"{server.prefix}-{sid}"
        tty = _docker_tty_echo_latencies(container, samples)

        def drive(stop: threading.Event) -> None:
            while not stop.is_set():
                _ws_echo_latencies(ws, 20)

        result = {
            "ws_echo_p50_ms": round(statistics.median(latencies), 3),
            "ws_echo_p99_ms": round(_percentile(latencies, 0.99), 3),
            "server_cpu_ms_per_keystroke": round(cpu_ms, 3),
            **{k: round(v, 3) for k, v in floors.items()},
            "docker_exec_it_echo_p50_ms": round(statistics.median(tty), 3),
            "docker_exec_it_echo_p99_ms": round(_percentile(tty, 0.99), 3),
            "profile_layers_pct": sampled(pid, "terminal", drive, 10),
        }
    api.delete(f"/sandboxes/{sid}")
    api.close()
    return result


def profile_wake(server: LiveServer, pid: int, rounds: int = 7) -> dict[str, Any]:
    """The wake from the stop tier over HTTP (the exec that wakes it), the floor
    (engine start, agent start and one exec from a separate process, no HTTP and no
    database), and ``docker start`` of the same stopped container, in turn."""
    api = server.client("bench")
    sid = api.post("/sandboxes", json={"name": "profile-wake", "keep_alive": True}).json()["id"]
    url = f"/sandboxes/{sid}/exec"
    container = f"{server.prefix}-{sid}"

    def exec_true() -> float:
        started = time.perf_counter()
        api.post(url, json={"command": ["true"]}).raise_for_status()
        return (time.perf_counter() - started) * 1000

    def stop() -> None:
        api.post(f"/sandboxes/{sid}/sleep", json={"tier": "stop"}).raise_for_status()

    exec_true()
    http, start, floors = [], [], []
    for _ in range(rounds):
        stop()
        http.append(exec_true())
        stop()
        started = time.perf_counter()
        subprocess.run(["docker", "start", container], check=True, capture_output=True)
        start.append((time.perf_counter() - started) * 1000)
        exec_true()
        floors.append(floor(server, "wake", sid, 1))  # stops the container itself
        exec_true()
    api.delete(f"/sandboxes/{sid}")
    api.close()
    return {
        "http_wake_p50_ms": round(statistics.median(http), 1),
        "docker_start_p50_ms": round(statistics.median(start), 1),
        **{
            f"floor_{name}_p50".replace("_ms_p50", "_p50_ms"): round(
                statistics.median(f[name] for f in floors), 1
            )
            for name in floors[0]
        },
    }


PROFILES = {
    "exec": profile_exec,
    "preview": profile_preview,
    "terminal": profile_terminal,
    "wake": profile_wake,
}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    import django

    django.setup()
    from sandboxes.images import image_tag

    os.environ["SANDBOX_IMAGE"] = image_tag()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    paths = sys.argv[1:] or list(PROFILES)
    OUT.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    with running_server("sbxprof", {"LOG_LEVEL": "WARNING"}) as server:
        assert server.process is not None
        for path in paths:
            print(f"profiling {path} ...", flush=True)
            results[path] = PROFILES[path](server, server.process.pid)
    (OUT / "profile.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
