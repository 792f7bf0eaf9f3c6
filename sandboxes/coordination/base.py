"""The interface every coordinator keeps (see the package's docstring)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractAsyncContextManager

# Seconds a lock, slot or lease outlives a process that died holding it. Holders
# that live renew theirs well before.
TTL = 15.0


class Slot(ABC):
    """One place taken in a bounded counter; ``release`` gives it back (once)."""

    @abstractmethod
    async def release(self) -> None: ...


class Coordinator(ABC):
    @abstractmethod
    def lock(self, name: str, *, wait: bool = True) -> AbstractAsyncContextManager[bool]:
        """Mutual exclusion for ``name`` among all server processes. Gives True once
        held; with ``wait=False`` gives False at once if someone else holds it."""

    @abstractmethod
    async def take_slot(self, name: str, limit: int) -> tuple[Slot | None, int]:
        """A place in counter ``name`` if fewer than ``limit`` are taken, and how many
        are taken now (with ours): (None, count) when full. A process that dies
        gives its places back within ``TTL``."""

    @abstractmethod
    async def count_slots(self, name: str) -> int:
        """How many places of counter ``name`` are taken now."""

    @abstractmethod
    async def claim_lease(self, name: str, ttl: float) -> bool:
        """Take or keep lease ``name`` for ``ttl`` seconds: True while this process
        holds it. Called again before ``ttl`` ends, it renews; a holder that stops
        renewing (or dies) loses it to the next caller."""

    @abstractmethod
    async def release_lease(self, name: str) -> None: ...

    @abstractmethod
    async def generation(self, name: str) -> int | None:
        """The current number of ``bump`` calls on ``name``, from any process; None
        when that cannot be known now (so nothing cached may be trusted)."""

    @abstractmethod
    def bump(self, name: str) -> None:
        """Mark everything cached under ``name`` stale, in every process at once.
        Synchronous: called from model signals, which run in worker threads."""
