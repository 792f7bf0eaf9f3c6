"""WebSocket consumers: terminals and live command output (docs/api.md, Terminals).

Thin, as jupyter_server's kernel websocket handler: authenticate and validate the
upgrade (refusing it, never accepting then closing, when that fails), then hand the
traffic to a session object (sandboxes/terminals.py) or to execs.exec_stream.

Refusals close before accept with ``4000 + HTTP status``: 4401 no or bad
credentials, 4404 no such sandbox (someone else's included), 4400 bad name or
size. (Over Daphne a refused upgrade is an HTTP 403.) After accepting, failures are
an ``{"type": "error", "code", "message"}`` event and a close with the same scheme.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from pydantic import ValidationError

from sandboxes import terminals
from sandboxes.api.schemas import ExecIn
from sandboxes.api.serialize import exit_out
from sandboxes.errors import BadRequest, Conflict, Forbidden, SandboxError
from sandboxes.execs import ExecRequest, StdinFeed, Text, exec_stream, text_events
from sandboxes.lifecycle import get_sandbox
from sandboxes.models import Sandbox
from sandboxes.policy import Action, until_denied
from sandboxes.wsauth import scope_user

log = logging.getLogger(__name__)

# The WebSocket's own send buffer may hold this much before output is paused.
SEND_WINDOW_HIGH = 256 * 1024
SEND_WINDOW_LOW = 64 * 1024
# Live input the command has not read yet may wait here up to this much; more is
# refused with a ``stdin_full`` error event (the command goes on).
STDIN_WINDOW = 1024 * 1024


def close_code(exc: SandboxError) -> int:
    return 4000 + exc.status if 400 <= exc.status < 600 else 4500


class _SandboxConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]  # channels: untyped
    # No channel-layer subscription: nothing is ever sent to these sockets from other
    # processes (a terminal's state lives in the agent), so a WebSocket neither polls
    # Redis for the whole of its life nor dies when Redis is away.
    channel_layer_alias = "none"
    sandbox: Sandbox | None = None
    relay: asyncio.Task[None] | None = None
    watchdog: asyncio.Task[None] | None = None

    async def authorize(self) -> bool:
        """Refuse the upgrade unless the caller is known and owns the sandbox."""
        user = scope_user(self.scope)
        if user is None:
            await self.close(code=4401)
            return False
        try:
            self.prepare()
            self.sandbox = await get_sandbox(
                user, self.scope["url_route"]["kwargs"]["sandbox_id"], action=self.action()
            )
        except SandboxError as exc:
            await self.close(code=close_code(exc))
            return False
        return True

    def prepare(self) -> None:
        """Validate the URL before the sandbox is looked up (raise BadRequest)."""

    def action(self) -> Action:
        """Acting as the owner by default; a read-only terminal attach only looks."""
        return "use"

    def output(self) -> terminals.WebSocketOut:
        return terminals.WebSocketOut(
            lambda data: self.send(bytes_data=data),
            lambda text: self.send(text_data=text),
            terminals.SendWindow(self.scope, SEND_WINDOW_HIGH, SEND_WINDOW_LOW),
        )

    async def fail(self, exc: SandboxError) -> None:
        with contextlib.suppress(Exception):
            await self.send(text_data=json.dumps(terminals.error_event(exc)))
            reason = exc.message.encode()[:120].decode(errors="ignore")
            await self.close(code=close_code(exc), reason=reason)

    async def disconnect(self, code: int) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.relay is not None:
            self.relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.relay


class TerminalConsumer(_SandboxConsumer):
    """``/ws/sandboxes/{sandbox_id}/terminals/{name}?cols=&rows=&readonly=``"""

    session: terminals.TerminalSession | None = None

    def prepare(self) -> None:
        self.options = terminals.parse_options(
            self.scope["url_route"]["kwargs"]["name"], self.scope.get("query_string", b"")
        )

    def action(self) -> Action:
        return "view" if self.options.readonly else "use"

    async def connect(self) -> None:
        if not await self.authorize() or self.sandbox is None:
            return
        await self.accept()
        self.session = terminals.TerminalSession(self.sandbox, self.options)
        self.relay = asyncio.create_task(self.run())
        user = scope_user(self.scope)
        if user is not None and self.sandbox.owner_id != user.pk:
            self.watchdog = asyncio.create_task(self.close_when_revoked(user))

    async def close_when_revoked(self, user: Any) -> None:
        """A teacher or classmate watching: the view may be taken away meanwhile."""
        assert self.sandbox is not None  # noqa: S101 - set in connect
        await until_denied(user, "view", self.sandbox)
        await self.fail(Forbidden("This view was revoked.", code="view_revoked"))
        if self.relay is not None:
            self.relay.cancel()

    async def run(self) -> None:
        assert self.session is not None  # noqa: S101 - set in connect
        try:
            await self.session.open()
            await self.close(code=await self.session.relay_outgoing(self.output()))
        except SandboxError as exc:
            await self.fail(exc)
        finally:
            await self.session.close()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Keystrokes go straight to ``receive``: channels checks the database
        connections (a hop to the database thread and back) before every message,
        which was most of a keystroke's time in the server. A keystroke reaches the
        database only through the session's activity mark, which checks them itself."""
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is not None:
            await self.session.handle_incoming(text_data, bytes_data)

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if self.session is not None:
            await self.session.close()


