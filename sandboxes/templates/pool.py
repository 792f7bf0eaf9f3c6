"""A warm pool of ready sandboxes per template, for the start-of-class surge.

Pool sandboxes are built from the template ahead of time (container running,
starter installed, setup done), owned by an inactive "pool" user and kept awake.
A user (a student joining a course) takes one by deleting its ``PoolEntry`` row
(one claimer wins, across server processes), and the lifecycle hands the sandbox
over (``lifecycle.hand_over``); the pool is topped up in the background. Only
templates someone is about to use are pooled, each to its ``warm_pool`` size:
apps register what says so (``register_demand``; the classroom: a course with a
usable invite link). Entries built from an older starter or image are replaced,
never handed out.

The pool is no way round limits: pooled sandboxes count against their template's
owner. One owner's templates may ask for ``WARM_POOL_MAX_PER_USER`` in all and the
server keeps at most ``WARM_POOL_MAX_TOTAL`` (asking for more answers 429), and the
filler builds only within both, whatever the templates ask for.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import Sum

from sandboxes import lifecycle
from sandboxes.coordination import Locks, Slot, coordinator
from sandboxes.errors import LimitReached, SandboxError
from sandboxes.images import image_tag
from sandboxes.models import PoolEntry, Sandbox, Template

from .launch import create_sandbox_from_template

log = logging.getLogger(__name__)

POOL_USERNAME = "sandbox-pool"
# Sandboxes built at once while filling: the engine and two cores are the limit.
BUILD_CONCURRENCY = 4

# Seconds without a claim before the pool is topped up again.
REFILL_DELAY = 5.0
MAX_WARM_POOL = 50

_pool_user: dict[str, User] = {}
# One filler per template among all server processes: another process asked to fill
# while one does leaves it to that one (the pool is filled once, not once per process).
_locks = Locks("pool")
_refills: dict[str, asyncio.TimerHandle] = {}
_tasks: set[asyncio.Task[Any]] = set()
# Builds counted against the caps but not yet entered in the pool, in every process:
# places in the counters ``building`` and ``building:<owner>``, taken under
# ``_caps_lock`` (and freed by themselves if their process dies).
_caps_lock = Locks("pool-caps")
BUILDING = "building"


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
        claimed = await lifecycle.hand_over(sandbox_id, owner, user, name)
        if claimed is not None:
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
    built = template.built_image if template.dockerfile.strip() else ""
    return built or template.image or image_tag()


Demand = Callable[[Template], Awaitable[bool]]
_demand: list[Demand] = []


def register_demand(demand: Demand) -> None:
    """Add a check that a template's sandboxes are about to be asked for (apps call
    it at ``ready()``); a template is pooled while any check says so."""
    if demand not in _demand:
        _demand.append(demand)


async def _in_demand(template: Template) -> bool:
    for demand in _demand:
        if await demand(template):
            return True
    return False


async def fill(template: Template) -> int:
    """Build sandboxes until the pool holds ``warm_pool`` current ones, within the
    owner's and the server's caps; returns how many were built. Stale entries (older
    starter or image) and entries beyond what may be kept are removed first.
    Returns 0 at once while another task or process fills this template."""
    async with _locks.attempt(template.id) as ours:
        if not ours:
            return 0
        await template.arefresh_from_db()
        wanted = template.warm_pool if await _in_demand(template) else 0
        if template.dockerfile.strip() and not template.built_image:
            wanted = 0  # its image is not built yet: nothing to pool
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
        reserved: list[Slot] = []
        async with _caps_lock("all"):
            room = await _room(template.owner_id)
            missing = min(wanted - have, room)
            if missing > 0:
                reserved = await _reserve(template.owner_id, missing)
        if missing < 0:  # warm_pool or a cap was lowered: give back what is over
            await _trim(template, -missing)
            return 0
        if not missing:
            return 0
        gate = asyncio.Semaphore(BUILD_CONCURRENCY)
        try:  # every build ends before its reservation is given back
            results = await asyncio.gather(
                *(_build(template, gate) for _ in range(missing)), return_exceptions=True
            )
        finally:
            for slot in reserved:
                await slot.release()
        for result in results:
            if isinstance(result, BaseException):
                log.error("warm pool: building for template %s", template.id, exc_info=result)
        return sum(r for r in results if isinstance(r, int))


def caps() -> tuple[int, int]:
    """(pooled sandboxes one template owner may have, pooled sandboxes in all)."""
    return settings.WARM_POOL_MAX_PER_USER, settings.WARM_POOL_MAX_TOTAL


async def _reserve(owner_id: int, count: int) -> list[Slot]:
    """Count ``count`` builds against the caps until their slots are released."""
    slots = []
    for name in (BUILDING, f"{BUILDING}:{owner_id}"):
        for _ in range(count):
            slot, _taken = await coordinator().take_slot(name, 1 << 30)
            if slot is not None:
                slots.append(slot)
    return slots


async def _room(owner_id: int) -> int:
    """How many more sandboxes may be pooled for this owner now (negative: over a
    cap), counting the builds under way in every process."""
    per_user, total = caps()
    mine = await PoolEntry.objects.filter(template__owner_id=owner_id).acount()
    everyone = await PoolEntry.objects.acount()
    building = coordinator()
    return min(
        per_user - mine - await building.count_slots(f"{BUILDING}:{owner_id}"),
        total - everyone - await building.count_slots(BUILDING),
    )


async def _over(template: Template) -> bool:
    """Whether the pool now holds more than may be kept: a safety net for counts
    that went wrong (coordination within one process only while Redis was lost)."""
    per_user, total = caps()
    return (
        await PoolEntry.objects.filter(template=template).acount() > template.warm_pool
        or await PoolEntry.objects.filter(template__owner_id=template.owner_id).acount() > per_user
        or await PoolEntry.objects.acount() > total
    )


async def _trim(template: Template, count: int) -> None:
    entries = PoolEntry.objects.filter(template=template).order_by("-created_at")
    async for entry in entries.select_related("sandbox")[:count]:
        await _discard(entry)


async def _build(template: Template, gate: asyncio.Semaphore) -> int:
    async with gate:
        owner = await pool_user()
        name = f"pool-{template.id[:8]}-{secrets.token_hex(4)}"
        head = template.starter_head
        try:
            sandbox = await create_sandbox_from_template(owner, template, name, keep_alive=True)
        except SandboxError as exc:
            log.warning("warm pool: building for template %s: %s", template.id, exc.message)
            return 0
        entry = await PoolEntry.objects.acreate(
            sandbox=sandbox, template=template, starter_head=head
        )
        if await _over(template):
            await _discard(entry)
            return 0
        return 1


async def _others(owner_id: int, template_id: str | None) -> tuple[int, int]:
    """(warm_pool sizes the owner's other templates ask for, sandboxes the other
    templates' pools hold server-wide)."""
    asked = Template.objects.filter(owner_id=owner_id)
    held = PoolEntry.objects.all()
    if template_id is not None:
        asked = asked.exclude(pk=template_id)
        held = held.exclude(template_id=template_id)
    total = (await asked.aaggregate(n=Sum("warm_pool")))["n"] or 0
    return total, await held.acount()


async def check_warm_pool(owner_id: int, size: int, template_id: str | None = None) -> None:
    """Refuse (429) a ``warm_pool`` size its template's owner may not have: their
    templates' sizes add up to at most WARM_POOL_MAX_PER_USER, and the server pools
    at most WARM_POOL_MAX_TOTAL sandboxes in all (counting what others' pools hold)."""
    per_user, total = caps()
    asked, held = await _others(owner_id, template_id)
    if asked + size > per_user:
        raise LimitReached(
            f"Your templates may keep {per_user} ready sandboxes in all "
            f"(WARM_POOL_MAX_PER_USER) and your other templates ask for {asked}: this "
            f"one's warm_pool may be at most {max(0, per_user - asked)}."
        )
    if held + size > total:
        raise LimitReached(
            f"This server keeps at most {total} ready sandboxes (WARM_POOL_MAX_TOTAL) and "
            f"other templates' pools hold {held}: this one's warm_pool may be at most "
            f"{max(0, total - held)} now."
        )


async def limit_warm_pool(
    owner_id: int, data: dict[str, Any], template_id: str | None = None
) -> None:
    """Apply the pool caps to a template's new values (``data``, changed in place).

    A size asked for is checked (429 over a cap). The default size (a new template
    that names none, or ``null``) is lowered to what still fits instead: making a
    template never fails for a number nobody chose. Sizes that are not valid are
    left to the template service, which refuses them with 400.
    """
    if "warm_pool" not in data and template_id is not None:
        return  # a change that leaves the size alone
    size = data.get("warm_pool")
    if size is None:
        per_user, total = caps()
        asked, held = await _others(owner_id, template_id)
        default = int(getattr(settings, "CLASSROOM_WARM_POOL", 0))
        data["warm_pool"] = max(0, min(default, per_user - asked, total - held))
    elif isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= MAX_WARM_POOL:
        await check_warm_pool(owner_id, size, template_id)


async def drain(template: Template) -> None:
    """Remove the template's pooled sandboxes (before the template goes)."""
    async with _locks(template.id):
        await _drain(template)


async def _drain(template: Template) -> None:
    async for entry in PoolEntry.objects.filter(template=template).select_related("sandbox"):
        await _discard(entry)


async def _discard(entry: PoolEntry) -> None:
    deleted, _ = await PoolEntry.objects.filter(pk=entry.pk).adelete()
    if deleted:
        try:
            await lifecycle.destroy_sandbox(entry.sandbox)
        except SandboxError as exc:
            log.warning("warm pool: removing %s: %s", entry.sandbox_id, exc.message)


async def maintain() -> None:
    """From each reaper pass: top up (or drain) every pooled template in the background,
    so a slow build never holds up the reaper."""
    templates = Template.objects.filter(warm_pool__gt=0) | Template.objects.filter(
        pool__isnull=False
    )
    async for template_id in templates.distinct().values_list("pk", flat=True):
        request_fill(template_id)  # a no-op where a fill runs already (``fill``)
