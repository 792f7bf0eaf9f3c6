"""The in-process coordinator (no REDIS_URL): what one server process must agree on
with itself, at the speed of plain asyncio locks and counters."""

from __future__ import annotations

import asyncio
import threading

from sandboxes.coordination import Locks
from sandboxes.coordination.local import LocalCoordinator


async def test_a_lock_serialises_holders_of_one_key_only() -> None:
    coordinator = LocalCoordinator()
    order: list[str] = []

    async def hold(name: str, key: str) -> None:
        async with coordinator.lock(key) as taken:
            assert taken
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    await asyncio.gather(hold("a", "k"), hold("b", "k"), hold("c", "other"))
    assert order.index("a-") < order.index("b+") or order.index("b-") < order.index("a+")
    assert order.index("c+") < order.index("a-")  # another key does not wait


async def test_a_lock_tried_without_waiting_says_it_is_taken() -> None:
    coordinator = LocalCoordinator()
    async with coordinator.lock("k"), coordinator.lock("k", wait=False) as taken:
        assert not taken
    async with coordinator.lock("k", wait=False) as taken:
        assert taken
    assert not coordinator.locks.held("k")  # nothing is kept once nobody holds it


async def test_slots_stop_at_the_limit_and_come_back_once_each() -> None:
    coordinator = LocalCoordinator()
    first, count = await coordinator.take_slot("execs:s1", 2)
    second, count = await coordinator.take_slot("execs:s1", 2)
    assert first is not None and second is not None and count == 2
    refused, count = await coordinator.take_slot("execs:s1", 2)
    assert refused is None and count == 2
    assert (await coordinator.take_slot("execs:s2", 2))[0] is not None  # its own counter
    await first.release()
    await first.release()  # a second release gives nothing back twice
    assert await coordinator.count_slots("execs:s1") == 1
    again, count = await coordinator.take_slot("execs:s1", 2)
    assert again is not None and count == 2
    await second.release()
    await again.release()
    assert await coordinator.count_slots("execs:s1") == 0
    assert "execs:s1" not in coordinator.counts


async def test_one_process_holds_every_lease() -> None:
    coordinator = LocalCoordinator()
    assert await coordinator.claim_lease("reaper", 5)
    assert await coordinator.claim_lease("reaper", 5)
    await coordinator.release_lease("reaper")


async def test_generations_count_bumps_from_any_thread() -> None:
    coordinator = LocalCoordinator()
    assert await coordinator.generation("tokens") == 0
    threads = [threading.Thread(target=coordinator.bump, args=("tokens",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert await coordinator.generation("tokens") == 8
    assert await coordinator.generation("other") == 0


async def test_named_lock_families_do_not_collide(settings) -> None:  # type: ignore[no-untyped-def]
    settings.REDIS_URL = ""
    sandbox, quota = Locks("sandbox"), Locks("quota")
    async with sandbox("1"):
        async with quota("1") as taken:  # same key, other family: no deadlock
            assert taken
        async with sandbox.attempt("1") as taken:
            assert not taken
