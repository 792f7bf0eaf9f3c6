"""Start-of-class surge: 30 students follow an invite link at once.

Each student's time runs from the join request (what the invite page's button
sends) to the first shell prompt on a terminal WebSocket in their new sandbox, as
the IDE would open it. Measured twice in one run on one server: with the
template's warm pool filled to the class size, and with no pool (every sandbox
built on demand) as the baseline.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx
import websockets

from tests.server import LiveServer

STARTER = {
    "main.py": b'print("hello, class")\n',
    "README.md": b"# Lesson 1\n",
}


def _tokens(server: LiveServer, users: list[str]) -> dict[str, str]:
    """API tokens for many users in one manage.py call (one per user is slow)."""
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from sandboxes.models import ApiToken\n"
        f"for name in {users!r}:\n"
        "    user, _ = get_user_model().objects.get_or_create(username=name)\n"
        "    print(name, ApiToken.issue(user, 'bench')[1])\n"
    )
    lines = server.manage("shell", "-c", code).strip().splitlines()
    return dict(line.split(" ", 1) for line in lines if " sbx_" in line)


def _pool_ready(server: LiveServer, template_id: str) -> int:
    code = (
        "from sandboxes.models import PoolEntry\n"
        f"print(PoolEntry.objects.filter(template_id={template_id!r}).count())\n"
    )
    return int(server.manage("shell", "-c", code).strip().splitlines()[-1])


def _course(api: httpx.Client, name: str, warm_pool: int) -> tuple[str, str]:
    """A template with a starter, a course on it and an invite; (template id, token)."""
    template = api.post(
        "/templates", json={"name": name, "open_files": ["main.py"], "warm_pool": warm_pool}
    )
    template.raise_for_status()
    template_id = template.json()["id"]
    api.put(
        f"/templates/{template_id}/files",
        files=[(path, (path, content)) for path, content in STARTER.items()],
    ).raise_for_status()
    course = api.post("/courses", json={"name": name, "template": template_id})
    course.raise_for_status()
    invite = api.post(f"/courses/{course.json()['id']}/invites", json={})
    invite.raise_for_status()
    return template_id, invite.json()["token"]


async def _surge(server: LiveServer, invite: str, tokens: dict[str, str]) -> dict[str, Any]:
    ws_base = server.url.replace("http://", "ws://", 1)

    async def student(token: str) -> tuple[float, float, bool]:
        started = time.perf_counter()
        async with httpx.AsyncClient(
            base_url=server.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
        ) as client:
            joined = await client.post(f"/invites/{invite}/join")
            joined.raise_for_status()
            body = joined.json()
        join_ms = (time.perf_counter() - started) * 1000
        url = f"{ws_base}/ws/sandboxes/{body['sandbox']}/terminals/main?token={token}"
        async with websockets.connect(url, open_timeout=300, max_size=None) as ws:
            seen = b""
            while b"$ " not in seen:
                message = await asyncio.wait_for(ws.recv(), 120)
                if isinstance(message, bytes):
                    seen += message
        return (time.perf_counter() - started) * 1000, join_ms, bool(body["from_pool"])

    results = await asyncio.gather(*(student(t) for t in tokens.values()))
    times = sorted(ms for ms, _, _ in results)
    joins = sorted(ms for _, ms, _ in results)
    return {
        "students": len(times),
        "from_pool": sum(1 for _, _, pooled in results if pooled),
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(_p95(times), 1),
        "max_ms": round(times[-1], 1),
        "join_request_p50_ms": round(statistics.median(joins), 1),
        "join_request_p95_ms": round(_p95(joins), 1),
    }


def _p95(values: list[float]) -> float:
    return values[max(0, int(round(0.95 * len(values))) - 1)]


def bench_classroom(server: LiveServer, students: int = 30) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # Without the pool first, so no pool is being built or refilled meanwhile.
    with server.client("bench-teacher") as teacher:
        _, cold_invite = _course(teacher, "surge-cold", 0)
    cold = _tokens(server, [f"cold-{i}" for i in range(students)])
    results["without_pool"] = asyncio.run(_surge(server, cold_invite, cold))
    with server.client("bench-teacher") as teacher:
        pooled_template, pooled_invite = _course(teacher, "surge-pooled", students)
    deadline = time.monotonic() + 600
    started = time.monotonic()
    while _pool_ready(server, pooled_template) < students:
        if time.monotonic() > deadline:
            raise RuntimeError("the warm pool did not fill within 10 minutes")
        time.sleep(2)
    results["pool_fill_s"] = round(time.monotonic() - started, 1)
    time.sleep(5)  # let the machine settle after building the pool
    pooled = _tokens(server, [f"warm-{i}" for i in range(students)])
    results["with_pool"] = asyncio.run(_surge(server, pooled_invite, pooled))
    results["p95_ratio_without_vs_with"] = round(
        results["without_pool"]["p95_ms"] / results["with_pool"]["p95_ms"], 1
    )
    return results
