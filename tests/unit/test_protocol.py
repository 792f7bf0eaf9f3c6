"""The agent protocol: every message type round-trips; framing rejects garbage."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from container.agent import protocol
from container.agent.protocol import (
    MESSAGES,
    Kind,
    Message,
    ProtocolError,
    decode_message,
    encode,
    encode_message,
    read_frame,
)


def sample(cls: type[Message]) -> Message:
    """An instance with every field set to a non-default value of its type."""
    values: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        kind = str(f.type)
        if "list" in kind:
            values[f.name] = ["a", "b c"]
        elif "dict" in kind:
            values[f.name] = {"K": "v"}
        elif "bool" in kind:
            values[f.name] = True
        elif "float" in kind:
            values[f.name] = 1.5
        elif "int" in kind:
            values[f.name] = 7
        else:
            values[f.name] = "x ✓"
    return cls(**values)  # type: ignore[arg-type]


def reader_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@pytest.mark.parametrize("cls", sorted(MESSAGES.values(), key=lambda c: c.type), ids=str)
async def test_every_message_round_trips(cls: type[Message]) -> None:
    message = sample(cls)
    frame = await read_frame(reader_of(encode_message(message)))
    assert frame is not None
    kind, payload = frame
    assert kind == Kind.CONTROL
    assert decode_message(payload) == message


def test_registry_covers_every_message_class() -> None:
    classes = {
        obj
        for obj in vars(protocol).values()
        if isinstance(obj, type) and issubclass(obj, Message) and obj is not Message
    }
    assert classes == set(MESSAGES.values())


async def test_data_frames_and_clean_end() -> None:
    reader = reader_of(encode(Kind.STDOUT, b"\x00\xffbytes") + encode(Kind.STDIN, b""))
    assert await read_frame(reader) == (Kind.STDOUT, b"\x00\xffbytes")
    assert await read_frame(reader) == (Kind.STDIN, b"")
    assert await read_frame(reader) is None


@pytest.mark.parametrize(
    "data",
    [
        b"\x01\x00",  # a cut header
        encode(Kind.STDOUT, b"abcdef")[:-2],  # a cut payload
        bytes([Kind.CONTROL]) + (protocol.MAX_FRAME + 1).to_bytes(4, "big"),  # too large
    ],
)
async def test_broken_frames_raise(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        await read_frame(reader_of(data))


@pytest.mark.parametrize(
    "payload", [b"not json", b"[1]", b'{"type": "nope"}', b'{"type": "exec", "bogus": 1}']
)
def test_bad_messages(payload: bytes) -> None:
    if payload == b'{"type": "exec", "bogus": 1}':
        # unknown fields are ignored: newer servers may add optional ones
        assert decode_message(payload).type == "exec"
        return
    with pytest.raises(ProtocolError):
        decode_message(payload)
