"""``python -m tests.bench.compare OTHER_TREE``: this tree against another checkout.

A change's cost is measured against the code before it, at the same moment on the
same machine: a server from each tree (each with its own sandbox image) runs side by
side, and the requests alternate between them (A B, B A, ...), so both see the same
load. Prints the medians of exec (through the shell and as argv), of a small preview
request and a large preview download, and of the wake from each sleep tier, with the
ratio new/old. Make the other tree with
``git worktree add /tmp/before COMMIT``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from tests.bench.preview import APP_PORT, _start_app

ROOT = Path(__file__).resolve().parents[2]

# Run in the tree whose server it starts: that tree's own test-server code and image.
_SERVE = """
import os, sys, subprocess
sys.path.insert(0, os.getcwd())
from tests.server import MANAGE, _remove_prefixed, make_server
subprocess.run([*MANAGE, "build_sandbox_image"], check=True, capture_output=True)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
from sandboxes.images import image_tag
os.environ["SANDBOX_IMAGE"] = image_tag()
server = make_server(sys.argv[1])
server.start()
try:
    print(server.url, server.token("bench"), flush=True)
    sys.stdin.read()
finally:
    server.stop()
    _remove_prefixed(server.prefix)
"""


@contextmanager
def served(tree: Path, prefix: str) -> Iterator[httpx.Client]:
    """An API client of a server run from ``tree``, stopped on leaving."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVE, prefix],
        cwd=tree,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url, token = process.stdout.readline().split()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=60) as client:
            yield client
    finally:
        if process.stdin:
            process.stdin.close()
        process.wait(60)


def alternate(calls: list[Callable[[], float]], rounds: int) -> list[list[float]]:
    """Each call's timings, the order flipped every round."""
    times: list[list[float]] = [[] for _ in calls]
    for i in range(rounds):
        order = range(len(calls)) if i % 2 == 0 else reversed(range(len(calls)))
        for j in order:
            times[j].append(calls[j]())
    return times


def preview_client(api: httpx.Client, box: str) -> httpx.Client:
    """A client of the app in ``box`` through its preview host (the app started)."""
    _start_app(api, box)
    url = api.post(f"/sandboxes/{box}/ports", json={"port": APP_PORT}).json()["url"]
    host = url.split("://", 1)[1].split("/", 1)[0]
    return httpx.Client(
        base_url=str(api.base_url).removesuffix("/api/v1/"), headers={"Host": host}, timeout=300
    )


def main(other: Path, rounds: int = 300, wakes: int = 20, big_mb: int = 200) -> None:
    with ExitStack() as stack:
        clients = [
            stack.enter_context(served(other, "sbxcmp-old")),
            stack.enter_context(served(ROOT, "sbxcmp-new")),
        ]
        boxes = [
            c.post("/sandboxes", json={"name": "cmp", "keep_alive": True}).json()["id"]
            for c in clients
        ]

        def exec_call(client: httpx.Client, box: str, command: object) -> Callable[[], float]:
            def call() -> float:
                started = time.perf_counter()
                client.post(f"/sandboxes/{box}/exec", json={"command": command}).raise_for_status()
                return (time.perf_counter() - started) * 1000

            return call

        previews = {
            box: stack.enter_context(preview_client(c, box))
            for c, box in zip(clients, boxes, strict=True)
        }

        def preview_call(box: str, path: str) -> Callable[[], float]:
            def call() -> float:
                started = time.perf_counter()
                previews[box].get(path).raise_for_status()
                return (time.perf_counter() - started) * 1000

            return call

        def download_call(box: str, size: int) -> Callable[[], float]:
            """Read by curl: a Python client would be slower than the proxy."""
            preview = previews[box]
            url = f"{str(preview.base_url).rstrip('/')}/download?size={size}"
            command = ["curl", "-sf", "-o", "/dev/null", "-H", f"Host: {preview.headers['Host']}"]

            def call() -> float:
                started = time.perf_counter()
                subprocess.run([*command, url], check=True)
                return (time.perf_counter() - started) * 1000

            return call

        def wake_call(client: httpx.Client, box: str, tier: str) -> Callable[[], float]:
            def call() -> float:
                client.post(f"/sandboxes/{box}/sleep", json={"tier": tier}).raise_for_status()
                time.sleep(0.3)
                return exec_call(client, box, ["true"])()

            return call

        cases: dict[str, tuple[Callable[[httpx.Client, str], Callable[[], float]], int]] = {
            "exec through the shell": (lambda c, b: exec_call(c, b, "true"), rounds),
            "exec as argv": (lambda c, b: exec_call(c, b, ["true"]), rounds),
            "preview small request": (lambda c, b: preview_call(b, "/status/200"), rounds),
            f"preview {big_mb} MB download": (
                lambda c, b: download_call(b, big_mb * 2**20),
                max(3, rounds // 30),
            ),
            "wake from pause": (lambda c, b: wake_call(c, b, "pause"), wakes),
            "wake from stop": (lambda c, b: wake_call(c, b, "stop"), wakes),
        }
        print(f"{'':24} {'old':>9} {'new':>9}  new/old")
        for name, (make, n) in cases.items():
            calls = [make(c, b) for c, b in zip(clients, boxes, strict=True)]
            alternate(calls, 5)  # warm up
            old, new = (statistics.median(t) for t in alternate(calls, n))
            print(f"{name:24} {old:7.2f}ms {new:7.2f}ms  {new / old:.3f}  (n={n})")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m tests.bench.compare OTHER_TREE [EXECS [WAKES]]")
    numbers = [int(n) for n in sys.argv[2:4]]
    main(Path(sys.argv[1]).resolve(), *numbers)
