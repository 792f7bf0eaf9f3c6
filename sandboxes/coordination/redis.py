"""Coordination through Redis (``REDIS_URL``), for several server processes.

Locks are keys set only if absent (``SET NX``) with a TTL, deleted only by their
holder; slot counters are sorted sets of holders scored by when each place expires;
leases are keys a holder renews; generations are counters. Whatever this process
holds is renewed every ``TTL / 3`` by one keeper task, so a process that dies frees
all of it within ``TTL``. The scripts run atomically in Redis, on Redis's clock.

Redis lost: every call falls back to what this process knows (a warning is logged
once): its own asyncio lock per key, its own places in each counter; nobody holds a
lease (so no reaper runs passes), and nothing cached is trusted. The database's
conditional updates still decide every race. Redis is tried again after
``RETRY_AFTER``; the first call that reaches it puts back first what this process
took meanwhile (Redis may have restarted empty), and logs that it is back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from .base import TTL, Coordinator, Slot
from .local import LocalCoordinator

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_AFTER = 1.0  # seconds without trying Redis after it failed
TIMEOUT = 2.0  # seconds for any one call; a connection gets 1

_NOW = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
LEASE = """
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then redis.call('pexpire', KEYS[1], ARGV[2]) return 1 end
if not holder then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
TAKE_SLOT = (
    _NOW
    + """
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
local taken = redis.call('zcard', KEYS[1])
if taken >= tonumber(ARGV[1]) then return {0, taken} end
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('pexpire', KEYS[1], ARGV[2])
return {1, taken + 1}
"""
)
COUNT_SLOTS = (
    _NOW
    + "redis.call('zremrangebyscore', KEYS[1], '-inf', now) return redis.call('zcard', KEYS[1])"
)
RENEW_SLOTS = (
    _NOW
    + """
for i = 2, #ARGV do redis.call('zadd', KEYS[1], now + tonumber(ARGV[1]), ARGV[i]) end
redis.call('pexpire', KEYS[1], ARGV[1])
return 1
"""
)


class Unavailable(Exception):
    """Redis did not answer (or failed recently): fall back to this process."""


@dataclass
class _Client:
    redis: redis.asyncio.Redis
    unlock: AsyncScript
    lease: AsyncScript
    take_slot: AsyncScript
    count_slots: AsyncScript
    renew_slots: AsyncScript
    keeper: asyncio.Task[None] | None = None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


async def _nothing(client: _Client) -> None:
    return None


class RedisSlot(Slot):
    def __init__(self, owner: RedisCoordinator, key: str, member: str) -> None:
        self._owner, self._key, self._member = owner, key, member

    async def release(self) -> None:
        members = self._owner.held_slots.get(self._key)
        if members is None or self._member not in members:
            return
        members.discard(self._member)
        if not members:
            del self._owner.held_slots[self._key]
        with suppress(Unavailable):
            await self._owner.run(lambda c: c.redis.zrem(self._key, self._member))


