"""Sandbox lifecycle actions: find, create, change, sleep, wake, hand over, destroy.

The only code that changes a sandbox's row and its container. Views, consumers,
templates and the reaper call these; each is async and uses the ORM's async API.
A sandbox's state changes are serialised per sandbox across all server processes
(``sandbox_lock``, ``sandboxes.coordination``); conditional updates keep them safe
while that coordination falls back to one process (Redis lost).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.db.models import Prefetch
from django.utils import timezone

from container.agent.protocol import PROTOCOL_VERSION
from sandboxes import rows
from sandboxes.agent.client import AgentClient, AgentUnreachable
from sandboxes.backends import Backend, SandboxSpec, get_backend
from sandboxes.coordination import Locks
from sandboxes.egress.policy import Egress, EgressValue, proxy_secret
from sandboxes.egress.proxy import ensure_listening
from sandboxes.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    LimitReached,
    NotFound,
    SandboxError,
    SandboxUnavailable,
)
from sandboxes.images import image_tag
from sandboxes.models import Sandbox, Snapshot
from sandboxes.policy import Action, may

log = logging.getLogger(__name__)

# Activity is written at most this often per sandbox: a busy sandbox must not turn
# every exec into a database write.
ACTIVITY_RESOLUTION = timedelta(seconds=5)

sandbox_lock = Locks("sandbox")
_quota_lock = Locks("quota")


# ----------------------------------------------------------------------- queries


def _sandboxes() -> Any:
    """Sandboxes with their exposed ports loaded (``sandbox.exposed_list``) in one query."""
    return Sandbox.objects.prefetch_related(Prefetch("exposed_ports", to_attr="exposed_list"))


async def list_sandboxes(user: User) -> list[Sandbox]:
    return [s async for s in _sandboxes().filter(owner=user)]


# The words ``get_sandbox`` took before the policy seam: "owner" is "use", "read" is "view".
Access = Literal["owner", "read"]
_ACCESS_ACTIONS: dict[str, Action] = {"owner": "use", "read": "view"}


async def get_sandbox(
    user: User,
    sandbox_id: str,
    with_ports: bool = False,
    access: Access | None = None,
    *,
    action: Action = "use",
) -> Sandbox:
    """A sandbox ``user`` may do ``action`` to (``sandboxes.policy``); one they may not
    even look at is reported exactly like a missing one.

    Someone who may look but asks for more gets 403, so the page can say why instead
    of "not found". ``access`` is the older spelling of ``action``.
    """
    if access is not None:
        action = _ACCESS_ACTIONS[access]
    sandbox: Sandbox | None
    if with_ports:
        sandbox = await _sandboxes().filter(pk=sandbox_id).afirst()
    else:
        sandbox = await rows.find(sandbox_id)
    if sandbox is not None:
        if await may(user, action, sandbox):
            return sandbox
        if action != "view" and await may(user, "view", sandbox):
            raise Forbidden(
                "You can look at this sandbox but only its owner can change it.",
                code="read_only",
            )
    raise NotFound(f"No sandbox with id {sandbox_id!r}.", code="not_found")


async def _refresh(sandbox: Sandbox) -> None:
    """Read the row again under the sandbox's lock; deleted meanwhile (by another
    request or process), it is reported as missing, like any unknown sandbox."""
    try:
        await sandbox.arefresh_from_db()
    except Sandbox.DoesNotExist:
        raise NotFound(f"No sandbox with id {sandbox.id!r}.", code="not_found") from None


# ----------------------------------------------------------------------- lifecycle


@dataclass
class SandboxSettings:
    name: str
    template: str = ""
    env: dict[str, str] = field(default_factory=dict)
    sleep_after: int | None = None
    keep_alive: bool = False
    # "all", "none" or {"allow": [...]} (checked: 400s naming the entry)
    egress: EgressValue = "all"
    # From a template: lower resource limits ({"memory_mb", "cpus", "disk_mb"}) and
    # an image other than the default.
    limits: dict[str, Any] = field(default_factory=dict)
    image: str = ""
    # A snapshot (``sandboxes.snapshots``) to start from: its image and files.
    snapshot: Snapshot | None = None


async def check_sandbox_quota(user: User, name: str) -> None:
    """Refuse a new sandbox past SANDBOX_MAX_PER_USER (an existing name is fine).

    The warm pool's service user is inactive (it never logs in); the templates'
    ``warm_pool`` sizes bound what it holds instead.
    """
    if not user.is_active:
        return
    count = await Sandbox.objects.filter(owner=user).acount()
    if (
        count >= settings.SANDBOX_MAX_PER_USER
        and not await Sandbox.objects.filter(owner=user, name=name).aexists()
    ):
        raise LimitReached(
            f"You have {count} sandboxes, the most allowed (SANDBOX_MAX_PER_USER); "
            "delete one first.",
            code="too_many_sandboxes",
        )


async def get_or_create_sandbox(user: User, options: SandboxSettings) -> tuple[Sandbox, bool]:
    """Like Cloudflare's getSandbox: the caller's sandbox of that name, made if new.

    The (owner, name) unique constraint decides races: of concurrent creators one
    inserts the row, the others read it, and every one of them waits for the one
    container through ``ensure_running``.
    """
    sleep_after = (
        settings.SANDBOX_DEFAULT_SLEEP_AFTER if options.sleep_after is None else options.sleep_after
    )
    snapshot = options.snapshot
    egress = enforceable(Egress.of(options.egress))
    # Checked and inserted under one lock per user: several sandboxes made at once
    # (a fork) must not all pass the count before any is inserted.
    async with _quota_lock(str(user.pk)):
        await check_sandbox_quota(user, options.name)
        try:
            sandbox = await Sandbox.objects.acreate(
                owner=user,
                name=options.name,
                template=options.template,
                env=options.env,
                sleep_after=sleep_after,
                keep_alive=options.keep_alive,
                egress=egress.mode,
                egress_allow=list(egress.allow),
                image=snapshot.backend_state["image"] if snapshot else options.image or image_tag(),
                limits=dict(options.limits),
                source_snapshot=snapshot.id if snapshot else "",
            )
            created = True
        except IntegrityError:
            sandbox = await _sandboxes().aget(owner=user, name=options.name)
            created = False
    await ensure_running(sandbox)
    return sandbox, created


# When each setting PATCH changes takes effect, as the sandbox object says it
# (docs/api.md): ``now`` for the next decision that reads it; ``new_programs`` for
# every exec, process, terminal and session started after (each request to the
# agent carries the sandbox's environment), while programs already running keep
# the environment they started with; ``at_create`` cannot be changed. Egress
# changes the firewall and the proxy's answers at once, for running programs too.
SETTINGS_APPLY = {
    "env": "new_programs",
    "sleep_after": "now",
    "keep_alive": "now",
    "egress": "now",
}


async def update_sandbox(sandbox: Sandbox, changes: dict[str, Any]) -> Sandbox:
    """Change the row; only an egress change needs the container's firewall told."""
    allowed = {"sleep_after", "keep_alive", "env"}
    for key, value in changes.items():
        if key in allowed and value is not None:
            setattr(sandbox, key, value)
    await sandbox.asave(update_fields=[k for k in allowed if k in changes])
    if changes.get("egress") is not None:
        await change_egress(sandbox, enforceable(Egress.of(changes["egress"])))
    return sandbox


