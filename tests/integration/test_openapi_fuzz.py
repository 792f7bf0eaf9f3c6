"""Fuzz every operation of /api/v1/openapi.json against the live server (schemathesis).

For each operation: valid and invalid requests (bounded examples), half of them on a
real sandbox of the fuzzer's own user so that requests reach the agent, half on
random ids. Every response must be no 5xx, carry a documented status and content
type, and match its schema (errors: ErrorOut).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server import LiveServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES = 16
# Operations that would destroy or stall the fuzzer's sandbox only get random ids;
# making sandboxes starts containers, so it gets few examples.
NO_REAL_SANDBOX = {
    ("DELETE", "/api/v1/sandboxes/{sandbox_id}"),
    ("POST", "/api/v1/sandboxes/{sandbox_id}/sleep"),
    ("PATCH", "/api/v1/sandboxes/{sandbox_id}"),
}
FEWER_EXAMPLES = {
    ("POST", "/api/v1/sandboxes"): 4,
    ("POST", "/api/v1/sandboxes/{sandbox_id}/code/contexts"): 4,
}
# Streams that never end by themselves: read with a short timeout.
ENDLESS = {"/api/v1/sandboxes/{sandbox_id}/files/watch"}


def test_openapi_document_is_complete(server: LiveServer) -> None:
    document = httpx.get(server.url + "/api/v1/openapi.json", timeout=30).json()
    assert document["openapi"].startswith("3.1")
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearerAuth"]["description"],
    }
    assert {"bearerAuth": []} in document["security"]
    error_ref = {"$ref": "#/components/schemas/ErrorOut"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in ("400", "401", "503"):
                assert responses[status]["content"]["application/json"]["schema"] == error_ref, (
                    method,
                    path,
                    status,
                )
            if "{sandbox_id}" in path:
                assert "404" in responses and "502" in responses
    exec_ok = document["paths"]["/api/v1/sandboxes/{sandbox_id}/exec"]["post"]["responses"]["200"]
    assert set(exec_ok["content"]) == {"application/json", "text/event-stream"}
    docs = httpx.get(server.url + "/api/v1/docs", timeout=30)
    assert docs.status_code == 200 and "openapi.json" in docs.text


def test_fuzz_every_operation(server: LiveServer) -> None:
    token = server.token("fuzzer")
    with server.client("fuzzer") as client:
        made = client.post("/sandboxes", json={"name": "fuzz", "keep_alive": True})
        assert made.status_code in (200, 201), made.text
        sandbox_id = made.json()["id"]
    schema = schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    counts: dict[str, int] = {}
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        label = f"{key[0]} {key[1]}"
        strategies = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(generation_mode=mode))
            if "{sandbox_id}" in operation.path and key not in NO_REAL_SANDBOX:
                strategies.append(
                    operation.as_strategy(
                        generation_mode=mode, path_parameters={"sandbox_id": sandbox_id}
                    )
                )
        timeout = 3 if operation.path in ENDLESS else 60

        fuzz = _fuzzer(
            st.one_of(strategies),
            FEWER_EXAMPLES.get(key, EXAMPLES),
            lambda case, label=label, timeout=timeout: (
                _count(counts, label)
                and case.call(base_url=server.url, headers=headers, timeout=timeout)
            ),
            headers,
        )
        counts[label] = 0
        try:
            fuzz()
        except BaseException as exc:  # noqa: BLE001 - hypothesis raises exception groups
            failures.append(f"{label}: {_summary(exc)}")
    elapsed = time.monotonic() - started
    total = sum(counts.values())
    print(f"fuzzed {len(counts)} operations with {total} requests in {elapsed:.0f} s")
    assert len(counts) >= 10
    assert not failures, "\n\n".join(failures)


def test_real_requests_match_the_document(server: LiveServer) -> None:
    """Requests that succeed (which random ones rarely do) answer what is documented:
    files of any type, ranges, archives, event streams, 201/204."""
    token = server.token("fuzzer")
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json")
    base = "/api/v1/sandboxes/{sandbox_id}"
    with server.client("fuzzer") as client:
        sid = client.post("/sandboxes", json={"name": "conform", "keep_alive": True}).json()["id"]
    seen: list[tuple[str, str, int, str]] = []

    def check(method: str, path: str, *, status: int, **parts: Any) -> Any:
        parts.setdefault("path_parameters", {})["sandbox_id"] = sid
        extra = parts.pop("headers", {})
        case = schema[path][method].Case(headers=extra, **parts)
        response = case.call(base_url=server.url, headers=headers, timeout=120)
        case.validate_response(response, checks=CHECKS[:4], headers={**headers, **extra})
        kind = (response.headers.get("content-type") or [""])[0]
        seen.append((method, path, response.status_code, kind))
        assert response.status_code == status, (method, path, response.text[:300])
        return response

    content = f"{base}/files/content"
    check(
        "PUT",
        content,
        status=201,
        query={"path": "c/a.txt"},
        body=b"hello\n",
        media_type="application/octet-stream",
    )
    check(
        "PUT",
        content,
        status=200,
        query={"path": "c/a.txt"},
        body=b"hello\n",
        media_type="application/octet-stream",
    )
    check("GET", content, status=200, query={"path": "c/a.txt"})
    assert seen[-1][3].startswith("text/plain")
    check("GET", content, status=206, query={"path": "c/a.txt"}, headers={"Range": "bytes=0-1"})
    check("GET", f"{base}/files", status=200, query={"path": "c"})
    check("GET", f"{base}/files/archive", status=200, query={"path": "c"})
    check("POST", f"{base}/files/mkdir", status=201, body={"path": "c/d"})
    check("POST", f"{base}/files/move", status=200, body={"source": "c/d", "destination": "c/e"})
    check("DELETE", f"{base}/files", status=204, query={"path": "c/e"})
    check("POST", f"{base}/exec", status=200, body={"command": "echo hi"})
    stream = check(
        "POST",
        f"{base}/exec",
        status=200,
        body={"command": "echo hi; echo no >&2; exit 2"},
        headers={"Accept": "text/event-stream"},
    )
    assert stream.text.count("event: ") == 3
    proc = check("POST", f"{base}/processes", status=201, body={"command": "echo p"}).json()
    pid = {"sandbox_id": sid, "pid": proc["pid"]}
    check(
        "GET",
        f"{base}/processes/{{pid}}/logs",
        status=200,
        path_parameters=pid,
        query={"follow": True},
    )
    check("GET", f"{base}/processes/{{pid}}", status=200, path_parameters=pid)
    check("POST", f"{base}/code/run", status=200, body={"code": "print(1)\n2"})
    check(
        "POST",
        f"{base}/code/run",
        status=200,
        body={"code": "1/0"},
        headers={"Accept": "text/event-stream"},
    )
    check("POST", f"{base}/ports", status=201, body={"port": 8000})
    check("GET", f"{base}/ports", status=200)
    check(
        "DELETE",
        f"{base}/ports/{{port}}",
        status=204,
        path_parameters={"sandbox_id": sid, "port": 8000},
    )
    check("GET", "/api/v1/sandboxes/{sandbox_id}", status=200)
    assert len(seen) == 20


def _fuzzer(strategy: Any, examples: int, call: Any, headers: dict[str, str]) -> Any:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case: Any) -> None:
        try:
            response = call(case)
        except Exception as exc:  # a read timeout ends an endless stream: fine
            if "timed out" in str(exc).lower() and case.operation.path in ENDLESS:
                return
            raise
        case.validate_response(response, checks=CHECKS, headers=headers)

    return fuzz


def _summary(exc: BaseException) -> str:
    """The failed checks, the status seen and the curl line that reproduces it."""
    text = str(exc)
    keep = [
        line.strip() for line in text.splitlines() if line.strip().startswith(("- ", "[", "curl "))
    ]
    return "\n    ".join(keep) if keep else f"{type(exc).__name__}: {text[:1500]}"


def _count(counts: dict[str, int], label: str) -> bool:
    counts[label] += 1
    return True