class RedisCoordinator(Coordinator):
    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = f"sandbox-ide:{prefix}:"
        self.local = LocalCoordinator()
        # This process, as a lease holder (its pid helps whoever reads Redis).
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.held_locks: dict[str, str] = {}  # key -> our token
        self.held_slots: dict[str, set[str]] = {}  # key -> our members
        self._clients: WeakKeyDictionary[asyncio.AbstractEventLoop, _Client] = WeakKeyDictionary()
        self._sync: redis.Redis | None = None
        self._down_until = 0.0
        self.degraded = False

    # ------------------------------------------------------------------ plumbing

    def _client(self) -> _Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            connection = redis.asyncio.Redis.from_url(
                self.url,
                socket_connect_timeout=1.0,
                socket_timeout=TIMEOUT,
                # Once more at once (a connection Redis closed when it restarted), then
                # fall back: never a request waiting on retries with backoff.
                retry=Retry(NoBackoff(), 1),
            )
            script = connection.register_script
            client = _Client(
                connection,
                unlock=script(UNLOCK),
                lease=script(LEASE),
                take_slot=script(TAKE_SLOT),
                count_slots=script(COUNT_SLOTS),
                renew_slots=script(RENEW_SLOTS),
            )
            self._clients[loop] = client
            client.keeper = loop.create_task(self._keep(client))
        return client

    async def run(self, call: Callable[[_Client], Awaitable[T]]) -> T:
        """``call`` on this loop's client; Unavailable if Redis fails (now or lately)."""
        if time.monotonic() < self._down_until:
            raise Unavailable
        client = self._client()
        try:
            if self.degraded:
                await self._hold_all(client)
            result = await call(client)
        except (TimeoutError, redis.RedisError, OSError) as exc:
            self._went_down(exc)
            raise Unavailable from exc
        if self.degraded:
            self.degraded = False
            log.warning("Redis (REDIS_URL) answers again: coordinating across processes again")
        return result

    def _went_down(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + RETRY_AFTER
        if not self.degraded:
            self.degraded = True
            log.warning(
                "Redis (REDIS_URL) does not answer (%s): locks and counters hold within "
                "this process only, and no reaper runs, until it does",
                exc or type(exc).__name__,
            )

    async def _keep(self, client: _Client) -> None:
        """Renew what this process holds every TTL / 3 for as long as it runs; while
        Redis is down, try it again every RETRY_AFTER."""
        while True:
            await asyncio.sleep(RETRY_AFTER if self.degraded else TTL / 3)
            with suppress(Unavailable):
                if self.degraded:
                    await self.run(_nothing)  # ``run`` puts back what we hold first
                else:
                    await self.run(self._hold_all)

    async def _hold_all(self, client: _Client) -> None:
        """Extend every lock and place this process holds, and put back those Redis
        does not have (it restarted empty, or they were taken while it was down).
        One released meanwhile is deleted again after, so none comes back to life."""
        for key, token in list(self.held_locks.items()):
            await client.lease(keys=[key], args=[token, _ms(TTL)])
            if self.held_locks.get(key) != token:
                await client.unlock(keys=[key], args=[token])
        for key, members in list(self.held_slots.items()):
            held = list(members)
            if held:
                await client.renew_slots(keys=[key], args=[_ms(TTL), *held])
                gone = [m for m in held if m not in self.held_slots.get(key, ())]
                if gone:
                    await client.redis.zrem(key, *gone)

    # ------------------------------------------------------------------ locks

    def lock(self, name: str, *, wait: bool = True) -> AbstractAsyncContextManager[bool]:
        return self._lock(name, wait)

    @asynccontextmanager
    async def _lock(self, name: str, wait: bool) -> AsyncIterator[bool]:
        # This process's waiters queue on a local lock: one of them at a time asks Redis.
        async with self.local.lock(name, wait=wait) as ours:
            if not ours:
                yield False
                return
            key, token = f"{self.prefix}lock:{name}", secrets.token_hex(8)
            held = await self._acquire(key, token, wait)
            if held is False:
                yield False
                return
            # Also when Redis is down (held is None): it is set there once Redis is back.
            self.held_locks[key] = token
            try:
                yield True
            finally:
                if self.held_locks.get(key) == token:
                    del self.held_locks[key]
                    with suppress(Unavailable):
                        await self.run(lambda c: c.unlock(keys=[key], args=[token]))

    async def _acquire(self, key: str, token: str, wait: bool) -> bool | None:
        """True once ours in Redis, False if taken (and not ``wait``), None if Redis
        is down (the local lock alone holds)."""
        delay = 0.005
        while True:
            try:
                taken = await self.run(lambda c: c.redis.set(key, token, nx=True, px=_ms(TTL)))
            except Unavailable:
                return None
            if taken:
                return True
            if not wait:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    # ------------------------------------------------------------------ slots

    def _held_here(self, key: str) -> int:
        return len(self.held_slots.get(key, ()))

    async def take_slot(self, name: str, limit: int) -> tuple[Slot | None, int]:
        key, member = f"{self.prefix}slots:{name}", secrets.token_hex(8)
        try:
            answer: Any = await self.run(
                lambda c: c.take_slot(keys=[key], args=[limit, _ms(TTL), member])
            )
        except Unavailable:
            # This process's own places count (and go to Redis once it is back).
            members = self.held_slots.setdefault(key, set())
            if len(members) >= limit:
                return None, len(members)
            members.add(member)
            return RedisSlot(self, key, member), len(members)
        taken, count = int(answer[0]), int(answer[1])
        if not taken:
            return None, count
        self.held_slots.setdefault(key, set()).add(member)
        return RedisSlot(self, key, member), count

    async def count_slots(self, name: str) -> int:
        key = f"{self.prefix}slots:{name}"
        try:
            return int(await self.run(lambda c: c.count_slots(keys=[key])))
        except Unavailable:
            return self._held_here(key)

    # ------------------------------------------------------------------ leases

    async def claim_lease(self, name: str, ttl: float) -> bool:
        key = f"{self.prefix}lease:{name}"
        try:
            return bool(
                await self.run(lambda c: c.lease(keys=[key], args=[self.identity, _ms(ttl)]))
            )
        except Unavailable:
            return False

    async def release_lease(self, name: str) -> None:
        key = f"{self.prefix}lease:{name}"
        with suppress(Unavailable):
            await self.run(lambda c: c.unlock(keys=[key], args=[self.identity]))

    # ------------------------------------------------------------------ generations

    async def generation(self, name: str) -> int | None:
        key = f"{self.prefix}generation:{name}"
        try:
            value = await self.run(lambda c: c.redis.get(key))
        except Unavailable:
            return None
        return int(value or 0)

    def bump(self, name: str) -> None:
        if self._sync is None:
            self._sync = redis.Redis.from_url(
                self.url, socket_connect_timeout=1.0, socket_timeout=TIMEOUT
            )
        try:
            self._sync.incr(f"{self.prefix}generation:{name}")
        except (redis.RedisError, OSError) as exc:
            # Every process distrusts its caches while Redis is down (generation None).
            log.warning("Redis (REDIS_URL): could not mark %s stale: %s", name, exc)
