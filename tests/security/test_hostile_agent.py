"""A tenant may replace its own agent: the server must trust nothing it sends.

A hostile agent here is an asyncio unix-socket server in the test that passes the
handshake (it holds the sandbox's key: a tenant's own agent does) and then speaks
the protocol badly: a frame header announcing 4 GiB, endless control frames (or
clone progress), a listing of ten million entries, fields of the wrong types,
gigabytes of log. The server-side functions (and the API, in process) must answer
502 ``agent_protocol_error`` with their memory flat (tracemalloc's peak, which also
counts the bytes the fake agent itself sends, stays within a few MiB of what a
legitimate answer may hold).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient

from container.agent.protocol import (
    HEADER,
    Channel,
    Hello,
    Kind,
    Message,
    Welcome,
    proof,
)
from sandboxes import agentconn, code, execs, files, git, ports, processes
from sandboxes.agent.client import AgentClient
from sandboxes.backends.base import AgentAddress
from sandboxes.errors import AgentProtocolError
from sandboxes.models import ApiToken, Sandbox
from sandboxes.progress import Step

pytestmark = pytest.mark.django_db(transaction=True)

KEY = b"hostile-agent-test-key"
MiB = 1024 * 1024

Behavior = Callable[[Message, asyncio.StreamWriter], Awaitable[None]]


def frame(kind: int, payload: bytes) -> bytes:
    """A frame as the hostile agent writes it: no MAX_FRAME check on this side."""
    return HEADER.pack(kind, len(payload)) + payload


def message(type_: str, **fields: Any) -> bytes:
    return frame(Kind.CONTROL, json.dumps({"type": type_, **fields}).encode())


async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def forever(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send ``data`` again and again until the server hangs up."""
    while True:
        await send(writer, data)


