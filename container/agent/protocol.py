"""The wire protocol between the server and the agent inside each sandbox.

Written once, standard library only, and imported by both ends: the agent (inside
the image, as ``sandbox_agent.protocol``) and the host client (as
``container.agent.protocol``).

One connection carries one operation. The client opens a stream (a unix socket for
Docker, TCP for remote engines), sends a request message, and then both sides
exchange *frames* until the operation ends. Streams give backpressure for free: a
side that stops reading stops the other side's writes, all the way down to the
process producing output.

A frame is a 5-byte header (kind: 1 byte, payload length: 4 bytes big-endian) and
the payload. ``CONTROL`` frames carry one JSON message with a ``type``; the other
kinds carry raw bytes. An empty ``STDIN`` or ``DATA`` frame means end of that stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import signal
import struct
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# 2: every connection opens with Hello/Welcome.
# 3: Welcome says the agent's version; a listener on a network challenges first.
PROTOCOL_VERSION = 3
# The oldest agent this server still talks to: a 2 answers a Hello on its unix
# socket exactly as a 3 does (it predates the network listener). A sandbox whose
# agent is older than PROTOCOL_VERSION is recreated on its workspace at its next wake.
OLDEST_COMPATIBLE_VERSION = 2

HEADER = struct.Struct(">BI")
MAX_FRAME = 4 * 1024 * 1024
CHUNK = 64 * 1024


class Kind:
    CONTROL = 1
    STDIN = 2
    STDOUT = 3
    STDERR = 4
    DATA = 5


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame or message."""


# --------------------------------------------------------------------------- messages

MESSAGES: dict[str, type[Message]] = {}


@dataclass
class Message:
    """Base of every control message; subclasses register themselves by ``type``."""

    type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.type:
            MESSAGES[cls.type] = cls

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["type"] = self.type
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        if not isinstance(data, dict):
            raise ProtocolError("a message must be a JSON object")
        kind = data.get("type")
        message_cls = MESSAGES.get(kind) if isinstance(kind, str) else None
        if message_cls is None:
            raise ProtocolError(f"unknown message type {kind!r}")
        names = {f.name for f in dataclasses.fields(message_cls)}
        try:
            return message_cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ProtocolError(f"bad {kind} message: {exc}") from None


# Who is talking ---------------------------------------------------------------------


@dataclass
class Challenge(Message):
    """What an agent listening on a network (TCP) sends first, before it reads
    anything: a fresh nonce of its own, which the client's Hello must prove.

    A Hello seen on the wire is then worth nothing: it proves the key only for a
    challenge that agent will never issue again. (A unix socket in a directory only
    root may enter carries no such challenge: nobody can capture its traffic, and it
    saves the round trip.)"""

    type: ClassVar[str] = "challenge"
    nonce: str = ""
    version: int = PROTOCOL_VERSION


@dataclass
class Hello(Message):
    """The first message of every connection (client -> agent), sent together with the
    request: a fresh nonce and the client's proof that it holds this sandbox's key.

    An agent handles nothing before it has checked the proof, so a request that
    reached the wrong agent (or anything else listening) is never carried out there.
    """

    type: ClassVar[str] = "hello"
    nonce: str = ""
    proof: str = ""


@dataclass
class Welcome(Message):
    """The agent's answer to Hello, before anything else: its own proof for the same
    nonce, and its protocol version (agents of version 2 did not send it). The client
    trusts nothing on the connection until it has checked the proof."""

    type: ClassVar[str] = "welcome"
    proof: str = ""
    version: int = 2


def proof(key: bytes, role: str, nonce: str) -> str:
    """HMAC-SHA256 of ``role:nonce`` under the sandbox's key. The role keeps a client's
    proof from being replayed as the agent's."""
    return hmac.new(key, f"{role}:{nonce}".encode(), hashlib.sha256).hexdigest()


def proven_nonce(hello_nonce: str, challenge: str = "") -> str:
    """What both proofs of one connection cover: the client's nonce, preceded by the
    agent's challenge on a network listener (both sides' fresh values)."""
    return f"{challenge}:{hello_nonce}" if challenge else hello_nonce


