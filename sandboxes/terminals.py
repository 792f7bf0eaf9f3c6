"""Terminals: the host's half of a PTY session that lives in the agent.

The shell, its replay buffer and the fan-out to several clients are in the agent
(container/agent/terminals.py); this module attaches one WebSocket client to one
terminal and relays between them with flow control:

* output: a frame is read from the agent only after the previous one was handed to
  the WebSocket *and* the socket's send buffer is below a small window
  (``SendWindow``), so a slow browser slows the agent's queue for it, which in turn
  pauses the PTY (or, if other clients keep up, skips output for this one);
* input: keystrokes are written to the agent connection and drained, so a paste
  larger than the PTY can take waits instead of piling up.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from channels.db import aclose_old_connections
from django.conf import settings

from container.agent.protocol import (
    Channel,
    Error,
    Exit,
    Kind,
    ProtocolError,
    TerminalAttach,
    TerminalAttached,
    TerminalKill,
    TerminalLagged,
    TerminalList,
    TerminalListing,
    TerminalResize,
    conforms,
)
from sandboxes import agentconn, lifecycle
from sandboxes.agent.client import decode_control, expect, receive_message
from sandboxes.errors import AgentError, AgentProtocolError, BadRequest, SandboxError, from_agent
from sandboxes.models import Sandbox

NAME_RE = re.compile(r"[a-z0-9-]{1,40}\Z")
MAX_COLS, MAX_ROWS = 1000, 500
# Terminal traffic marks the sandbox active at most this often (lifecycle.touch
# writes even less often).
TOUCH_INTERVAL = 2.0


@dataclass(frozen=True)
class TerminalOptions:
    name: str
    cols: int = 80
    rows: int = 24
    readonly: bool = False
    idle_timeout: float | None = None


def _int_param(query: dict[str, list[str]], key: str, default: int, low: int, high: int) -> int:
    values = query.get(key)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise BadRequest(f"{key} must be a whole number.", code="invalid_size") from None
    if not low <= value <= high:
        raise BadRequest(f"{key} must be between {low} and {high}.", code="invalid_size")
    return value


def parse_options(name: str, query_string: bytes | str) -> TerminalOptions:
    """The terminal URL's name and query (``cols``, ``rows``, ``readonly``,
    ``idle_timeout``), validated.

    A read-only attach (a viewer) watches a terminal someone else may own: every
    option that would change it (its size, how long it lives once idle) is dropped
    here, unread, so the attach the agent gets asks for nothing but to watch.
    """
    if not NAME_RE.match(name):
        raise BadRequest(
            "A terminal name is 1-40 characters of a-z, 0-9 and '-'.", code="invalid_name"
        )
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    query = parse_qs(query_string)
    readonly = (query.get("readonly") or ["0"])[-1].lower() in ("1", "true", "yes")
    if readonly:
        return TerminalOptions(name=name, readonly=True, idle_timeout=None)
    idle_timeout: float | None = settings.TERMINAL_IDLE_TIMEOUT
    if query.get("idle_timeout"):
        requested = _int_param(query, "idle_timeout", 0, 1, int(settings.TERMINAL_IDLE_TIMEOUT))
        idle_timeout = float(requested)
    return TerminalOptions(
        name=name,
        cols=_int_param(query, "cols", 80, 1, MAX_COLS),
        rows=_int_param(query, "rows", 24, 1, MAX_ROWS),
        readonly=readonly,
        idle_timeout=idle_timeout,
    )


# ----------------------------------------------------------------- flow control


# Set by ide/daphne_internals.py on WebSocket scopes (same name there).
SEND_BUFFER = "sandbox_ide.send_buffer"


class SendWindow:
    """Wait while a WebSocket's outgoing buffer holds more than ``high`` bytes, until
    it is down to ``low``.

    ASGI's ``send`` returns as soon as the server took the message; on Daphne it goes
    to a Twisted transport whose buffer grows without limit when the peer reads
    slowly. ``python -m ide.server`` already makes every ``send`` wait above 512 KiB;
    this window is kept on top of it because a terminal is interactive: its smaller
    window (and the pause down to ``low``) keeps what a Ctrl-C waits behind short,
    and it holds under plain ``daphne`` too, which has no server-wide mark. The
    buffer's size comes from the server as the ``SEND_BUFFER`` scope extension; a
    server without it (or a test's communicator) gets no window: this never waits.
    """

    def __init__(self, scope: Mapping[str, Any], high: int, low: int) -> None:
        self.high = high
        self.low = low
        extension = (scope.get("extensions") or {}).get(SEND_BUFFER) or {}
        self.unsent: Callable[[], int] | None = extension.get("unsent")

    def buffered(self) -> int:
        return self.unsent() if self.unsent is not None else 0

    async def wait(self) -> None:
        if self.buffered() <= self.high:
            return
        delay = 0.001
        while self.buffered() > self.low:  # 0 once the connection is gone
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)


class WebSocketOut:
    """What a session needs from the consumer: send bytes, send an event, close."""

    def __init__(
        self,
        send_bytes: Callable[[bytes], Awaitable[None]],
        send_text: Callable[[str], Awaitable[None]],
        window: SendWindow | None = None,
    ) -> None:
        self._send_bytes = send_bytes
        self._send_text = send_text
        self.window = window

    async def data(self, payload: bytes) -> None:
        await self._send_bytes(payload)
        if self.window:
            await self.window.wait()

    async def event(self, event: dict[str, Any]) -> None:
        await self._send_text(json.dumps(event, separators=(",", ":")))
        if self.window:
            await self.window.wait()


# --------------------------------------------------------------------- sessions


class TerminalSession:
    """One WebSocket client attached to one terminal in the agent.

    Like jupyter_server's kernel websocket connection: the consumer authenticates
    and validates, then hands every incoming message to ``handle_incoming`` and lets
    ``relay_outgoing`` run until the terminal exits or either side goes away.
    """

    def __init__(self, sandbox: Sandbox, options: TerminalOptions) -> None:
        self.sandbox = sandbox
        self.options = options
        self.attached: TerminalAttached | None = None
        self._channel: Channel | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._touched = 0.0

    async def open(self) -> TerminalAttached:
        """Attach (creating the terminal if it is new); wakes a sleeping sandbox."""
        request = TerminalAttach(
            name=self.options.name,
            cols=self.options.cols,
            rows=self.options.rows,
            readonly=self.options.readonly,
            idle_timeout=self.options.idle_timeout,
            replay_limit=settings.TERMINAL_REPLAY_BYTES,
            max_terminals=settings.TERMINAL_MAX_PER_SANDBOX,
            sandbox_env=lifecycle.program_env(self.sandbox),
        )
        channel = await agentconn.open_agent(self.sandbox, request)
        try:
            reply = await receive_message(channel)
            if not isinstance(reply, TerminalAttached):
                raise AgentError(f"unexpected answer to terminal_attach: {reply.type}")
        except BaseException:
            await channel.close()
            raise
        self._channel = channel
        self.attached = reply
        self._ready.set()
        return reply

    async def _activity(self) -> None:
        now = time.monotonic()
        if now - self._touched >= TOUCH_INTERVAL:
            self._touched = now
            # What channels does before each message, done here for the keystrokes
            # (TerminalConsumer.dispatch) and the output: stale connections go first.
            await aclose_old_connections()
            await lifecycle.touch(self.sandbox)

    async def handle_incoming(self, text: str | None = None, data: bytes | None = None) -> None:
        """Keystrokes (bytes) or a JSON control message (text) from the client."""
        await self._ready.wait()
        if self._channel is None or self._closed:
            return
        await self._activity()
        if self.options.readonly:
            return  # the agent ignores them too; no need to carry them
        try:
            if data:
                await self._channel.send_data(Kind.STDIN, data)  # a paste may be big
            elif text:
                resize = parse_control(text)
                if resize is not None:
                    await self._channel.send_message(resize)
        except (ConnectionError, OSError):
            pass  # the relay notices the broken connection and reports it

    async def relay_outgoing(self, out: WebSocketOut) -> int:
        """Output and events until the shell exits (an ``exit`` event) or the agent
        connection ends (an ``error`` event); returns the WebSocket close code."""
        channel = self._channel
        if channel is None:
            raise RuntimeError("open() the session first")
        while True:
            try:
                frame = await channel.receive()
            except (ConnectionError, OSError, ProtocolError):
                frame = None
            if frame is None:
                if not self._closed:
                    await out.event(
                        {
                            "type": "error",
                            "code": "agent_error",
                            "message": "The connection to the sandbox was lost "
                            "(did it stop or go to sleep?). Reconnect to re-attach.",
                        }
                    )
                return 4000 + AgentError.status
            kind, payload = frame
            if kind == Kind.DATA:
                await out.data(payload)
                await self._activity()
                continue
            if kind != Kind.CONTROL:
                continue
            try:
                message = decode_control(payload)
            except AgentProtocolError as exc:
                await out.event(error_event(exc))
                return 4000 + exc.status
            if isinstance(message, Exit):
                await out.event({"type": "exit", "exit_code": message.exit_code})
                return 1000
            if isinstance(message, TerminalLagged):
                await out.event({"type": "lagged", "skipped": message.skipped})
            elif isinstance(message, Error):
                error = from_agent(message.code, message.message)
                await out.event(error_event(error))
                return 4000 + error.status

    async def close(self) -> None:
        self._closed = True
        self._ready.set()
        if self._channel is not None:
            await self._channel.close()


def parse_control(text: str) -> TerminalResize | None:
    """A client's JSON control message; unknown or malformed ones are ignored
    (a terminal must not die of a stray message)."""
    try:
        message = json.loads(text)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "resize":
        return None
    cols, rows = message.get("cols"), message.get("rows")
    if (
        isinstance(cols, int)
        and isinstance(rows, int)
        and not isinstance(cols, bool)
        and not isinstance(rows, bool)
        and 1 <= cols <= MAX_COLS
        and 1 <= rows <= MAX_ROWS
    ):
        return TerminalResize(cols=cols, rows=rows)
    return None


# ------------------------------------------------------------ list and delete


async def list_terminals(sandbox: Sandbox, *, wake: bool = True) -> list[dict[str, Any]]:
    """``wake=False`` (a viewer's page polling): none while the sandbox sleeps, and
    asking is not activity that keeps it awake."""
    if wake:
        answer = await agentconn.call_agent(sandbox, TerminalList())
    elif (peeked := await agentconn.peek_agent(sandbox, TerminalList())) is not None:
        answer = peeked
    else:
        return []
    reply = expect(answer, TerminalListing)
    return [_terminal_out(t) for t in reply.terminals]


# A listed terminal: field -> its type, as the API shows it.
TERMINAL_FIELDS: dict[str, Any] = {
    "name": str,
    "cols": int,
    "rows": int,
    "created_at": str,
    "clients": int,
}


def _terminal_out(data: object) -> dict[str, Any]:
    """A listed terminal, checked: an object whose fields have their types and whose
    ``created_at`` is a date (anything else is the agent's fault, a 502)."""
    if not isinstance(data, dict) or not all(
        conforms(data.get(k), hint) for k, hint in TERMINAL_FIELDS.items()
    ):
        raise AgentProtocolError("it listed a terminal that is not one.")
    try:
        datetime.fromisoformat(data["created_at"])
    except ValueError:
        raise AgentProtocolError("it listed a terminal with no creation date.") from None
    return {key: data[key] for key in TERMINAL_FIELDS}


async def kill_terminal(sandbox: Sandbox, name: str) -> None:
    """End a terminal politely (HUP, CONT, INT, TERM, then KILL); 404 if unknown."""
    if not NAME_RE.match(name):
        raise BadRequest(
            "A terminal name is 1-40 characters of a-z, 0-9 and '-'.", code="invalid_name"
        )
    await agentconn.call_agent(sandbox, TerminalKill(name=name))


def error_event(exc: SandboxError) -> dict[str, Any]:
    return {"type": "error", "code": exc.code, "message": exc.message}