class HostileAgent:
    """Answers the handshake, reads the request, then runs ``behavior``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.behavior: Behavior | None = None
        self.ended = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer)
        try:
            request = await channel.receive_message()
            if isinstance(request, Hello):
                await channel.send_message(Welcome(proof=proof(KEY, "agent", request.nonce)))
                request = await channel.receive_message()
            assert request is not None and self.behavior is not None
            await self.behavior(request, writer)
        except (ConnectionError, OSError):
            pass  # the server hung up on us: what these tests want
        finally:
            self.ended.set()
            writer.close()


@pytest.fixture
async def agent(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HostileAgent]:
    directory = tempfile.mkdtemp(prefix="hostile-")
    fake = HostileAgent(os.path.join(directory, "agent.sock"))
    server = await asyncio.start_unix_server(fake.handle, fake.path)

    async def agent_for(sandbox: Sandbox) -> AgentClient:
        return AgentClient(AgentAddress(unix_path=fake.path, key=KEY))

    monkeypatch.setattr(agentconn, "agent_for", agent_for)
    yield fake
    server.close()
    await server.wait_closed()
    os.unlink(fake.path)
    os.rmdir(directory)


@pytest.fixture
async def sandbox() -> Sandbox:
    user = await User.objects.acreate(username="tenant")
    return await Sandbox.objects.acreate(owner=user, name="hostile", status="running")


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """The peak of traced allocations above the start, in bytes (set on exit)."""
    result: list[int] = []
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    try:
        yield result
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        result.append(peak - start)


async def refused(call: Awaitable[Any]) -> AgentProtocolError:
    with pytest.raises(AgentProtocolError) as caught:
        await call
    error = caught.value
    assert (error.status, error.code) == (502, "agent_protocol_error")
    assert error.message.startswith("The sandbox's agent broke the protocol: ")
    return error


async def exec_once(sandbox: Sandbox) -> execs.ExecResult:
    return await execs.exec_collect(sandbox, execs.ExecRequest(command="true"))


# ----------------------------------------------------------------------- frames


async def test_a_frame_header_announcing_4_gib_is_refused_unread(
    agent: HostileAgent, sandbox: Sandbox
) -> None:
    async def huge_header(request: Message, writer: asyncio.StreamWriter) -> None:
        await send(writer, HEADER.pack(Kind.CONTROL, 2**32 - 1))
        await forever(writer, b"\0" * 65536)

    agent.behavior = huge_header
    with peak_memory() as peak:
        error = await refused(files.make_dir(sandbox, "/workspace/x"))
    assert "4294967295 bytes exceeds" in error.message
    assert peak[0] < 2 * MiB
    await agent.ended.wait()  # and the connection was dropped


async def test_endless_control_frames_end_a_command(agent: HostileAgent, sandbox: Sandbox) -> None:
    async def chatty(request: Message, writer: asyncio.StreamWriter) -> None:
        await send(writer, message("started", pid=7))
        await forever(writer, message("pong") * 100)

    agent.behavior = chatty
    with peak_memory() as peak:
        error = await refused(exec_once(sandbox))
    assert "'pong' out of turn" in error.message
    assert peak[0] < 2 * MiB


async def test_endless_empty_output_frames_end_a_command(
    agent: HostileAgent, sandbox: Sandbox
) -> None:
    async def empty(request: Message, writer: asyncio.StreamWriter) -> None:
        await send(writer, message("started", pid=7))
        await forever(writer, frame(Kind.STDOUT, b"") * 100)

    agent.behavior = empty
    await refused(exec_once(sandbox))


async def test_endless_control_frames_end_a_code_run(agent: HostileAgent, sandbox: Sandbox) -> None:
    async def chatty(request: Message, writer: asyncio.StreamWriter) -> None:
        await send(writer, message("code_run_started", context="c", language="python"))
        await forever(writer, message("code_context", id="c") * 100)

    agent.behavior = chatty
    await refused(code.collect(code.run_stream(sandbox, code.RunRequest(code="1"))))


async def test_endless_clone_progress_is_cut(agent: HostileAgent, sandbox: Sandbox) -> None:
    async def chatty(request: Message, writer: asyncio.StreamWriter) -> None:
        step = message("git_progress", stage="Receiving objects", current=1, total=2, message="")
        await forever(writer, step * 100)

    agent.behavior = chatty
    reports = 0

    async def report(step: Step) -> None:
        nonlocal reports
        reports += 1

    with peak_memory() as peak:
        error = await refused(git.clone(sandbox, None, {"url": "x"}, None, report))
    assert "more clone progress than a clone makes" in error.message
    assert reports == git.MAX_PROGRESS + 1  # the "connect" step, then each relayed one
    assert peak[0] < 2 * MiB
    await agent.ended.wait()


async def test_a_stage_name_from_the_agent_is_cut_short(
    agent: HostileAgent, sandbox: Sandbox
) -> None:
    async def long_names(request: Message, writer: asyncio.StreamWriter) -> None:
        writer.write(message("git_progress", stage="A" * 10_000, current=5, total=-3, message=""))
        writer.write(message("git_result", result={"path": "/w", "branch": None, "commit": None}))
        await writer.drain()

    agent.behavior = long_names
    steps: list[Step] = []

    async def report(step: Step) -> None:
        steps.append(step)

    result = await git.clone(sandbox, None, {"url": "x"}, None, report)
    assert result["path"] == "/w"
    assert steps[-1].message == "A" * 80 + ": 5" and steps[-1].total is None


async def test_endless_answers_to_a_one_answer_call_are_not_read(
    agent: HostileAgent, sandbox: Sandbox
) -> None:
    async def repeats(request: Message, writer: asyncio.StreamWriter) -> None:
        await forever(writer, message("git_result", result={"ok": True}) * 100)

    agent.behavior = repeats
    with peak_memory() as peak:
        assert await git.run(sandbox, "status") == {"ok": True}
        await agent.ended.wait()  # the server hung up after the one answer it wanted
    assert peak[0] < 2 * MiB


async def test_code_results_are_capped(
    agent: HostileAgent, sandbox: Sandbox, settings: Any
) -> None:
    settings.EXEC_OUTPUT_LIMIT = MiB
    bundle = message("code_result", data={"text/plain": "x" * 60_000})

    async def results(request: Message, writer: asyncio.StreamWriter) -> None:
        await send(writer, message("code_run_started", context="c", language="python"))
        for _ in range(200):  # 12 MB of results for a 1 MiB cap
            await send(writer, bundle)
        await send(writer, message("code_run_end", execution_count=1, duration_ms=1.0))

    agent.behavior = results
    with peak_memory() as peak:
        result = await code.collect(code.run_stream(sandbox, code.RunRequest(code="1")))
    assert result.truncated and 0 < len(result.results) <= MiB // 60_000
    assert peak[0] < 8 * MiB


# ----------------------------------------------------------------------- listings


ENTRY = {
    "name": "f",
    "path": "/workspace/f",
    "type": "file",
    "size": 1,
    "modified": "2026-01-01T00:00:00Z",
}


async def test_a_listing_of_ten_million_entries_is_cut_at_the_limit(
    agent: HostileAgent, sandbox: Sandbox
) -> None:
    batch = message("file_listing", path="/workspace", entries=[ENTRY] * 1000, done=False)

    async def ten_million(request: Message, writer: asyncio.StreamWriter) -> None:
        for _ in range(10_000):  # 10 million entries, about 700 MB of frames
            await send(writer, batch)
        await send(writer, message("file_listing", path="/workspace", entries=[], done=True))

    agent.behavior = ten_million
    with peak_memory() as peak:
        error = await refused(files.list_dir(sandbox, "/workspace", recursive=True))
    assert f"more than the {files.LIST_LIMIT} entries" in error.message
    # What LIST_LIMIT (100 000) entries take, as for an honest listing; ten million
    # entries kept would be gigabytes.
    assert peak[0] < 64 * MiB


async def test_a_listing_batch_of_a_million_tiny_entries_is_not_decoded(
    agent: HostileAgent, sandbox: Sandbox
) -> None:
    entries = b"[" + b",".join([b"{}"] * 1_300_000) + b"]"
    payload = b'{"type":"file_listing","path":"/","done":true,"entries":' + entries + b"}"

    async def tiny(request: Message, writer: asyncio.StreamWriter) -> None:
        await send(writer, frame(Kind.CONTROL, payload))

    agent.behavior = tiny
    with peak_memory() as peak:
        error = await refused(files.list_dir(sandbox, "/workspace"))
    assert "more than 250000 values" in error.message
    # The 4 MiB frame (sent and received) and one scan of it; decoded, it would be
    # 1.3 million dicts (over 100 MB).
    assert peak[0] < 24 * MiB


async def test_empty_listing_batches_are_refused(agent: HostileAgent, sandbox: Sandbox) -> None:
    async def empty(request: Message, writer: asyncio.StreamWriter) -> None:
        await forever(writer, message("file_listing", path="/", entries=[], done=False))

    agent.behavior = empty
    await refused(files.list_dir(sandbox, "/workspace"))


# ----------------------------------------------------------------------- wrong types


def _answer(data: bytes) -> Behavior:
    async def behave(request: Message, writer: asyncio.StreamWriter) -> None:
        if request.type == "exec":  # a command is answered "started" first
            await send(writer, message("started", pid=1))
        await send(writer, data)

    return behave


WRONG: dict[str, tuple[Callable[[Sandbox], Awaitable[Any]], bytes]] = {
    "listing entry not an object": (
        lambda s: files.list_dir(s, "/"),
        message("file_listing", path="/", entries=[1, 2]),
    ),
    "listing entries a string": (
        lambda s: files.list_dir(s, "/"),
        message("file_listing", path="/", entries="entries"),
    ),
    "listing entry size a string": (
        lambda s: files.list_dir(s, "/"),
        message("file_listing", path="/", entries=[{**ENTRY, "size": "12"}]),
    ),
    "listing entry without a name": (
        lambda s: files.list_dir(s, "/"),
        message("file_listing", path="/", entries=[{"path": "/x", "size": 1}]),
    ),
    "listing done a string": (
        lambda s: files.list_dir(s, "/"),
        message("file_listing", path="/", entries=[], done="no"),
    ),
    "exit code a string": (exec_once, message("exit", exit_code="0")),
    "exit duration NaN": (
        exec_once,
        frame(Kind.CONTROL, b'{"type":"exit","exit_code":0,"duration_ms":NaN}'),
    ),
    "process pid a string": (
        processes.list_processes,
        message("process_listing", processes=[{"pid": "x", "command": "sleep"}]),
    ),
    "session not an object": (processes.list_sessions, message("session_listing", sessions=[7])),
    "port a string": (ports.listening_ports, message("port_list", ports=["80"])),
    "port out of range": (ports.listening_ports, message("port_list", ports=[70000])),
    "file size a string": (lambda s: files.read(s, "/x"), message("file_content", size="12")),
    "modified with a newline": (
        lambda s: files.read(s, "/x"),
        message("file_content", size=1, length=1, modified="x\r\nSet-Cookie: a=b"),
    ),
    "git result a list": (lambda s: git.run(s, "status"), message("git_result", result=[])),
    "error code a number": (lambda s: git.run(s, "status"), message("error", code=5)),
    "unknown message": (lambda s: git.run(s, "status"), message("surprise")),
    "not JSON": (lambda s: git.run(s, "status"), frame(Kind.CONTROL, b"{nope")),
    "deep nesting": (lambda s: git.run(s, "status"), frame(Kind.CONTROL, b"[" * 100_000)),
    "data where a message is due": (
        lambda s: git.run(s, "status"),
        frame(Kind.DATA, b"x"),
    ),
    "the wrong answer": (lambda s: git.run(s, "status"), message("pong")),
}


@pytest.mark.parametrize("case", list(WRONG))
async def test_wrong_answers_are_502_not_500(
    agent: HostileAgent, sandbox: Sandbox, case: str
) -> None:
    call, answer = WRONG[case]
    agent.behavior = _answer(answer)
    await refused(call(sandbox))


# ----------------------------------------------------------------------- content


async def test_a_log_of_gigabytes_is_refused_at_the_buffer(
    agent: HostileAgent, sandbox: Sandbox
) -> None:
    async def gigabytes(request: Message, writer: asyncio.StreamWriter) -> None:
        await forever(writer, frame(Kind.STDOUT, b"y" * 65536))

    agent.behavior = gigabytes
    with peak_memory() as peak:
        error = await refused(processes.logs_so_far(sandbox, 1))
    assert "bytes of stdout a process keeps" in error.message
    assert peak[0] < 4 * MiB  # PROCESS_LOG_BUFFER (1 MiB) and a frame or two


async def test_a_read_longer_than_announced_is_cut(agent: HostileAgent, sandbox: Sandbox) -> None:
    async def longer(request: Message, writer: asyncio.StreamWriter) -> None:
        await send(writer, message("file_content", path="/x", size=10, length=10))
        await forever(writer, frame(Kind.DATA, b"z" * 65536))

    agent.behavior = longer
    download = await files.read(sandbox, "/x")
    with peak_memory() as peak:
        error = await refused(_drain(download.chunks))
    assert "more than the 10 bytes it may" in error.message
    assert peak[0] < 2 * MiB


async def test_an_endless_archive_is_cut_at_the_disk_quota(
    agent: HostileAgent, sandbox: Sandbox, settings: Any
) -> None:
    settings.SANDBOX_DISK_QUOTA = 8 * MiB  # an archive may take 8 + 2 + 64 MiB

    async def endless(request: Message, writer: asyncio.StreamWriter) -> None:
        await send(writer, message("file_content", path="/workspace", size=0))
        await forever(writer, frame(Kind.DATA, b"z" * 65536))

    agent.behavior = endless
    download = await files.archive(sandbox, "/workspace")
    with peak_memory() as peak:
        error = await refused(_drain(download.chunks))
    assert f"more than the {74 * MiB} bytes it may" in error.message
    assert peak[0] < 2 * MiB


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    async for _ in chunks:
        pass


# ----------------------------------------------------------------------- through the API


async def _bearer(sandbox: Sandbox) -> str:
    owner = await User.objects.aget(pk=sandbox.owner_id)
    _, token = await sync_to_async(ApiToken.issue)(owner)
    return f"Bearer {token}"


API_CASES: dict[str, tuple[str, str, dict[str, Any] | None, bytes]] = {
    "listing": (
        "get",
        "/files?path=/workspace",
        None,
        message("file_listing", path="/", entries=[{"name": ["x"]}]),
    ),
    "exec": ("post", "/exec", {"command": "true"}, message("exit", exit_code="zero")),
    "huge frame": ("post", "/exec", {"command": "true"}, HEADER.pack(Kind.CONTROL, 2**32 - 1)),
    "processes": ("get", "/processes", None, message("process_listing", processes=["p"])),
    "ports": ("get", "/ports", None, message("port_list", ports=[1.5])),
    "git status": ("get", "/git/status", None, message("git_result", result={"files": 1})),
    "terminals": (
        "get",
        "/terminals",
        None,
        message("terminal_listing", terminals=[{"name": "t", "created_at": "yesterday"}]),
    ),
    "sessions": ("get", "/sessions", None, message("session_listing", sessions=[{"env": 1}])),
    "code contexts": ("get", "/code/contexts", None, message("code_contexts", contexts=[[]])),
}


@pytest.mark.parametrize("case", list(API_CASES))
async def test_the_api_answers_502_agent_protocol_error(
    agent: HostileAgent, sandbox: Sandbox, case: str
) -> None:
    method, path, body, answer = API_CASES[case]
    agent.behavior = _answer(answer)
    client, headers = AsyncClient(), {"Authorization": await _bearer(sandbox)}
    url = f"/api/v1/sandboxes/{sandbox.id}{path}"
    if method == "get":
        response = await client.get(url, headers=headers)
    else:
        response = await client.post(url, body, content_type="application/json", headers=headers)
    assert response.status_code == 502, response.content
    error = response.json()["error"]
    assert error["code"] == "agent_protocol_error"
    assert error["message"].startswith("The sandbox's agent broke the protocol: ")
