"""Snapshots: a sandbox's files kept, new sandboxes started from them (fork), and a
sandbox rolled back to one (restore).

A snapshot holds the workspace and the changes to the root filesystem (installed
packages), not the memory of running programs. It belongs to the sandbox's owner,
outlives the sandbox, and counts against the owner's SANDBOX_SNAPSHOT_QUOTA.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Sum

from sandboxes import lifecycle
from sandboxes.backends import get_backend
from sandboxes.egress.policy import Egress
from sandboxes.errors import BadRequest, LimitReached, NotFound, SandboxError
from sandboxes.models import Sandbox, Snapshot

MAX_FORKS = 10


def snapshot_out(snapshot: Snapshot) -> dict[str, object]:
    return {
        "id": snapshot.id,
        "name": snapshot.name,
        "sandbox": snapshot.sandbox_id,
        "size_bytes": snapshot.size_bytes,
        "created_at": snapshot.created_at,
        "paused_ms": snapshot.paused_ms,
    }


async def list_snapshots(user: User, sandbox_id: str | None = None) -> list[Snapshot]:
    """The user's snapshots, of one sandbox or of all (newest first)."""
    queryset = Snapshot.objects.filter(owner=user)
    if sandbox_id is not None:
        queryset = queryset.filter(sandbox_id=sandbox_id)
    return [s async for s in queryset]


async def get_snapshot(user: User, snapshot_id: str) -> Snapshot:
    """One of the user's snapshots; anyone else's is reported exactly like a missing one."""
    snapshot = await Snapshot.objects.filter(pk=snapshot_id, owner=user).afirst()
    if snapshot is None:
        raise NotFound(f"No snapshot with id {snapshot_id!r}.", code="not_found")
    return snapshot


async def used_bytes(owner_id: int) -> int:
    total = await Snapshot.objects.filter(owner_id=owner_id).aaggregate(total=Sum("size_bytes"))
    return int(total["total"] or 0)


def _over_quota(used: int, size: int = 0) -> LimitReached:
    quota = settings.SANDBOX_SNAPSHOT_QUOTA
    taking = f" this one would take {size} bytes more, and" if size else ""
    return LimitReached(
        f"Your snapshots use {used} bytes;{taking} the most allowed is {quota} bytes "
        "(SANDBOX_SNAPSHOT_QUOTA). Delete snapshots you no longer need first.",
        code="snapshot_quota_exceeded",
    )


async def take_snapshot(sandbox: Sandbox, name: str = "", *, memory: bool = False) -> Snapshot:
    """Capture ``sandbox``'s files while it keeps running (its processes are frozen
    only while the root filesystem is committed: ``paused_ms``)."""
    if memory:
        raise BadRequest(
            "Snapshots keep files only, not the memory of running programs: checkpointing "
            'processes (CRIU) is not supported by this server. Leave out "memory"; '
            "programs start afresh in a sandbox made from the snapshot.",
            code="memory_snapshot_unsupported",
        )
    if not sandbox.backend_state:
        await lifecycle.ensure_running(sandbox)
    quota = settings.SANDBOX_SNAPSHOT_QUOTA
    used = await used_bytes(sandbox.owner_id)
    if quota and used >= quota:
        raise _over_quota(used)
    snapshot = Snapshot(
        owner_id=sandbox.owner_id,
        name=name or f"snapshot-{secrets.token_hex(4)}",
        sandbox_id=sandbox.id,
    )
    backend = get_backend()
    state = await backend.snapshot(sandbox.backend_state, snapshot.id, sandbox.owner_id)
    snapshot.backend_state = state
    snapshot.size_bytes = int(state.get("size_bytes") or 0)
    snapshot.paused_ms = float(state.get("paused_ms") or 0)
    used = await used_bytes(sandbox.owner_id)
    if quota and used + snapshot.size_bytes > quota:
        await backend.remove_snapshot(state)
        raise _over_quota(used, snapshot.size_bytes)
    await snapshot.asave(force_insert=True)
    await lifecycle.touch(sandbox)
    return snapshot


async def delete_snapshot(snapshot: Snapshot) -> None:
    """Remove the snapshot's image and files; sandboxes made from it keep running."""
    await get_backend().remove_snapshot(snapshot.backend_state)
    await snapshot.adelete()


async def create_from_snapshot(
    user: User, snapshot_id: str, options: lifecycle.SandboxSettings
) -> tuple[Sandbox, bool]:
    """The user's sandbox ``options.name``, made from their snapshot if it is new."""
    options.snapshot = await get_snapshot(user, snapshot_id)
    return await lifecycle.get_or_create_sandbox(user, options)


async def restore(sandbox: Sandbox, snapshot: Snapshot) -> Sandbox:
    """Roll ``sandbox`` back to one of its owner's snapshots, keeping its id."""
    if snapshot.owner_id != sandbox.owner_id:
        raise NotFound(f"No snapshot with id {snapshot.id!r}.", code="not_found")
    await lifecycle.restore_sandbox(sandbox, snapshot)
    return sandbox


@dataclass
class ForkResult:
    snapshot: Snapshot
    sandboxes: list[Sandbox] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def _fork_name(parent: str) -> str:
    return f"{parent[:30]}-{secrets.token_hex(4)}"


async def fork(sandbox: Sandbox, count: int) -> ForkResult:
    """Snapshot ``sandbox`` and start ``count`` new sandboxes from it, with its
    settings; each succeeds or fails on its own (an error entry with its code)."""
    if not 1 <= count <= MAX_FORKS:
        raise BadRequest(f"count must be 1 to {MAX_FORKS}.", code="bad_request")
    snapshot = await take_snapshot(sandbox, f"fork-{secrets.token_hex(4)}")
    owner = await User.objects.aget(pk=sandbox.owner_id)

    async def one(index: int) -> Sandbox | dict[str, Any]:
        options = lifecycle.SandboxSettings(
            name=_fork_name(sandbox.name),
            template=sandbox.template,
            env=dict(sandbox.env),
            sleep_after=sandbox.sleep_after,
            keep_alive=sandbox.keep_alive,
            egress=Egress.stored(sandbox.egress, sandbox.egress_allow).to_api(),
            limits=dict(sandbox.limits),
            snapshot=snapshot,
        )
        try:
            made, _ = await lifecycle.get_or_create_sandbox(owner, options)
        except SandboxError as exc:
            return {"index": index, "code": exc.code, "message": exc.message}
        return made

    result = ForkResult(snapshot)
    for outcome in await asyncio.gather(*(one(i) for i in range(count))):
        if isinstance(outcome, Sandbox):
            result.sandboxes.append(outcome)
        else:
            result.errors.append(outcome)
    return result
