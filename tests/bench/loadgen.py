"""A load generator cheap enough to share two cores with what it measures.

``python -m tests.bench.loadgen HOST PORT --path P [--method M] [--header K:V ...]
[--body TEXT] [--connections N] [--duration S]`` keeps N keep-alive HTTP/1.1
connections busy (``--path`` and ``--host-header`` may repeat: connection i sends the
i-th pair, round the list) for S seconds from one asyncio loop (no HTTP library: a request is
one pre-built byte string, a response is read by its Content-Length or chunks) and
prints ``{"requests", "errors", "rps", "p50_ms", "p90_ms", "p99_ms", "cpu_s"}``, its
own CPU time included, so a report can say what the client itself cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time


async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("connection") != "close"


async def _worker(
    host: str, port: int, request: bytes, stop: float, latencies: list[float], errors: list[int]
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.monotonic() < stop:
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
        assert reader is not None
        started = time.perf_counter()
        try:
            writer.write(request)
            status, keep = await _response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors.append(0)
            writer.close()
            writer = None
            continue
        if status >= 400:
            errors.append(status)
        else:
            latencies.append((time.perf_counter() - started) * 1000)
        if not keep:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


def build_request(method: str, path: str, headers: list[str], body: str) -> bytes:
    data = body.encode()
    lines = [f"{method} {path} HTTP/1.1", *headers]
    if data or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


async def run(
    host: str, port: int, requests: list[bytes], connections: int, duration: float
) -> dict[str, float]:
    """Connection i sends ``requests[i % len(requests)]`` over and over."""
    latencies: list[float] = []
    errors: list[int] = []
    begun = time.monotonic()
    stop = begun + duration
    await asyncio.gather(
        *(
            _worker(host, port, requests[i % len(requests)], stop, latencies, errors)
            for i in range(connections)
        )
    )
    elapsed = time.monotonic() - begun
    latencies.sort()

    def pick(fraction: float) -> float:
        if not latencies:
            return 0.0
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * fraction))], 3)

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": pick(0.5),
        "p90_ms": pick(0.9),
        "p99_ms": pick(0.99),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--path", action="append", required=True, help="one or more")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[], help="K:V, on every request")
    parser.add_argument(
        "--host-header", action="append", default=[], help="one per --path (preview hosts)"
    )
    parser.add_argument("--body", default="")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    hosts = args.host_header or [f"{args.host}:{args.port}"] * len(args.path)
    requests = [
        build_request(args.method, path, [f"Host: {host}", *args.header], args.body)
        for path, host in zip(args.path, hosts, strict=True)
    ]
    result = asyncio.run(run(args.host, args.port, requests, args.connections, args.duration))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
