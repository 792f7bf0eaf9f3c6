"""Hot paths at a glance: six rows, each beside its baseline from the same run.

Nothing is measured twice: the rows are read from the foundation, preview, terminal
and lifecycle sections when they ran; a section that did not run is measured here
(for the lifecycle, only its wake part). Each row carries our number, the baseline's,
their ratio (ours / baseline), the target and whether it was met.

Both sides of the large-body row are read by curl (the direct one runs in the
sandbox): the Python client's own rate is kept beside it, not compared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.bench.foundation import bench_foundation
from tests.bench.lifecycle import bench_wake
from tests.bench.preview import bench_preview
from tests.bench.terminal import bench_terminal
from tests.server import LiveServer

Row = dict[str, Any]


def _row(
    path: str, ours: float, baseline: float, unit: str, target: str, met: bool, **extra: Any
) -> Row:
    return {
        "path": path,
        "ours": round(ours, 3),
        "baseline": round(baseline, 3),
        "unit": unit,
        "ratio": round(ours / baseline, 3) if baseline else None,
        "target": target,
        "met": met,
        **extra,
    }


def summarize(
    foundation: dict[str, Any],
    preview: dict[str, Any],
    terminal: dict[str, Any],
    wake: dict[str, Any],
) -> list[Row]:
    """The six rows, from the sections' own numbers."""
    single = foundation["api_exec_true_shell_ms"]
    docker_exec = foundation["docker_exec_true_ms"]
    many = foundation["api_exec_20_concurrent_p50_ms"]
    small = preview["small_response"]
    big = preview["large_body_mb_s"]
    echo_p50, echo_p99 = terminal["ws_echo_p50_ms"], terminal["ws_echo_p99_ms"]
    stop, start = wake["wake_from_stop_p50_ms"], wake["docker_start_p50_ms"]
    rps_share = small["proxy"]["rps"] / small["direct"]["rps"]
    return [
        _row(
            'exec("true") over HTTP (p50)',
            single,
            docker_exec,
            "ms",
            "<= 0.05x docker exec (20x faster)",
            single * 20 <= docker_exec,
        ),
        _row(
            "20 execs at once, p50 each",
            many,
            foundation["docker_exec_20_concurrent_p50_ms"],
            "ms",
            "<= 4x a single exec",
            many <= 4 * single,
            vs_single_exec=round(many / single, 3),
        ),
        _row(
            "preview, small responses (req/s)",
            small["proxy"]["rps"],
            small["direct"]["rps"],
            "req/s",
            ">= 0.5x direct req/s and <= +1.5 ms p50",
            rps_share >= 0.5 and small["added_p50_ms"] <= 1.5,
            added_p50_ms=small["added_p50_ms"],
            server_floor_rps=small["server_floor"]["rps"],
        ),
        _row(
            f"preview, {big['size_mb']} MB body (download)",
            big["proxy_download_curl"],
            big["direct_download"],
            "MB/s",
            ">= 0.5x direct",
            big["proxy_download_curl"] >= 0.5 * big["direct_download"],
            python_client_mb_s=big["proxy_download"],
            upload_mb_s=big["proxy_upload"],
        ),
        _row(
            "terminal keystroke echo (p50)",
            echo_p50,
            terminal["docker_exec_it_echo_p50_ms"],
            "ms",
            "<= 1.0 ms p50 and <= 5 ms p99",
            echo_p50 <= 1.0 and echo_p99 <= 5.0,
            p99_ms=round(echo_p99, 3),
        ),
        _row(
            "wake from the stop tier (p50)",
            stop,
            start,
            "ms",
            "<= 1.1x docker start",
            stop <= 1.1 * start,
        ),
    ]


def bench_hot_paths(server: LiveServer, image: str, done: dict[str, Any]) -> dict[str, Any]:
    """The rows, measuring only what the sections in ``done`` did not."""
    token = server.token("bench")
    pid = server.process.pid if server.process else None
    measure: dict[str, Callable[[], dict[str, Any]]] = {
        "foundation": lambda: bench_foundation(server, image),
        "preview": lambda: bench_preview(server.url, token),
        "terminal": lambda: bench_terminal(server.url, token, server_pid=pid),
        "lifecycle": lambda: bench_wake(server),
    }
    got = {name: done[name] if name in done else run() for name, run in measure.items()}
    rows = summarize(got["foundation"], got["preview"], got["terminal"], got["lifecycle"])
    return {"rows": rows, "met": sum(row["met"] for row in rows), "of": len(rows)}


def table(summary: dict[str, Any]) -> str:
    """The rows as a fixed-width table (ratio is ours / baseline)."""
    lines = [
        f"{'path':36} {'ours':>10} {'baseline':>10} {'unit':6} {'ratio':>7}  {'target':42} result"
    ]
    for row in summary["rows"]:
        notes = [
            f"{key}={value}"
            for key, value in row.items()
            if key not in {"path", "ours", "baseline", "unit", "ratio", "target", "met"}
        ]
        lines.append(
            f"{row['path']:36} {row['ours']:10.2f} {row['baseline']:10.2f} {row['unit']:6} "
            f"{row['ratio']:7.3f}  {row['target']:42} {'met' if row['met'] else 'missed'}"
            + (f"  ({', '.join(notes)})" if notes else "")
        )
    lines.append(f"{summary['met']} of {summary['of']} targets met")
    return "\n".join(lines)
