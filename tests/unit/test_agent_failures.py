"""How the agent answers a failed request: one mapping from OSError to codes
(container/agent/failures.py), applied once by the connection handler."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from container.agent import server as agent_server
from container.agent.dispatch import on, table
from container.agent.failures import PROCESS_LIMIT_MESSAGE, AgentFailure, from_os_error
from container.agent.protocol import Channel, Error, Message, Ping, ReadFile, StatFile
from tests.agentkit import open_agent


@pytest.mark.parametrize(
    ("number", "code"),
    [
        (errno.ENOENT, "not_found"),
        (errno.EACCES, "permission_denied"),
        (errno.EPERM, "permission_denied"),
        (errno.EISDIR, "is_a_directory"),
        (errno.ENOTDIR, "not_a_directory"),
        (errno.EEXIST, "already_exists"),
        (errno.ENOTEMPTY, "directory_not_empty"),
        (errno.ENOSPC, "payload_too_large"),
        (errno.EDQUOT, "payload_too_large"),
        (errno.ELOOP, "bad_request"),
        (errno.ENAMETOOLONG, "bad_request"),
        (errno.EINVAL, "bad_request"),
        (errno.EAGAIN, "limit_reached"),
        (errno.EIO, "agent_error"),
    ],
)
def test_each_errno_has_one_code(number: int, code: str) -> None:
    failure = from_os_error(OSError(number, os.strerror(number), "/workspace/a"))
    assert failure.code == code
    if code not in ("payload_too_large", "limit_reached"):
        assert "/workspace/a" in failure.message


def test_the_path_is_named_when_the_error_names_none() -> None:
    assert from_os_error(OSError(errno.ENOENT, "gone"), "x.txt").message.endswith("x.txt")
    assert from_os_error(OSError(errno.EIO, "Input/output error")).message == ("Input/output error")
    assert from_os_error(BlockingIOError(errno.EAGAIN, "again")).message == PROCESS_LIMIT_MESSAGE


Ask = Callable[[Message], Awaitable[Message | None]]


@pytest.fixture
async def ask(tmp_path: Path) -> AsyncIterator[Ask]:
    path = str(tmp_path / "agent.sock")
    server = await asyncio.start_unix_server(agent_server.handle_connection, path=path)

    async def send(request: Message) -> Message | None:
        reader, writer = await open_agent(path)
        channel = Channel(reader, writer)
        try:
            await channel.send_message(request)
            return await channel.receive_message()
        finally:
            await channel.close()

    yield send
    server.close()


async def test_a_failure_raised_by_a_handler_is_its_answer(
    ask: Ask, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(request: Ping, channel: Channel) -> None:
        raise AgentFailure("limit_reached", "no more pings")

    monkeypatch.setattr(agent_server, "HANDLERS", table(on(Ping, refuse)))
    answer = await ask(Ping())
    assert isinstance(answer, Error)
    assert (answer.code, answer.message) == ("limit_reached", "no more pings")


async def test_an_os_error_is_mapped_once_naming_the_request_path(
    ask: Ask, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(request: StatFile, channel: Channel) -> None:
        raise OSError(errno.EACCES, "Permission denied")  # no file name of its own

    monkeypatch.setattr(agent_server, "HANDLERS", table(on(StatFile, fail)))
    answer = await ask(StatFile(path="secret.txt"))
    assert isinstance(answer, Error) and answer.code == "permission_denied"
    assert "secret.txt" in answer.message


async def test_file_handlers_fail_through_the_mapping(ask: Ask, tmp_path: Path) -> None:
    answer = await ask(ReadFile(path=str(tmp_path / "missing")))
    assert isinstance(answer, Error) and answer.code == "not_found"
    assert answer.message == f"No such file or directory: {tmp_path / 'missing'}"
    answer = await ask(ReadFile(path=str(tmp_path)))
    assert isinstance(answer, Error) and answer.code == "is_a_directory"


async def test_a_request_without_a_handler_is_a_bad_request(ask: Ask) -> None:
    answer = await ask(Error(code="x", message="not a request"))
    assert isinstance(answer, Error) and answer.code == "bad_request"