def hello(key: bytes, challenge: str = "") -> Hello:
    nonce = secrets.token_hex(16)
    return Hello(nonce=nonce, proof=proof(key, "client", proven_nonce(nonce, challenge)))


def valid_proof(key: bytes, role: str, nonce: str, given: object) -> bool:
    if not key or not isinstance(given, str) or not isinstance(nonce, str):
        return False
    return hmac.compare_digest(proof(key, role, nonce), given)


# Requests (client -> agent) ------------------------------------------------------


@dataclass
class Ping(Message):
    type: ClassVar[str] = "ping"


@dataclass
class Exec(Message):
    """Run one command. A string runs under ``bash -lc``; a list runs as argv.

    With ``stdin_stream`` the client sends STDIN frames (an empty one closes it);
    otherwise ``stdin`` (text) is written and closed at once.
    """

    type: ClassVar[str] = "exec"
    command: str | list[str] = ""
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    stdin: str | None = None
    stdin_stream: bool = False
    # A session (see SessionCreate) whose cwd and environment the command starts in
    # and whose ``cd`` / ``export`` it carries over to the next exec naming it.
    session: str | None = None
    # The sandbox's own environment as it is now (changed since the container was
    # made): it replaces the one the container started with. None: keep that one.
    sandbox_env: dict[str, str] | None = None


@dataclass
class Signal(Message):
    """Sent on an exec connection to signal the running command's process group."""

    type: ClassVar[str] = "signal"
    signal: str = "TERM"


def signal_number(name: str) -> int | None:
    """The number of the signal called ``name`` ("TERM", "SIGTERM", "term"), or None
    for a name this system does not know. Both ends check names with it."""
    found = getattr(signal, "SIG" + name.upper().removeprefix("SIG"), None)
    return int(found) if isinstance(found, signal.Signals) else None  # not SIG_DFL & co


# Responses (agent -> client) -----------------------------------------------------


@dataclass
class Pong(Message):
    type: ClassVar[str] = "pong"
    version: int = PROTOCOL_VERSION
    pid: int = 0
    uid: int = 0


@dataclass
class Started(Message):
    type: ClassVar[str] = "started"
    pid: int = 0


@dataclass
class Exit(Message):
    """The command ended: ``exit_code`` is None when it was killed by the timeout."""

    type: ClassVar[str] = "exit"
    exit_code: int | None = None
    timed_out: bool = False
    duration_ms: float = 0.0
    signal: str | None = None


@dataclass
class Error(Message):
    """The operation failed before or instead of producing its result.

    ``code`` is one of the API's error codes (``not_found``, ``bad_request`` …) so
    the server can pass it through unchanged.
    """

    type: ClassVar[str] = "error"
    code: str = "agent_error"
    message: str = ""


# Files and file watching -------------------------------------------------------------


@dataclass
class ListFiles(Message):
    """List a directory; ``recursive`` walks it (symlinks are listed, never followed).

    Answered by one or more ``FileListing`` messages, the last with ``done``.
    """

    type: ClassVar[str] = "list_files"
    path: str = ""
    recursive: bool = False
    limit: int = 100_000


@dataclass
class FileListing(Message):
    """A batch of entries: ``{name, path, type, size, modified[, target]}``."""

    type: ClassVar[str] = "file_listing"
    path: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)
    done: bool = True
    truncated: bool = False


@dataclass
class StatFile(Message):
    """Answered by ``FileInfo``."""

    type: ClassVar[str] = "stat_file"
    path: str = ""


@dataclass
class FileInfo(Message):
    type: ClassVar[str] = "file_info"
    name: str = ""
    path: str = ""
    kind: str = "file"  # file | directory | symlink
    size: int = 0
    modified: str = ""


@dataclass
class ReadFile(Message):
    """Read a regular file: ``FileContent`` then DATA frames, then an empty DATA frame.

    ``offset`` < 0 counts from the end (an HTTP suffix range); ``length`` None means
    to the end.
    """

    type: ClassVar[str] = "read_file"
    path: str = ""
    offset: int = 0
    length: int | None = None


