"""Terminals: interactive PTYs in the sandbox over a WebSocket, and their list."""

from __future__ import annotations

import builtins
import contextlib
import json
import re
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed, InvalidStatus

from .. import _api
from .. import _async_io as _io
from .._deadline import Deadline
from .._wire import TerminalExit, headers, resize_message, terminal_message
from ..errors import CommandTimeout, ConnectionFailed, SandboxIDEError, from_response
from ..models import TerminalInfo
from .resource import AsyncPart

if TYPE_CHECKING:
    from .sandbox import AsyncSandbox


class AsyncTerminals(AsyncPart):
    _prefix = "terminals"

    async def list(self) -> builtins.list[TerminalInfo]:
        data = await self._http.json("GET", self._url())
        return [TerminalInfo.from_json(t) for t in data["terminals"]]

    async def kill(self, name: str) -> None:
        """End the terminal's shell."""
        await self._http.request("DELETE", self._url(name))


class AsyncTerminal:
    """An interactive PTY in the sandbox over a WebSocket: ``send`` keystrokes,
    ``recv`` output (``b""`` once the shell has exited, see ``exit_code``)."""

    def __init__(self, sandbox: AsyncSandbox, name: str, cols: int = 80, rows: int = 24) -> None:
        self.sandbox = sandbox
        self.name = name
        self.cols, self.rows = cols, rows
        self.exit_code: int | None = None
        self.closed = False
        self._ws: Any = None
        self._buffer = b""

    @property
    def url(self) -> str:
        http = self.sandbox._http
        return _api.terminal_url(http.url, self.sandbox.id, self.name, self.cols, self.rows)

    async def connect(self, timeout: float = 60) -> AsyncTerminal:
        if self._ws is not None:
            return self
        try:
            self._ws = await _io.ws_connect(self.url, headers(self.sandbox._http.token), timeout)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body: Any = None
            with contextlib.suppress(ValueError):
                body = json.loads(exc.response.body or b"")
            raise from_response(
                status, body, f"The terminal WebSocket was refused (HTTP {status})."
            ) from exc
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailed(f"Could not open the terminal at {self.url}: {exc}.") from exc
        return self

    async def send(self, data: bytes | str) -> None:
        """Send keystrokes (text is UTF-8 encoded)."""
        await self.connect()
        await self._ws.send(data.encode() if isinstance(data, str) else bytes(data))

    async def resize(self, cols: int, rows: int) -> None:
        await self.connect()
        self.cols, self.rows = cols, rows
        await self._ws.send(resize_message(cols, rows))

    async def recv(self, timeout: float | None = None) -> bytes:
        """The next output; ``b""`` when the shell has exited or the connection closed.
        CommandTimeout if nothing came within ``timeout`` seconds."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        await self.connect()
        while not self.closed:
            try:
                message = await _io.ws_recv(self._ws, timeout)
            except TimeoutError as exc:
                raise CommandTimeout(f"No terminal output within {timeout} s.") from exc
            except ConnectionClosed:
                self.closed = True
                return b""
            output = terminal_message(message)
            if isinstance(output, TerminalExit):
                self.exit_code = output.exit_code
                self.closed = True
                return b""
            if output is not None:
                return output
        return b""

    async def expect(self, pattern: bytes | str | re.Pattern[bytes], timeout: float = 30) -> bytes:
        """Read until the output matches ``pattern``; returns the output up to and
        including the match (the rest stays for the next ``recv``)."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        seen = b""
        deadline = Deadline(timeout)
        while True:
            match = regex.search(seen)
            if match:
                self._buffer = seen[match.end() :] + self._buffer
                return seen[: match.end()]
            left = deadline.left()
            if left <= 0:
                self._buffer = seen + self._buffer
                raise CommandTimeout(
                    f"The terminal did not print {regex.pattern!r} within {timeout} s; "
                    f"last output: {seen[-200:]!r}"
                )
            try:
                chunk = await self.recv(timeout=left)
            except CommandTimeout:
                continue
            if not chunk and self.closed:
                self._buffer = seen
                raise SandboxIDEError(
                    f"The terminal closed before printing {regex.pattern!r}.", code="closed"
                )
            seen += chunk

    async def close(self) -> None:
        """Detach (the shell keeps running; ``sandbox.terminals.kill(name)`` ends it)."""
        if self._ws is not None:
            await self._ws.close()
        self.closed = True

    async def __aenter__(self) -> AsyncTerminal:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
