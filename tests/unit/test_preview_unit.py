"""Preview pieces without an engine: the agent's tunnel and port detection in-process,
preview host parsing, and the header rules of the proxy."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from container.agent import server as agent_server
from container.agent import tunnel as agent_tunnel
from container.agent.protocol import Channel, Error, Tunnel, TunnelOpen, encode_message
from sandboxes import ports, preview
from sandboxes.models import Sandbox
from sandboxes.preview import http_relay, tunnel
from tests.agentkit import open_agent


@pytest.fixture
async def agent_socket(tmp_path: Path) -> AsyncIterator[str]:
    path = str(tmp_path / "agent.sock")
    server = await asyncio.start_unix_server(agent_server.handle_connection, path=path)
    yield path
    server.close()


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write(b"<eof seen>")
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_tunnel_pipes_bytes_both_ways_and_passes_half_close(agent_socket: str) -> None:
    server, port = await _echo_server()
    reader, writer = await open_agent(agent_socket)
    writer.write(encode_message(Tunnel(port=port)) + b"early bytes|")  # pipelined
    channel = Channel(reader, writer)
    assert await channel.receive_message() == TunnelOpen(port=port)
    payload = bytes(range(256)) * 4096  # 1 MiB, more than any buffer on the way
    writer.write(payload)
    writer.write_eof()
    received = await reader.read(-1)
    assert received == b"early bytes|" + payload + b"<eof seen>"
    writer.close()
    server.close()


async def test_tunnel_to_a_closed_port_is_connection_refused(agent_socket: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        reader, writer = await open_agent(agent_socket)
        writer.write(encode_message(Tunnel(port=port)) + b"GET / HTTP/1.1\r\n\r\n" * 1000)
        reply = await Channel(reader, writer).receive_message()
    assert isinstance(reply, Error) and reply.code == "connection_refused"
    assert str(port) in reply.message
    writer.close()


@pytest.mark.parametrize("port", [0, 65536, -1])
async def test_tunnel_refuses_bad_ports(agent_socket: str, port: int) -> None:
    reader, writer = await open_agent(agent_socket)
    writer.write(encode_message(Tunnel(port=port)))
    reply = await Channel(reader, writer).receive_message()
    assert isinstance(reply, Error) and reply.code == "bad_request"
    writer.close()


async def test_listening_ports_from_proc_tables(tmp_path: Path) -> None:
    tcp = tmp_path / "tcp"
    tcp.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue\n"
        "   0: 0100007F:0BB8 00000000:0000 0A 00000000:00000000\n"  # 3000 LISTEN
        "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000\n"  # 8080 ESTABLISHED
        "   2: 00000000:1F90 00000000:0000 0A 00000000:00000000\n"  # 8080 LISTEN
    )
    tcp6 = tmp_path / "tcp6"
    tcp6.write_text(
        "  sl  local_address                         rem_address  st\n"
        "   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A\n"
    )
    found = agent_tunnel.listening_ports((str(tcp), str(tcp6), str(tmp_path / "missing")))
    assert found == [3000, 8080]
    server, port = await _echo_server()
    assert port in agent_tunnel.listening_ports()  # the real tables of this machine
    server.close()


def test_preview_hosts() -> None:
    target = preview.parse_preview_host("3000-abcdefghij12-0123456789abcdef.preview.localhost")
    assert target == preview.Target("abcdefghij12", 3000, "0123456789abcdef")
    for bad in (
        "0-abcdefghij12-0123456789abcdef.preview.localhost",
        "70000-abcdefghij12-0123456789abcdef.preview.localhost",
        "3000-abcdefghij1-0123456789abcdef.preview.localhost",
        "3000-abcdefghij12-0123456789abcde.preview.localhost",
        "3000-abcdefghij12-0123456789abcdef.preview.localhost.evil.com",
        "x.3000-abcdefghij12-0123456789abcdef.preview.localhost",
        "preview.localhost",
    ):
        assert preview.parse_preview_host(bad) is None, bad
    assert preview.split_host("A.Preview.Localhost:8000") == ("a.preview.localhost", 8000)
    assert preview.split_host("[::1]:8000") == ("[::1]", 8000)
    assert preview.split_host("localhost") == ("localhost", None)
    assert preview.is_preview_domain("x.preview.localhost")
    assert not preview.is_preview_domain("evilpreview.localhost")


def test_request_headers_rules() -> None:
    scope = {
        "type": "http",
        "scheme": "https",
        "client": ("10.0.0.7", 5555),
        "headers": [
            (b"host", b"3000-x.preview.localhost"),
            (b"connection", b"keep-alive, X-Hop"),
            (b"x-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"te", b"trailers"),
            (b"upgrade", b"h2c"),
            (b"proxy-authorization", b"x"),
            (b"x-forwarded-for", b"1.2.3.4"),
            (b"cookie", b"sessionid=s; a=1; csrftoken=c;b=2; sandbox_preview=p"),
            (b"accept", b"*/*"),
        ],
    }
    upstream = tunnel.Upstream(Sandbox(id="abcdefghij12"), 3000, "/", "3000-x.preview.localhost")
    headers = tunnel.request_headers(scope, upstream)
    assert headers == [
        (b"host", b"localhost:3000"),
        (b"cookie", b"a=1; b=2"),
        (b"accept", b"*/*"),
        (b"x-forwarded-host", b"3000-x.preview.localhost"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-for", b"10.0.0.7"),
    ]
    response = http_relay.response_headers(
        [
            (b"connection", b"close, x-private"),
            (b"x-private", b"1"),
            (b"transfer-encoding", b"chunked"),
            (b"set-cookie", b"a=1"),
            (b"content-type", b"text/plain"),
        ]
    )
    assert response == [(b"set-cookie", b"a=1"), (b"content-type", b"text/plain")]


@pytest.mark.django_db(transaction=True)
async def test_the_layer_routes_by_host() -> None:
    """Preview hosts and the path fallback are the layer's; other hosts pass on, their
    scheme and port noted for the preview URLs the API hands out."""
    seen: list[tuple[str, int | None]] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(ports.request_origin.get())

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    def scope(host: str, path: str = "/") -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": path,
            "scheme": "http",
            "headers": [(b"host", host.encode())],
            "query_string": b"",
        }

    layer = preview.PreviewMiddleware(app)
    await layer(scope("localhost:8000", "/api/v1/sandboxes"), receive, send)
    assert seen == [("http", 8000)] and sent == []
    await layer(scope("3000-abcdefghij12-0123456789abcdef.preview.localhost:8000"), receive, send)
    assert sent[0]["status"] == 404 and b"No preview here" in sent[1]["body"]
    sent.clear()
    await layer(scope("localhost:8000", "/preview/abcdefghij12/3000/"), receive, send)
    assert sent[0]["status"] == 401 and b"Log in first" in sent[1]["body"]
    assert seen == [("http", 8000)]
