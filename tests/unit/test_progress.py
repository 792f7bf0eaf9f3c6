"""``sandboxes.progress.follow``: reports come out in order, then the result; the
work's error comes after the reports made before it; and work whose listener
leaves goes on to its end (a class reset is never left half done)."""

from __future__ import annotations

import asyncio

import pytest

from sandboxes.progress import BACKLOG, Done, Report, Step, _orphans, follow


async def test_reports_then_the_result() -> None:
    async def work(report: Report) -> str:
        for n in range(3):
            await report(Step("student", f"{n + 1} of 3", current=n + 1, total=3))
            await asyncio.sleep(0)
        return "all done"

    items = [item async for item in follow(work)]
    assert [i.to_dict() for i in items[:-1] if isinstance(i, Step)] == [
        {"stage": "student", "message": f"{n} of 3", "current": n, "total": 3} for n in (1, 2, 3)
    ]
    assert items[-1] == Done("all done")


async def test_an_error_comes_after_the_reports_before_it() -> None:
    async def work(report: Report) -> None:
        await report(Step("setup", "Running the setup command"))
        raise ValueError("setup failed")

    seen: list[object] = []
    with pytest.raises(ValueError, match="setup failed"):
        async for item in follow(work):
            seen.append(item)
    assert seen == [Step("setup", "Running the setup command")]


async def test_work_goes_on_when_the_listener_leaves() -> None:
    finished = asyncio.Event()

    async def work(report: Report) -> None:
        await report(Step("students", "Resetting 2 students"))
        await asyncio.sleep(0.01)
        await report(Step("student", "1 of 2"))
        finished.set()

    steps = follow(work)
    assert await anext(steps) == Step("students", "Resetting 2 students")
    await steps.aclose()  # the client went away
    await asyncio.wait_for(finished.wait(), 5)


async def test_a_flood_of_reports_waits_for_the_listener_and_never_blocks_after_it_left() -> None:
    sent = 0

    async def work(report: Report) -> int:
        nonlocal sent
        for n in range(10_000):
            await report(Step("clone", str(n)))
            sent += 1
        return sent

    steps = follow(work)
    await anext(steps)
    await asyncio.sleep(0.05)
    assert sent <= BACKLOG + 2  # held back while nobody reads
    await steps.aclose()
    for _ in range(100):
        if not _orphans:
            break
        await asyncio.sleep(0.01)
    assert sent == 10_000 and not _orphans
