"""Scale-out benchmark (the ``scale`` section, ``make bench scale``): the product
behind nginx (the shipped deploy/nginx/ configuration) with one server process and
with two, in the same run, on the same PostgreSQL, Redis, processes and sandboxes.

Two nginx instances run side by side: one balances over both processes, the other
sends everything to the first. Each measurement alternates between them, so both see
the same machine at the same moment.

- Throughput: execs per second (``exec(["true"])``, 16 connections over 4 sandboxes)
  and preview requests per second (an 11-byte response, 16 connections over the same
  4 sandboxes' apps), medians of ``rounds`` runs each; the target is two processes at
  least 1.6x one. Beside each run, the CPU each part used (cores): the server
  processes, nginx, the load generator, and the rest of the machine (Docker, the
  sandboxes and their agents, PostgreSQL, Redis), which says where the ceiling is.
- The hot-path rows (tests/bench/hotpaths.py) through the load balancer with one
  process and with two, each with its baseline from the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.bench.foundation import bench_foundation
from tests.bench.hotpaths import summarize
from tests.bench.lifecycle import bench_wake
from tests.bench.preview import APP_PORT, _start_app, bench_preview
from tests.bench.profile import OUT, sampled
from tests.bench.terminal import bench_terminal
from tests.scale.cluster import PREVIEW_DOMAIN, Cluster, cluster
from tests.scale.nginx import nginx
from tests.scale.services import postgres, redis_server
from tests.server import ROOT, LiveServer

SETTINGS = {"LOG_LEVEL": "WARNING", "SANDBOX_MAX_PER_USER": "1000"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def _container_cpu_seconds(containers: list[str]) -> float:
    """CPU time of these containers so far, everything in them (the agent, the app,
    the commands run), from their cgroups (v1 or v2)."""
    total = 0.0
    for container in containers:
        v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{container}/cpuacct.usage")
        v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{container}.scope/cpu.stat")
        if v1.exists():
            total += int(v1.read_text()) / 1e9
        elif v2.exists():
            usage = v2.read_text().split("\n")[0].split()[1]  # usage_usec
            total += int(usage) / 1e6
    return total


def _container_ids(sandbox_ids: list[str]) -> list[str]:
    ids = []
    for sid in sandbox_ids:
        found = subprocess.run(
            ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=sandbox-ide.sandbox-id={sid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        ids += found
    return ids


def _listening_on(program: str, port: int) -> list[int]:
    """The process of ``program`` started with ``port`` in its command line, and its
    children (PostgreSQL's backends)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv]
        if words and words[0].endswith(program) and any(str(port) in word for word in words):
            return [int(entry.name), *_children(int(entry.name))]
    return []


def _machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (nor waiting on the disk) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


def _load(
    front: LiveServer,
    paths: list[str],
    *,
    method: str = "GET",
    hosts: list[str] | None = None,
    headers: list[str] | None = None,
    body: str = "",
    duration: float,
    servers: list[int],
    balancer: int,
    containers: list[str],
    stores: dict[str, int],
) -> dict[str, Any]:
    """One run of the load generator against ``front``, with the cores each part used."""
    command = [sys.executable, "-m", "tests.bench.loadgen", "127.0.0.1", str(front.port)]
    command += ["--method", method, "--body", body, "--connections", "16"]
    command += ["--duration", str(duration)]
    for path in paths:
        command += ["--path", path]
    for host in hosts or []:
        command += ["--host-header", host]
    for header in headers or []:
        command += ["--header", header]
    nginx_pids = [balancer, *_children(balancer)]
    store_pids = {name: _listening_on(name, port) for name, port in stores.items()}
    watched = servers + nginx_pids + [pid for pids in store_pids.values() for pid in pids]
    before = {pid: _cpu_seconds(pid) for pid in watched}
    sandboxes = _container_cpu_seconds(containers)
    busy, started = _machine_busy_seconds(), time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    elapsed = time.monotonic() - started
    result: dict[str, Any] = json.loads(out)
    used = {pid: _cpu_seconds(pid) - seconds for pid, seconds in before.items()}
    server_s = sum(used[pid] for pid in servers)
    nginx_s = sum(used[pid] for pid in nginx_pids)
    store_s = {name: sum(used[pid] for pid in pids) for name, pids in store_pids.items()}
    machine_s = _machine_busy_seconds() - busy
    sandbox_s = _container_cpu_seconds(containers) - sandboxes
    result["cores"] = {
        "servers": round(server_s / elapsed, 2),
        "per_server": [round(used[pid] / elapsed, 2) for pid in servers],
        "nginx": round(nginx_s / elapsed, 2),
        "load_generator": round(result["cpu_s"] / elapsed, 2),
        "sandboxes": round(sandbox_s / elapsed, 2),
        **{name: round(seconds / elapsed, 2) for name, seconds in store_s.items()},
        # the engine, the kernel's networking, and whatever else the machine was doing
        "rest": round(
            (machine_s - server_s - nginx_s - sandbox_s - sum(store_s.values()) - result["cpu_s"])
            / elapsed,
            2,
        ),
        "machine": round(machine_s / elapsed, 2),
    }
    return result


@contextmanager
def _one_process_front(two: Cluster) -> Iterator[tuple[LiveServer, int]]:
    """nginx with the same configuration, balancing over the first process alone."""
    first = two.processes[0]
    with nginx([two.address(first)], PREVIEW_DOMAIN) as single:
        front = LiveServer(
            url=single.url,
            port=single.port,
            env=first.env,
            var_dir=first.var_dir,
            prefix=first.prefix,
            tokens=first.tokens,
        )
        yield front, single.process.pid


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median rate, all runs' rates beside it."""
    ordered = sorted(runs, key=lambda run: float(run["rps"]))
    middle = dict(ordered[len(ordered) // 2])
    middle["all_rps"] = [run["rps"] for run in runs]
    return middle


def _throughput(
    fronts: dict[str, tuple[LiveServer, int, list[int]]],
    stores: dict[str, int],
    rounds: int,
    duration: float,
) -> dict[str, Any]:
    front = next(iter(fronts.values()))[0]
    token = front.token("bench-scale")
    with httpx.Client(
        base_url=front.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as api:
        ids = []
        for i in range(4):
            box = api.post("/sandboxes", json={"name": f"scale-{i}", "keep_alive": True})
            box.raise_for_status()
            ids.append(box.json()["id"])
        hosts = []
        for sid in ids:
            _start_app(api, sid)
            exposed = api.post(f"/sandboxes/{sid}/ports", json={"port": APP_PORT})
            exposed.raise_for_status()
            hosts.append(urlsplit(exposed.json()["url"]).netloc)
        exec_paths = [f"/api/v1/sandboxes/{sid}/exec" for sid in ids]
        containers = _container_ids(ids)
        auth = [f"Authorization: Bearer {token}", "Content-Type: application/json"]
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            name: {"execs": [], "preview": []} for name in fronts
        }

        def exec_load(name: str, seconds: float) -> dict[str, Any]:
            server, balancer, pids = fronts[name]
            return _load(
                server,
                exec_paths,
                method="POST",
                headers=auth,
                body='{"command": ["true"]}',
                duration=seconds,
                servers=pids,
                balancer=balancer,
                containers=containers,
                stores=stores,
            )

        def measure(name: str, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
            server, balancer, pids = fronts[name]
            preview = _load(
                server,
                ["/status/200"] * len(hosts),
                hosts=hosts,
                duration=seconds,
                servers=pids,
                balancer=balancer,
                containers=containers,
                stores=stores,
            )
            return exec_load(name, seconds), preview

        for name in fronts:  # warm up: connections, caches, the apps' first requests
            measure(name, 2.0)
        time.sleep(1.5)  # nginx's view of the processes, the caches: all settled
        for _ in range(rounds):
            for name in fronts:
                execs, preview = measure(name, duration)
                runs[name]["execs"].append(execs)
                runs[name]["preview"].append(preview)
        profiles = {
            name: _profiled_execs(name, len(fronts[name][2]), fronts[name][2][0], exec_load)
            for name in fronts
        }
        for sid in ids:
            api.delete(f"/sandboxes/{sid}")

    result: dict[str, Any] = {"rounds": rounds, "seconds_each": duration, "connections": 16}
    for kind, unit in (("execs", "execs_per_s"), ("preview", "preview_requests_per_s")):
        one = _median_run(runs["one_process"][kind])
        two = _median_run(runs["two_processes"][kind])
        ratio = round(two["rps"] / one["rps"], 3) if one["rps"] else None
        result[unit] = {
            "one_process": one,
            "two_processes": two,
            "two_vs_one": ratio,
            "target": ">= 1.6x one process",
            "met": bool(ratio and ratio >= 1.6),
            **_ceiling(two, one["rps"]),
        }
    result["execs_per_s"]["first_process_profile"] = profiles
    return result


def _profiled_execs(
    name: str, processes: int, pid: int, exec_load: Callable[[str, float], dict[str, Any]]
) -> dict[str, Any]:
    """One more exec run while py-spy samples the first process (tests/bench/profile.py):
    where its CPU goes, in ms per exec it served, by layer."""
    run: dict[str, Any] = {}

    def drive(stop: Any) -> None:
        run.update(exec_load(name, 8.0))

    OUT.mkdir(exist_ok=True)
    shares = sampled(pid, f"scale-exec-{name}", drive, 8.0)
    served_per_s = run["rps"] / processes  # round robin: an even share each
    server_ms = run["cores"]["per_server"][0] * 1000 / served_per_s
    return {
        "rps_under_py_spy": run["rps"],
        "first_process_cpu_ms_per_exec": round(server_ms, 3),
        "ms_per_exec_by_layer": {
            layer: round(server_ms * pct / 100, 3)
            for layer, pct in shares.items()
            if layer != "idle_samples_pct"
        },
        "idle_samples_pct": shares.get("idle_samples_pct"),
    }


def _ceiling(run: dict[str, Any], one_rps: float) -> dict[str, Any]:
    """What a request costs in CPU, part by part (ms, from a two-process run), and the
    rate the whole machine would give if nothing else ran on it: every core busy with
    the parts of this product's path alone. Its ratio to the one-process rate is the
    most two processes could reach here."""
    cores = run["cores"]
    ours = ["servers", "nginx", "load_generator", "sandboxes", "postgres", "redis-server"]
    per_request = {
        part: round(cores[part] * 1000 / run["rps"], 3) for part in ours if part in cores
    }
    total = sum(per_request.values())
    ceiling = (os.cpu_count() or 1) * 1000 / total if total else 0.0
    return {
        "cpu_ms_per_request": {**per_request, "total": round(total, 3)},
        "whole_machine_ceiling_per_s": round(ceiling, 1),
        "ceiling_vs_one_process": round(ceiling / one_rps, 3) if one_rps else None,
    }


def _hot_rows(front: LiveServer, image: str) -> list[dict[str, Any]]:
    token = front.token("bench")
    return summarize(
        bench_foundation(front, image),
        bench_preview(front.url, token),
        bench_terminal(front.url, token, samples=300),
        bench_wake(front),
    )


def _paired_rows(one: list[dict[str, Any]], two: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each hot path with one process and with two, each beside its own baseline."""
    paired = []
    for a, b in zip(one, two, strict=True):
        paired.append(
            {
                "path": a["path"],
                "unit": a["unit"],
                "one_process": a["ours"],
                "one_process_baseline": a["baseline"],
                "one_process_ratio": a["ratio"],
                "two_processes": b["ours"],
                "two_processes_baseline": b["baseline"],
                "two_processes_ratio": b["ratio"],
                "two_vs_one": round(b["ours"] / a["ours"], 3) if a["ours"] else None,
                "target": a["target"],
                "met_one_process": a["met"],
                "met_two_processes": b["met"],
            }
        )
    return paired


def bench_scale_out(image: str, rounds: int = 5, duration: float = 6.0) -> dict[str, Any]:
    with (
        postgres() as database_url,
        redis_server() as redis_url,
        cluster("sbxbench", database_url, redis_url, count=2, settings=SETTINGS) as two,
        _one_process_front(two) as (single, single_nginx),
    ):
        pids = [process.process.pid for process in two.processes if process.process]
        stores = {
            "postgres": int(urlsplit(database_url).port or 5432),
            "redis-server": int(urlsplit(redis_url).port or 6379),
        }
        fronts = {
            "one_process": (single, single_nginx, pids[:1]),
            "two_processes": (two.front, two.balancer.process.pid, pids),
        }
        results: dict[str, Any] = {
            "cpu_count": os.cpu_count(),
            "throughput": _throughput(fronts, stores, rounds, duration),
        }
        measured: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "one_process": lambda: _hot_rows(single, image),
            "two_processes": lambda: _hot_rows(two.front, image),
        }
        rows = {name: run() for name, run in measured.items()}
        results["hot_paths"] = _paired_rows(rows["one_process"], rows["two_processes"])
        return results


def table(results: dict[str, Any]) -> str:
    """Throughput and the paired hot-path rows as fixed-width text."""
    lines = [f"{'through nginx':36} {'1 process':>10} {'2 processes':>12} {'2 vs 1':>7}  target"]
    for unit, row in results["throughput"].items():
        if not isinstance(row, dict):
            continue
        for name, profile in row.get("first_process_profile", {}).items():
            lines.append(f"    py-spy, first process, {name}: {profile}")
        one, two = row["one_process"], row["two_processes"]
        lines.append(
            f"{unit:36} {one['rps']:10.1f} {two['rps']:12.1f} {row['two_vs_one']:7.3f}  "
            f"{row['target']} {'met' if row['met'] else 'missed'}"
        )
        for name, run in (("1 process", one), ("2 processes", two)):
            lines.append(f"    cores used, {name}: {run['cores']}")
        lines.append(f"    CPU ms per request: {row['cpu_ms_per_request']}")
        lines.append(
            f"    whole machine, nothing else on it: {row['whole_machine_ceiling_per_s']}/s, "
            f"{row['ceiling_vs_one_process']}x one process"
        )
    lines.append("")
    lines.append(
        f"{'hot path':36} {'1 process':>10} {'base':>9} {'2 processes':>12} {'base':>9} "
        f"{'unit':6} {'2 vs 1':>7}"
    )
    for row in results["hot_paths"]:
        lines.append(
            f"{row['path']:36} {row['one_process']:10.2f} {row['one_process_baseline']:9.2f} "
            f"{row['two_processes']:12.2f} {row['two_processes_baseline']:9.2f} "
            f"{row['unit']:6} {row['two_vs_one'] or 0:7.3f}"
        )
    return "\n".join(lines)
