"""What server processes must agree on: locks per key, bounded slot counters, named
leases and shared invalidation, behind one small interface (``base.Coordinator``).

Without ``REDIS_URL`` there is one server process and everything stays in its memory
(``local``, as fast as plain dictionaries and asyncio locks); with it, the same calls
go through Redis (``redis``), which also carries the channel layer. Callers name
what they coordinate and never learn which one answers:

    sandbox_lock = Locks("sandbox")
    async with sandbox_lock(sandbox.id): ...
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from django.conf import settings

from .base import Coordinator, Slot
from .local import LocalCoordinator
from .redis import RedisCoordinator

__all__ = ["Coordinator", "Locks", "Slot", "coordinator"]

_current: list[Coordinator] = []


def coordinator() -> Coordinator:
    """This process's coordinator, made on first use from the settings."""
    if not _current:
        url = getattr(settings, "REDIS_URL", "")
        if url:
            _current.append(RedisCoordinator(url, prefix=settings.SANDBOX_NAME_PREFIX))
        else:
            _current.append(LocalCoordinator())
    return _current[0]


class Locks:
    """``locks(key)``: the one lock for ``key`` in this family, across processes;
    ``async with`` gives True (taken)."""

    def __init__(self, family: str) -> None:
        self.family = family

    def __call__(self, key: str) -> AbstractAsyncContextManager[bool]:
        return coordinator().lock(f"{self.family}:{key}")

    def attempt(self, key: str) -> AbstractAsyncContextManager[bool]:
        """The lock for ``key`` only if nobody holds it now: ``async with`` gives
        whether it was taken, without waiting."""
        return coordinator().lock(f"{self.family}:{key}", wait=False)
