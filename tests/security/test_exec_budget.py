"""Buffered exec output is budgeted per account and across the server.

A buffered exec (the JSON answer) holds its output in the server's memory until
the command ends. Before the fix only each call was capped (16 MiB per stream), so
one account could hold 16 MiB x 2 streams x 32 execs x 20 sandboxes at once. Now
the calls of one account hold at most EXEC_BUFFER_PER_USER and all calls at most
EXEC_BUFFER_TOTAL; output beyond is dropped and the answer says ``truncated``
(the command still ran and its exit status is exact). Other accounts are
unaffected by one account's hoarding, up to what is left of the server's total.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.server import LiveServer, running_server

MiB = 1024 * 1024
PER_USER, TOTAL = 4 * MiB, 6 * MiB
HOGS = 8  # buffered execs of one account, each printing 1 MiB: 8 MiB offered


@pytest.fixture(scope="module")
def budget_server(sandbox_image: str) -> Iterator[LiveServer]:
    settings = {"EXEC_BUFFER_PER_USER": str(PER_USER), "EXEC_BUFFER_TOTAL": str(TOTAL)}
    with running_server("sbxbudget", settings) as server:
        yield server


def sandbox_of(api: httpx.Client) -> str:
    response = api.post("/sandboxes", json={"name": "budget", "keep_alive": True})
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def run(api: httpx.Client, sandbox: str, command: str) -> dict[str, Any]:
    response = api.post(f"/sandboxes/{sandbox}/exec", json={"command": command, "timeout": 300})
    assert response.status_code == 200, response.text
    return dict(response.json())


def prints(size: int, char: str = "x") -> str:
    return f"head -c {size} /dev/zero | tr '\\0' {char}"


def test_one_account_cannot_hold_more_than_its_budget(budget_server: LiveServer) -> None:
    with (
        budget_server.client("hog") as hog,
        budget_server.client("bob") as bob,
        budget_server.client("carol") as carol,
    ):
        box, bob_box, carol_box = sandbox_of(hog), sandbox_of(bob), sandbox_of(carol)
        # Each hog prints 1 MiB, says so, and holds on until /tmp/go exists: while they
        # wait, the server holds what it kept of their output.
        hold = f"{prints(MiB)}; touch /tmp/printed.$$; until [ -e /tmp/go ]; do sleep 0.05; done"
        with ThreadPoolExecutor(HOGS) as pool:
            hogs = [pool.submit(run, hog, box, hold) for _ in range(HOGS)]
            printed = (
                f"until [ $(ls /tmp/printed.* 2>/dev/null | wc -l) -ge {HOGS} ]; do sleep 0.1; done"
            )
            assert run(hog, box, printed)["exit_code"] == 0

            # The hog's budget is spent: its next buffered exec keeps nothing, but it
            # ran, and says so.
            more = run(hog, box, "echo more; exit 3")
            assert (more["stdout"], more["exit_code"], more.get("truncated")) == ("", 3, True)

            # Another account is unaffected ...
            other = run(bob, bob_box, prints(MiB // 2, "b"))
            assert other["stdout"] == "b" * (MiB // 2) and not other.get("truncated")
            # ... up to what is left of the server's total (TOTAL - PER_USER).
            third = run(carol, carol_box, prints(3 * MiB, "c"))
            assert third["truncated"] is True
            assert 0 < len(third["stdout"]) <= TOTAL - PER_USER

            assert run(hog, box, "touch /tmp/go")["exit_code"] == 0
            results = [future.result() for future in hogs]

        assert all(r["exit_code"] == 0 for r in results)
        assert sum(len(r["stdout"]) for r in results) <= PER_USER  # 8 MiB were printed
        assert sum(bool(r.get("truncated")) for r in results) >= HOGS - PER_USER // MiB

        # Once the answers are out the budget is free again.
        after = run(hog, box, prints(MiB, "y"))
        assert after["stdout"] == "y" * MiB and not after.get("truncated")
