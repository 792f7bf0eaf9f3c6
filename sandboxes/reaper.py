"""The idle culler and reconciler: every server process runs the loop, one at a time
runs passes.

Each pass: running sandboxes idle for ``sleep_after`` are paused, paused ones idle
``SANDBOX_STOP_AFTER`` longer are stopped, and containers the engine has under our
labels are reconciled with the database (orphans removed after a grace period), then
the warm pools are topped up. Only the holder of the ``reaper`` lease
(``sandboxes.coordination``) runs passes; it renews the lease while it works, and if
it dies the lease ends within ``lease_ttl()`` and another process takes over. Every
state change is still claimed with a conditional update in
``lifecycle.sleep_sandbox``, so a pass that lost its lease mid-way cannot clash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from sandboxes import lifecycle
from sandboxes.backends import get_backend
from sandboxes.coordination import coordinator
from sandboxes.errors import SandboxError
from sandboxes.models import Sandbox
from sandboxes.templates import pool

log = logging.getLogger(__name__)


@dataclass
class Pass:
    paused: int = 0
    stopped: int = 0
    orphans_removed: int = 0


async def reap_once(now: datetime | None = None) -> Pass:
    now = now or timezone.now()
    result = Pass()
    async for sandbox in Sandbox.objects.filter(keep_alive=False, sleep_after__gt=0).exclude(
        status=Sandbox.Status.ERROR
    ):
        idle = now - sandbox.last_active_at
        try:
            if sandbox.status == Sandbox.Status.RUNNING and idle >= timedelta(
                seconds=sandbox.sleep_after
            ):
                if await lifecycle.sleep_sandbox(
                    sandbox, "pause", idle_since=sandbox.last_active_at
                ):
                    result.paused += 1
            elif (
                sandbox.status == Sandbox.Status.SLEEPING
                and sandbox.sleep_tier == "paused"
                and idle >= timedelta(seconds=sandbox.sleep_after + settings.SANDBOX_STOP_AFTER)
                and await lifecycle.sleep_sandbox(
                    sandbox, "stop", idle_since=sandbox.last_active_at
                )
            ):
                result.stopped += 1
        except SandboxError as exc:
            log.warning("reaper: sandbox %s: %s", sandbox.id, exc.message)
    result.orphans_removed = await remove_orphans()
    return result


async def remove_orphans() -> int:
    """Containers under our labels whose sandbox row is gone, once past the grace."""
    backend = get_backend()
    found = await backend.managed()
    if not found:
        return 0
    known = {
        pk
        async for pk in Sandbox.objects.filter(pk__in=[m.sandbox_id for m in found]).values_list(
            "pk", flat=True
        )
    }
    removed = 0
    for managed in found:
        if managed.sandbox_id in known:
            continue
        if time.time() - managed.created_at < settings.SANDBOX_ORPHAN_GRACE:
            continue
        log.warning("reaper: removing orphan container of sandbox %s", managed.sandbox_id)
        await backend.remove(managed.state)
        removed += 1
    return removed


LEASE = "reaper"


def lease_ttl() -> float:
    """How long the reaper lease outlives a holder that stopped renewing it."""
    return max(5.0, 3 * settings.SANDBOX_REAP_INTERVAL)


async def run_forever() -> None:
    """The reaper loop; survives its own errors (and an engine that is down). Runs a
    pass only while this process holds the lease."""
    while True:
        try:
            if await coordinator().claim_lease(LEASE, lease_ttl()):
                await _pass_under_lease()
        except Exception:
            log.exception("reaper pass failed")
        await asyncio.sleep(settings.SANDBOX_REAP_INTERVAL)


async def _pass() -> None:
    log.debug("reaper pass (process %d)", os.getpid())  # every interval: not for the console
    await reap_once()
    await pool.maintain()


async def _pass_under_lease() -> None:
    """One pass, renewing the lease as it goes; a pass whose lease is lost (Redis
    gone, or this process too slow to renew) is stopped."""
    ttl = lease_ttl()
    work = asyncio.ensure_future(_pass())
    try:
        while True:
            done, _ = await asyncio.wait([work], timeout=ttl / 3)
            if done:
                work.result()
                return
            if not await coordinator().claim_lease(LEASE, ttl):
                log.warning("reaper: the lease was lost mid-pass; stopping the pass")
                return
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
