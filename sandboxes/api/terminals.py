"""API v1: terminals (docs/api.md, Terminals). The terminals themselves are
WebSockets (sandboxes/consumers.py); these list and end them."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpResponse
from ninja import Router, Schema

from sandboxes import lifecycle, terminals
from sandboxes.policy import may

from .auth import AuthedRequest
from .sandboxes import ERRORS

router = Router(tags=["terminals"])


class TerminalOut(Schema):
    name: str
    cols: int
    rows: int
    created_at: datetime
    clients: int = 0


class TerminalList(Schema):
    terminals: list[TerminalOut]


@router.get("/sandboxes/{sandbox_id}/terminals", response={200: TerminalList, **ERRORS})
async def list_terminals(request: AuthedRequest, sandbox_id: str) -> dict[str, object]:
    """The sandbox's terminals, oldest first; `clients` is how many are attached."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id, access="read")
    # A viewer's page asks every few seconds: that neither wakes nor keeps awake.
    wake = await may(request.auth, "use", sandbox)
    return {"terminals": await terminals.list_terminals(sandbox, wake=wake)}


@router.delete("/sandboxes/{sandbox_id}/terminals/{name}", response={204: None, **ERRORS})
async def delete_terminal(request: AuthedRequest, sandbox_id: str, name: str) -> HttpResponse:
    """End a terminal: its shell gets HUP (then CONT, INT, TERM, KILL until it goes);
    attached clients receive the `exit` event."""
    sandbox = await lifecycle.get_sandbox(request.auth, sandbox_id)
    await terminals.kill_terminal(sandbox, name)
    return HttpResponse(status=204)