@dataclass
class FileContent(Message):
    """The resolved range about to be sent: ``length`` bytes from ``offset`` of ``size``."""

    type: ClassVar[str] = "file_content"
    path: str = ""
    size: int = 0
    offset: int = 0
    length: int = 0
    modified: str = ""


@dataclass
class WriteFile(Message):
    """Write a file atomically. The agent answers ``WriteReady`` (or an Error), the
    client sends DATA frames and an empty one; the agent answers ``FileWritten``.
    A connection that ends before the empty frame leaves the file untouched."""

    type: ClassVar[str] = "write_file"
    path: str = ""


@dataclass
class WriteReady(Message):
    type: ClassVar[str] = "write_ready"
    path: str = ""


@dataclass
class FileWritten(Message):
    type: ClassVar[str] = "file_written"
    path: str = ""
    size: int = 0
    created: bool = False


@dataclass
class MakeDir(Message):
    """``mkdir -p``; answered by ``FileDone`` (``created`` False when it existed)."""

    type: ClassVar[str] = "make_dir"
    path: str = ""


@dataclass
class MoveFile(Message):
    """Rename or move; parents of the destination are created."""

    type: ClassVar[str] = "move_file"
    source: str = ""
    destination: str = ""
    overwrite: bool = False


@dataclass
class DeleteFile(Message):
    type: ClassVar[str] = "delete_file"
    path: str = ""
    recursive: bool = False


@dataclass
class FileDone(Message):
    type: ClassVar[str] = "file_done"
    path: str = ""
    created: bool = False


@dataclass
class ArchiveDir(Message):
    """A directory as tar.gz: ``FileContent`` (size 0: unknown), DATA frames, empty DATA."""

    type: ClassVar[str] = "archive_dir"
    path: str = ""


@dataclass
class WatchFiles(Message):
    """Watch a directory with inotify: ``WatchStarted``, then ``FileEvents`` batches
    until the client closes the connection. ``exclude``: directory names not watched."""

    type: ClassVar[str] = "watch_files"
    path: str = ""
    recursive: bool = False
    exclude: list[str] = field(default_factory=lambda: [".git", "node_modules"])


@dataclass
class WatchStarted(Message):
    type: ClassVar[str] = "watch_started"
    path: str = ""
    watches: int = 0


@dataclass
class FileEvents(Message):
    """Coalesced changes: ``{"type": create|modify|delete|move|overflow, "path",
    "is_dir"[, "from"]}``."""

    type: ClassVar[str] = "file_events"
    events: list[dict[str, Any]] = field(default_factory=list)


# Background processes and sessions ---------------------------------------------------


@dataclass
class ProcessStart(Message):
    """Start a background process owned by the agent (it outlives this connection).

    Answered by ``ProcessInfo``. ``log_buffer``: bytes of each stream kept in memory
    (0 = the agent's default); the whole output is also appended to files on disk.
    With ``stdin`` its stdin is a pipe that ``ProcessStdin`` writes to; otherwise
    it reads end-of-file at once.
    """

    type: ClassVar[str] = "process_start"
    command: str | list[str] = ""
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    log_buffer: int = 0
    stdin: bool = False
    # The sandbox's own environment as it is now (changed since the container was
    # made): it replaces the one the container started with. None: keep that one.
    sandbox_env: dict[str, str] | None = None


@dataclass
class ProcessStdin(Message):
    """Append to the stdin of a process started with ``stdin``, or (``close``) end
    it. The agent answers ``ProcessInfo`` once it has checked the process can take
    input (an Error otherwise); to write, the client then sends DATA frames and an
    empty one, and the agent answers ``ProcessInfo`` again.

    All or nothing: data that would take the bytes the process has not read yet
    past the agent's bound is refused whole (``stdin_full``).
    """

    type: ClassVar[str] = "process_stdin"
    pid: int = 0
    close: bool = False


@dataclass
class ProcessList(Message):
    """Answered by ``ProcessListing``."""

    type: ClassVar[str] = "process_list"


@dataclass
class ProcessGet(Message):
    """Answered by ``ProcessInfo`` (``not_found`` for an unknown pid)."""

    type: ClassVar[str] = "process_get"
    pid: int = 0


