"""Code interpreter benchmark: the `1+1` round trip in a warm context (p50/p90
over ~50 runs, Python and JavaScript), the first-run latency of a new context (create
+ first run: cold, and for Python also once the agent's spare kernel is ready), beside
a plain ``exec(["python3", "-c", "print(1+1)"])`` in the same run.

``bench_code(base_url, token, sandbox_id)`` returns the numbers (``base_url`` is the
server's root URL, or its ``/api/v1``); ``python -m tests.bench code`` runs it against
a test server of its own and prints them. Target: warm ``run_code`` p50 <= 20 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

SPARE_WAIT = 10.0


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": at(0.5), "p90_ms": at(0.9), "min_ms": round(ordered[0], 2)}


def _timed(fn: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    response = fn()
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def bench_code(base_url: str, token: str, sandbox_id: str, runs: int = 50) -> dict[str, Any]:
    api_url = base_url.rstrip("/")
    if not api_url.endswith("/api/v1"):
        api_url += "/api/v1"
    results: dict[str, Any] = {"runs": runs}
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as api:
        base = f"/sandboxes/{sandbox_id}"
        contexts = []
        for language in ("python", "javascript"):
            # first run of a new context: create it, then run at once
            started = time.perf_counter()
            created = api.post(f"{base}/code/contexts", json={"language": language})
            created.raise_for_status()
            context = created.json()["id"]
            contexts.append(context)
            first = api.post(f"{base}/code/run", json={"code": "1+1", "context": context})
            first.raise_for_status()
            assert first.json()["results"][0]["text/plain"] == "2", first.text  # noqa: S101
            results[f"{language}_first_run_ms"] = round((time.perf_counter() - started) * 1000, 1)

            def warm(context: str = context) -> httpx.Response:
                return api.post(f"{base}/code/run", json={"code": "1+1", "context": context})

            for _ in range(5):
                warm()
            results[f"{language}_warm"] = _percentiles([_timed(warm) for _ in range(runs)])

        def plain_exec() -> httpx.Response:
            return api.post(f"{base}/exec", json={"command": ["python3", "-c", "print(1+1)"]})

        plain_exec()
        results["exec_python3_print"] = _percentiles([_timed(plain_exec) for _ in range(runs)])

        # Once Python was used the agent keeps a spare kernel: a new Python context
        # made a little later (here: after SPARE_WAIT s) takes it over.
        time.sleep(SPARE_WAIT)
        started = time.perf_counter()
        created = api.post(f"{base}/code/contexts", json={"language": "python"})
        created.raise_for_status()
        contexts.append(created.json()["id"])
        first = api.post(f"{base}/code/run", json={"code": "1+1", "context": contexts[-1]})
        first.raise_for_status()
        results["python_first_run_with_spare_ms"] = round((time.perf_counter() - started) * 1000, 1)
        for context in contexts:
            api.delete(f"{base}/code/contexts/{context}")
    results["target_warm_python_p50_ms"] = 20
    results["meets_target"] = results["python_warm"]["p50_ms"] <= 20
    return results
