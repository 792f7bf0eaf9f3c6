"""Running commands in a sandbox: streamed, collected, or as text events.

``exec_stream`` yields the agent's events as they come; ``exec_collect`` keeps the
output within its budgets; ``text_events`` turns any stream of output chunks
(an exec, a process's logs) into text for the transports, which only serialise it.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from django.conf import settings

from container.agent.protocol import CHUNK, Channel, Exec, Kind
from sandboxes import buffers
from sandboxes.agent.client import ExecEvent, exec_events
from sandboxes.agentconn import open_agent
from sandboxes.coordination import coordinator
from sandboxes.errors import BadRequest, Conflict, LimitReached, SandboxError
from sandboxes.lifecycle import ensure_running, program_env, touch
from sandboxes.models import Sandbox


@dataclass
class ExecRequest:
    command: str | list[str]
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    stdin: str | None = None
    session: str | None = None
    # Stdin comes later, through a ``StdinFeed`` given to ``exec_stream``.
    stdin_stream: bool = False

    def to_message(self, sandbox_env: dict[str, str]) -> Exec:
        return Exec(
            command=self.command,
            cwd=self.cwd,
            env=self.env,
            timeout=self.timeout,
            stdin=self.stdin,
            stdin_stream=self.stdin_stream,
            session=self.session,
            sandbox_env=sandbox_env,
        )


class StdinFeed:
    """Input for a running command, sent to the agent as the command reads it.

    What the command has not read yet waits here, at most ``limit`` bytes: a writer
    faster than the command (or a command that never reads) gets ``LimitReached``
    rather than a server that holds everything it was sent.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pending: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._closed = False
        self._ready = asyncio.Event()

    def write(self, data: bytes) -> None:
        if self._closed:
            raise Conflict("The command's stdin is closed already.", code="stdin_closed")
        if self._size + len(data) > self.limit:
            raise LimitReached(
                f"The command has not read {self._size} bytes of its input yet; at most "
                f"{self.limit} may wait.",
                code="stdin_full",
            )
        if data:
            self._pending.append(data)
            self._size += len(data)
            self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def pump(self, channel: Channel) -> None:
        """Send what was written as STDIN frames (the agent's reading paces it), then
        the empty frame that ends the input."""
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                await self._ready.wait()
                while self._pending:
                    data = self._pending[0]
                    for start in range(0, len(data), CHUNK):
                        await channel.send(Kind.STDIN, data[start : start + CHUNK])
                    self._pending.popleft()
                    self._size -= len(data)
                if self._closed:
                    await channel.send(Kind.STDIN, b"")
                    return
                self._ready.clear()


log = logging.getLogger(__name__)

# A first answer slower than this means the container may be paused by another
# server process's reaper between our status read and our call: wake it (without
# re-sending anything) and keep waiting on the same connection.
NUDGE_AFTER = 2.0


async def exec_stream(
    sandbox: Sandbox, request: ExecRequest, stdin: StdinFeed | None = None
) -> AsyncGenerator[ExecEvent, None]:
    """Run a command and yield its output as it is produced, then its exit; ``stdin``
    (with ``request.stdin_stream``) feeds its input meanwhile.

    A running command counts as activity: the sandbox does not fall asleep under it.
    """
    if request.timeout is not None and request.timeout > settings.EXEC_MAX_TIMEOUT:
        raise BadRequest(
            f"timeout may be at most {settings.EXEC_MAX_TIMEOUT:g} seconds.", code="invalid_timeout"
        )
    slot, running = await coordinator().take_slot(f"execs:{sandbox.id}", settings.SANDBOX_MAX_EXECS)
    if slot is None:
        raise LimitReached(
            f"This sandbox already runs {running} commands at once (SANDBOX_MAX_EXECS); "
            "wait for one to finish.",
            code="too_many_execs",
        )
    awake = _KeepAwake(sandbox)
    feeding: asyncio.Task[None] | None = None
    try:
        channel = await open_agent(sandbox, request.to_message(program_env(sandbox)))
        if stdin is not None and request.stdin_stream:
            feeding = asyncio.create_task(stdin.pump(channel))
        events = exec_events(channel)
        try:
            first = await _first_event(sandbox, events)
        except BaseException:
            await events.aclose()
            raise
        try:
            yield first
            async for event in events:
                yield event
        finally:
            await events.aclose()
    finally:
        awake.stop()
        if feeding is not None:
            feeding.cancel()
        await slot.release()


