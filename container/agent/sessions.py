"""Shell sessions (issue 3, Cloudflare's ``createSession``): ``cd`` and ``export``
carry over between the execs that name a session.

A session is state, not a process: a working directory and an environment. Each
exec in it is an ordinary exec (same streaming, timeout, exit code and process
group handling, see ``execs.run_to_exit``) of ``bash -c`` started in that state;
an EXIT trap writes the shell's final ``$PWD`` and ``env -0`` to a private file,
which becomes the session's new state. A command killed by its timeout leaves the
state as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import time
from datetime import UTC, datetime
from typing import Any

from . import execs
from .protocol import (
    Channel,
    Error,
    Exec,
    Exit,
    Message,
    SessionCreate,
    SessionDelete,
    SessionGet,
    SessionInfo,
    SessionList,
    SessionListing,
    Started,
)

STATE_DIR = os.environ.get("SANDBOX_AGENT_SESSION_STATE", "/tmp/.sandbox-sessions")  # noqa: S108
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MAX_SESSIONS = 128
# Variables bash maintains by itself: carrying them over would make them drift.
_VOLATILE = {"_", "SHLVL", "BASH_EXECUTION_STRING"}


class Session:
    def __init__(self, session_id: str, cwd: str, env: dict[str, str]) -> None:
        self.id = session_id
        self.cwd = cwd
        self.env = env
        self.created_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.runs = 0

    def info(self) -> SessionInfo:
        return SessionInfo(id=self.id, cwd=self.cwd, env=dict(self.env), created_at=self.created_at)


SESSIONS: dict[str, Session] = {}


def _parse_state(raw: bytes) -> tuple[str, dict[str, str]] | None:
    parts = raw.split(b"\0")
    if len(parts) < 2 or not parts[0]:
        return None
    cwd = parts[0].decode(errors="surrogateescape")
    env: dict[str, str] = {}
    for item in parts[1:]:
        key, sep, value = item.decode(errors="surrogateescape").partition("=")
        if sep and key and key not in _VOLATILE:
            env[key] = value
    return cwd, env


async def _login_env(cwd: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment a login shell has in ``cwd`` with ``extra`` set."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-lc",
        "env -0",
        cwd=cwd,
        env=execs.child_env(extra),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    except TimeoutError:
        execs.kill_group(proc.pid)
        out = b""
    state = _parse_state(b"/\0" + out) if out else None
    env = state[1] if state else execs.child_env({})
    env.update(extra)  # what the caller asked for wins over profile scripts
    for key in (*_VOLATILE, "OLDPWD"):
        env.pop(key, None)
    env["PWD"] = cwd
    return env


# ------------------------------------------------------------------------ handlers


async def handle_create(request: Message, channel: Channel) -> None:
    assert isinstance(request, SessionCreate)  # noqa: S101
    session_id = request.id or secrets.token_hex(6)
    if not isinstance(session_id, str) or not ID_PATTERN.fullmatch(session_id):
        await channel.send_message(
            Error(code="bad_request", message="session id must match [a-z0-9][a-z0-9_-]{0,63}")
        )
        return
    env_error = execs.validate_env(request.env)
    if env_error:
        await channel.send_message(Error(code="bad_request", message=env_error))
        return
    if session_id in SESSIONS:
        await channel.send_message(
            Error(code="already_exists", message=f"A session {session_id!r} exists already.")
        )
        return
    if len(SESSIONS) >= MAX_SESSIONS:
        await channel.send_message(
            Error(code="limit_reached", message=f"at most {MAX_SESSIONS} sessions; delete one")
        )
        return
    cwd = execs.resolve_path(request.cwd)
    if not os.path.isdir(cwd):
        await channel.send_message(
            Error(code="not_found", message=f"working directory {cwd} does not exist")
        )
        return
    env = await _login_env(cwd, request.env)
    if session_id in SESSIONS:  # created meanwhile
        await channel.send_message(
            Error(code="already_exists", message=f"A session {session_id!r} exists already.")
        )
        return
    session = SESSIONS[session_id] = Session(session_id, cwd, env)
    await channel.send_message(session.info())


async def handle_list(request: Message, channel: Channel) -> None:
    sessions = sorted(SESSIONS.values(), key=lambda s: s.created_at)
    await channel.send_message(SessionListing(sessions=[s.info().to_dict() for s in sessions]))


async def handle_get(request: Message, channel: Channel) -> None:
    assert isinstance(request, SessionGet)  # noqa: S101
    if session := await _lookup(request.id, channel):
        await channel.send_message(session.info())


async def handle_delete(request: Message, channel: Channel) -> None:
    assert isinstance(request, SessionDelete)  # noqa: S101
    if session := await _lookup(request.id, channel):
        SESSIONS.pop(session.id, None)
        await channel.send_message(session.info())


async def _lookup(session_id: str, channel: Channel) -> Session | None:
    session = SESSIONS.get(session_id) if isinstance(session_id, str) else None
    if session is None:
        await channel.send_message(
            Error(code="not_found", message=f"No session {session_id!r}: create it first.")
        )
    return session


async def handle_exec(request: Exec, channel: Channel) -> None:
    """An exec inside a session (called by ``execs.handle_exec``)."""
    session = await _lookup(request.session or "", channel)
    if session is None:
        return
    argv = execs.argv_for(request.command)
    env_error = execs.validate_env(request.env)
    if isinstance(argv, str) or env_error:
        await channel.send_message(Error(code="bad_request", message=str(env_error or argv)))
        return
    # A relative cwd is relative to the session's directory.
    cwd = os.path.normpath(os.path.join(session.cwd, request.cwd or "."))
    if not os.path.isdir(cwd):
        await channel.send_message(
            Error(code="not_found", message=f"working directory {cwd} does not exist")
        )
        return
    env = {**session.env, **request.env, "PWD": cwd}
    state_file = ""
    if isinstance(request.command, str):
        os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
        session.runs += 1
        state_file = os.path.join(STATE_DIR, f"{session.id}.{session.runs}.{os.getpid()}")
        # On the first line, so that a syntax error there runs nothing (and keeps the
        # state); line numbers in bash's messages stay those of the command.
        trap = f"{{ printf '%s\\0' \"$PWD\"; env -0; }} > {shlex.quote(state_file)} 2>/dev/null"
        argv = ["bash", "-c", f"trap {shlex.quote(trap)} EXIT; {request.command}"]
    use_stdin = request.stdin_stream or request.stdin is not None
    started = time.monotonic()
    try:
        proc = await execs.spawn(
            argv,
            cwd,
            env,
            asyncio.subprocess.PIPE if use_stdin else asyncio.subprocess.DEVNULL,
        )
    except (FileNotFoundError, PermissionError) as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        reason = "command not found" if code == 127 else "permission denied"
        await channel.send_message(Started(pid=0))
        await channel.send_data(execs.Kind.STDERR, f"{argv[0]}: {reason}\n".encode())
        await channel.send_message(Exit(exit_code=code, duration_ms=execs._ms(started)))
        return
    await channel.send_message(Started(pid=proc.pid))
    try:
        await execs.run_to_exit(proc, channel, request, started)
    finally:
        if state_file:
            _update(session, state_file, cwd, request.env)


def _update(session: Session, state_file: str, started_in: str, call_env: dict[str, str]) -> None:
    try:
        with open(state_file, "rb") as handle:
            raw = handle.read()
    except OSError:
        return  # killed before its EXIT trap (a timeout): the state stays
    finally:
        with contextlib.suppress(OSError):
            os.unlink(state_file)
    state = _parse_state(raw)
    if state is None or SESSIONS.get(session.id) is not session:
        return
    cwd, env = state
    # A per-call cwd or env is for that call only, unless the command changed it.
    if cwd != started_in:
        session.cwd = cwd
    for key, value in call_env.items():
        if env.get(key) == value:
            if key in session.env:
                env[key] = session.env[key]
            else:
                env.pop(key, None)
    env["PWD"] = session.cwd
    session.env = env


HANDLERS: dict[Any, Any] = {
    SessionCreate: handle_create,
    SessionList: handle_list,
    SessionGet: handle_get,
    SessionDelete: handle_delete,
}
