"""Commands: ``sandbox.exec`` and the shell sessions that keep a cwd and env between execs."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

from .. import _api
from .. import _async_io as _io
from .._streams import CommandEvents
from .._wire import NO_READ_TIMEOUT
from ..errors import CommandFailed, CommandTimeout
from ..models import CommandResult, SessionInfo
from .http import AsyncHTTP
from .resource import AsyncPart


class AsyncCommands:
    """``exec``, mixed into the sandbox."""

    _http: AsyncHTTP
    _path: str

    async def exec(
        self,
        command: str | Sequence[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
        stdin: str | None = None,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        check: bool = False,
        session: SessionInfo | str | None = None,
    ) -> CommandResult:
        """Run a command (a string under ``bash -lc``, a list as argv) and wait for it.

        With ``on_stdout``/``on_stderr`` the output streams to them as it arrives.
        ``timeout`` kills the command (``result.timed_out``); ``check=True`` raises
        CommandFailed / CommandTimeout instead of returning a failed result. In a
        ``session`` (``sandbox.sessions.create()``) ``cd`` and ``export`` carry over.
        """
        body = _api.drop_none(
            command=_api.command(command),
            cwd=cwd,
            env=env,
            timeout=timeout,
            stdin=stdin,
            session=_api.ref(session) if session is not None else None,
        )
        path = self._path + "/exec"
        if on_stdout is None and on_stderr is None:
            data = await self._http.json("POST", path, json=body, timeout=NO_READ_TIMEOUT)
            result = CommandResult.from_json(data)
        else:
            events = CommandEvents(on_stdout, on_stderr)
            async for event, data in self._http.events("POST", path, json=body):
                await _io.maybe_await(events.feed(event, data))
            result = events.result()
        if check and result.timed_out:
            raise CommandTimeout(f"The command timed out after {timeout} s: {command!r}.")
        if check and not result.success:
            raise CommandFailed(
                f"The command exited with {result.exit_code}: {command!r}; "
                f"stderr: {result.stderr[-500:]!r}",
                result,
            )
        return result


class AsyncSessions(AsyncPart):
    """Shell sessions: execs that name one share its cwd and environment."""

    _prefix = "sessions"

    async def create(
        self,
        id: str | None = None,  # noqa: A002 - the API's name
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> SessionInfo:
        body = _api.drop_none(id=id, cwd=cwd, env=env)
        return SessionInfo.from_json(await self._http.json("POST", self._url(), json=body))

    async def list(self) -> builtins.list[SessionInfo]:
        data = await self._http.json("GET", self._url())
        return [SessionInfo.from_json(item) for item in data["sessions"]]

    async def get(self, session_id: str) -> SessionInfo:
        return SessionInfo.from_json(await self._http.json("GET", self._url(session_id)))

    async def delete(self, session: SessionInfo | str) -> None:
        await self._http.request("DELETE", self._url(_api.ref(session)))