@dataclass
class ProcessLogs(Message):
    """The output kept so far as STDOUT/STDERR frames, then a final ``ProcessInfo``.

    With ``follow`` the frames go on as the process writes, until it has exited and
    everything it wrote was sent. Each follower reads at its own pace (from memory,
    or from the files on disk once it falls behind), so it never slows the process.
    """

    type: ClassVar[str] = "process_logs"
    pid: int = 0
    follow: bool = False


@dataclass
class ProcessSignal(Message):
    """Signal the process group; answered by ``ProcessInfo``."""

    type: ClassVar[str] = "process_signal"
    pid: int = 0
    signal: str = "TERM"


@dataclass
class ProcessWaitPort(Message):
    """Wait until something listens on TCP ``port``; answered by ``PortReady``.

    ``timeout`` (408) or ``process_exited`` (409) errors otherwise.
    """

    type: ClassVar[str] = "process_wait_port"
    pid: int = 0
    port: int = 0
    timeout: float = 30.0


@dataclass
class ProcessWaitLog(Message):
    """Wait for a line of output matching the regex ``pattern``; answered by ``LogMatch``."""

    type: ClassVar[str] = "process_wait_log"
    pid: int = 0
    pattern: str = ""
    timeout: float = 30.0


@dataclass
class ProcessInfo(Message):
    type: ClassVar[str] = "process_info"
    pid: int = 0
    command: str | list[str] = ""
    cwd: str = ""
    status: str = "running"  # running | exited
    exit_code: int | None = None
    signal: str | None = None
    started_at: str = ""
    exited_at: str | None = None
    stdin: str | None = None  # open | closed; None when started without stdin


@dataclass
class ProcessListing(Message):
    type: ClassVar[str] = "process_listing"
    processes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PortReady(Message):
    type: ClassVar[str] = "port_ready"
    port: int = 0


@dataclass
class LogMatch(Message):
    type: ClassVar[str] = "log_match"
    match: str = ""
    line: str = ""
    stream: str = "stdout"


@dataclass
class SessionCreate(Message):
    """A shell session: a cwd and an environment that execs naming it share.

    The initial environment is a login shell's plus ``env``. Answered by ``SessionInfo``.
    """

    type: ClassVar[str] = "session_create"
    id: str | None = None
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The sandbox's own environment as it is now (changed since the container was
    # made): it replaces the one the container started with. None: keep that one.
    sandbox_env: dict[str, str] | None = None


@dataclass
class SessionList(Message):
    """Answered by ``SessionListing``."""

    type: ClassVar[str] = "session_list"


@dataclass
class SessionGet(Message):
    type: ClassVar[str] = "session_get"
    id: str = ""


@dataclass
class SessionDelete(Message):
    """Forget a session; answered by its last ``SessionInfo``."""

    type: ClassVar[str] = "session_delete"
    id: str = ""


@dataclass
class SessionInfo(Message):
    type: ClassVar[str] = "session_info"
    id: str = ""
    cwd: str = ""
    env: dict[str, str] = field(default_factory=dict)
    created_at: str = ""


@dataclass
class SessionListing(Message):
    type: ClassVar[str] = "session_listing"
    sessions: list[dict[str, Any]] = field(default_factory=list)


# Git ---------------------------------------------------------------------------------


@dataclass
class GitRequest(Message):
    """One git operation in the repository at (or above) ``path``.

    ``op``: clone, status, log, diff, branches, checkout, add, commit, pull, push;
    ``args`` holds its arguments (see ``gitops.py``). Credentials (``username``,
    ``password``, ``token``) reach git through an askpass helper for that one git
    process only: never the remote URL, the repository's config or a log.
    Answered by ``GitResult``; a clone whose args say ``"progress": true`` sends
    ``GitProgress`` messages before it.
    """

    type: ClassVar[str] = "git"
    op: str = ""
    path: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None
    token: str | None = None


@dataclass
class GitResult(Message):
    type: ClassVar[str] = "git_result"
    result: dict[str, Any] = field(default_factory=dict)


@dataclass
class GitProgress(Message):
    """How far a clone is, from git's own progress output: ``stage`` in git's words
    ("Receiving objects"), ``current`` of ``total`` (0: not known), ``message`` the
    rest of git's line (throughput)."""

    type: ClassVar[str] = "git_progress"
    stage: str = ""
    current: int = 0
    total: int = 0
    message: str = ""


