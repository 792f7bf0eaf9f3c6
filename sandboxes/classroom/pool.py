"""A warm pool of ready sandboxes per template, for the start-of-class surge.

Pool sandboxes are built from the template ahead of time (container running,
starter installed, setup done), owned by an inactive "pool" user and kept awake.
A student joining takes one by deleting its ``PoolEntry`` row (one claimer wins,
across server processes) and becoming its owner; the pool is topped up in the
background. Only templates of a course open for joining (an invite link still
usable) are pooled, each to its ``warm_pool`` size; entries built from an older
starter or image are replaced, never handed out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone

from sandboxes import services
from sandboxes.classroom.models import Invite, PoolEntry, Template
from sandboxes.errors import SandboxError
from sandboxes.images import image_tag
from sandboxes.models import Sandbox

log = logging.getLogger(__name__)

POOL_USERNAME = "sandbox-pool"
# Sandboxes built at once while filling: the engine and two cores are the limit.
BUILD_CONCURRENCY = 4

# Seconds without a claim before the pool is topped up again.
REFILL_DELAY = 5.0

_pool_user: dict[str, User] = {}
_locks: dict[str, asyncio.Lock] = {}
_refills: dict[str, asyncio.TimerHandle] = {}
_tasks: set[asyncio.Task[Any]] = set()


async def pool_user() -> User:
    cached = _pool_user.get("user")
    if cached is not None:
        return cached
    user_model = get_user_model()
    user, created = await user_model.objects.aget_or_create(
        username=POOL_USERNAME, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        await user.asave()
    _pool_user["user"] = user
    return user


def is_pool_user(user: User) -> bool:
    return user.get_username() == POOL_USERNAME


async def claim(template: Template, user: User, name: str) -> Sandbox | None:
    """Hand a ready sandbox of this template to ``user`` under ``name``, or None."""
    owner = await pool_user()
    claimed = None
    entries = PoolEntry.objects.filter(
        template=template, starter_head=template.starter_head, sandbox__image=_image(template)
    )
    candidates = [pair async for pair in entries.values_list("pk", "sandbox_id")]
    # Many students join at once: each tries the entries in its own random order,
    # so they rarely collide on the same row.
    random.shuffle(candidates)
    for entry_id, sandbox_id in candidates:
        deleted, _ = await PoolEntry.objects.filter(pk=entry_id).adelete()
        if not deleted:  # another join took it
            continue
        moved = await Sandbox.objects.filter(pk=sandbox_id, owner=owner).aupdate(
            owner=user, name=name, keep_alive=False, last_active_at=timezone.now()
        )
        if moved:
            claimed = await Sandbox.objects.aget(pk=sandbox_id)
            break
    _refill_when_quiet(template.id)
    return claimed


def _refill_when_quiet(template_id: str) -> None:
    """Refill once joins pause for REFILL_DELAY seconds: building sandboxes while a
    class is still joining would take the CPU from the students being served."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    pending = _refills.pop(template_id, None)
    if pending is not None:
        pending.cancel()
    _refills[template_id] = loop.call_later(REFILL_DELAY, request_fill, template_id)


def request_fill(template_id: str) -> None:
    """Top the template's pool up in the background (no-op outside an event loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    task = loop.create_task(_fill_logged(template_id))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _fill_logged(template_id: str) -> None:
    try:
        template = await Template.objects.aget(pk=template_id)
        await fill(template)
    except Template.DoesNotExist:
        return
    except Exception:
        log.exception("warm pool: filling template %s failed", template_id)


def _image(template: Template) -> str:
    """The image a sandbox of this template gets now (a rebuilt image makes older
    pooled sandboxes stale, like a new starter does)."""
    return template.image or image_tag()


async def _open_for_joining(template: Template) -> bool:
    """Whether a course on the template has an invite link students can still use."""
    now = timezone.now()
    return (
        await Invite.objects.filter(course__template=template, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .aexists()
    )


async def fill(template: Template) -> int:
    """Build sandboxes until the pool holds ``warm_pool`` current ones; returns how many
    were built. Stale entries (older starter) are removed first."""
    lock = _locks.setdefault(template.id, asyncio.Lock())
    async with lock:
        await template.arefresh_from_db()
        wanted = template.warm_pool if await _open_for_joining(template) else 0
        async for entry in (
            PoolEntry.objects.filter(template=template)
            .exclude(starter_head=template.starter_head, sandbox__image=_image(template))
            .select_related("sandbox")
        ):
            await _discard(entry)
        if wanted == 0:
            await _drain(template)
            return 0
        have = await PoolEntry.objects.filter(template=template).acount()
        missing = max(0, wanted - have)
        if not missing:
            return 0
        gate = asyncio.Semaphore(BUILD_CONCURRENCY)
        results = await asyncio.gather(*(_build(template, gate) for _ in range(missing)))
        return sum(results)


async def _build(template: Template, gate: asyncio.Semaphore) -> int:
    from sandboxes.classroom.templates import create_sandbox_from_template

    async with gate:
        owner = await pool_user()
        name = f"pool-{template.id[:8]}-{secrets.token_hex(4)}"
        head = template.starter_head
        try:
            sandbox = await create_sandbox_from_template(owner, template, name, keep_alive=True)
        except SandboxError as exc:
            log.warning("warm pool: building for template %s: %s", template.id, exc.message)
            return 0
        await PoolEntry.objects.acreate(sandbox=sandbox, template=template, starter_head=head)
        return 1


async def drain(template: Template) -> None:
    """Remove the template's pooled sandboxes (before the template goes)."""
    async with _locks.setdefault(template.id, asyncio.Lock()):
        await _drain(template)


async def _drain(template: Template) -> None:
    async for entry in PoolEntry.objects.filter(template=template).select_related("sandbox"):
        await _discard(entry)


async def _discard(entry: PoolEntry) -> None:
    deleted, _ = await PoolEntry.objects.filter(pk=entry.pk).adelete()
    if deleted:
        try:
            await services.destroy_sandbox(entry.sandbox)
        except SandboxError as exc:
            log.warning("warm pool: removing %s: %s", entry.sandbox_id, exc.message)


async def maintain() -> None:
    """From each reaper pass: top up (or drain) every pooled template in the background,
    so a slow build never holds up the reaper."""
    templates = Template.objects.filter(warm_pool__gt=0) | Template.objects.filter(
        pool__isnull=False
    )
    async for template_id in templates.distinct().values_list("pk", flat=True):
        lock = _locks.get(template_id)
        if lock is None or not lock.locked():
            request_fill(template_id)
