"""The only code that changes sandbox state.

Views, consumers and commands call these functions; they talk to the backend (the
container engine) and to the agent inside each sandbox, and keep the database row
in step. Every function is async; the ORM is used through its async API.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from weakref import WeakValueDictionary

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError
from django.db.models import Prefetch
from django.utils import timezone

from container.agent.protocol import Channel, Exec, Message
from sandboxes import buffers
from sandboxes.agent.client import (
    AgentClient,
    AgentUnreachable,
    ExecEvent,
    exec_events,
    receive_message,
)
from sandboxes.backends import SandboxSpec, get_backend
from sandboxes.errors import (
    BadRequest,
    Forbidden,
    LimitReached,
    NotFound,
    SandboxError,
    SandboxUnavailable,
)
from sandboxes.images import image_tag
from sandboxes.models import Sandbox

log = logging.getLogger(__name__)

# Activity is written at most this often per sandbox: a busy sandbox must not turn
# every exec into a database write.
ACTIVITY_RESOLUTION = timedelta(seconds=5)

_locks: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()


def _lock(sandbox_id: str) -> asyncio.Lock:
    lock = _locks.get(sandbox_id)
    if lock is None:
        lock = _locks[sandbox_id] = asyncio.Lock()
    return lock


# ----------------------------------------------------------------------- queries


def _sandboxes() -> Any:
    """Sandboxes with their exposed ports loaded (``sandbox.exposed_list``) in one query."""
    return Sandbox.objects.prefetch_related(Prefetch("exposed_ports", to_attr="exposed_list"))


async def list_sandboxes(user: User) -> list[Sandbox]:
    return [s async for s in _sandboxes().filter(owner=user)]


Access = Literal["owner", "read"]


async def get_sandbox(
    user: User, sandbox_id: str, with_ports: bool = False, access: Access = "owner"
) -> Sandbox:
    """The caller's sandbox; someone else's is reported exactly like a missing one.

    With ``access="read"`` a sandbox the caller may look at (a teacher's student, a
    view shared with their class) is returned too. A reader asking for more than
    reading gets 403, so the page can say why instead of "not found".
    """
    queryset = _sandboxes() if with_ports else Sandbox.objects
    try:
        return await queryset.aget(pk=sandbox_id, owner=user)
    except Sandbox.DoesNotExist:
        pass
    from sandboxes.classroom.access import can_view  # the core must not import it early

    if await can_view(user, sandbox_id):
        if access == "read":
            return await queryset.aget(pk=sandbox_id)
        raise Forbidden(
            "You can look at this sandbox but only its owner can change it.", code="read_only"
        )
    raise NotFound(f"No sandbox with id {sandbox_id!r}.", code="not_found")


# ----------------------------------------------------------------------- lifecycle


@dataclass
class SandboxSettings:
    name: str
    template: str = ""
    env: dict[str, str] = field(default_factory=dict)
    sleep_after: int | None = None
    keep_alive: bool = False
    egress: str = "all"
    # From a template: lower resource limits ({"memory_mb", "cpus", "disk_mb"}) and
    # an image other than the default.
    limits: dict[str, Any] = field(default_factory=dict)
    image: str = ""


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
    await check_sandbox_quota(user, options.name)
    try:
        sandbox = await Sandbox.objects.acreate(
            owner=user,
            name=options.name,
            template=options.template,
            env=options.env,
            sleep_after=sleep_after,
            keep_alive=options.keep_alive,
            egress=options.egress,
            image=options.image or image_tag(),
            limits=dict(options.limits),
        )
        created = True
    except IntegrityError:
        sandbox = await _sandboxes().aget(owner=user, name=options.name)
        created = False
    await ensure_running(sandbox)
    return sandbox, created


async def update_sandbox(sandbox: Sandbox, changes: dict[str, Any]) -> Sandbox:
    allowed = {"sleep_after", "keep_alive", "env"}
    for key, value in changes.items():
        if key in allowed and value is not None:
            setattr(sandbox, key, value)
    await sandbox.asave(update_fields=[k for k in allowed if k in changes])
    return sandbox


async def destroy_sandbox(sandbox: Sandbox) -> None:
    async with _lock(sandbox.id):
        if sandbox.backend_state:
            await get_backend().remove(sandbox.backend_state)
        await sandbox.adelete()


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
    async with _lock(sandbox.id):
        await sandbox.arefresh_from_db()
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
            else:
                await backend.stop(sandbox.backend_state)
    return True


async def ensure_running(sandbox: Sandbox) -> AgentClient:
    """Make sure the sandbox's container runs and its agent answers; wake it if needed.

    Safe to call from many tasks and processes: the work is idempotent and serialised
    per sandbox within a process.
    """
    backend = get_backend()
    async with _lock(sandbox.id):
        await sandbox.arefresh_from_db()
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
                await backend.start(sandbox.backend_state)
            client = AgentClient(backend.agent_address(sandbox.backend_state))
            try:
                await client.wait_ready(settings.SANDBOX_START_TIMEOUT)
            except AgentUnreachable:
                logs = await backend.logs(sandbox.backend_state)
                raise SandboxUnavailable(
                    f"The sandbox started but its agent did not answer within "
                    f"{settings.SANDBOX_START_TIMEOUT:g}s. Container log: {logs[-500:]!r}"
                ) from None
        except SandboxError as exc:
            await _set_status(sandbox, Sandbox.Status.ERROR, exc.message)
            raise
        if sandbox.status != Sandbox.Status.RUNNING or sandbox.status_detail != detail:
            await _set_status(sandbox, Sandbox.Status.RUNNING, detail)
        await touch(sandbox)
        return client


async def _provision(sandbox: Sandbox) -> None:
    spec = SandboxSpec(
        sandbox_id=sandbox.id,
        owner_id=sandbox.owner_id,
        image=sandbox.image or image_tag(),
        env=dict(sandbox.env),
        egress=sandbox.egress,
        limits=dict(sandbox.limits),
    )
    sandbox.backend_state = await get_backend().create(spec)
    # Set when the backend had to give no network (fails closed): the API says why.
    sandbox.egress_detail = str(sandbox.backend_state.get("egress_detail") or "")
    await sandbox.asave(update_fields=["backend_state", "egress_detail"])


async def _set_status(sandbox: Sandbox, status: str, detail: str = "") -> None:
    sandbox.status = status
    sandbox.status_detail = detail
    sandbox.sleep_tier = ""
    await Sandbox.objects.filter(pk=sandbox.pk).aupdate(
        status=status, status_detail=detail, sleep_tier=""
    )


async def touch(sandbox: Sandbox) -> None:
    """Record activity (postpones sleep); written at most every ACTIVITY_RESOLUTION."""
    now = timezone.now()
    resolution = ACTIVITY_RESOLUTION
    if sandbox.sleep_after:
        resolution = min(resolution, timedelta(seconds=sandbox.sleep_after / 4))
    if now - sandbox.last_active_at >= resolution:
        sandbox.last_active_at = now
        await Sandbox.objects.filter(pk=sandbox.pk).aupdate(last_active_at=now)


async def agent_for(sandbox: Sandbox) -> AgentClient:
    """An agent client for a sandbox believed running, without asking the engine.

    The hot path (every exec) costs no engine call; if the agent does not answer the
    caller falls back to ``ensure_running`` (see ``with_agent``).
    """
    await touch(sandbox)
    if sandbox.status == Sandbox.Status.RUNNING and sandbox.backend_state:
        return AgentClient(get_backend().agent_address(sandbox.backend_state))
    return await ensure_running(sandbox)


async def open_agent(sandbox: Sandbox, request: Message) -> Channel:
    """Open an agent connection carrying ``request``, waking the sandbox if needed.

    Every feature that talks to the agent goes through here (or ``call_agent``), so
    "any call wakes a sleeping sandbox" holds everywhere.
    """
    client = await agent_for(sandbox)
    try:
        return await client.open(request)
    except AgentUnreachable:
        client = await ensure_running(sandbox)
        return await client.open(request)


async def call_agent(sandbox: Sandbox, request: Message) -> Message:
    """A request answered by one control message (agent errors raise SandboxError)."""
    channel = await open_agent(sandbox, request)
    try:
        return await receive_message(channel)
    finally:
        await channel.close()


# ----------------------------------------------------------------------- commands


@dataclass
class ExecRequest:
    command: str | list[str]
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    stdin: str | None = None
    session: str | None = None

    def to_message(self) -> Exec:
        return Exec(
            command=self.command,
            cwd=self.cwd,
            env=self.env,
            timeout=self.timeout,
            stdin=self.stdin,
            session=self.session,
        )


_running_execs: dict[str, int] = {}
# A first answer slower than this means the container may be paused by another
# server process's reaper between our status read and our call: wake it (without
# re-sending anything) and keep waiting on the same connection.
NUDGE_AFTER = 2.0


async def exec_stream(sandbox: Sandbox, request: ExecRequest) -> AsyncGenerator[ExecEvent, None]:
    """Run a command and yield its output as it is produced, then its exit.

    A running command counts as activity: the sandbox does not fall asleep under it.
    """
    if request.timeout is not None and request.timeout > settings.EXEC_MAX_TIMEOUT:
        raise BadRequest(
            f"timeout may be at most {settings.EXEC_MAX_TIMEOUT:g} seconds.", code="invalid_timeout"
        )
    running = _running_execs.get(sandbox.id, 0)
    if running >= settings.SANDBOX_MAX_EXECS:
        raise LimitReached(
            f"This sandbox already runs {running} commands at once (SANDBOX_MAX_EXECS); "
            "wait for one to finish.",
            code="too_many_execs",
        )
    _running_execs[sandbox.id] = running + 1
    awake = asyncio.create_task(_keep_awake(sandbox))
    try:
        events = exec_events(await open_agent(sandbox, request.to_message()))
        try:
            first = await _first_event(sandbox, events)
        except BaseException:
            await events.aclose()
            raise
        try:
            yield first
            async for event in events:
                yield event
        finally:
            await events.aclose()
    finally:
        awake.cancel()
        _running_execs[sandbox.id] -= 1
        if not _running_execs[sandbox.id]:
            del _running_execs[sandbox.id]


async def _first_event(sandbox: Sandbox, events: AsyncIterator[ExecEvent]) -> ExecEvent:
    first = asyncio.ensure_future(anext(events))
    done, _ = await asyncio.wait([first], timeout=NUDGE_AFTER)
    if not done:
        with contextlib.suppress(SandboxError):
            await ensure_running(sandbox)
    return await first


async def _keep_awake(sandbox: Sandbox) -> None:
    period = max(0.25, min(30.0, sandbox.sleep_after / 4 if sandbox.sleep_after else 30.0))
    while True:
        await asyncio.sleep(period)
        await touch(sandbox)


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    duration_ms: float
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "stdout": self.stdout,
            "stderr": self.stderr,
            "exit_code": self.exit_code,
            "success": self.exit_code == 0 and not self.timed_out,
            "timed_out": self.timed_out,
            "duration_ms": self.duration_ms,
        }
        if self.truncated:
            data["truncated"] = True
        return data


class TextStream:
    """Bytes to text across chunk boundaries (a UTF-8 character may be split)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


