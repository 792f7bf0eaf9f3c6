"""Shell sessions (Cloudflare's ``createSession``): ``cd`` and ``export`` carry over
between the execs that name a session.

A session is state, not a process: a working directory and an environment. Each
exec in it is an ordinary exec (``execs`` runs it: same streaming, timeout, exit code
and process group handling) of ``bash -c`` started in that state; an EXIT trap writes
the shell's final ``$PWD`` and ``env -0`` to a private file, which becomes the
session's new state (``SessionRun``). A command killed by its timeout leaves the
state as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime

from . import procs
from .dispatch import on, table
from .failures import AgentFailure
from .paths import resolve_path, working_directory
from .protocol import (
    Channel,
    Exec,
    SessionCreate,
    SessionDelete,
    SessionGet,
    SessionInfo,
    SessionList,
    SessionListing,
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


async def _login_env(
    cwd: str, extra: dict[str, str], sandbox_env: dict[str, str] | None
) -> dict[str, str]:
    """The environment a login shell has in ``cwd`` with ``extra`` set."""
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-lc",
        "env -0",
        cwd=cwd,
        env=procs.child_env(extra, sandbox_env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    except TimeoutError:
        procs.kill_group(proc.pid)
        out = b""
    state = _parse_state(b"/\0" + out) if out else None
    env = state[1] if state else procs.child_env({}, sandbox_env)
    env.update(extra)  # what the caller asked for wins over profile scripts
    for key in (*_VOLATILE, "OLDPWD"):
        env.pop(key, None)
    env["PWD"] = cwd
    return env


# ------------------------------------------------------------------------ handlers


async def handle_create(request: SessionCreate, channel: Channel) -> None:
    session_id = request.id or secrets.token_hex(6)
    if not isinstance(session_id, str) or not ID_PATTERN.fullmatch(session_id):
        raise AgentFailure("bad_request", "session id must match [a-z0-9][a-z0-9_-]{0,63}")
    procs.check_env(request.env)
    procs.check_sandbox_env(request.sandbox_env)
    _check_new(session_id)
    cwd = working_directory(resolve_path(request.cwd))
    env = await _login_env(cwd, request.env, request.sandbox_env)
    _check_new(session_id)  # it may have been created meanwhile
    session = SESSIONS[session_id] = Session(session_id, cwd, env)
    await channel.send_message(session.info())


def _check_new(session_id: str) -> None:
    if session_id in SESSIONS:
        raise AgentFailure("already_exists", f"A session {session_id!r} exists already.")
    if len(SESSIONS) >= MAX_SESSIONS:
        raise AgentFailure("limit_reached", f"at most {MAX_SESSIONS} sessions; delete one")


async def handle_list(request: SessionList, channel: Channel) -> None:
    sessions = sorted(SESSIONS.values(), key=lambda s: s.created_at)
    await channel.send_message(SessionListing(sessions=[s.info().to_dict() for s in sessions]))


async def handle_get(request: SessionGet, channel: Channel) -> None:
    await channel.send_message(_lookup(request.id).info())


async def handle_delete(request: SessionDelete, channel: Channel) -> None:
    session = _lookup(request.id)
    SESSIONS.pop(session.id, None)
    await channel.send_message(session.info())


def _lookup(session_id: object) -> Session:
    session = SESSIONS.get(session_id) if isinstance(session_id, str) else None
    if session is None:
        raise AgentFailure("not_found", f"No session {session_id!r}: create it first.")
    return session


# ------------------------------------------------------------------------ execs in a session


@dataclass
class SessionRun:
    """How to run one exec in its session, and (``finish``) what it leaves behind."""

    session: Session
    argv: list[str]
    cwd: str
    env: dict[str, str]
    call_env: dict[str, str]
    state_file: str

    def finish(self) -> None:
        """Take the state the command ended in (once it ended, or failed to start)."""
        if self.state_file:
            _update(self.session, self.state_file, self.cwd, self.call_env)


def prepare_run(request: Exec) -> SessionRun:
    """The run of ``request`` in the session it names (``AgentFailure`` if none)."""
    session = _lookup(request.session or "")
    procs.check_env(request.env)
    argv = procs.argv_for(request.command)
    # A relative cwd is relative to the session's directory.
    cwd = working_directory(os.path.normpath(os.path.join(session.cwd, request.cwd or ".")))
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
    return SessionRun(session, argv, cwd, env, request.env, state_file)


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


HANDLERS = table(
    on(SessionCreate, handle_create),
    on(SessionList, handle_list),
    on(SessionGet, handle_get),
    on(SessionDelete, handle_delete),
)
