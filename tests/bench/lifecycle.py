"""Lifecycle benchmarks: wake time per sleep tier beside a warm exec, idle
memory per sandbox, and exec latency as running sandboxes pile up."""

from __future__ import annotations

import json
import secrets
import statistics
import subprocess
import time
from typing import Any

from tests.server import LiveServer


def _ms(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def _mem_mib(containers: list[str]) -> list[float]:
    """Memory the engine charges each container (cgroup usage minus page cache)."""
    out = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *containers],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sizes = []
    for line in out.splitlines():
        used = json.loads(line)["MemUsage"].split("/")[0].strip()
        unit = used.lstrip("0123456789.")
        number = float(used[: len(used) - len(unit)])
        factor = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 2**20}.get(unit, 1.0)
        sizes.append(number * factor)
    return sizes


def bench_wake(server: LiveServer, stop_runs: int = 7) -> dict[str, Any]:
    """Wake time from each tier (the exec that wakes it), beside a warm exec and,
    for the stop tier, a bare ``docker start`` of the same stopped container."""
    results: dict[str, Any] = {}
    with server.client("lifecycle-bench") as api:
        sid = api.post("/sandboxes", json={"name": "wake", "keep_alive": True}).json()["id"]
        url = f"/sandboxes/{sid}/exec"
        container = f"{server.prefix}-{sid}"

        def exec_true() -> None:
            api.post(url, json={"command": ["true"]}).raise_for_status()

        def docker(*args: str) -> None:
            subprocess.run(["docker", *args], check=True, capture_output=True)

        for _ in range(5):
            exec_true()
        results["warm_exec_p50_ms"] = statistics.median(_ms(exec_true) for _ in range(30))
        for tier, runs in (("pause", 15), ("stop", stop_runs)):
            times, baseline = [], []
            for _ in range(runs):
                api.post(f"/sandboxes/{sid}/sleep", json={"tier": tier}).raise_for_status()
                times.append(_ms(exec_true))  # the call that wakes it
                if tier == "stop":  # interleaved, so both see the same machine load
                    api.post(f"/sandboxes/{sid}/sleep", json={"tier": tier}).raise_for_status()
                    baseline.append(_ms(lambda: docker("start", container)))
                    exec_true()
            results[f"wake_from_{tier}_p50_ms"] = statistics.median(times)
        results["docker_start_p50_ms"] = statistics.median(baseline)
        api.delete(f"/sandboxes/{sid}")
    return results


def bench_lifecycle(server: LiveServer, max_sandboxes: int = 60) -> dict[str, Any]:
    results = bench_wake(server)
    with server.client("lifecycle-bench") as api:
        # Running sandboxes, idle: memory each, and exec latency as they accumulate.
        ids: list[str] = []
        ramp = []
        step = max(1, max_sandboxes // 4)
        while len(ids) < max_sandboxes:
            for _ in range(step):
                name = "idle-" + secrets.token_hex(3)
                ids.append(api.post("/sandboxes", json={"name": name}).json()["id"])
            probe = f"/sandboxes/{ids[0]}/exec"
            for _ in range(3):
                api.post(probe, json={"command": ["true"]})
            p50 = statistics.median(
                _ms(lambda probe=probe: api.post(probe, json={"command": ["true"]}))
                for _ in range(20)
            )
            ramp.append({"running": len(ids), "exec_p50_ms": round(p50, 2)})
        time.sleep(2)
        memory = _mem_mib([f"{server.prefix}-{i}" for i in ids])
        results["idle_memory_per_sandbox_mib_p50"] = statistics.median(memory)
        results["running_sandboxes_ramp"] = ramp
        with open("/proc/meminfo") as meminfo:
            available = next(int(line.split()[1]) for line in meminfo if "MemAvailable" in line)
        results["host_mem_available_mib_with_all_running"] = available / 1024
        for sandbox_id in ids:
            api.delete(f"/sandboxes/{sandbox_id}")
    return results
