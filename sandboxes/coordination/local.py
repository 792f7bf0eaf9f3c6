"""Coordination within one process: asyncio locks and plain counters.

The embedded default (no ``REDIS_URL``), where one process is the whole server, and
the fallback of the Redis coordinator while Redis does not answer.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import AbstractAsyncContextManager

from sandboxes.locks import KeyedLocks

from .base import Coordinator, Slot


class LocalSlot(Slot):
    def __init__(self, counts: dict[str, int], name: str) -> None:
        self._counts, self._name, self._held = counts, name, True

    async def release(self) -> None:
        if not self._held:
            return
        self._held = False
        left = self._counts[self._name] - 1
        if left:
            self._counts[self._name] = left
        else:
            del self._counts[self._name]


class _Held:
    """``async with``: the asyncio lock, or False at once if taken and not waiting."""

    __slots__ = ("_lock", "_taken", "_wait")

    def __init__(self, lock: asyncio.Lock, wait: bool) -> None:
        self._lock, self._wait, self._taken = lock, wait, False

    async def __aenter__(self) -> bool:
        if not self._wait and self._lock.locked():
            return False
        await self._lock.acquire()
        self._taken = True
        return True

    async def __aexit__(self, *exc: object) -> None:
        if self._taken:
            self._lock.release()


class LocalCoordinator(Coordinator):
    def __init__(self) -> None:
        self.locks = KeyedLocks()
        self.counts: dict[str, int] = {}
        self._generations: dict[str, int] = {}
        self._bumping = threading.Lock()  # bump runs in worker threads

    def lock(self, name: str, *, wait: bool = True) -> AbstractAsyncContextManager[bool]:
        return _Held(self.locks(name), wait)

    async def take_slot(self, name: str, limit: int) -> tuple[Slot | None, int]:
        taken = self.counts.get(name, 0)
        if taken >= limit:
            return None, taken
        self.counts[name] = taken + 1
        return LocalSlot(self.counts, name), taken + 1

    async def count_slots(self, name: str) -> int:
        return self.counts.get(name, 0)

    async def claim_lease(self, name: str, ttl: float) -> bool:
        return True  # one process: it holds every lease

    async def release_lease(self, name: str) -> None:
        return None

    async def generation(self, name: str) -> int | None:
        return self._generations.get(name, 0)

    def bump(self, name: str) -> None:
        with self._bumping:
            self._generations[name] = self._generations.get(name, 0) + 1
