"""What ide/daphne_internals.py relies on in Daphne and Twisted, checked against the
installed versions: an upgrade that changes any of it fails here (and the server
refuses to start), instead of backpressure or refuse-before-reading quietly
switching themselves off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import daphne.server
import pytest
from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet import abstract
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from ide import daphne_internals
from sandboxes.terminals import SendWindow


def test_every_function_attribute_and_signature_we_rely_on_is_there() -> None:
    assert daphne_internals.problems() == [], "Daphne or Twisted changed under us"


@dataclass
class Admission:
    refusal: tuple[int, bytes] | None = None
    limit: int | None = None
    too_large: bytes = b'{"error": {"code": "too_large"}}'


class StubServer:
    """What a Daphne request asks of its server before the application runs."""

    proxy_forwarded_address_header = None

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []

    def protocol_connected(self, protocol: object) -> None:
        pass

    def log_action(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        self.logged.append(details)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Our patches on Daphne's request, with a gate answering from ``answers``."""
    daphne_internals.install()
    answers: list[Any] = []

    async def decide(scope: dict[str, Any]) -> Admission | None:
        answers.append(scope)
        return answers.pop(0) if isinstance(answers[0], Admission) else None

    monkeypatch.setattr(daphne_internals, "_gate", decide)
    yield answers


def connect() -> tuple[Any, StringTransport]:
    """A Daphne HTTP connection over an in-memory transport."""
    channel = HTTPFactory(StubServer()).buildProtocol(IPv4Address("TCP", "127.0.0.1", 8000))
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8000),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 5555),
    )
    channel.makeConnection(transport)
    return channel, transport


HEAD = (
    b"POST /api/v1/upload?to=here HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n"
    b"Expect: 100-continue\r\n\r\n"
)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_gate_sees_the_headers_with_the_socket_paused_and_refuses(
    gate: list[Any],
) -> None:
    gate.append(Admission(refusal=(401, b'{"error": {}}')))
    channel, transport = connect()
    channel.dataReceived(HEAD)
    assert transport.producerState == "paused"  # nothing more is read meanwhile
    await settle()
    scope = gate[0]
    assert (scope["method"], scope["path"], scope["query_string"]) == (
        "POST",
        "/api/v1/upload",
        b"to=here",
    )
    assert (b"host", b"localhost") in scope["headers"]
    assert scope["client"] == ["127.0.0.1", 5555]
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 401 Unauthorized\r\n")
    assert b"Connection: close\r\n" in answer and b"100 Continue" not in answer
    channel.dataReceived(b"x" * 1000)  # what the client still sends is dropped
    assert transport.value() == answer


async def test_an_admitted_body_gets_100_continue_and_is_read(gate: list[Any]) -> None:
    gate.append(Admission(limit=10_000))
    channel, transport = connect()
    channel.dataReceived(HEAD)
    assert b"100 Continue" not in transport.value()  # not before the gate has spoken
    await settle()
    assert transport.value().startswith(b"HTTP/1.1 100 Continue\r\n")
    assert transport.producerState == "producing"


async def test_a_body_past_its_limit_is_refused_as_it_arrives(gate: list[Any]) -> None:
    gate.append(Admission(limit=100))
    channel, transport = connect()
    channel.dataReceived(HEAD)
    await settle()
    channel.dataReceived(b"x" * 200)
    assert b"HTTP/1.1 413 Payload Too Large\r\n" in transport.value()


async def test_daphne_sends_through_its_server_and_websockets_learn_their_buffer() -> None:
    """The application's ``send`` is ``partial(server.handle_reply, protocol)``: how
    ``wrap`` finds the request and the socket behind a call."""
    seen: dict[str, Any] = {}

    async def app(
        scope: daphne_internals.Scope,
        receive: daphne_internals.Receive,
        send: daphne_internals.Send,
    ) -> None:
        seen["scope"], seen["send"] = scope, send

    server = daphne.server.Server(application=daphne_internals.wrap(app), endpoints=["tcp:port=0"])
    server.connections = {}

    class Socket:  # a WebSocket protocol: a transport Twisted writes to
        transport = abstract.FileDescriptor(reactor=MemoryReactorClock())

    protocol = Socket()
    protocol.transport.connected = 1
    server.protocol_connected(protocol)
    server.create_application(protocol, {"type": "websocket"})
    await server.connections[protocol]["application_instance"]
    assert daphne_internals._daphne_protocol(seen["send"]) is protocol
    protocol.transport.write(b"x" * 300)
    window = SendWindow(seen["scope"], high=200, low=100)
    assert window.buffered() == daphne_internals.unsent_bytes(protocol) == 300


def test_unsent_bytes_of_an_http_request_is_its_channels_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(daphne_internals, "_gate", None)
    channel, _ = connect()
    channel.dataReceived(HEAD)  # a request whose body is still to come
    request = channel._channel.requests[-1]  # the HTTPChannel behind the wrapper
    assert isinstance(request, WebRequest)
    transport = request.channel.transport = abstract.FileDescriptor(reactor=MemoryReactorClock())
    transport.connected = 1
    transport.write(b"y" * 42)
    assert daphne_internals.unsent_bytes(request) == 42
    transport.connected = 0
    assert daphne_internals.unsent_bytes(request) == 0  # gone: nothing to wait for


def test_no_window_under_another_server() -> None:
    assert SendWindow({"type": "websocket"}, high=1, low=0).buffered() == 0
