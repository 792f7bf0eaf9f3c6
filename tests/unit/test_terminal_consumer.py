"""The terminal and exec WebSocket consumers, through the real ASGI stack, against the
real agent code running on the host (a fake backend below the backend interface
points at it): no Docker needed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model

from container.agent import execs as agent_execs
from container.agent import server as agent_server
from container.agent import terminals as agent_terminals
from container.agent.protocol import (
    Channel,
    Exit,
    Kind,
    TerminalAttach,
    TerminalAttached,
    TerminalKill,
    TerminalKilled,
    decode_message,
)
from sandboxes.backends import get_backend
from sandboxes.backends.base import AgentAddress, Backend, BackendState, SandboxSpec, Status
from sandboxes.models import ApiToken, Sandbox
from tests.agentkit import UNIT_KEY, open_agent

pytestmark = pytest.mark.django_db(transaction=True)


class LocalAgentBackend(Backend):
    """Every sandbox is "running" and its agent is the one this test module serves."""

    socket_path = ""

    async def ping(self) -> None:
        return None

    async def create(self, spec: SandboxSpec) -> BackendState:
        return {"local": True}

    async def start(self, state: BackendState) -> BackendState:
        return {}

    async def stop(self, state: BackendState) -> None:
        return None

    async def pause(self, state: BackendState) -> None:
        return None

    async def remove(self, state: BackendState) -> None:
        return None

    async def status(self, state: BackendState) -> Status:
        return "running"

    def agent_address(self, state: BackendState) -> AgentAddress:
        return AgentAddress(unix_path=self.socket_path, key=UNIT_KEY)


@pytest.fixture
async def agent(settings: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    root = tempfile.mkdtemp(prefix="term-", dir="/tmp")  # short: unix socket paths
    home, workspace = os.path.join(root, "home"), os.path.join(root, "ws")
    os.mkdir(home)
    os.mkdir(workspace)
    with open(os.path.join(home, ".bashrc"), "w") as rc:
        rc.write('PS1="sbx$ "\n')
    with open(os.path.join(home, ".bash_profile"), "w") as profile:
        profile.write(". ~/.bashrc\n")
    monkeypatch.setenv("HOME", home)

    def resolve(path: str | None, default: str | None = None) -> str:
        return os.path.normpath(os.path.join(workspace, path or "."))

    monkeypatch.setattr(agent_terminals, "resolve_path", resolve)
    monkeypatch.setattr(agent_execs, "resolve_path", resolve)
    path = os.path.join(root, "agent.sock")
    listener = await asyncio.start_unix_server(agent_server.handle_connection, path=path)
    LocalAgentBackend.socket_path = path
    settings.SANDBOX_BACKEND = f"{__name__}.LocalAgentBackend"
    get_backend.cache_clear()
    try:
        yield path
    finally:
        for terminal in list(agent_terminals.TERMINALS.values()):
            await terminal.terminate()
        listener.close()
        get_backend.cache_clear()
        shutil.rmtree(root, ignore_errors=True)


async def _user_with_token(username: str) -> tuple[Any, str]:
    def make() -> tuple[Any, str]:
        user = get_user_model().objects.create_user(username)
        _row, token = ApiToken.issue(user)
        return user, token

    return await sync_to_async(make)()


@pytest.fixture
async def alice(agent: str) -> dict[str, Any]:
    user, token = await _user_with_token("alice")
    sandbox = await Sandbox.objects.acreate(
        owner=user, name="s1", status=Sandbox.Status.RUNNING, backend_state={"local": True}
    )
    return {"user": user, "token": token, "sandbox": sandbox}


def communicator(path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    from ide.asgi import app

    return WebsocketCommunicator(app, path, headers=headers or [])


async def connect(alice: dict[str, Any], name: str = "main", query: str = "") -> Any:
    url = f"/ws/sandboxes/{alice['sandbox'].id}/terminals/{name}?token={alice['token']}{query}"
    ws = communicator(url)
    connected, code = await ws.connect()
    assert connected, code
    return ws


async def read_until(ws: Any, needle: bytes, timeout: float = 10) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        message = await ws.receive_output(max(0.01, deadline - time.monotonic()))
        if message["type"] == "websocket.close":
            raise AssertionError(f"closed ({message}) before {needle!r}; saw {seen[-300:]!r}")
        if message.get("bytes"):
            seen += message["bytes"]
        elif message.get("text"):
            seen += b"<event " + message["text"].encode() + b">"
    return seen


async def next_event(ws: Any, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.receive_output(max(0.01, deadline - time.monotonic()))
        if message.get("text"):
            return json.loads(message["text"])
        if message["type"] == "websocket.close":
            return {"type": "<closed>", "code": message.get("code")}


# --------------------------------------------------------------------- terminals


async def test_echo_resize_and_exit_code(alice: dict[str, Any]) -> None:
    ws = await connect(alice, query="&cols=100&rows=30")
    await ws.send_to(bytes_data=b"echo hello-$((6*7))\n")
    assert b"hello-42" in await read_until(ws, b"hello-42")
    await ws.send_to(bytes_data=b"stty size\n")
    await read_until(ws, b"30 100")
    await ws.send_to(text_data=json.dumps({"type": "resize", "cols": 120, "rows": 40}))
    await ws.send_to(text_data="not json")  # ignored, the terminal lives on
    await ws.send_to(bytes_data=b"stty size\n")
    await read_until(ws, b"40 120")
    await ws.send_to(bytes_data=b"exit 7\n")
    assert await next_event(ws) == {"type": "exit", "exit_code": 7}
    closed = await ws.receive_output(5)
    assert closed == {"type": "websocket.close", "code": 1000}
    assert "main" not in agent_terminals.TERMINALS


async def test_keystrokes_skip_the_per_message_database_check(
    alice: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """channels checks the database connections (on its database thread) before every
    message it dispatches; keystrokes do not wait for that round trip."""
    import channels.consumer

    checks = []
    original = channels.consumer.aclose_old_connections

    async def counted() -> None:
        checks.append(1)
        await original()

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    ws = await connect(alice)
    await ws.send_to(bytes_data=b"echo ready-$((1+1))\n")
    await read_until(ws, b"ready-2")
    before = len(checks)
    for key in b"echo typed-$((2*3))\n":
        await ws.send_to(bytes_data=bytes([key]))
    await read_until(ws, b"typed-6")
    assert len(checks) == before
    await ws.disconnect()


async def test_reattach_replays_and_keeps_state(alice: dict[str, Any]) -> None:
    ws = await connect(alice, "keep")
    await ws.send_to(bytes_data=b"export GREETING=kept; mkdir -p sub; cd sub; echo mark-one\n")
    await read_until(ws, b"mark-one\r\n")
    await ws.disconnect()
    await asyncio.sleep(0.1)
    assert agent_terminals.TERMINALS["keep"].clients == set()

    again = await connect(alice, "keep")
    replay = await read_until(again, b"mark-one")  # the scrollback comes first
    assert b"export GREETING=kept" in replay
    await again.send_to(bytes_data=b"echo $GREETING-$(basename $PWD)\n")
    await read_until(again, b"kept-sub")
    await again.disconnect()


async def test_reattach_sends_no_terminal_queries(alice: dict[str, Any]) -> None:
    ws = await connect(alice, "queries")
    # A program asks for device attributes, cursor position and the background colour.
    await ws.send_to(bytes_data=b"printf 'A\\033[cB\\033[6nC\\033]11;?\\007D\\033[>0qE\\n'\n")
    live = await read_until(ws, b"E\r\n")
    assert b"A\x1b[cB\x1b[6nC\x1b]11;?\x07D\x1b[>0qE" in live  # live output is untouched
    await ws.disconnect()
    again = await connect(alice, "queries")
    replay = await read_until(again, b"ABCDE")
    assert b"\x1b[6n" not in replay and b"\x1b[c" not in replay and b"\x1b]11;?" not in replay
    assert b"\x1b[>0q" not in replay
    await again.disconnect()


async def test_two_clients_and_readonly(alice: dict[str, Any]) -> None:
    writer = await connect(alice, "shared")
    watcher = await connect(alice, "shared", "&readonly=1")
    await writer.send_to(bytes_data=b"echo from-writer\n")
    await read_until(writer, b"from-writer\r\n")
    await read_until(watcher, b"from-writer\r\n")
    await watcher.send_to(bytes_data=b"echo from-watcher\n")
    await watcher.send_to(text_data=json.dumps({"type": "resize", "cols": 33, "rows": 11}))
    await writer.send_to(bytes_data=b"echo after; stty size\n")
    seen = await read_until(writer, b"after\r\n24 80\r\n")  # the size is unchanged
    assert b"from-watcher" not in seen
    assert agent_terminals.TERMINALS["shared"].cols == 80
    await writer.disconnect()
    await watcher.disconnect()


async def test_a_big_paste_arrives_whole(alice: dict[str, Any]) -> None:
    ws = await connect(alice, "paste")
    await ws.send_to(bytes_data=b"stty -echo; wc -c\n")
    await asyncio.sleep(0.3)
    await ws.send_to(bytes_data=(b"y" * 99 + b"\n") * 60_000)  # more than one agent frame
    await ws.send_to(bytes_data=b"\x04")
    await read_until(ws, b"6000000", timeout=60)
    await ws.disconnect()


async def test_readonly_attach_does_not_create_a_terminal(alice: dict[str, Any]) -> None:
    ws = await connect(alice, "ghost", "&readonly=1")
    event = await next_event(ws)
    assert event["type"] == "error" and event["code"] == "not_found"
    assert await ws.receive_output(5) == {
        "type": "websocket.close",
        "code": 4404,
        "reason": "no terminal named 'ghost' to watch",
    }
    assert "ghost" not in agent_terminals.TERMINALS


async def agent_attach(path: str, name: str) -> Channel:
    """A raw agent connection, as the host opens one (for flow control tests: the
    test communicator's own queue is unbounded, so it never pushes back)."""
    reader, writer = await open_agent(path)
    channel = Channel(reader, writer)
    await channel.send_message(TerminalAttach(name=name))
    assert isinstance(await channel.receive_message(), TerminalAttached)
    return channel


async def agent_read_until(channel: Channel, needle: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen[-len(needle) - 70000 :]:
        frame = await asyncio.wait_for(channel.receive(), deadline - time.monotonic())
        assert frame is not None
        if frame[0] == Kind.DATA:
            seen = seen[-100000:] + frame[1]
    return seen


async def test_flood_pauses_the_pty_and_ctrl_c_answers(agent: str) -> None:
    channel = await agent_attach(agent, "flood")
    await channel.send(Kind.STDIN, b"yes flooding-the-terminal\n")
    await agent_read_until(channel, b"flooding-the-terminal\r\nflooding")
    # Nothing is read for a while: the client's queue fills and the agent stops
    # reading the PTY, so `yes` blocks instead of memory growing.
    await asyncio.sleep(1.0)
    terminal = agent_terminals.TERMINALS["flood"]
    [client] = terminal.clients
    assert not terminal._reading
    assert client.queued <= client.limit + agent_terminals.CHUNK
    assert len(terminal.screen.pending) <= agent_terminals.REPLAY_LIMIT
    read_before = terminal._bytes_read
    await asyncio.sleep(0.5)
    assert terminal._bytes_read == read_before
    started = time.monotonic()
    await channel.send(Kind.STDIN, b"\x03")
    # The interrupt discards typed-ahead input (tty semantics): type until answered.
    while True:
        await channel.send(Kind.STDIN, b"echo done-$((40+2))\n")
        try:
            await agent_read_until(channel, b"done-42", timeout=1)
            break
        except TimeoutError:
            assert time.monotonic() - started < 5, "no prompt after Ctrl-C"
    assert client.skipped_total == 0  # a single client is paced, never skipped
    await channel.close()


async def test_slow_client_does_not_block_a_fast_one(agent: str) -> None:
    fast = await agent_attach(agent, "fanout")
    slow = await agent_attach(agent, "fanout")  # never read
    await fast.send(
        Kind.STDIN, b"head -c 5000000 /dev/zero | tr '\\0' x; echo; echo fin-$((1+1))\n"
    )
    await agent_read_until(fast, b"fin-2\r\n", timeout=30)
    terminal = agent_terminals.TERMINALS["fanout"]
    lagging = [c for c in terminal.clients if c.skipped_total]
    assert len(lagging) == 1
    assert all(c.queued <= c.limit + agent_terminals.CHUNK for c in terminal.clients)
    await fast.close()
    await slow.close()


async def test_idle_terminal_ends_after_its_timeout_not_before(alice: dict[str, Any]) -> None:
    ws = await connect(alice, "idle", "&idle_timeout=1")
    await ws.send_to(bytes_data=b"echo hi\n")
    await read_until(ws, b"hi\r\n")
    await ws.disconnect()
    await asyncio.sleep(0.5)
    assert "idle" in agent_terminals.TERMINALS
    deadline = time.monotonic() + 10
    while "idle" in agent_terminals.TERMINALS:
        assert time.monotonic() < deadline, "the idle terminal did not end"
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------- refusals


async def test_refusals_happen_before_accept(alice: dict[str, Any]) -> None:
    sandbox_id = alice["sandbox"].id
    bob, bob_token = await _user_with_token("bob")
    cases = [
        (f"/ws/sandboxes/{sandbox_id}/terminals/main", [], 4401),  # no credentials
        (f"/ws/sandboxes/{sandbox_id}/terminals/main?token=wrong", [], 4401),
        (f"/ws/sandboxes/{sandbox_id}/terminals/main?token={bob_token}", [], 4404),
        (f"/ws/sandboxes/nosuchbox/terminals/main?token={alice['token']}", [], 4404),
        (f"/ws/sandboxes/{sandbox_id}/terminals/Bad_Name?token={alice['token']}", [], 4400),
        (f"/ws/sandboxes/{sandbox_id}/terminals/main?token={alice['token']}&cols=0", [], 4400),
        (f"/ws/sandboxes/{sandbox_id}/exec?token={bob_token}", [], 4404),
        (
            f"/ws/sandboxes/{sandbox_id}/terminals/main",
            [(b"authorization", b"Bearer " + bob_token.encode())],
            4404,
        ),
    ]
    for url, headers, expected in cases:
        ws = communicator(url, headers)
        connected, code = await ws.connect()
        assert (connected, code) == (False, expected), url
    # A browser page on another site, even with a valid credential: refused.
    ws = communicator(
        f"/ws/sandboxes/{sandbox_id}/terminals/main?token={alice['token']}",
        [(b"origin", b"http://evil.example"), (b"host", b"localhost")],
    )
    connected, _ = await ws.connect()
    assert connected is False
    # The header form works for the owner.
    ws = communicator(
        f"/ws/sandboxes/{sandbox_id}/terminals/hdr",
        [(b"authorization", b"Bearer " + alice["token"].encode()), (b"host", b"localhost")],
    )
    assert (await ws.connect())[0] is True
    await ws.disconnect()
    assert agent_terminals.TERMINALS == {} or "main" not in agent_terminals.TERMINALS


# ------------------------------------------------------------------------ exec


async def test_exec_stream(alice: dict[str, Any]) -> None:
    ws = communicator(f"/ws/sandboxes/{alice['sandbox'].id}/exec?token={alice['token']}")
    assert (await ws.connect())[0]
    await ws.send_to(text_data=json.dumps({"command": "echo out; echo err >&2; exit 3"}))
    events = []
    while True:
        event = await next_event(ws)
        events.append(event)
        if event["type"] in ("exit", "<closed>"):
            break
    assert {"type": "stdout", "data": "out\n"} in events
    assert {"type": "stderr", "data": "err\n"} in events
    exit_event = events[-1]
    assert exit_event["exit_code"] == 3 and exit_event["success"] is False
    assert exit_event["timed_out"] is False and exit_event["duration_ms"] >= 0

    bad = communicator(f"/ws/sandboxes/{alice['sandbox'].id}/exec?token={alice['token']}")
    assert (await bad.connect())[0]
    await bad.send_to(text_data=json.dumps({"command": 42}))
    error = await next_event(bad)
    assert error["type"] == "error" and error["code"] == "bad_request"
    assert "command" in error["message"]
    closed = await bad.receive_output(5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4400


async def test_delete_ends_even_a_shell_that_ignores_signals(agent: str) -> None:
    channel = await agent_attach(agent, "stubborn")
    await channel.send(Kind.STDIN, b"trap '' HUP INT TERM; echo trapped-$((1+1))\n")
    await agent_read_until(channel, b"trapped-2")
    reader, writer = await open_agent(agent)
    killer = Channel(reader, writer)
    started = time.monotonic()
    await killer.send_message(TerminalKill(name="stubborn"))
    reply = await asyncio.wait_for(killer.receive_message(), 10)
    assert isinstance(reply, TerminalKilled) and reply.exit_code == 128 + 9  # SIGKILL
    assert time.monotonic() - started < 3
    assert "stubborn" not in agent_terminals.TERMINALS
    while True:  # the attached client is told, after the output it had not read
        frame = await asyncio.wait_for(channel.receive(), 10)
        assert frame is not None
        if frame[0] == Kind.CONTROL:
            assert decode_message(frame[1]) == Exit(exit_code=137)
            break
    await killer.close()
    await channel.close()