async def _first_event(sandbox: Sandbox, events: AsyncIterator[ExecEvent]) -> ExecEvent:
    # A timer, not a task racing a timeout: almost every first answer comes long
    # before NUDGE_AFTER, and this runs on every exec.
    loop = asyncio.get_running_loop()
    nudged: list[asyncio.Task[None]] = []
    timer = loop.call_later(NUDGE_AFTER, lambda: nudged.append(loop.create_task(_nudge(sandbox))))
    try:
        return await anext(events)
    finally:
        timer.cancel()
        if nudged:
            await asyncio.shield(nudged[0])  # a wake under way ends before the answer is used


async def _nudge(sandbox: Sandbox) -> None:
    with contextlib.suppress(SandboxError):
        await ensure_running(sandbox)


class _KeepAwake:
    """Marks the sandbox active every ``period`` while its command runs, from a timer:
    most commands end before the first mark is due."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.period = max(0.25, min(30.0, sandbox.sleep_after / 4 if sandbox.sleep_after else 30.0))
        self.loop = asyncio.get_running_loop()
        self.marking: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = self.loop.call_later(self.period, self._due)

    def _due(self) -> None:
        self.marking = self.loop.create_task(self._mark())

    async def _mark(self) -> None:
        try:
            await touch(self.sandbox)
        except Exception:  # the next mark tries again; the command goes on
            log.exception("sandbox %s: could not record activity", self.sandbox.id)
        if self.timer is not None:
            self.timer = self.loop.call_later(self.period, self._due)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.marking is not None:
            self.marking.cancel()


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    duration_ms: float
    truncated: bool = False


class TextStream:
    """Bytes to text across chunk boundaries (a UTF-8 character may be split)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


async def exec_collect(sandbox: Sandbox, request: ExecRequest) -> ExecResult:
    """Run a command to completion, keeping at most EXEC_OUTPUT_LIMIT of each stream,
    and no more than the owner's and the server's output budgets allow
    (``sandboxes.buffers``): beyond either, output is dropped and ``truncated`` set."""
    limit = settings.EXEC_OUTPUT_LIMIT
    streams = {"stdout": bytearray(), "stderr": bytearray()}
    truncated = False
    started = time.monotonic()
    exit_event = None
    with buffers.Held(sandbox.owner_id) as held:
        async for event in exec_stream(sandbox, request):
            if event.kind in streams:
                buffer = streams[event.kind]
                keep = held.take(min(len(event.data), limit - len(buffer)))
                if keep < len(event.data):
                    truncated = True
                if keep:
                    buffer += event.data[:keep]
            elif event.kind == "exit":
                exit_event = event.exit
        if exit_event is None:  # pragma: no cover - the client always ends with exit
            raise SandboxError("The command ended without an exit status.")
        return ExecResult(
            stdout=streams["stdout"].decode(errors="replace"),
            stderr=streams["stderr"].decode(errors="replace"),
            exit_code=exit_event.exit_code,
            timed_out=exit_event.timed_out,
            duration_ms=exit_event.duration_ms or round((time.monotonic() - started) * 1000, 3),
            truncated=truncated,
        )


class OutputEvent(Protocol):
    """What ``text_events`` needs of an event: a kind and, for output, its bytes."""

    @property
    def kind(self) -> str: ...

    @property
    def data(self) -> bytes: ...


E = TypeVar("E", bound=OutputEvent)
T = TypeVar("T")


async def prepend(first: T, rest: AsyncGenerator[T, None]) -> AsyncGenerator[T, None]:
    """``first`` then ``rest``: a stream whose first item was awaited early (so errors
    before any output answer as plain errors, not as a broken stream)."""
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()


Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True)
class Text:
    """Output of one stream, decoded."""

    stream: Stream
    text: str


async def text_events(events: AsyncGenerator[E, None]) -> AsyncGenerator[Text | E, None]:
    """``stdout``/``stderr`` chunks as ``Text`` (UTF-8 decoded across chunk
    boundaries); each stream's undecoded tail is flushed before the ``exit`` event,
    which is passed on as it came and ends the stream. Other events are dropped.
    Closing this generator closes ``events``."""
    decoders: dict[Stream, TextStream] = {"stdout": TextStream(), "stderr": TextStream()}
    try:
        async for event in events:
            if event.kind in decoders:
                stream: Stream = "stdout" if event.kind == "stdout" else "stderr"
                if text := decoders[stream].feed(event.data):
                    yield Text(stream, text)
            elif event.kind == "exit":
                for stream, decoder in decoders.items():
                    if rest := decoder.flush():
                        yield Text(stream, rest)
                yield event
                return
    finally:
        await events.aclose()