def enforceable(egress: Egress) -> Egress:
    """Refuse an allow-list on a server whose firewall is off: nothing would hold it."""
    if egress.mode == "allow" and not settings.SANDBOX_BLOCK_PRIVATE_NETWORKS:
        raise BadRequest(
            "This server cannot enforce egress allow-lists: its sandbox firewall is off "
            '(SANDBOX_BLOCK_PRIVATE_NETWORKS=false). Use "all" or "none".',
            code="egress_unavailable",
        )
    return egress


async def change_egress(sandbox: Sandbox, egress: Egress) -> None:
    """Give a sandbox another egress setting, applied now if its container exists.

    The row is written first: if the firewall then fails, the container is stopped
    (``apply_egress`` fails closed) and its next start applies the new setting.
    """
    async with sandbox_lock(sandbox.id):
        await _refresh(sandbox)
        offline = sandbox.backend_state.get("network") == "" or bool(sandbox.egress_detail)
        if offline and egress.mode != "none":
            raise Conflict(
                "This sandbox has no network interface (it was created with egress none, "
                "or the firewall could not be installed): its egress can only be none. "
                "Create a new sandbox for network access.",
                code="egress_needs_network",
            )
        sandbox.egress, sandbox.egress_allow = egress.mode, list(egress.allow)
        await sandbox.asave(update_fields=["egress", "egress_allow"])
        if sandbox.backend_state and not offline:
            await _apply_egress(sandbox)