# Terminals ---------------------------------------------------------------------------


@dataclass
class TerminalAttach(Message):
    """Attach to the named PTY terminal, creating it (``bash -l``) when it is missing.

    The agent answers ``TerminalAttached``, then sends the terminal's screen as it is
    (escape sequences that redraw it) and the live output as DATA frames. The client
    sends keystrokes as STDIN frames and ``TerminalResize`` messages (both ignored for
    a ``readonly`` attach); closing the connection detaches. When the shell ends every
    client gets ``Exit``. ``idle_timeout``: seconds the terminal lives with no client
    attached (None: the agent's default); ``replay_limit``: the most output parsed at
    once into the screen kept for re-attaching (0: none kept).
    """

    type: ClassVar[str] = "terminal_attach"
    name: str = ""
    cols: int = 80
    rows: int = 24
    readonly: bool = False
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    idle_timeout: float | None = None
    replay_limit: int | None = None
    max_terminals: int | None = None  # refuse to create beyond this many
    # The sandbox's environment as it is now (see ``Exec``), for a terminal it creates.
    sandbox_env: dict[str, str] | None = None


@dataclass
class TerminalAttached(Message):
    type: ClassVar[str] = "terminal_attached"
    name: str = ""
    cols: int = 80
    rows: int = 24
    pid: int = 0
    created: bool = False


@dataclass
class TerminalResize(Message):
    type: ClassVar[str] = "terminal_resize"
    cols: int = 80
    rows: int = 24


@dataclass
class TerminalLagged(Message):
    """This client read too slowly while others kept up: ``skipped`` bytes of output
    were not sent to it."""

    type: ClassVar[str] = "terminal_lagged"
    skipped: int = 0


@dataclass
class TerminalList(Message):
    type: ClassVar[str] = "terminal_list"


@dataclass
class TerminalListing(Message):
    """``terminals``: ``{name, cols, rows, created_at, clients, pid}`` each."""

    type: ClassVar[str] = "terminal_listing"
    terminals: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TerminalKill(Message):
    """End a terminal politely (HUP, CONT, INT, TERM, then KILL); not_found if none."""

    type: ClassVar[str] = "terminal_kill"
    name: str = ""


@dataclass
class TerminalKilled(Message):
    type: ClassVar[str] = "terminal_killed"
    name: str = ""
    exit_code: int | None = None


# Tunnels and ports -------------------------------------------------------------------


@dataclass
class Tunnel(Message):
    """Connect to ``127.0.0.1:port`` (then ``[::1]:port``) inside the sandbox.

    The agent answers ``TunnelOpen`` (or ``Error(code="connection_refused")`` when
    nothing listens); after that the connection carries raw bytes both ways, with no
    framing, and each side's end of stream is passed on as a half-close.
    """

    type: ClassVar[str] = "tunnel"
    port: int = 0


@dataclass
class TunnelOpen(Message):
    type: ClassVar[str] = "tunnel_open"
    port: int = 0


@dataclass
class ListeningPorts(Message):
    """Which TCP ports processes in the sandbox listen on now (``/proc/net/tcp*``)."""

    type: ClassVar[str] = "listening_ports"


@dataclass
class PortList(Message):
    type: ClassVar[str] = "port_list"
    ports: list[int] = field(default_factory=list)


# Code interpreter --------------------------------------------------------------------


@dataclass
class CodeContextCreate(Message):
    """Make a persistent interpreter; answered by ``CodeContextInfo``.

    ``language``: "python" (a Jupyter kernel) or "javascript" (a Node.js REPL).
    """

    type: ClassVar[str] = "code_context_create"
    language: str = "python"
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class CodeContextList(Message):
    """Answered by ``CodeContexts``."""

    type: ClassVar[str] = "code_context_list"


@dataclass
class CodeContextDelete(Message):
    """Stop a context's interpreter and forget it; answered by ``CodeContextInfo``."""

    type: ClassVar[str] = "code_context_delete"
    id: str = ""


