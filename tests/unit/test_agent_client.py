"""The server's agent client tells "no agent there" (wait for one) from "the agent
broke" (an error): a killed agent restarting must cost a wait, never a 502."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from container.agent.protocol import Ping
from sandboxes.agent.client import AgentClient, AgentUnreachable
from sandboxes.backends.base import AgentAddress


async def test_a_listener_dying_with_our_connection_in_its_backlog_is_unreachable(
    tmp_path: Path,
) -> None:
    """The agent is killed after our connect reached its backlog but before it
    accepted: the kernel resets the connection, and nothing ran."""
    path = str(tmp_path / "agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    client = AgentClient(AgentAddress(unix_path=path, key=b"key"))
    opening = asyncio.create_task(client.open(Ping()))
    await asyncio.sleep(0.2)  # connected and waiting for the Welcome
    assert not opening.done()
    listener.close()
    with pytest.raises(AgentUnreachable):
        await opening
