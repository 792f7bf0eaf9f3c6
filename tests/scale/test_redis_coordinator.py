"""The Redis coordinator itself, against a real redis-server: two coordinators stand
for two server processes; Redis is stopped and started again under them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from sandboxes.coordination import redis as coordination_redis
from sandboxes.coordination.redis import RETRY_AFTER, RedisCoordinator
from tests.scale.test_cross_process import Redis


@pytest.fixture
def service() -> Iterator[Redis]:
    with Redis.running() as redis:
        yield redis


def pair(service: Redis) -> tuple[RedisCoordinator, RedisCoordinator]:
    return RedisCoordinator(service.url, "t"), RedisCoordinator(service.url, "t")


async def test_slots_locks_leases_and_generations_are_shared(service: Redis) -> None:
    a, b = pair(service)
    first, _ = await a.take_slot("execs:s", 2)
    second, count = await b.take_slot("execs:s", 2)
    assert first is not None and second is not None and count == 2
    assert await a.take_slot("execs:s", 2) == (None, 2)
    await first.release()
    assert await b.count_slots("execs:s") == 1

    async with a.lock("sandbox:s") as taken:
        assert taken
        async with b.lock("sandbox:s", wait=False) as taken:
            assert not taken
    async with b.lock("sandbox:s", wait=False) as taken:
        assert taken

    assert await a.claim_lease("reaper", 5) and not await b.claim_lease("reaper", 5)
    await a.release_lease("reaper")
    assert await b.claim_lease("reaper", 5)

    before = await a.generation("tokens")
    await asyncio.to_thread(b.bump, "tokens")
    assert await a.generation("tokens") == (before or 0) + 1


async def test_a_waiter_gets_the_lock_when_its_holder_lets_go(service: Redis) -> None:
    a, b = pair(service)
    order: list[str] = []

    async def hold(coordinator: RedisCoordinator, name: str) -> None:
        async with coordinator.lock("k"):
            order.append(f"{name}+")
            await asyncio.sleep(0.2)
            order.append(f"{name}-")

    await asyncio.gather(hold(a, "a"), hold(b, "b"))
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])


async def test_a_dead_holders_places_and_locks_free_themselves(
    service: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coordination_redis, "TTL", 1.0)
    a, b = pair(service)
    taken, _ = await a.take_slot("execs:s", 1)
    assert taken is not None
    lock = a.lock("sandbox:s")
    await lock.__aenter__()
    a.held_slots.clear()  # as if its process died: nobody renews them
    a.held_locks.clear()
    assert await b.take_slot("execs:s", 1) == (None, 1)
    await asyncio.sleep(1.2)
    assert (await b.take_slot("execs:s", 1))[0] is not None
    async with b.lock("sandbox:s", wait=False) as got:
        assert got


async def test_redis_lost_falls_back_to_the_process_and_comes_back(
    service: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coordination_redis, "TTL", 3.0)  # renewed every second
    a, b = pair(service)
    held, _ = await b.take_slot("execs:s", 2)
    assert held is not None
    service.stop()
    started = time.monotonic()
    mine, count = await a.take_slot("execs:s", 2)  # only a's own places count now
    assert mine is not None and count == 1
    assert time.monotonic() - started < 1  # no waiting on retries
    assert not await a.claim_lease("reaper", 5)  # nobody reaps without Redis
    assert await a.generation("tokens") is None  # nothing cached may be trusted
    async with a.lock("k") as taken:
        assert taken
    service.start()
    await asyncio.sleep(RETRY_AFTER + 0.5)
    # Back, and empty: each puts back what it holds (b, which did not notice, at its
    # next renewal).
    assert await a.count_slots("execs:s") == 2
    assert await b.take_slot("execs:s", 2) == (None, 2)
    await mine.release()
    assert await b.count_slots("execs:s") == 1
