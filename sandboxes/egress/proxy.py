"""The filtering forward proxy that sandboxes with an allow-list reach the web through.

It runs in the server process, on the sandboxes' gateway address, where only
sandboxes can reach it; the firewall lets a sandbox in only while it has an
allow-list (``sandboxes/backends/egress_rules.py``). Several server processes may
listen on the same address (SO_REUSEPORT): each decides from the database alone.

A sandbox proves who it is twice: its proxy URL carries its id and a password
derived from the server's secret (``policy.proxy_secret``), and the connection must
come from the address the sandbox has on the bridge now. So another sandbox can use
neither a leaked password (wrong address) nor an address it inherits after a
sandbox stopped (no password). Sandboxes cannot forge source addresses: they have no
CAP_NET_RAW or CAP_NET_ADMIN.

For CONNECT the requested host is checked, then the tunnel's first bytes: a TLS
ClientHello must name the same host (SNI), a plain HTTP request must carry it as
its Host. For plain HTTP the absolute URI's host is checked and must agree with the
Host header. Names are resolved here, once, and the connection goes to the address
found, never to a forbidden one (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import ipaddress
import logging
import socket
from collections.abc import Awaitable
from dataclasses import dataclass

from django.conf import settings

from sandboxes.backends import get_backend
from sandboxes.models import Sandbox

from . import tls
from .policy import Address, Egress, forbidden_address, proxy_secret, valid_name

log = logging.getLogger(__name__)

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
CHUNK = 64 * 1024
TLS_ALERT_ACCESS_DENIED = b"\x15\x03\x03\x00\x02\x02\x31"
HOP_HEADERS = {"proxy-authorization", "proxy-connection", "connection", "keep-alive", "te"}
_METHOD_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")

_servers: dict[tuple[str, int], asyncio.Server] = {}


class Refused(Exception):
    """An answer to send the sandbox instead of a connection."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name), "")


async def ensure_listening() -> None:
    """Listen on the backend's proxy address in this process (idempotent)."""
    address = await get_backend().egress_proxy_address()
    if address is None or address in _servers:
        return
    host, port = address
    _servers[address] = await asyncio.start_server(
        _serve, host, port, reuse_port=True, limit=HEAD_LIMIT
    )
    log.info("egress proxy listening on %s:%d", host, port)