async def exec_collect(sandbox: Sandbox, request: ExecRequest) -> ExecResult:
    """Run a command to completion, keeping at most EXEC_OUTPUT_LIMIT of each stream,
    and no more than the owner's and the server's output budgets allow
    (``sandboxes.buffers``): beyond either, output is dropped and ``truncated`` set."""
    limit = settings.EXEC_OUTPUT_LIMIT
    streams = {"stdout": bytearray(), "stderr": bytearray()}
    truncated = False
    started = time.monotonic()
    exit_event = None
    with buffers.Held(sandbox.owner_id) as held:
        async for event in exec_stream(sandbox, request):
            if event.kind in streams:
                buffer = streams[event.kind]
                keep = held.take(min(len(event.data), limit - len(buffer)))
                if keep < len(event.data):
                    truncated = True
                if keep:
                    buffer += event.data[:keep]
            elif event.kind == "exit":
                exit_event = event.exit
        if exit_event is None:  # pragma: no cover - the client always ends with exit
            raise SandboxError("The command ended without an exit status.")
        return ExecResult(
            stdout=streams["stdout"].decode(errors="replace"),
            stderr=streams["stderr"].decode(errors="replace"),
            exit_code=exit_event.exit_code,
            timed_out=exit_event.timed_out,
            duration_ms=exit_event.duration_ms or round((time.monotonic() - started) * 1000, 3),
            truncated=truncated,
        )