async def _apply_egress(sandbox: Sandbox) -> None:
    """Install the sandbox's egress rules for its current address (after each start:
    the address may have changed), and keep where the proxy finds it."""
    egress = Egress.stored(sandbox.egress, sandbox.egress_allow)
    cidrs = [str(n) for n in egress.networks()]
    update = await get_backend().apply_egress(sandbox.backend_state, egress.mode, cidrs)
    if egress.mode == "allow":
        await ensure_listening()
    if any(sandbox.backend_state.get(k) != v for k, v in update.items()):
        sandbox.backend_state = {**sandbox.backend_state, **update}
        await Sandbox.objects.filter(pk=sandbox.pk).aupdate(backend_state=sandbox.backend_state)


def program_env(sandbox: Sandbox) -> dict[str, str]:
    """The environment every program started in the sandbox gets from the server: its
    own variables, then the egress proxy's (``proxy_env``)."""
    return {**sandbox.env, **proxy_env(sandbox)}


def proxy_env(sandbox: Sandbox) -> dict[str, str]:
    """With an allow-list: the egress proxy, with the sandbox's credentials (which
    only ever open its own allow-list, from its own address); else nothing."""
    proxy = str(sandbox.backend_state.get("egress_proxy") or "")
    if sandbox.egress != "allow" or not proxy:
        return {}
    scheme, _, rest = proxy.partition("://")
    url = f"{scheme}://{sandbox.id}:{proxy_secret(sandbox.id)}@{rest}"
    env = dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"), url)
    return {**env, "NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1"}


async def destroy_sandbox(sandbox: Sandbox) -> None:
    async with sandbox_lock(sandbox.id):
        if sandbox.backend_state:
            await get_backend().remove(sandbox.backend_state)
        await sandbox.adelete()


async def restore_sandbox(sandbox: Sandbox, snapshot: Snapshot) -> AgentClient:
    """Roll ``sandbox`` back to ``snapshot``: its container and workspace are removed
    and made again from the snapshot's image and files, under the same id (its
    running programs end; its settings and shared ports stay)."""
    async with sandbox_lock(sandbox.id):
        if sandbox.backend_state:
            await get_backend().remove(sandbox.backend_state)
        sandbox.backend_state = {}
        sandbox.image = str(snapshot.backend_state["image"])
        sandbox.source_snapshot = snapshot.id
        await sandbox.asave(update_fields=["backend_state", "image", "source_snapshot"])
    return await ensure_running(sandbox)


async def hand_over(sandbox_id: str, giver: User, user: User, name: str) -> Sandbox | None:
    """Give ``giver``'s sandbox to ``user`` under ``name`` (the warm pool handing a
    ready sandbox to a student); None if ``giver`` no longer has it. It starts its
    new life as any sandbox does: ``keep_alive`` off, active now."""
    async with sandbox_lock(sandbox_id):
        moved = await Sandbox.objects.filter(pk=sandbox_id, owner=giver).aupdate(
            owner=user, name=name, keep_alive=False, last_active_at=timezone.now()
        )
        return await Sandbox.objects.aget(pk=sandbox_id) if moved else None


SleepTier = Literal["pause", "stop"]