async def listen_if_needed() -> None:
    """At server start: listen if any sandbox has an allow-list (they may be running
    from before the restart)."""
    try:
        if await Sandbox.objects.filter(egress="allow").aexists():
            await ensure_listening()
    except Exception:
        log.exception("egress proxy: could not start listening")


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await _handle(reader, writer)
    except Refused as exc:
        body = f"Sandbox egress proxy: {exc.message}\n".encode()
        extra = 'Proxy-Authenticate: Basic realm="sandbox egress"\r\n' if exc.status == 407 else ""
        writer.write(
            f"HTTP/1.1 {exc.status} {exc.reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, tls.NotAClientHello):
        pass
    except Exception:
        log.exception("egress proxy: unexpected failure")
    finally:
        writer.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
    except asyncio.LimitOverrunError:
        raise Refused(
            431, "Request Header Fields Too Large", "the request head is too long."
        ) from None


def _parse(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise Refused(400, "Bad Request", "not an HTTP proxy request.")
    headers = []
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise Refused(400, "Bad Request", "a malformed header line.")
            headers.append((name.strip(), value.strip()))
    return Request(parts[0], parts[1], parts[2], headers)


async def _who(request: Request, peer: str) -> tuple[str, Egress]:
    """The calling sandbox and its egress setting, or 407."""
    scheme, _, encoded = request.header("proxy-authorization").partition(" ")
    try:
        sandbox_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sandbox_id = secret = ""
    if scheme.lower() != "basic" or not hmac.compare_digest(secret, proxy_secret(sandbox_id)):
        raise Refused(
            407,
            "Proxy Authentication Required",
            "use the proxy URL in this sandbox's HTTP_PROXY / HTTPS_PROXY.",
        )
    row = (
        await Sandbox.objects.filter(pk=sandbox_id)
        .values_list("egress", "egress_allow", "backend_state")
        .afirst()
    )
    if row is None or (row[2] or {}).get("egress_address") != peer:
        raise Refused(
            407, "Proxy Authentication Required", "these credentials belong to another sandbox."
        )
    egress = Egress.stored(row[0], row[1] or [])
    if egress.mode != "allow":
        raise Refused(403, "Forbidden", "this sandbox has no allow-list (egress is not allow).")
    return sandbox_id, egress


def _split_host(authority: str, default_port: int) -> tuple[str, int]:
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = authority.rpartition(":")
        if not sep or not port.isdigit():
            host, port = authority, ""
    try:
        number = int(port) if port else default_port
    except ValueError:
        number = 0
    host = host.lower().rstrip(".")
    if not (_literal(host) or valid_name(host)) or not 0 < number < 65536:
        raise Refused(400, "Bad Request", f"{authority!r} is not a host and port.")
    return host, number


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_local(address: Address) -> bool:
    """Is it one of the host's own addresses (a public one included)?"""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


async def _resolve(host: str, port: int) -> list[Address]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    for pair in filter(None, settings.SANDBOX_EGRESS_HOSTS.split(",")):
        name, _, value = pair.partition("=")
        if name.strip().lower() == host:
            return [ipaddress.ip_address(value.strip())]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise Refused(502, "Bad Gateway", f"{host} could not be resolved.") from None
    found: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in found:
            found.append(address)
    return found


async def _destination(sandbox_id: str, egress: Egress, host: str, port: int) -> list[Address]:
    """Where the connection may go, or 403 saying why not."""
    by_name = _literal(host) is None and egress.permits_name(host)
    usable = [
        a
        for a in await _resolve(host, port)
        if not forbidden_address(a) and not _is_local(a) and (by_name or egress.permits_address(a))
    ]
    if usable:
        return usable
    if by_name:
        raise Refused(
            403,
            "Forbidden",
            f"{host} resolves only to addresses sandboxes may never reach (the host, "
            "private networks, cloud metadata).",
        )
    raise Refused(
        403,
        "Forbidden",
        f"{host} is not on this sandbox's allow-list; its owner can add it with "
        f'PATCH /api/v1/sandboxes/{sandbox_id} {{"egress": {{"allow": [...]}}}}.',
    )


async def _open(
    addresses: list[Address], port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    for address in addresses:
        with contextlib.suppress(OSError, TimeoutError):
            return await asyncio.wait_for(
                asyncio.open_connection(str(address), port, limit=CHUNK), CONNECT_TIMEOUT
            )
    raise Refused(502, "Bad Gateway", f"could not connect to port {port} of the host asked for.")


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = str(writer.get_extra_info("peername")[0])
    request = _parse(await _read_head(reader))
    sandbox_id, egress = await _who(request, peer)
    if request.method == "CONNECT":
        host, port = _split_host(request.target, 443)
        upstream = await _open(await _destination(sandbox_id, egress, host, port), port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await _relay(reader, writer, upstream, _check_tunnel(reader, writer, host, egress))
        return
    if not request.target.lower().startswith("http://"):
        raise Refused(
            400, "Bad Request", "send an absolute http:// URI, or CONNECT for anything else."
        )
    authority, _, path = request.target[7:].partition("/")
    host, port = _split_host(authority, 80)
    named = request.header("host")
    if named and _split_host(named, port)[0] != host:
        raise Refused(403, "Forbidden", f"the Host header {named!r} is not {host}.")
    upstream = await _open(await _destination(sandbox_id, egress, host, port), port)
    kept = [(k, v) for k, v in request.headers if k.lower() not in HOP_HEADERS | {"host"}]
    head = [f"{request.method} /{path} {request.version}", f"Host: {authority}"]
    head += [f"{k}: {v}" for k, v in kept] + ["Connection: close", "", ""]
    upstream[1].write("\r\n".join(head).encode("latin-1"))
    await _relay(reader, writer, upstream)


async def _check_tunnel(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, egress: Egress
) -> bytes:
    """The tunnel's first bytes from the sandbox, once they agree with ``host``."""
    first = await reader.read(1)
    if not first:
        return b""
    if first[0] == tls.HANDSHAKE:
        header = first + await reader.readexactly(4)
        body = await reader.readexactly(tls.record_length(header))
        name = tls.server_name(body)
        agrees = name is None or name == host or (_literal(host) and egress.permits_name(name))
        if not agrees:
            writer.write(TLS_ALERT_ACCESS_DENIED)
            await writer.drain()
            raise ConnectionAbortedError(f"SNI {name} is not {host}")
        return header + body
    if first[0] in _METHOD_CHARS:
        head = first + await _read_head(reader)
        with contextlib.suppress(Refused):
            request = _parse(head)
            named = request.header("host")
            if named and _split_host(named, 80)[0] == host:
                return head
        raise Refused(403, "Forbidden", f"the tunnelled request's Host is not {host}.")
    return first


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(CHUNK):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    first: Awaitable[bytes] | None = None,
) -> None:
    """Copy both ways with backpressure until the far end is done. The far end's
    bytes flow at once (server-first protocols); the sandbox's only after ``first``
    (the tunnel's checked opening) has been sent on."""
    up_reader, up_writer = upstream
    down = asyncio.ensure_future(_pipe(up_reader, writer))
    up: asyncio.Future[None] | None = None
    try:
        if first is not None:
            up_writer.write(await first)
        up = asyncio.ensure_future(_pipe(reader, up_writer))
        done, _ = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
        if up in done:  # the sandbox finished sending: the answer may still be coming
            await down
    finally:
        for task in (down, up):
            if task is not None:
                task.cancel()
        up_writer.close()
