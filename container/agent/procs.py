"""Starting and ending the programs the agent runs (execs, sessions, background
processes, terminals, code interpreters, starter git).

Every program starts in its own session (process group), so that a timeout, a signal
or a client going away reaches everything it started, not just the first process;
and with the environment of the agent minus the agent's own settings. It runs as the
sandbox user whatever the call site does: ``identity`` makes ``subprocess.Popen``
say so before this module is imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

from .failures import AgentFailure
from .protocol import CHUNK

# The agent's own settings never leak into the programs it runs.
_PRIVATE_ENV = ("SANDBOX_AGENT_", "PYTHONPATH")


def _started_with() -> frozenset[str]:
    """The names of the sandbox's own variables the container was made with (the
    server lists them in ``SANDBOX_AGENT_TENANT_ENV``; empty when it did not)."""
    try:
        names = json.loads(os.environ.get("SANDBOX_AGENT_TENANT_ENV", "[]"))
    except ValueError:
        return frozenset()
    return (
        frozenset(n for n in names if isinstance(n, str))
        if isinstance(names, list)
        else frozenset()
    )


def child_env(extra: dict[str, str], sandbox_env: dict[str, str] | None = None) -> dict[str, str]:
    """The agent's environment without its own settings, then ``sandbox_env`` (the
    sandbox's variables as they are now, replacing those the container was made
    with: a variable removed since is gone), then ``extra`` (this call's own)."""
    dropped = _started_with() if sandbox_env is not None else frozenset()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV) and k not in dropped
    }
    if sandbox_env:
        env.update({k: v for k, v in sandbox_env.items() if not k.startswith(_PRIVATE_ENV)})
    env.update(extra)
    return env


def check_sandbox_env(env: object) -> None:
    """Like ``check_env`` for a request's ``sandbox_env``, which may be absent."""
    if env is not None:
        check_env(env)


def check_env(env: object) -> None:
    """The ``bad_request`` failure unless ``env`` (from a request) is an environment."""
    if not isinstance(env, dict):
        raise AgentFailure("bad_request", "env must be an object of strings")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise AgentFailure("bad_request", "env must be an object of strings")
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise AgentFailure("bad_request", f"invalid environment variable name {key!r}")


def argv_for(command: str | list[str]) -> list[str]:
    """The argv to run: a string runs under ``bash -lc``, a list as it is."""
    if isinstance(command, str):
        if not command.strip():
            raise AgentFailure("bad_request", "command is empty")
        return ["bash", "-lc", command]
    if (
        isinstance(command, list)
        and command
        and all(isinstance(a, str) and "\0" not in a for a in command)
    ):
        return command
    raise AgentFailure("bad_request", "command must be a non-empty string or a list of strings")


def exit_status(code: int) -> tuple[int, str | None]:
    """A return code as the shell reports it (128 + N after signal N), and the
    signal's name when a signal ended the program."""
    if code >= 0:
        return code, None
    try:
        name = signal.Signals(-code).name
    except ValueError:  # a real-time signal has no name of its own
        name = f"SIG{-code}"
    return 128 - code, name


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def kill_group_fully(pgid: int, within: float = 3.0) -> None:
    """SIGKILL a process group until it is empty: a fork bomb forks while it dies,
    so one signal can leave children that were being born."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        await asyncio.sleep(0.01)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


class ChildProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Resolves ``exited`` when the process ends, not when its pipes close.

    asyncio's own ``wait()`` also waits for every pipe to close, so a command that
    leaves a background child holding stdout open would never seem to end.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=CHUNK, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class Child(asyncio.subprocess.Process):
    """A started program whose end is awaited with ``exited`` (see ChildProtocol)."""

    def __init__(
        self,
        transport: asyncio.SubprocessTransport,
        protocol: ChildProtocol,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(transport, protocol, loop)
        self._child_transport = transport
        self._child_protocol = protocol

    async def exited(self) -> int:
        await asyncio.shield(self._child_protocol.exited)
        code = self._child_transport.get_returncode()
        return -1 if code is None else code


async def spawn(argv: list[str], cwd: str, env: dict[str, str], stdin: int) -> Child:
    """Start ``argv`` in a new session with stdout and stderr piped."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: ChildProtocol(loop),
        *argv,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    return Child(transport, protocol, loop)