async def sleep_sandbox(
    sandbox: Sandbox, tier: SleepTier = "pause", *, idle_since: datetime | None = None
) -> bool:
    """Put the sandbox to sleep; /workspace and the container filesystem are kept.

    ``pause`` freezes its processes with their memory (waking takes milliseconds);
    ``stop`` frees the memory (waking restarts the container). With ``idle_since``
    (the reaper) it only sleeps if nobody touched it since: several server processes
    may reap at once and exactly one wins. Returns whether it went to sleep.
    """
    async with sandbox_lock(sandbox.id):
        await _refresh(sandbox)
        if idle_since is not None and sandbox.last_active_at != idle_since:
            return False
        if tier == "pause" and sandbox.sleep_tier == "stopped":
            return False
        target = "paused" if tier == "pause" else "stopped"
        claimed = await Sandbox.objects.filter(
            pk=sandbox.pk, last_active_at=sandbox.last_active_at, status=sandbox.status
        ).aupdate(status=Sandbox.Status.SLEEPING, sleep_tier=target, status_detail="")
        if not claimed:
            return False
        sandbox.status, sandbox.sleep_tier, sandbox.status_detail = (
            Sandbox.Status.SLEEPING,
            target,
            "",
        )
        if sandbox.backend_state:
            backend = get_backend()
            if tier == "pause":
                await backend.pause(sandbox.backend_state)
                # The row decides: a wake that wrote running after our claim gets
                # its container back (see ``_resume_if_paused``).
                row = await Sandbox.objects.filter(pk=sandbox.pk).values("status").afirst()
                if row is not None and row["status"] == Sandbox.Status.RUNNING:
                    await _resume_if_paused(sandbox, backend)
            else:
                await backend.stop(sandbox.backend_state)
    return True


async def ensure_running(sandbox: Sandbox) -> AgentClient:
    """Make sure the sandbox's container runs and its agent answers; wake it if needed.

    Safe to call from many tasks and processes: the work is idempotent and serialised
    per sandbox (``sandbox_lock``), so a reaper putting it to sleep in another
    process never interleaves with this wake.
    """
    backend = get_backend()
    async with sandbox_lock(sandbox.id):
        await _refresh(sandbox)
        try:
            if not sandbox.backend_state:
                await _provision(sandbox)
            detail = sandbox.status_detail if sandbox.status == Sandbox.Status.RUNNING else ""
            status = await backend.status(sandbox.backend_state)
            if status == "missing":
                await _provision(sandbox)
                detail = "The container had vanished; it was recreated on the kept workspace."
                log.warning("sandbox %s: container missing, recreated", sandbox.id)
            if status != "running":
                # Unpausing takes milliseconds: only a real start shows as "starting".
                if status != "paused" and sandbox.status != Sandbox.Status.STARTING:
                    await _set_status(sandbox, Sandbox.Status.STARTING, detail)
                await _start(sandbox, backend, egress=status != "paused")
            client, version = await _ready(sandbox, backend)
            if status != "running" and version < PROTOCOL_VERSION:
                client, detail = await _upgrade(sandbox, backend, client, version)
        except SandboxError as exc:
            await _set_status(sandbox, Sandbox.Status.ERROR, exc.message)
            raise
        if sandbox.status != Sandbox.Status.RUNNING or sandbox.status_detail != detail:
            await _set_status(sandbox, Sandbox.Status.RUNNING, detail, active=True)
            await _resume_if_paused(sandbox, backend)
        await touch(sandbox)
        return client


async def _resume_if_paused(sandbox: Sandbox, backend: Backend) -> None:
    """Unpause a container whose row says running.

    The per-sandbox lock orders sleep and wake across processes; this keeps the
    engine with the database even where the lock could not (a process that lost
    Redis for a moment holds only its own): a pause that lands after a wake wrote
    running is undone by whichever side looks last, the sleeper after its pause or
    the waker after its write.
    """
    try:
        if await backend.status(sandbox.backend_state) == "paused":
            await backend.start(sandbox.backend_state)
    except SandboxError as exc:
        log.warning("sandbox %s: could not resume after a crossed sleep: %s", sandbox.id, exc)


async def _start(sandbox: Sandbox, backend: Backend, *, egress: bool) -> None:
    """Start (or unpause) the container and keep where its agent now listens."""
    moved = await backend.start(sandbox.backend_state)
    if moved:
        sandbox.backend_state = {**sandbox.backend_state, **moved}
        await Sandbox.objects.filter(pk=sandbox.pk).aupdate(backend_state=sandbox.backend_state)
    # a new address after a real start (an unpaused one keeps its own)
    networked = sandbox.backend_state.get("network") != ""
    if egress and networked and not sandbox.egress_detail:
        await _apply_egress(sandbox)


