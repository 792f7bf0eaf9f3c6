"""Talking to a real agent in unit tests, as the server does: every connection opens
with a Hello that proves the sandbox's key (here ``UNIT_KEY``)."""

from __future__ import annotations

import asyncio
from typing import Any

from container.agent import server as agent_server
from container.agent.protocol import (
    Welcome,
    decode_message,
    encode_message,
    hello,
    read_frame,
    valid_proof,
)

UNIT_KEY = b"unit-test-agent-key"


def use_unit_key() -> None:
    """Make the in-process agent answer clients that hold ``UNIT_KEY``."""
    agent_server.set_key(UNIT_KEY)


class _WelcomedReader:
    """A StreamReader whose first frame, the agent's Welcome (which the agent sends
    together with its first answer), is checked and consumed before anything else."""

    def __init__(self, reader: asyncio.StreamReader, nonce: str) -> None:
        self._reader = reader
        self._nonce = nonce
        self._checked = False

    async def _welcome(self) -> None:
        if self._checked:
            return
        self._checked = True
        frame = await read_frame(self._reader)
        assert frame is not None, "the agent closed the connection"
        welcome = decode_message(frame[1])
        assert isinstance(welcome, Welcome)
        assert valid_proof(UNIT_KEY, "agent", self._nonce, welcome.proof)

    async def readexactly(self, n: int) -> bytes:
        await self._welcome()
        return await self._reader.readexactly(n)

    async def read(self, n: int = -1) -> bytes:
        await self._welcome()
        return await self._reader.read(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


async def open_agent(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw connection to the agent at ``path`` on which the Hello was sent; the
    reader checks the agent's Welcome before the first answer is read."""
    reader, writer = await asyncio.open_unix_connection(path)
    greeting = hello(UNIT_KEY)
    writer.write(encode_message(greeting))
    return _WelcomedReader(reader, greeting.nonce), writer  # type: ignore[return-value]
