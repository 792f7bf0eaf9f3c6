"""Talking to a real agent in unit tests, as the server does: every connection opens
with a Hello that proves the sandbox's key (here ``UNIT_KEY``)."""

from __future__ import annotations

import asyncio

from container.agent import server as agent_server
from container.agent.protocol import Channel, Welcome, encode_message, hello, valid_proof

UNIT_KEY = b"unit-test-agent-key"


def use_unit_key() -> None:
    """Make the in-process agent answer clients that hold ``UNIT_KEY``."""
    agent_server.set_key(UNIT_KEY)


async def open_agent(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection to the agent at ``path`` on which the Hello was sent and the
    agent's Welcome checked, ready for a request."""
    reader, writer = await asyncio.open_unix_connection(path)
    greeting = hello(UNIT_KEY)
    writer.write(encode_message(greeting))
    welcome = await Channel(reader, writer).receive_message()
    assert isinstance(welcome, Welcome)
    assert valid_proof(UNIT_KEY, "agent", greeting.nonce, welcome.proof)
    return reader, writer