async def _ready(sandbox: Sandbox, backend: Backend) -> tuple[AgentClient, int]:
    """A client of the agent once it answers, and the protocol version it speaks."""
    client = AgentClient(backend.agent_address(sandbox.backend_state))
    try:
        pong = await client.wait_ready(settings.SANDBOX_START_TIMEOUT)
    except AgentUnreachable:
        logs = await backend.logs(sandbox.backend_state)
        raise SandboxUnavailable(
            f"The sandbox started but its agent did not answer within "
            f"{settings.SANDBOX_START_TIMEOUT:g}s. Container log: {logs[-500:]!r}"
        ) from None
    return client, pong.version


def _on_base_image(sandbox: Sandbox) -> bool:
    """Whether the sandbox runs a build of the sandbox image (not a template's or a
    snapshot's, which bring the agent they were made with)."""
    current = image_tag()
    return not sandbox.image or sandbox.image.partition(":")[0] == current.partition(":")[0]


async def _upgrade(
    sandbox: Sandbox, backend: Backend, client: AgentClient, was: int
) -> tuple[AgentClient, str]:
    """At a wake, a sandbox whose agent is older than this server's is made again
    with the current image on its kept workspace (its programs and anything outside
    /workspace start afresh, as after any recreation). One on a template's or a
    snapshot's image keeps its agent, which still works, and says so."""
    if not _on_base_image(sandbox) or sandbox.image == image_tag():
        return client, (
            f"Its agent speaks protocol {was} (this server: {PROTOCOL_VERSION}); it still "
            "works. Its image brings that agent: rebuild its template or take a new "
            "snapshot to upgrade it."
        )
    log.warning("sandbox %s: agent protocol %s, recreating it on its workspace", sandbox.id, was)
    await backend.remove_container(sandbox.backend_state)
    sandbox.image = image_tag()
    await sandbox.asave(update_fields=["image"])
    await _provision(sandbox)
    await _start(sandbox, backend, egress=True)
    client, version = await _ready(sandbox, backend)
    return client, (f"Recreated with agent protocol {version} (was {was}) on its kept workspace.")


async def _provision(sandbox: Sandbox) -> None:
    snapshot = None
    if sandbox.source_snapshot:
        snapshot = await Snapshot.objects.filter(
            pk=sandbox.source_snapshot, owner_id=sandbox.owner_id
        ).afirst()
    spec = SandboxSpec(
        sandbox_id=sandbox.id,
        owner_id=sandbox.owner_id,
        image=sandbox.image or image_tag(),
        env=dict(sandbox.env),
        egress="none" if sandbox.egress == "none" else "all",
        limits=dict(sandbox.limits),
        snapshot=snapshot.backend_state if snapshot else None,
    )
    sandbox.backend_state = await get_backend().create(spec)
    # Set when the backend had to give no network (fails closed): the API says why.
    sandbox.egress_detail = str(sandbox.backend_state.get("egress_detail") or "")
    await sandbox.asave(update_fields=["backend_state", "egress_detail"])


async def _set_status(
    sandbox: Sandbox, status: str, detail: str = "", *, active: bool = False
) -> None:
    """``active``: also record activity in the same write, so that nobody reads a
    woken sandbox as running with the idle time it had while asleep."""
    sandbox.status = status
    sandbox.status_detail = detail
    sandbox.sleep_tier = ""
    fields: dict[str, Any] = {"status": status, "status_detail": detail, "sleep_tier": ""}
    if active:
        sandbox.last_active_at = fields["last_active_at"] = timezone.now()
    await Sandbox.objects.filter(pk=sandbox.pk).aupdate(**fields)


async def touch(sandbox: Sandbox) -> None:
    """Record activity (postpones sleep); written at most every ACTIVITY_RESOLUTION."""
    now = timezone.now()
    resolution = ACTIVITY_RESOLUTION
    if sandbox.sleep_after:
        resolution = min(resolution, timedelta(seconds=sandbox.sleep_after / 4))
    if now - sandbox.last_active_at >= resolution:
        sandbox.last_active_at = now
        await Sandbox.objects.filter(pk=sandbox.pk).aupdate(last_active_at=now)
        rows.note_activity(sandbox.pk, now)
