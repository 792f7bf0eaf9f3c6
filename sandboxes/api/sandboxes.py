"""API v1: sandboxes (docs/api.md, Sandboxes)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable

from django.http import HttpResponse, StreamingHttpResponse
from ninja import Router

from sandboxes import lifecycle, progress, snapshots
from sandboxes.disk import disk_usage
from sandboxes.egress.policy import Egress
from sandboxes.models import Sandbox
from sandboxes.ports import exposed_out
from sandboxes.templates import launch, service

from . import sse
from .auth import AuthedRequest
from .schemas import ErrorOut, SandboxIn, SandboxList, SandboxOut, SandboxPatch, SleepIn

router = Router(tags=["sandboxes"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 503: ErrorOut}


def sandbox_out(sandbox: Sandbox) -> dict[str, object]:
    return {
        "id": sandbox.id,
        "name": sandbox.name,
        "status": sandbox.status,
        "status_detail": sandbox.status_detail,
        "template": sandbox.template,
        "created_at": sandbox.created_at,
        "last_active_at": sandbox.last_active_at,
        "sleep_after": sandbox.sleep_after,
        "keep_alive": sandbox.keep_alive,
        "image": sandbox.image,
        "env": sandbox.env,
        "ports": exposed_out(sandbox),
        "sleep_tier": sandbox.sleep_tier,
        # What the sandbox has: "none" when it asked for more but the host firewall
        # could not be installed (egress_detail says so).
        "egress": (
            "none"
            if sandbox.egress_detail
            else Egress.stored(sandbox.egress, sandbox.egress_allow).to_api()
        ),
        "egress_detail": sandbox.egress_detail,
        "settings_apply": lifecycle.SETTINGS_APPLY,
    }


def _generated_name() -> str:
    return "sandbox-" + secrets.token_hex(4)


@router.post(
    "/sandboxes",
    response={200: SandboxOut, 201: SandboxOut, **ERRORS},
    openapi_extra={
        "responses": {
            201: {
                "description": "The new sandbox, or (from a template) with `Accept: "
                "text/event-stream` `progress` events and one `done` event.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        }
    },
)
async def create_sandbox(
    request: AuthedRequest, payload: SandboxIn | None = None
) -> tuple[int, dict[str, object]] | StreamingHttpResponse:
    """Get or create the caller's sandbox by name (201 new, 200 existing), running."""
    payload = payload or SandboxIn()
    if payload.template and payload.template != launch.DEFAULT_TEMPLATE:
        # a template of the caller's (404 otherwise), its starter installed
        template = await service.get_template(request.auth, payload.template)

        def work(report: progress.Report) -> Awaitable[tuple[Sandbox, bool]]:
            return launch.create_sandbox_from_template_ex(
                request.auth,
                template,
                payload.name or _generated_name(),
                env=payload.env or {},
                sleep_after=payload.sleep_after,
                keep_alive=bool(payload.keep_alive),
                egress=payload.egress or "all",
                report=report,
            )

        if sse.wants_stream(request.headers.get("Accept", "")):
            return sse.response(sse.progress(progress.follow(work), lambda r: sandbox_out(r[0])))
        sandbox, created = await work(progress.ignore)
        return (201 if created else 200), sandbox_out(sandbox)
    options = lifecycle.SandboxSettings(
        name=payload.name or _generated_name(),
        template=payload.template or "",
        env=payload.env or {},
        sleep_after=payload.sleep_after,
        keep_alive=bool(payload.keep_alive),
        egress=payload.egress or "all",
    )
    if payload.snapshot:
        sandbox, created = await snapshots.create_from_snapshot(
            request.auth, payload.snapshot, options
        )
        return (201 if created else 200), sandbox_out(sandbox)
    sandbox, created = await lifecycle.get_or_create_sandbox(request.auth, options)
    return (201 if created else 200), sandbox_out(sandbox)


@router.get("/sandboxes", response={200: SandboxList, **ERRORS})
async def list_sandboxes(request: AuthedRequest) -> dict[str, object]:
    sandboxes = await lifecycle.list_sandboxes(request.auth)
    return {"sandboxes": [sandbox_out(s) for s in sandboxes]}


@router.get("/sandboxes/{sandbox_id}", response={200: SandboxOut, **ERRORS})
async def get_sandbox(request: AuthedRequest, sandbox_id: str) -> dict[str, object]:
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, with_ports=True, action="view")
    out = sandbox_out(sandbox)
    out["disk"] = disk = await disk_usage(sandbox)
    if disk and disk["exceeded"] and not sandbox.status_detail:
        out["status_detail"] = disk["message"]
    return out


@router.patch("/sandboxes/{sandbox_id}", response={200: SandboxOut, **ERRORS})
async def patch_sandbox(
    request: AuthedRequest, sandbox_id: str, payload: SandboxPatch
) -> dict[str, object]:
    sandbox = await lifecycle.get_sandbox(
        request.auth, sandbox_id, with_ports=True, action="manage"
    )
    changes = payload.model_dump(exclude_unset=True)
    if payload.egress is not None:
        changes["egress"] = payload.egress  # the model, not its dump
    return sandbox_out(await lifecycle.update_sandbox(sandbox, changes))


@router.delete("/sandboxes/{sandbox_id}", response={204: None, **ERRORS})
async def delete_sandbox(request: AuthedRequest, sandbox_id: str) -> HttpResponse:
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, action="manage")
    await lifecycle.destroy_sandbox(sandbox)
    return HttpResponse(status=204)


@router.post("/sandboxes/{sandbox_id}/sleep", response={200: SandboxOut, **ERRORS})
async def sleep_sandbox(
    request: AuthedRequest, sandbox_id: str, payload: SleepIn | None = None
) -> dict[str, object]:
    """Sleep now: ``pause`` (default; memory kept, wakes in milliseconds) or ``stop``."""
    sandbox = await lifecycle.get_sandbox(
        request.auth, sandbox_id, with_ports=True, action="manage"
    )
    await lifecycle.sleep_sandbox(sandbox, (payload or SleepIn()).tier)
    return sandbox_out(sandbox)


@router.post("/sandboxes/{sandbox_id}/wake", response={200: SandboxOut, **ERRORS})
async def wake_sandbox(request: AuthedRequest, sandbox_id: str) -> dict[str, object]:
    sandbox = await lifecycle.get_sandbox(
        request.auth, sandbox_id, with_ports=True, action="manage"
    )
    await lifecycle.ensure_running(sandbox)
    return sandbox_out(sandbox)
