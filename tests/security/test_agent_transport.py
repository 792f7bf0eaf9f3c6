"""Attacks on the agent's network transport (SANDBOX_AGENT_TRANSPORT=tcp).

A port can be reached by anyone who can reach its address, so everything rests on
the sandbox's key: a connection without the proof gets nothing run, a Hello seen on
the wire cannot be replayed (the agent challenges first), an impostor listening at
the address is refused, the published port is on the host's loopback alone, and the
code inside a sandbox can read its own agent's key nowhere.

The first tests run the real agent in-process behind a TCP listener; the others a
live server on the real engine in tcp mode.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import docker
import httpx
import pytest

from container.agent import server as agent_server
from container.agent.protocol import (
    Challenge,
    Channel,
    Error,
    Exec,
    Hello,
    Welcome,
    encode_message,
    hello,
)
from sandboxes.agent.client import AgentClient, AgentImpostor
from sandboxes.backends.base import AgentAddress
from tests.server import LiveServer, running_server

KEY = b"this sandbox's key"


@pytest.fixture
async def agent_port() -> AsyncIterator[int]:
    """The real agent's network listener (every connection challenged) holding KEY."""
    agent_server.set_key(KEY)
    listener = await asyncio.start_server(
        partial(agent_server.handle_connection, challenge=True), "127.0.0.1", 0
    )
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


