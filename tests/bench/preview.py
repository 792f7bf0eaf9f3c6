"""Preview benchmark: requests/s and p50 latency of a small response through
the preview proxy, beside the same app reached directly from inside the sandbox
(the same load generator, run in the sandbox against 127.0.0.1), in one run; and
large-body throughput both ways.

``bench_preview(server_url, token)`` returns the numbers; ``python -m tests.bench
preview`` runs it against a test server of its own and prints them.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.integration.preview_apps import HTTP_APP

APP_PORT = 18090

# Stdlib load generator: N threads, each with one keep-alive connection, for D
# seconds; prints {"requests", "rps", "p50_ms", "p90_ms", "p99_ms"}.
LOADGEN = r"""
import http.client, json, sys, threading, time
host, port, header_host, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
threads, duration = int(sys.argv[5]), float(sys.argv[6])
latencies, lock, stop = [], threading.Lock(), time.monotonic() + duration

def worker():
    conn, mine = None, []
    while time.monotonic() < stop:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=30)
        started = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Host": header_host})
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = None
            continue
        mine.append((time.perf_counter() - started) * 1000)
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            conn = None
    with lock:
        latencies.extend(mine)

workers = [threading.Thread(target=worker) for _ in range(threads)]
begun = time.monotonic()
for w in workers: w.start()
for w in workers: w.join()
elapsed = time.monotonic() - begun
latencies.sort()
pick = lambda f: round(latencies[min(len(latencies) - 1, int(len(latencies) * f))], 3)
print(json.dumps({"requests": len(latencies), "rps": round(len(latencies) / elapsed, 1),
                  "p50_ms": pick(0.5), "p90_ms": pick(0.9), "p99_ms": pick(0.99)}))
"""


def _exec(api: httpx.Client, sid: str, command: str, stdin: str | None = None) -> str:
    body: dict[str, Any] = {"command": command, "timeout": 600}
    if stdin is not None:
        body["stdin"] = stdin
    response = api.post(f"/sandboxes/{sid}/exec", json=body, timeout=660)
    response.raise_for_status()
    result = response.json()
    if result["exit_code"] != 0:
        raise RuntimeError(f"{command!r} failed: {result['stderr'][-500:]}")
    return str(result["stdout"])


def _start_app(api: httpx.Client, sid: str) -> None:
    _exec(api, sid, "cat > /tmp/bench_app.py", stdin=HTTP_APP)
    _exec(api, sid, "cat > /tmp/loadgen.py", stdin=LOADGEN)
    _exec(
        api,
        sid,
        f"setsid -f python3 /tmp/bench_app.py {APP_PORT} > /tmp/bench_app.log 2>&1; sleep 0.5",
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if APP_PORT in api.get(f"/sandboxes/{sid}/ports").json()["listening"]:
            return
        time.sleep(0.2)
    raise RuntimeError("the benchmark app did not start")


def bench_preview(
    server_url: str, token: str, *, threads: int = 4, duration: float = 5.0, big_mb: int = 200
) -> dict[str, Any]:
    api = httpx.Client(
        base_url=server_url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120
    )
    box = api.post("/sandboxes", json={"name": "bench-preview-" + secrets.token_hex(3)})
    box.raise_for_status()
    sid = box.json()["id"]
    try:
        _start_app(api, sid)
        exposed = api.post(f"/sandboxes/{sid}/ports", json={"port": APP_PORT}).json()
        preview_host = urlsplit(exposed["url"]).netloc
        server = urlsplit(server_url)
        path = "/status/200"  # an 11-byte body

        direct = json.loads(
            _exec(
                api,
                sid,
                f"python3 /tmp/loadgen.py 127.0.0.1 {APP_PORT} localhost:{APP_PORT} "
                f"{path} {threads} {duration}",
            )
        )

        def from_host(host_header: str) -> dict[str, Any]:
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    LOADGEN,
                    server.hostname or "127.0.0.1",
                    str(server.port or 80),
                    host_header,
                    path,
                    str(threads),
                    str(duration),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return dict(json.loads(out))

        proxied = from_host(preview_host)
        # the server's own floor on this machine: the preview layer's 404 page for an
        # unknown preview host (no database, no sandbox), same load generator
        floor = from_host("unknown.preview.localhost")

        size = big_mb * 1024 * 1024
        started = time.perf_counter()
        out = _exec(
            api,
            sid,
            f"curl -s -o /dev/null -w '%{{size_download}}' "
            f"http://127.0.0.1:{APP_PORT}/download?size={size}",
        )
        direct_download = size / 1e6 / (time.perf_counter() - started)
        assert int(out) == size
        preview = httpx.Client(base_url=server_url, headers={"Host": preview_host}, timeout=300)
        started = time.perf_counter()
        received = 0
        with preview.stream("GET", f"/download?size={size}") as response:
            for chunk in response.iter_raw(1024 * 1024):
                received += len(chunk)
        proxy_download = size / 1e6 / (time.perf_counter() - started)
        assert received == size
        # the same download read by curl, as the direct one is: a Python client reads
        # slower than the proxy sends, so the number above is partly the client's
        started = time.perf_counter()
        out = subprocess.run(
            ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}"]
            + ["-H", f"Host: {preview_host}", f"{server_url}/download?size={size}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        proxy_download_curl = size / 1e6 / (time.perf_counter() - started)
        assert int(out) == size

        block = b"x" * (1024 * 1024)

        def body() -> Any:
            for _ in range(big_mb):
                yield block

        started = time.perf_counter()
        uploaded = preview.post("/upload", content=body(), headers={"Content-Length": str(size)})
        proxy_upload = size / 1e6 / (time.perf_counter() - started)
        assert uploaded.json()["size"] == size
        preview.close()
        return {
            "small_response": {
                "threads": threads,
                "direct": direct,
                "proxy": proxied,
                "server_floor": floor,
                "proxy_rps_vs_direct": round(proxied["rps"] / direct["rps"], 3),
                "added_p50_ms": round(proxied["p50_ms"] - direct["p50_ms"], 3),
                "added_p50_over_floor_ms": round(proxied["p50_ms"] - floor["p50_ms"], 3),
            },
            "large_body_mb_s": {
                "size_mb": big_mb,
                "direct_download": round(direct_download, 1),
                "proxy_download": round(proxy_download, 1),
                "proxy_download_curl": round(proxy_download_curl, 1),
                "proxy_upload": round(proxy_upload, 1),
            },
        }
    finally:
        api.delete(f"/sandboxes/{sid}")
        api.close()
