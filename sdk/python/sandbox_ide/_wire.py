"""The HTTP and WebSocket wire, shared by the async client and its generated sync
twin: timeouts, headers, and the one mapping from a failed call to an SDK error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import CommandTimeout, ConnectionFailed, SandboxIDEError, from_event, from_response

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
NO_READ_TIMEOUT = httpx.Timeout(None, connect=10.0)
CHUNK = 256 * 1024
USER_AGENT = "sandbox-ide-python/0.1"


def headers(token: str) -> dict[str, str]:
    """What every call sends: the bearer token and who we are."""
    return {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT}


def read_timeout(seconds: float | None) -> httpx.Timeout:
    """A timeout for a call that may wait ``seconds`` for its answer (None: forever)."""
    return httpx.Timeout(seconds, connect=10.0)


def transport_error(url: str, exc: Exception) -> SandboxIDEError:
    """The error for a call that got no answer from the server at ``url``."""
    if isinstance(exc, httpx.TimeoutException):
        return CommandTimeout(
            f"The server at {url} did not answer in time ({type(exc).__name__}); "
            "retry, or pass a longer timeout."
        )
    return ConnectionFailed(f"Could not reach the server at {url}: {exc}.")


def status_error(status: int, content: bytes, fallback: str = "") -> SandboxIDEError:
    """The error for an answer with a failing ``status`` and body ``content``."""
    try:
        body: Any = json.loads(content) if content else None
    except ValueError:
        body = None
    return from_response(status, body, fallback or f"HTTP {status}")


def json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    """The answer's JSON object, or None when it has none."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@dataclass
class TerminalExit:
    """The terminal's shell has exited with ``exit_code``."""

    exit_code: int | None


def terminal_message(message: str | bytes) -> bytes | TerminalExit | None:
    """What one terminal WebSocket message means: output (bytes), the shell's exit,
    or None for a message to skip; an ``error`` event is raised."""
    if isinstance(message, bytes):
        return message
    try:
        event = json.loads(message)
    except ValueError:
        return None
    if isinstance(event, dict) and event.get("type") == "exit":
        return TerminalExit(event.get("exit_code"))
    if isinstance(event, dict) and event.get("type") == "error":
        raise from_event(event)
    return None


def resize_message(cols: int, rows: int) -> str:
    return json.dumps({"type": "resize", "cols": cols, "rows": rows})