async def _challenged(port: int) -> tuple[Channel, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    channel = Channel(reader, writer)
    challenge = await channel.receive_message()
    assert isinstance(challenge, Challenge) and len(challenge.nonce) >= 32
    return channel, challenge.nonce


async def test_the_key_holder_is_served_over_tcp(agent_port: int, tmp_path: Path) -> None:
    client = AgentClient(AgentAddress(host="127.0.0.1", port=agent_port, key=KEY))
    assert (await client.ping()).version == 3
    assert client.version == 3


async def test_a_connection_without_the_proof_gets_nothing_run(
    agent_port: int, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    channel, _ = await _challenged(agent_port)
    channel.writer.write(encode_message(Exec(command=["touch", str(marker)])))
    reply = await channel.receive_message()
    assert isinstance(reply, Error) and reply.code == "unauthorized"
    await channel.close()
    # An unchallenged Hello (right for the unix socket) is no proof here either.
    channel, _ = await _challenged(agent_port)
    channel.writer.write(
        encode_message(hello(KEY)) + encode_message(Exec(command=["touch", str(marker)]))
    )
    reply = await channel.receive_message()
    assert isinstance(reply, Error) and reply.code == "unauthorized"
    await channel.close()
    await asyncio.sleep(0.2)
    assert not marker.exists()


async def test_a_captured_hello_cannot_be_replayed(agent_port: int, tmp_path: Path) -> None:
    """Someone who saw a whole connection's bytes sends them again: refused, since
    the proof was for the first connection's challenge."""
    marker = tmp_path / "ran"
    channel, challenge = await _challenged(agent_port)
    captured = encode_message(hello(KEY, challenge)) + encode_message(
        Exec(command=["touch", str(marker)], cwd=str(tmp_path))
    )
    channel.writer.write(captured)
    welcome = await channel.receive_message()
    assert isinstance(welcome, Welcome) and welcome.version == 3
    while await channel.receive() is not None:  # the command runs to its end
        pass
    await channel.close()
    assert marker.exists()
    marker.unlink()

    replay, _ = await _challenged(agent_port)
    replay.writer.write(captured)
    reply = await replay.receive_message()
    assert isinstance(reply, Error) and reply.code == "unauthorized"
    await replay.close()
    await asyncio.sleep(0.2)
    assert not marker.exists()


@pytest.mark.parametrize("behaviour", ["silent-close", "no-challenge", "bad-welcome"])
async def test_an_impostor_listener_is_refused(behaviour: str) -> None:
    """Whatever holds the port instead of the agent (a program in the sandbox that
    took it while the agent restarted, say) never gets believed."""

    async def impostor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel = Channel(reader, writer)
        if behaviour == "no-challenge":
            await channel.send_message(Error(code="unauthorized", message="log in again"))
        elif behaviour == "bad-welcome":
            await channel.send_message(Challenge(nonce="0" * 32))
            greeting = await channel.receive_message()
            assert isinstance(greeting, Hello)
            await channel.send_message(Welcome(proof=greeting.proof, version=3))  # echo
        await channel.close()

    listener = await asyncio.start_server(impostor, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        client = AgentClient(AgentAddress(host="127.0.0.1", port=port, key=KEY))
        if behaviour == "silent-close":
            # Like a published port with no agent behind it yet: unreachable, retried.
            with pytest.raises(Exception, match="not answering"):
                await client.call(Exec(command=["true"]))
        else:
            with pytest.raises(AgentImpostor) as caught:
                await client.call(Exec(command=["true"]))
            assert caught.value.code == "agent_unverified"
    finally:
        listener.close()


# ------------------------------------------------------------- on the real engine


@pytest.fixture(scope="module")
def tcp_server(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxtcpsec", {"SANDBOX_AGENT_TRANSPORT": "tcp"}) as server:
        yield server


@pytest.fixture(scope="module")
def box(tcp_server: LiveServer) -> Iterator[tuple[httpx.Client, dict[str, object]]]:
    with tcp_server.client("mallory") as api:
        sandbox = api.post("/sandboxes", json={"name": "attacker", "keep_alive": True}).json()
        yield api, sandbox


def _container(server: LiveServer, sandbox: dict[str, object]) -> dict[str, object]:
    engine = docker.from_env()
    try:
        attrs: dict[str, object] = engine.containers.get(f"{server.prefix}-{sandbox['id']}").attrs
        return attrs
    finally:
        engine.close()


def _run(api: httpx.Client, sandbox: dict[str, object], command: str) -> dict[str, object]:
    response = api.post(f"/sandboxes/{sandbox['id']}/exec", json={"command": command})
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_the_agent_port_is_published_on_the_hosts_loopback_only(
    tcp_server: LiveServer, box: tuple[httpx.Client, dict[str, object]]
) -> None:
    attrs = _container(tcp_server, box[1])
    wanted = attrs["HostConfig"]["PortBindings"]  # type: ignore[index]
    assert wanted == {"7077/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    given = attrs["NetworkSettings"]["Ports"]["7077/tcp"]  # type: ignore[index]
    assert given and all(b["HostIp"] == "127.0.0.1" for b in given)


def test_user_code_cannot_read_its_agents_key(
    tcp_server: LiveServer, box: tuple[httpx.Client, dict[str, object]]
) -> None:
    api, sandbox = box
    env = attrs_env(_container(tcp_server, sandbox))
    key = env["SANDBOX_AGENT_KEY"]
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    out = _run(
        api,
        sandbox,
        "id -u; env; cat /proc/1/environ; "
        "for p in /proc/[0-9]*; do cat $p/environ $p/cmdline; done; "
        "grep -rs . /run/sandbox-agent /proc/self/environ; ls -la /run/sandbox-agent; "
        "cat /proc/1/mem; true",
    )
    seen = f"{out['stdout']}{out['stderr']}"
    assert str(out["stdout"]).startswith("1000\n")  # user code runs as the sandbox user
    assert "Permission denied" in seen  # root's processes (tini, the agent) are closed
    assert key not in seen and "SANDBOX_AGENT" not in str(out["stdout"])


def test_code_in_the_sandbox_dialling_its_agent_gets_nothing_run(
    box: tuple[httpx.Client, dict[str, object]],
) -> None:
    api, sandbox = box
    script = r"""
import json, socket, struct
s = socket.create_connection(("127.0.0.1", 7077))
def frame(kind, body): return struct.pack(">BI", kind, len(body)) + body
def message(**m): return frame(1, json.dumps(m).encode())
def read():
    head = s.recv(5, socket.MSG_WAITALL); kind, size = struct.unpack(">BI", head)
    return json.loads(s.recv(size, socket.MSG_WAITALL))
challenge = read()
s.sendall(message(type="hello", nonce="n" * 32, proof="0" * 64)
          + message(type="exec", command=["touch", "/tmp/agent-obeyed"]))
print(challenge["type"], read()["code"])
"""
    out = _run(api, sandbox, f"python3 -c '{script}'; sleep 0.3; ls /tmp/agent-obeyed")
    assert out["stdout"] == "challenge unauthorized\n", out
    assert "No such file" in str(out["stderr"])


def attrs_env(attrs: dict[str, object]) -> dict[str, str]:
    config = attrs["Config"]
    items = config["Env"] if isinstance(config, dict) else []
    return dict(str(item).partition("=")[::2] for item in items)