@dataclass
class CodeRun(Message):
    """Run code in a context (or the language's default context when ``context`` is None).

    Answered by ``CodeRunStarted`` (or an ``Error`` for a bad request), then STDOUT and
    STDERR frames (UTF-8 text), ``CodeResult`` and ``CodeRunError`` messages as the
    code produces them, and one ``CodeRunEnd``. Closing the connection interrupts it.
    """

    type: ClassVar[str] = "code_run"
    code: str = ""
    language: str | None = None
    context: str | None = None
    timeout: float | None = None


@dataclass
class CodeContextInfo(Message):
    type: ClassVar[str] = "code_context"
    id: str = ""
    language: str = ""
    cwd: str = ""
    status: str = ""  # "starting", "idle", "busy", "dead" or "stopped"
    created_at: str = ""


@dataclass
class CodeContexts(Message):
    """``contexts``: one ``CodeContextInfo.to_dict()`` (without ``type``) per context."""

    type: ClassVar[str] = "code_contexts"
    contexts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CodeRunStarted(Message):
    type: ClassVar[str] = "code_run_started"
    context: str = ""
    language: str = ""


@dataclass
class CodeResult(Message):
    """One MIME bundle ({"text/plain": ..., "image/png": "<base64>", ...})."""

    type: ClassVar[str] = "code_result"
    data: dict[str, Any] = field(default_factory=dict)
    is_main_result: bool = False


@dataclass
class CodeRunError(Message):
    """The code raised, timed out or its interpreter died (``name`` tells which)."""

    type: ClassVar[str] = "code_run_error"
    name: str = ""
    value: str = ""
    traceback: str = ""


@dataclass
class CodeRunEnd(Message):
    type: ClassVar[str] = "code_run_end"
    execution_count: int | None = None
    duration_ms: float = 0.0


# Lifecycle and isolation -------------------------------------------------------------


@dataclass
class DiskUsage(Message):
    """What the sandbox's files occupy against its disk quota; ``fresh`` measures
    now instead of answering from the last walk. Answered by DiskUsageInfo."""

    type: ClassVar[str] = "disk_usage"
    fresh: bool = False


@dataclass
class DiskUsageInfo(Message):
    type: ClassVar[str] = "disk_usage_info"
    used: int = 0  # bytes allocated (0 when no quota is kept)
    quota: int = 0  # bytes; 0: none
    exceeded: bool = False
    by_root: dict[str, int] = field(default_factory=dict)
    message: str = ""


# Classroom starter code --------------------------------------------------------------


@dataclass
class StarterInstall(Message):
    """Make ``path`` (default /workspace) a working copy of the starter commit ``head``
    of ``branch``, fetched from the git bundle at ``bundle`` (which is then removed);
    ``origin``, when set, becomes the ``origin`` remote. Answered by StarterResult."""

    type: ClassVar[str] = "starter_install"
    bundle: str = ""
    branch: str = "main"
    head: str = ""
    origin: str = ""
    path: str | None = None


@dataclass
class StarterUpdate(Message):
    """Merge the starter commit ``head`` (from ``bundle``) into the working copy at
    ``path`` like nbgitpuller: the student's work is committed first and never
    overwritten; conflicting starter versions are written beside the student's."""

    type: ClassVar[str] = "starter_update"
    bundle: str = ""
    branch: str = "main"
    head: str = ""
    origin: str = ""
    path: str | None = None


@dataclass
class StarterResult(Message):
    type: ClassVar[str] = "starter_result"
    result: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- framing


def encode(kind: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(kind, len(payload)) + payload


def encode_message(message: Message) -> bytes:
    return encode(Kind.CONTROL, json.dumps(message.to_dict(), separators=(",", ":")).encode())


def decode_message(payload: bytes) -> Message:
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"control frame is not JSON: {exc}") from None
    return Message.from_dict(data)


# --------------------------------------------------------------------------- untrusted peers
# The server reads agents it does not trust (a tenant may replace its own agent), so
# it decodes with ``decode_untrusted``: a frame is at most MAX_FRAME bytes, but 4 MiB
# of ``[],[],…`` would be well over 100 MB of Python objects, so a message may hold at
# most MAX_MESSAGE_VALUES JSON values, and every field must have its declared type.
# These bounds are on reading only: nothing sent on the wire changes.

