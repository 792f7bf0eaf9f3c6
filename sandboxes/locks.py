"""Per-key asyncio locks (one per sandbox, per template …) within one process.

A lock lives while someone holds or waits for it and is dropped after, so keys
that come and go (sandbox ids) never pile up. Locks across server processes are
``sandboxes.coordination``'s, which uses these within each process.
"""

from __future__ import annotations

import asyncio
from weakref import WeakValueDictionary


class KeyedLocks:
    """``locks(key)`` is the one lock for ``key`` while anyone uses it."""

    def __init__(self) -> None:
        self._locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def held(self, key: str) -> bool:
        """Whether someone holds the lock for ``key`` now."""
        lock = self._locks.get(key)
        return lock is not None and lock.locked()
