"""Egress allow-list benchmarks: a request and a download through the filtering
proxy beside the same ones made directly, from the same sandbox to the same far end
(a network namespace on this machine, ``tests/netns.py``), and wake from stop with
an allow-list (its firewall rules installed for the new address) beside "all"."""

from __future__ import annotations

import statistics
import time
from typing import Any

import httpx

from tests.netns import far_end
from tests.server import LiveServer

# Sequential GETs, a new connection each (the proxy closes after each request);
# prints the median in milliseconds.
LATENCY = r"""
import statistics, sys, time, urllib.request
url, proxy = sys.argv[1], sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy} if proxy else {}))
times = []
for _ in range(int(sys.argv[3])):
    started = time.perf_counter()
    opener.open(url).read()
    times.append(time.perf_counter() - started)
print(statistics.median(times) * 1000)
"""


def _exec(api: httpx.Client, sid: str, command: str) -> str:
    response = api.post(f"/sandboxes/{sid}/exec", json={"command": command, "timeout": 300})
    response.raise_for_status()
    out = response.json()
    assert out["exit_code"] == 0, out
    return str(out["stdout"])


def bench_egress(server: LiveServer, requests: int = 200, megabytes: int = 200) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with far_end() as ends, server.client("egress-bench") as api:
        box = api.post(
            "/sandboxes",
            json={
                "name": "egress",
                "keep_alive": True,
                "egress": {"allow": [f"{ends.first_ip}/32"]},
            },
        )
        box.raise_for_status()
        sid = box.json()["id"]
        proxy = _exec(api, sid, "echo $HTTP_PROXY").strip()
        base = f"http://{ends.first_ip}:{ends.port}"
        for label, via in (("proxy", proxy), ("direct", "")):
            out = _exec(api, sid, f"python3 -c '{LATENCY}' {base}/ '{via}' {requests}")
            results[f"request_p50_ms_{label}"] = float(out)
        size = megabytes * 1024 * 1024
        for label, via in (("proxy", proxy), ("direct", "")):
            flag = f"-x '{via}'" if via else "--noproxy '*'"
            speeds = [
                float(
                    _exec(
                        api,
                        sid,
                        f"curl -s {flag} -o /dev/null -w '%{{speed_download}}' {base}/bytes/{size}",
                    )
                )
                / 1e6
                for _ in range(3)
            ]
            results[f"download_MB_s_{label}"] = statistics.median(speeds)

        def wake_ms(egress: object, runs: int = 5) -> float:
            api.patch(f"/sandboxes/{sid}", json={"egress": egress}).raise_for_status()
            times = []
            for _ in range(runs):
                api.post(f"/sandboxes/{sid}/sleep", json={"tier": "stop"}).raise_for_status()
                started = time.perf_counter()
                _exec(api, sid, "true")
                times.append((time.perf_counter() - started) * 1000)
            return statistics.median(times)

        results["wake_from_stop_ms_allow_list"] = wake_ms({"allow": [f"{ends.first_ip}/32"]})
        results["wake_from_stop_ms_all"] = wake_ms("all")
        started = time.perf_counter()
        for _ in range(10):
            api.patch(f"/sandboxes/{sid}", json={"egress": {"allow": ["example.org"]}})
        results["patch_egress_running_ms"] = (time.perf_counter() - started) * 100
        api.delete(f"/sandboxes/{sid}")
    return results