MAX_MESSAGE_VALUES = 250_000

# A JSON string, or an unterminated one up to the end (so that scanning stays linear).
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?')


def count_values(payload: bytes) -> int:
    """An upper bound on the JSON values in ``payload``: separators and containers
    outside strings (a payload shorter than the bound cannot exceed it)."""
    if len(payload) < MAX_MESSAGE_VALUES:
        return len(payload)
    bare = _JSON_STRING.sub(b"", payload)
    return bare.count(b",") + bare.count(b"[") + bare.count(b"{") + 1


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def decode_untrusted(payload: bytes) -> Message:
    """``decode_message`` for a peer that may be hostile: bounded, and type-checked."""
    if count_values(payload) > MAX_MESSAGE_VALUES:
        raise ProtocolError(f"a control message holds more than {MAX_MESSAGE_VALUES} values")
    try:
        data = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"control frame is not JSON: {exc}") from None
    message = Message.from_dict(data)
    check_types(message)
    return message


def check_types(message: Message) -> None:
    """Every field of ``message`` has the type its dataclass declares (ProtocolError)."""
    for name, hint in _hints(type(message)).items():
        value = getattr(message, name)
        if not conforms(value, hint):
            wanted = hint.__name__ if isinstance(hint, type) else str(hint)
            raise ProtocolError(
                f"field {name!r} of its {message.type!r} message is "
                f"{type(value).__name__}, not {wanted.replace('typing.', '')}"
            )


_HINTS: dict[type[Message], dict[str, Any]] = {}


def _hints(cls: type[Message]) -> dict[str, Any]:
    if cls not in _HINTS:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _HINTS[cls]


def conforms(value: object, hint: Any) -> bool:
    """Whether decoded JSON ``value`` fits the annotation ``hint`` (str, int, float,
    bool, None, unions, list[...], dict[str, ...], Any)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(conforms(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and (item is Any or all(conforms(v, item) for v in value))
    if origin is dict:
        _, item = typing.get_args(hint)
        return isinstance(value, dict) and (
            item is Any or all(conforms(v, item) for v in value.values())
        )
    return isinstance(hint, type) and isinstance(value, hint)


class _Reader(Protocol):
    async def readexactly(self, n: int) -> bytes: ...


async def read_frame(reader: _Reader) -> tuple[int, bytes] | None:
    """Read one frame; None at a clean end of stream between frames."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a frame header") from None
        return None
    kind, length = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    try:
        payload = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError:
        raise ProtocolError("stream ended inside a frame") from None
    return kind, payload


class Channel:
    """Frames over one asyncio stream pair, with writes serialised and drained."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._lock = asyncio.Lock()
        self._held = b""

    def hold(self, message: Message) -> None:
        """Send ``message`` together with the next frame rather than on its own: one
        write and one wakeup of the peer fewer (the agent's Welcome rides on its first
        answer)."""
        self._held += encode_message(message)

    def _take_held(self) -> bytes:
        held, self._held = self._held, b""
        return held

    async def send(self, kind: int, payload: bytes = b"") -> None:
        async with self._lock:
            self.writer.write(self._take_held() + encode(kind, payload))
            await self.writer.drain()

    async def send_message(self, message: Message) -> None:
        async with self._lock:
            self.writer.write(self._take_held() + encode_message(message))
            await self.writer.drain()

    async def send_data(self, kind: int, data: bytes) -> None:
        """Send bytes of any size, split into frames no larger than CHUNK."""
        for start in range(0, len(data), CHUNK):
            await self.send(kind, data[start : start + CHUNK])

    async def receive(self) -> tuple[int, bytes] | None:
        return await read_frame(self.reader)

    async def receive_message(self) -> Message | None:
        frame = await self.receive()
        if frame is None:
            return None
        kind, payload = frame
        if kind != Kind.CONTROL:
            raise ProtocolError(f"expected a control frame, got kind {kind}")
        return decode_message(payload)

    async def close(self) -> None:
        held = self._take_held()
        if held:
            with contextlib.suppress(ConnectionError, OSError, RuntimeError):
                self.writer.write(held)
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()
