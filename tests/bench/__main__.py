"""``python -m tests.bench [SECTION ...]``: every section by default, on one server;
``scale`` runs on its own processes behind nginx (tests/bench/scale_out.py)."""

from __future__ import annotations

import json
import os
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.bench.builds import bench_builds
from tests.bench.classroom import bench_classroom
from tests.bench.code import bench_code
from tests.bench.egress import bench_egress
from tests.bench.files import bench_files
from tests.bench.foundation import bench_foundation
from tests.bench.hotpaths import bench_hot_paths, table
from tests.bench.lifecycle import bench_lifecycle
from tests.bench.preview import bench_preview
from tests.bench.scale import bench_sandboxes, bench_terminals
from tests.bench.scale_out import bench_scale_out
from tests.bench.scale_out import table as scale_table
from tests.bench.snapshots import bench_snapshots
from tests.bench.terminal import bench_terminal
from tests.bench.transport import bench_transport
from tests.bench.tutorial import bench_tutorial
from tests.server import LiveServer, running_server

ROOT = Path(__file__).resolve().parents[2]

SECTIONS = (
    "foundation",
    "lifecycle",
    "terminal",
    "preview",
    "code",
    "files",
    "snapshots",
    "egress",
    "density",  # many sandboxes and WebSockets on one server process
    "scale",  # one and two server processes behind nginx
    "classroom",
    "tutorial",
    "builds",
    "transport",  # its own two servers, one per agent transport
    "hot_paths",  # last: it reads the sections above that ran, measures the rest
)


def run_section(
    name: str, server: LiveServer | None, image: str, done: dict[str, Any]
) -> dict[str, Any]:
    if name == "scale":
        return bench_scale_out(image)
    assert server is not None
    if name == "hot_paths":
        return bench_hot_paths(server, image, done)
    if name == "foundation":
        return bench_foundation(server, image)
    if name == "lifecycle":
        return bench_lifecycle(server)
    if name == "terminal":
        pid = server.process.pid if server.process else None
        return bench_terminal(server.url, server.token("bench"), server_pid=pid)
    if name == "preview":
        return bench_preview(server.url, server.token("bench"))
    if name == "code":
        with server.client("bench") as client:
            box = client.post("/sandboxes", json={"name": "code-bench", "keep_alive": True})
            box.raise_for_status()
            return bench_code(server.url, server.token("bench"), box.json()["id"])
    if name == "files":
        return bench_files(server, int(os.environ.get("BENCH_FILES_MB", "1024")))
    if name == "snapshots":
        return bench_snapshots(
            server,
            int(os.environ.get("BENCH_SNAPSHOT_MB", "256")),
            int(os.environ.get("BENCH_SNAPSHOT_PACKAGES_MB", "100")),
            int(os.environ.get("BENCH_SNAPSHOT_RUNS", "3")),
        )
    if name == "classroom":
        return bench_classroom(server)
    if name == "tutorial":
        return bench_tutorial(server)
    if name == "builds":
        return bench_builds(server, image)
    if name == "egress":
        return bench_egress(server)
    if name == "transport":
        return bench_transport(
            int(os.environ.get("BENCH_TRANSPORT_SANDBOXES", "10")),
            int(os.environ.get("BENCH_TRANSPORT_CONCURRENCY", "16")),
        )
    if name == "density":
        return {
            "terminals": bench_terminals(server, int(os.environ.get("BENCH_WEBSOCKETS", "200"))),
            "sandboxes": bench_sandboxes(server, int(os.environ.get("BENCH_SANDBOXES", "300"))),
        }
    raise ValueError(f"unknown section {name!r}")


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
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    import django

    django.setup()
    from sandboxes.images import image_tag

    image = image_tag()
    os.environ["SANDBOX_IMAGE"] = image
    sections = sys.argv[1:] or list(SECTIONS)
    unknown = [name for name in sections if name not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    settings = {
        "LOG_LEVEL": "WARNING",
        "SANDBOX_MAX_PER_USER": "1000",
        # the classroom surge pools a whole class for one teacher
        "WARM_POOL_MAX_PER_USER": "1000",
        "WARM_POOL_MAX_TOTAL": "1000",
    }
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        # the scale section starts processes of its own: no server for it alone
        server = None
        if set(sections) - {"scale"}:
            server = stack.enter_context(running_server("sbxbench", settings))
        for name in sections:
            print(f"running {name} ...", flush=True)
            results[name] = run_section(name, server, image, results)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    for name, numbers in results.items():
        print(f"\n{name}")
        if name == "hot_paths":
            print(table(numbers))
        elif name == "scale":
            print(scale_table(numbers))
        else:
            show(numbers)


if __name__ == "__main__":
    main()
