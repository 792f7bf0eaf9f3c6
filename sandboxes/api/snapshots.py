"""API v1: snapshots, fork and restore (docs/api.md, Snapshots)."""

from __future__ import annotations

from django.http import HttpResponse
from ninja import Router

from sandboxes import lifecycle, snapshots

from .auth import AuthedRequest
from .sandboxes import sandbox_out
from .schemas import (
    ErrorOut,
    ForkIn,
    ForkOut,
    RestoreIn,
    SandboxOut,
    SnapshotIn,
    SnapshotList,
    SnapshotOut,
)

router = Router(tags=["snapshots"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 429: ErrorOut, 503: ErrorOut}


@router.post("/sandboxes/{sandbox_id}/snapshots", response={201: SnapshotOut, **ERRORS})
async def create_snapshot(
    request: AuthedRequest, sandbox_id: str, payload: SnapshotIn | None = None
) -> tuple[int, dict[str, object]]:
    """Capture the sandbox's workspace and installed packages while it keeps running."""
    payload = payload or SnapshotIn()
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, action="manage")
    snapshot = await snapshots.take_snapshot(sandbox, payload.name or "", memory=payload.memory)
    return 201, snapshots.snapshot_out(snapshot)


@router.get("/sandboxes/{sandbox_id}/snapshots", response={200: SnapshotList, **ERRORS})
async def list_sandbox_snapshots(request: AuthedRequest, sandbox_id: str) -> dict[str, object]:
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, action="manage")
    found = await snapshots.list_snapshots(request.auth, sandbox.id)
    return {"snapshots": [snapshots.snapshot_out(s) for s in found]}


@router.get("/snapshots", response={200: SnapshotList, **ERRORS})
async def list_snapshots(request: AuthedRequest) -> dict[str, object]:
    """All your snapshots, those of deleted sandboxes too."""
    found = await snapshots.list_snapshots(request.auth)
    return {"snapshots": [snapshots.snapshot_out(s) for s in found]}


@router.get("/snapshots/{snapshot_id}", response={200: SnapshotOut, **ERRORS})
async def get_snapshot(request: AuthedRequest, snapshot_id: str) -> dict[str, object]:
    return snapshots.snapshot_out(await snapshots.get_snapshot(request.auth, snapshot_id))


@router.delete("/snapshots/{snapshot_id}", response={204: None, **ERRORS})
async def delete_snapshot(request: AuthedRequest, snapshot_id: str) -> HttpResponse:
    snapshot = await snapshots.get_snapshot(request.auth, snapshot_id)
    await snapshots.delete_snapshot(snapshot)
    return HttpResponse(status=204)


@router.post("/sandboxes/{sandbox_id}/fork", response={200: ForkOut, **ERRORS})
async def fork_sandbox(
    request: AuthedRequest, sandbox_id: str, payload: ForkIn | None = None
) -> dict[str, object]:
    """Snapshot the sandbox and start ``count`` new ones from it; each fork succeeds
    or fails on its own (``errors``)."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, action="manage")
    result = await snapshots.fork(sandbox, (payload or ForkIn()).count)
    return {
        "snapshot": snapshots.snapshot_out(result.snapshot),
        "sandboxes": [sandbox_out(s) for s in result.sandboxes],
        "errors": result.errors,
    }


@router.post("/sandboxes/{sandbox_id}/restore", response={200: SandboxOut, **ERRORS})
async def restore_sandbox(
    request: AuthedRequest, sandbox_id: str, payload: RestoreIn
) -> dict[str, object]:
    """Roll the sandbox back to a snapshot of yours: its workspace and installed
    packages become the snapshot's; its id and settings stay."""
    sandbox = await lifecycle.get_sandbox(
        request.auth, sandbox_id, with_ports=True, action="manage"
    )
    snapshot = await snapshots.get_snapshot(request.auth, payload.snapshot)
    return sandbox_out(await snapshots.restore(sandbox, snapshot))
