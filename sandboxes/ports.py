"""Exposed ports and their preview URLs (docs/api.md, Ports and preview URLs).

Exposing a port stores a fresh 16-character token; the preview URL
``{port}-{id}-{token}.{PREVIEW_DOMAIN}`` carries it, so the URL itself is the
capability. Exposing the same port again replaces the token (the old URL stops
working), unexposing deletes the row: the preview proxy reads the row on every
request, so both take effect at once, in every web worker.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError

from container.agent.protocol import ListeningPorts, PortList
from sandboxes import agentconn
from sandboxes.agent.client import expect
from sandboxes.errors import AgentError, AgentProtocolError, BadRequest, NotFound
from sandboxes.models import ExposedPort, Sandbox, new_preview_token

# Scheme and port of the request being served on the IDE's own host, set by the
# preview layer (sandboxes/preview/) for every request it passes on, so preview
# URLs in sandbox objects point at the server the caller is talking to.
request_origin: contextvars.ContextVar[tuple[str, int | None]] = contextvars.ContextVar(
    "request_origin"
)

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str = "http"
    port: int | None = None

    @classmethod
    def current(cls) -> Origin:
        value = request_origin.get(None)
        if value is not None:
            return cls(*value)
        base = getattr(settings, "IDE_BASE_URL", "")
        if base:
            parts = urlsplit(base)
            return cls(parts.scheme or "http", parts.port)
        return cls()

    def netloc(self, host: str) -> str:
        if self.port is None or _DEFAULT_PORTS.get(self.scheme) == self.port:
            return host
        return f"{host}:{self.port}"


def preview_host(sandbox_id: str, port: int, token: str) -> str:
    return f"{port}-{sandbox_id}-{token}.{settings.PREVIEW_DOMAIN}"


def preview_url(exposed: ExposedPort, origin: Origin | None = None) -> str:
    origin = origin or Origin.current()
    host = preview_host(exposed.sandbox_id, exposed.port, exposed.token)
    return f"{origin.scheme}://{origin.netloc(host)}/"


def port_out(exposed: ExposedPort, origin: Origin | None = None) -> dict[str, Any]:
    return {
        "port": exposed.port,
        "name": exposed.name,
        "url": preview_url(exposed, origin),
        "token": exposed.token,
        "private": exposed.private,
        "created_at": exposed.created_at,
    }


def exposed_out(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The ``ports`` field of a sandbox object: what ``with_exposed_ports`` loaded."""
    return [port_out(p) for p in getattr(sandbox, "exposed_list", [])]


def validate_port(port: object) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise BadRequest("port must be a whole number from 1 to 65535.", code="invalid_port")
    return port


async def expose(
    sandbox: Sandbox, port: int, name: str = "", private: bool = False
) -> tuple[ExposedPort, bool]:
    """Expose ``port`` with a new token; returns the row and whether it is new."""
    validate_port(port)
    values = {"name": name, "private": private, "token": new_preview_token()}
    for _ in range(3):
        try:
            row, created = await ExposedPort.objects.aupdate_or_create(
                sandbox=sandbox, port=port, defaults=values
            )
            forget(sandbox.id, port)
            return row, created
        except IntegrityError:  # a concurrent expose inserted it first: update it
            continue
    raise AgentError("Could not expose the port; try again.")  # pragma: no cover


async def exposed_ports(sandbox: Sandbox) -> list[ExposedPort]:
    return [p async for p in ExposedPort.objects.filter(sandbox=sandbox)]


async def listening_ports(sandbox: Sandbox, *, wake: bool = True) -> list[int]:
    """The TCP ports listened on in the sandbox: distinct port numbers (1-65535),
    as the agent must send them (``PortList.ports`` is type-checked on decoding).

    ``wake=False`` (a viewer's page polling): none while the sandbox sleeps, and
    asking is not activity that keeps it awake.
    """
    if wake:
        reply = await agentconn.call_agent(sandbox, ListeningPorts())
    elif (peeked := await agentconn.peek_agent(sandbox, ListeningPorts())) is not None:
        reply = peeked
    else:
        return []
    ports = expect(reply, PortList).ports
    if any(not 1 <= p <= 65535 for p in ports) or len(set(ports)) != len(ports):
        raise AgentProtocolError("it listed ports that are not distinct numbers 1-65535.")
    return ports


async def unexpose(sandbox: Sandbox, port: int) -> None:
    deleted, _ = await ExposedPort.objects.filter(sandbox=sandbox, port=port).adelete()
    forget(sandbox.id, port)
    if not deleted:
        raise NotFound(f"Port {port} is not exposed.", code="not_found")


async def find_exposed(sandbox_id: str, port: int) -> ExposedPort | None:
    """The exposure a preview host names, with its sandbox (one query)."""
    return (
        await ExposedPort.objects.select_related("sandbox")
        .filter(sandbox_id=sandbox_id, port=port)
        .afirst()
    )


# Exposures the preview proxy looked up lately, for PREVIEW_CACHE_SECONDS: a page
# load's dozens of requests then cost one query. Exposing or unexposing in this
# process forgets the entry at once; other server processes notice within the TTL.
_recent: dict[tuple[str, int], tuple[float, ExposedPort]] = {}
_RECENT_MAX = 10_000


async def find_exposed_recent(sandbox_id: str, port: int) -> ExposedPort | None:
    key = (sandbox_id, port)
    now = time.monotonic()
    hit = _recent.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    row = await find_exposed(sandbox_id, port)
    ttl = settings.PREVIEW_CACHE_SECONDS
    if row is None or ttl <= 0:
        _recent.pop(key, None)
    else:
        if len(_recent) >= _RECENT_MAX:
            _recent.clear()
        _recent[key] = (now + ttl, row)
    return row


def forget(sandbox_id: str, port: int) -> None:
    _recent.pop((sandbox_id, port), None)