class ExecConsumer(_SandboxConsumer):
    """``/ws/sandboxes/{sandbox_id}/exec``: the first text message is the exec body
    (as ``POST …/exec``, where ``"stdin": true`` asks for live input); then
    ``stdout``/``stderr`` events and one ``exit``. Meanwhile the client may send
    input: binary messages or ``{"type": "stdin", "data"}``, and
    ``{"type": "stdin_close"}`` to end it."""

    stdin: StdinFeed | None = None
    ended = False  # the exit went out and the socket is closing: later input is moot

    async def connect(self) -> None:
        if await self.authorize():
            await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.relay is None:
            try:
                request = parse_exec(text_data)
            except SandboxError as exc:
                await self.fail(exc)
                return
            self.stdin = StdinFeed(STDIN_WINDOW) if request.stdin_stream else None
            self.relay = asyncio.create_task(self.run(request))
            return
        if self.ended:
            return
        try:
            self.take_input(text_data, bytes_data)
        except SandboxError as exc:  # the command goes on; only this input is refused
            with contextlib.suppress(Exception):  # unless the socket closed meanwhile
                await self.send(text_data=json.dumps(terminals.error_event(exc)))

    def take_input(self, text: str | None, data: bytes | None) -> None:
        """One message after the command: input for its stdin, or the end of it."""
        if self.stdin is None:
            raise Conflict(
                'This command was started without live stdin; send "stdin": true in '
                "the first message to write to it.",
                code="stdin_not_open",
            )
        if data is not None:
            self.stdin.write(data)
            return
        try:
            message: Any = json.loads(text or "")
        except ValueError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "stdin" and isinstance(message.get("data"), str):
            self.stdin.write(message["data"].encode())
        elif kind == "stdin_close":
            self.stdin.close()
        else:
            raise BadRequest(
                'Send {"type": "stdin", "data": "text"}, {"type": "stdin_close"} or binary input.'
            )

    async def run(self, request: ExecRequest) -> None:
        assert self.sandbox is not None  # noqa: S101 - set in connect
        out = self.output()
        events = text_events(exec_stream(self.sandbox, request, self.stdin))
        try:
            async for item in events:
                if isinstance(item, Text):
                    await out.event({"type": item.stream, "data": item.text})
                elif item.exit is not None:
                    self.ended = True
                    await out.event({"type": "exit", **exit_out(item.exit)})
                    await self.close(code=1000)
                    return
        except SandboxError as exc:
            await self.fail(exc)
        finally:
            await events.aclose()


def parse_exec(text: str | None) -> ExecRequest:
    """The first message: the HTTP exec body, validated the same way, where
    ``"stdin": true`` (not a text) means input follows on the WebSocket."""
    if not text:
        raise BadRequest("Send the command as a JSON text message first.")
    stream = False
    try:
        body: Any = json.loads(text)
        if isinstance(body, dict) and isinstance(body.get("stdin"), bool):
            stream = body.pop("stdin")
        payload = ExecIn.model_validate(body)
    except ValueError as exc:
        message = str(exc).splitlines()
        if isinstance(exc, ValidationError) and exc.errors():
            first = exc.errors()[0]
            where = str(first["loc"][0]) if first.get("loc") else "body"
            message = [f"{where}: {first.get('msg', 'is invalid')}"]
        raise BadRequest(f"Invalid exec request: {message[0]}") from None
    return ExecRequest(
        command=payload.command,
        cwd=payload.cwd,
        env=payload.env or {},
        timeout=payload.timeout,
        stdin=payload.stdin,
        stdin_stream=stream,
    )
