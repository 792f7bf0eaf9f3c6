"""The agent's file handlers in-process on a temporary directory (no engine), and the
pure helpers of the files API (ranges, event coalescing)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from container.agent import inotify as agent_inotify
from container.agent import server as agent_server
from container.agent.protocol import (
    Channel,
    Error,
    FileEvents,
    FileListing,
    FileWritten,
    Kind,
    ListFiles,
    Message,
    WatchFiles,
    WatchStarted,
    WriteFile,
    WriteReady,
)
from sandboxes.api.files import ByteRange, parse_range
from tests.agentkit import open_agent


@pytest.fixture
async def connect(tmp_path: Path) -> AsyncIterator:
    socket_path = str(tmp_path / "agent.sock")
    server = await asyncio.start_unix_server(agent_server.handle_connection, path=socket_path)
    channels: list[Channel] = []

    async def open_channel(request: Message) -> Channel:
        reader, writer = await open_agent(socket_path)
        channel = Channel(reader, writer)
        await channel.send_message(request)
        channels.append(channel)
        return channel

    yield open_channel
    for channel in channels:
        await channel.close()
    server.close()


async def test_listing_is_batched_and_truncated_at_the_limit(connect, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for i in range(25):
        (root / f"d{i:02d}").mkdir(parents=True)
        for j in range(100):
            (root / f"d{i:02d}" / f"f{j:03d}").write_bytes(b"x")
    channel = await connect(ListFiles(path=str(root), recursive=True, limit=2200))
    batches = []
    while True:
        message = await channel.receive_message()
        assert isinstance(message, FileListing)
        batches.append(message)
        if message.done:
            break
    assert [len(b.entries) for b in batches] == [1000, 1000, 200]
    assert batches[-1].truncated is True
    paths = [e["path"] for b in batches for e in b.entries]
    assert paths[:3] == [str(root / "d00"), str(root / "d00" / "f000"), str(root / "d00" / "f001")]
    everything = await connect(ListFiles(path=str(root), recursive=True))
    count = 0
    while True:
        message = await everything.receive_message()
        assert isinstance(message, FileListing)
        count += len(message.entries)
        if message.done:
            assert message.truncated is False
            break
    assert count == 25 * 101


async def test_an_abandoned_write_leaves_the_target_untouched(connect, tmp_path: Path) -> None:
    target = tmp_path / "kept.txt"
    target.write_bytes(b"original")
    channel = await connect(WriteFile(path=str(target)))
    assert isinstance(await channel.receive_message(), WriteReady)
    await channel.send(Kind.DATA, b"half of the new")
    await channel.close()  # gone before the end frame
    await asyncio.sleep(0.2)
    assert target.read_bytes() == b"original"
    assert sorted(os.listdir(tmp_path)) == ["agent.sock", "kept.txt"]

    done = await connect(WriteFile(path=str(target)))
    assert isinstance(await done.receive_message(), WriteReady)
    await done.send(Kind.DATA, b"new ")
    await done.send(Kind.DATA, b"content")
    await done.send(Kind.DATA, b"")
    written = await done.receive_message()
    assert isinstance(written, FileWritten)
    assert (written.size, written.created) == (11, False)
    assert target.read_bytes() == b"new content"


async def test_write_through_a_symlink_keeps_the_link(connect, tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_bytes(b"old")
    (tmp_path / "link.txt").symlink_to("real.txt")
    channel = await connect(WriteFile(path=str(tmp_path / "link.txt")))
    assert isinstance(await channel.receive_message(), WriteReady)
    await channel.send(Kind.DATA, b"new")
    await channel.send(Kind.DATA, b"")
    assert isinstance(await channel.receive_message(), FileWritten)
    assert (tmp_path / "link.txt").is_symlink()
    assert (tmp_path / "real.txt").read_bytes() == b"new"


async def _events(channel: Channel, until: str, timeout: float = 5) -> list[dict]:
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while not any(e["path"].endswith(until) and e["type"] == "delete" for e in seen):
            message = await channel.receive_message()
            assert isinstance(message, FileEvents)
            seen.extend(message.events)
    return seen


async def test_watch_follows_renamed_directories_and_moves_out(connect, tmp_path: Path) -> None:
    root = tmp_path / "w"
    outside = tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    outside.mkdir()
    channel = await connect(WatchFiles(path=str(root), recursive=True))
    started = await channel.receive_message()
    assert isinstance(started, WatchStarted) and started.watches == 2
    os.rename(root / "a", root / "b")
    await asyncio.sleep(0.15)
    (root / "b" / "inside.txt").write_text("x")  # the watch on a/ now reports b/
    await asyncio.sleep(0.15)
    os.rename(root / "b", outside / "b")  # moved out: a delete
    await asyncio.sleep(0.15)
    (outside / "b" / "unseen.txt").write_text("x")  # no longer watched
    (root / "marker").write_text("x")
    (root / "marker").unlink()
    events = await _events(channel, "marker")
    simple = [(e["type"], os.path.relpath(e["path"], root)) for e in events]
    assert ("move", "b") in simple
    assert ("create", os.path.join("b", "inside.txt")) in simple
    assert ("delete", "b") in simple
    assert not any("unseen" in path for _, path in simple)
    move = next(e for e in events if e["type"] == "move")
    assert move["from"] == str(root / "a") and move["is_dir"] is True


async def test_watch_of_a_file_is_an_error(connect, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    channel = await connect(WatchFiles(path=str(tmp_path / "f")))
    error = await channel.receive_message()
    assert isinstance(error, Error) and error.code == "not_a_directory"


def test_coalesce_drops_repeats() -> None:
    events = [
        {"type": "create", "path": "/w/a", "is_dir": False},
        {"type": "modify", "path": "/w/a", "is_dir": False},
        {"type": "modify", "path": "/w/b", "is_dir": False},
        {"type": "modify", "path": "/w/b", "is_dir": False},
        {"type": "delete", "path": "/w/a", "is_dir": False},
        {"type": "modify", "path": "/w/a", "is_dir": False},
    ]
    assert [(e["type"], e["path"]) for e in agent_inotify.coalesce(events)] == [
        ("create", "/w/a"),
        ("modify", "/w/b"),
        ("delete", "/w/a"),
        ("modify", "/w/a"),
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=5-", ByteRange(5, None)),
        ("bytes=-3", ByteRange(suffix=3)),
        ("bytes = 1-2", ByteRange(1, 2)),
        ("bytes=5-2", None),
        ("bytes=0-1,3-4", None),
        ("items=0-1", None),
        ("bytes=-", None),
        ("", None),
    ],
)
def test_parse_range(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header) == expected


def test_byte_range_requests_and_satisfiability() -> None:
    assert ByteRange(2, 5).request() == (2, 4)
    assert ByteRange(7).request() == (7, None)
    assert ByteRange(suffix=3).request() == (-3, None)
    assert ByteRange(suffix=0).request() == (0, 0)
    assert ByteRange(9).satisfiable(10) and not ByteRange(10).satisfiable(10)
    assert ByteRange(suffix=5).satisfiable(1) and not ByteRange(suffix=5).satisfiable(0)
    assert not ByteRange(suffix=0).satisfiable(10)
