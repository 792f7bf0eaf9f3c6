"""The server believes only the agent that proves it holds the sandbox's key, and an
agent carries out nothing for a client that does not.

These run the real agent in-process (as the unit tier does) behind a unix socket: an
impostor is whatever answers at a sandbox's address without its key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from container.agent import server as agent_server
from container.agent.protocol import Channel, Error, Exec, encode_message
from sandboxes.agent.client import AgentClient, AgentImpostor
from sandboxes.backends.base import AgentAddress

OWN_KEY = b"the sandbox's own key"
OTHER_KEY = b"another sandbox's key"


@pytest.fixture
async def agent_path(tmp_path: Path) -> AsyncIterator[str]:
    """A real agent holding OTHER_KEY: another sandbox's, as seen from ours."""
    agent_server.set_key(OTHER_KEY)
    path = str(tmp_path / "agent.sock")
    listener = await asyncio.start_unix_server(agent_server.handle_connection, path=path)
    try:
        yield path
    finally:
        listener.close()


async def test_another_sandboxs_agent_is_not_believed_and_does_nothing(
    agent_path: str, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    client = AgentClient(AgentAddress(unix_path=agent_path, key=OWN_KEY))
    with pytest.raises(AgentImpostor) as caught:
        await client.call(Exec(command=["touch", str(marker)]))
    assert caught.value.status == 502 and caught.value.code == "agent_unverified"
    await asyncio.sleep(0.2)
    assert not marker.exists()


async def test_the_right_key_is_served(agent_path: str, tmp_path: Path) -> None:
    client = AgentClient(AgentAddress(unix_path=agent_path, key=OTHER_KEY))
    assert (await client.ping()).version >= 2


async def test_an_agent_refuses_a_client_without_the_key(agent_path: str, tmp_path: Path) -> None:
    """Code that reaches an agent's socket (it cannot: see test_agent_boundary) still
    could not make it do anything."""
    marker = tmp_path / "ran"
    reader, writer = await asyncio.open_unix_connection(agent_path)
    writer.write(encode_message(Exec(command=["touch", str(marker)])))
    reply = await Channel(reader, writer).receive_message()
    assert isinstance(reply, Error) and reply.code == "unauthorized"
    writer.close()
    await asyncio.sleep(0.2)
    assert not marker.exists()


async def test_something_else_listening_is_not_believed(tmp_path: Path) -> None:
    """A program that answers anything at all, an agent Error included: never trusted,
    and its words never become the API's answer."""
    path = str(tmp_path / "fake.sock")

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(encode_message(Error(code="unauthorized", message="log in again")))
        await writer.drain()
        writer.close()

    listener = await asyncio.start_unix_server(liar, path=path)
    try:
        client = AgentClient(AgentAddress(unix_path=path, key=OWN_KEY))
        with pytest.raises(AgentImpostor) as caught:
            await client.ping()
        assert caught.value.status == 502
    finally:
        listener.close()


async def test_a_sandbox_without_a_key_is_never_dialled(tmp_path: Path) -> None:
    client = AgentClient(AgentAddress(unix_path=str(tmp_path / "nothing.sock")))
    with pytest.raises(Exception, match="no agent key"):
        await client.ping()
