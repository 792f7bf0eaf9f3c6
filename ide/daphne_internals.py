"""Every use of Daphne's and Twisted's internals, in one module.

Daphne (4.2, on Twisted) serves the application, and three of its habits would let a
client make the server hold unbounded data; each fix reaches below Daphne's public
interface, so each lives here, checked by ``problems()`` at start-up and by
tests/unit/test_daphne_internals.py, never silently switched off:

1. **Response backpressure.** Daphne hands every ASGI ``send`` to Twisted, which
   buffers whatever the socket cannot take yet. ``FlowControlServer.handle_reply``
   does not return while the connection's unsent buffer is above ``HIGH_WATER``, so
   the application (and through the agent socket, the program in the sandbox) waits
   for a slow client. ``python -m ide.server`` serves with it. Under plain ``daphne``
   the WebSocket consumers still get a window of their own (the ``SEND_BUFFER`` scope
   extension, used by sandboxes/terminals.py ``SendWindow``).
2. **Lazy request bodies.** Twisted parses every ``multipart/form-data`` POST body
   into memory (for ``request.args``, which Daphne never uses), and once a body has
   arrived (a large one in a temporary file) Daphne reads it *all* into the
   application's queue at once. ``install()`` turns off the first; ``wrap(app)``
   hides a large body from Daphne and hands it to the application chunk by chunk,
   as the application asks for it.
3. **Refuse before reading.** Daphne starts the application only once the whole
   body has arrived, so a caller without credentials could make the server spool
   gigabytes to disk before hearing 401. ``wrap(app, gate)`` asks ``gate`` when a
   request's headers are in, with the socket paused: it may refuse at once (401,
   413: the body is never stored, and what the client still sends is discarded
   until the connection closes), or let the body through with a byte limit (a
   chunked body that outgrows it gets 413 when it does, not when it ends).
   100-continue is only sent once the gate let the body in.

With another ASGI server ``wrap`` finds no Daphne request behind ``send`` and passes
every call through; with a Daphne or Twisted whose internals changed, ``install()``
raises, naming what changed, and the server does not start.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from importlib.metadata import version
from typing import Any, Protocol
from urllib.parse import unquote

import daphne.server  # first: it installs the asyncio reactor Daphne runs on
import daphne.utils
from daphne.cli import CommandLineInterface
from daphne.http_protocol import WebRequest
from twisted.internet import abstract, reactor, tcp
from twisted.web import http

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class Admission(Protocol):
    """The application's word on a request body, given from the headers alone."""

    @property
    def refusal(self) -> tuple[int, bytes] | None:
        """(status, JSON body) to answer now without reading the body; None: read it."""

    @property
    def limit(self) -> int | None:
        """The most body bytes accepted; None: no limit."""

    @property
    def too_large(self) -> bytes:
        """The JSON body of the 413 sent when a body grows past ``limit``."""


# Asked for every request that carries a body; None: no opinion (read the body).
Gate = Callable[[Scope], Awaitable[Admission | None]]

# A scope extension telling the application its gate already admitted this body.
ADMITTED = "sandbox_ide.body_admitted"
# A WebSocket scope extension: {"unsent": () -> int}, the bytes the connection's socket
# has not taken yet (0 once it is closed).
SEND_BUFFER = "sandbox_ide.send_buffer"

log = logging.getLogger(__name__)

# A response's ``send`` waits while more than this is queued for the client's socket.
HIGH_WATER = 512 * 1024

# Request bodies at least this large are handed over lazily; smaller ones as Daphne does.
LAZY_BODY_MIN = 256 * 1024
BODY_CHUNK = 256 * 1024
# Body bytes held in memory while the gate decides (the socket is paused meanwhile,
# so only what came with the headers is held).
HOLD_MAX = 1024 * 1024
# After a refusal, how long what the client still sends is read and dropped before
# the connection is closed: closing on unread data would make the kernel reset the
# connection, and the client could lose the answer.
LINGER_SECONDS = 5.0

_PENDING, _OPEN, _REFUSED = "pending", "open", "refused"
_REASONS = {401: b"Unauthorized", 403: b"Forbidden", 413: b"Payload Too Large"}

_installed = False
_gate: Gate | None = None


# ------------------------------------------------------------ what we rely on

# Daphne's request methods as they are before install() wraps them.
_REQUEST_METHODS: dict[str, Any] = {
    name: getattr(WebRequest, name, None) for name in ("process", "gotLength", "handleContentChunk")
}

# (owner, name, leading parameters) of every function we call, wrap or override.
_SIGNATURES: list[tuple[object, str, list[str]]] = [
    (_REQUEST_METHODS, "process", ["self"]),
    (_REQUEST_METHODS, "gotLength", ["self", "length"]),
    (_REQUEST_METHODS, "handleContentChunk", ["self", "data"]),
    (http.HTTPChannel, "_send100Continue", ["self"]),
    (http.HTTPChannel, "isSecure", ["self"]),
    (http.HTTPChannel, "loseConnection", ["self"]),
    (http, "_getContentFile", ["length"]),
    (
        daphne.utils,
        "parse_x_forwarded_for",
        [
            "headers",
            "address_header_name",
            "port_header_name",
            "proto_header_name",
            "original_addr",
            "original_scheme",
        ],
    ),
    (daphne.server.Server, "run", ["self"]),
    (daphne.server.Server, "handle_reply", ["self", "protocol", "message"]),
    (daphne.server.Server, "log_action", ["self", "protocol", "action", "details"]),
    (abstract.FileDescriptor, "loseWriteConnection", ["self"]),
    (tcp.Connection, "abortConnection", ["self"]),
]


def problems() -> list[str]:
    """What this module relies on that the installed Daphne and Twisted lack (empty:
    nothing). Attributes set per connection are checked by the unit test, which
    drives a real request through Daphne's protocol."""
    found = []
    for owner, name, expected in _SIGNATURES:
        if isinstance(owner, dict):
            where, function = f"WebRequest.{name}", owner.get(name)
        else:
            where, function = (
                f"{getattr(owner, '__name__', owner)}.{name}",
                getattr(owner, name, None),
            )
        if not callable(function):
            found.append(f"{where} is gone")
            continue
        params = list(inspect.signature(function).parameters)
        if params[: len(expected)] != expected:
            found.append(f"{where}{tuple(params)} no longer takes {tuple(expected)}")
    if not inspect.iscoroutinefunction(daphne.server.Server.handle_reply):
        found.append("Server.handle_reply is no longer a coroutine function")
    if CommandLineInterface.server_class is not daphne.server.Server:
        found.append("CommandLineInterface.server_class is not daphne.server.Server")
    if "self._parsePOSTFormSubmission" not in inspect.getsource(http.Request.requestReceived):
        found.append("Request.requestReceived no longer asks _parsePOSTFormSubmission")
    descriptor = abstract.FileDescriptor(reactor=object())  # type: ignore[arg-type]
    for name in ("dataBuffer", "offset", "_tempDataLen", "connected"):
        if not isinstance(getattr(descriptor, name, None), bytes | int):
            found.append(f"FileDescriptor.{name} is gone")
    if not issubclass(tcp.Server, abstract.FileDescriptor):
        found.append("a TCP connection is no longer a FileDescriptor")
    return found


class _HiddenBody:
    """Stands in for Twisted's request content while Daphne queues the body: it reads
    as empty, everything else goes to the real file."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def read(self, size: int = -1) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def install() -> None:
    """Patch Daphne's request class (once), after checking it is the one we know."""
    global _installed
    if _installed:
        return
    found = problems()
    if found:
        raise RuntimeError(
            f"Daphne {version('daphne')} / Twisted {version('twisted')} changed what "
            f"ide/daphne_internals.py relies on ({'; '.join(found)}): install the versions "
            "pyproject.toml allows, or adapt that module."
        )
    original = _REQUEST_METHODS["process"]
    original_got_length = _REQUEST_METHODS["gotLength"]
    original_chunk = _REQUEST_METHODS["handleContentChunk"]

    def process(self: Any) -> Any:
        state = getattr(self, "_sandbox_gate", None)
        if state == _REFUSED:
            return None  # answered already; the body was dropped
        if state == _PENDING:
            self._sandbox_process_later = True  # the body came before the gate's answer
            return None
        content = getattr(self, "content", None)
        try:
            upgrade = self.requestHeaders.hasHeader(b"upgrade")
            size = content.seek(0, os.SEEK_END) if content is not None else 0
            if content is not None:
                content.seek(0)
        except (OSError, ValueError):  # the connection went and Twisted closed the file
            return original(self)
        if not upgrade and size >= LAZY_BODY_MIN:
            self._sandbox_lazy_body = content
            self.content = _HiddenBody(content)
        return original(self)

    def got_length(self: Any, length: int | None) -> None:
        if not _ask_gate(self, length):
            original_got_length(self, length)

    def handle_content_chunk(self: Any, data: bytes) -> None:
        if _take_chunk(self, data):
            original_chunk(self, data)

    WebRequest.process = process
    WebRequest.gotLength = got_length
    WebRequest.handleContentChunk = handle_content_chunk
    # Daphne never reads request.args: do not let Twisted parse form bodies into memory.
    WebRequest._parsePOSTFormSubmission = property(lambda self: False, lambda self, value: None)
    _installed = True


# --------------------------------------------------------------------- the gate


def _early_scope(request: Any) -> Scope | None:
    """The ASGI scope Daphne will build, from what is known when the headers are in."""
    channel = request.channel
    try:
        method = channel._command.decode("ascii")
        raw_path, _, query = channel._path.partition(b"?")
        path = unquote(raw_path.decode("ascii"))
        query.decode("ascii")
        peer, host = channel.transport.getPeer(), channel.transport.getHost()
    except UnicodeDecodeError:  # Daphne answers such a request 400 itself
        return None
    headers = [
        (name.lower(), value)
        for name, values in request.requestHeaders.getAllRawHeaders()
        if b"_" not in name  # as Daphne (CVE-2015-0219)
        for value in values
    ]
    client = [str(getattr(peer, "host", "")), getattr(peer, "port", 0)]
    scheme = "https" if channel.isSecure() else "http"
    server = getattr(request, "server", None)
    if server is not None and server.proxy_forwarded_address_header:
        client, scheme = daphne.utils.parse_x_forwarded_for(
            request.requestHeaders,
            server.proxy_forwarded_address_header,
            server.proxy_forwarded_port_header,
            server.proxy_forwarded_proto_header,
            client,
            scheme,
        )
    return {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": raw_path,
        "root_path": "",
        "scheme": scheme,
        "query_string": query,
        "headers": headers,
        "client": client,
        "server": [str(getattr(host, "host", "")), getattr(host, "port", 0)],
    }


def _ask_gate(request: Any, length: int | None) -> bool:
    """At the end of the headers: hold the body and ask the gate. False: not gated
    (no body, an upgrade, no gate), Twisted goes on as usual."""
    if _gate is None or length == 0 or request.requestHeaders.hasHeader(b"upgrade"):
        return False
    scope = _early_scope(request)
    if scope is None:
        return False
    channel = request.channel
    request._sandbox_gate = _PENDING
    request._sandbox_scope = scope
    request._sandbox_length = length
    request._sandbox_limit = None
    request._sandbox_received = 0
    request.content = io.BytesIO()  # what arrives meanwhile, never a temporary file
    # Twisted answers "Expect: 100-continue" right after this; not before the gate has.
    channel._send100Continue = lambda: None
    channel._networkProducer.pauseProducing()
    decision = asyncio.ensure_future(_gate(scope))
    decision.add_done_callback(lambda done: _decided(request, done))
    return True


def _decided(request: Any, decision: asyncio.Future[Admission | None]) -> None:
    channel = request.channel
    if request._disconnected or channel is None:
        return
    try:
        admission = decision.result()
    except Exception:  # the view checks again; a broken gate must not lock callers out
        log.exception("the body gate failed; reading the body")
        admission = None
    channel.__dict__.pop("_send100Continue", None)
    if admission is not None and admission.refusal is not None:
        _refuse(request, *admission.refusal)
        return
    request._sandbox_gate = _OPEN
    request._sandbox_admission = admission
    request._sandbox_limit = admission.limit if admission is not None else None
    held = request.content.getvalue()
    request.content = _content_file(request._sandbox_length)
    if held:
        request.content.write(held)
    if _over_limit(request):
        return
    complete = getattr(request, "_sandbox_process_later", False)
    expect = request.requestHeaders.getRawHeaders(b"expect", [b""])[0].lower()
    if expect == b"100-continue" and not complete:
        channel._send100Continue()
    channel._networkProducer.resumeProducing()
    if complete:
        request.process()


def _content_file(length: int | None) -> Any:
    """Where Twisted keeps a body (memory when small, else a temporary file)."""
    make: Callable[[int | None], Any] = http._getContentFile
    return make(length)


def _take_chunk(request: Any, data: bytes) -> bool:
    """A piece of a gated body: held, dropped, or (True) stored as usual."""
    state = getattr(request, "_sandbox_gate", None)
    if state is None:
        return True
    if state == _REFUSED:
        return False
    request._sandbox_received += len(data)
    if state == _PENDING:
        request.content.write(data)
        if request.content.tell() > HOLD_MAX:
            request.channel._networkProducer.pauseProducing()
        return False
    return not _over_limit(request)


def _over_limit(request: Any) -> bool:
    """A body grown past its route's limit is answered 413 at once (True)."""
    limit = request._sandbox_limit
    if limit is None or request._sandbox_received <= limit:
        return False
    _refuse(request, 413, request._sandbox_admission.too_large)
    return True


def _refuse(request: Any, status: int, body: bytes) -> None:
    """Answer now and close: the rest of the body is read and dropped, never stored."""
    request._sandbox_gate = _REFUSED
    stored, request.content = request.content, io.BytesIO()
    stored.close()  # what was kept of an admitted body that then grew too large
    channel = request.channel
    channel.persistent = False
    head = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")),
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        b"X-Content-Type-Options: nosniff",
        b"Connection: close",
    ]
    if status == 401:
        head.append(b'WWW-Authenticate: Bearer realm="api"')
    transport = channel.transport
    transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
    half_close = getattr(transport, "loseWriteConnection", None)
    if half_close is None:
        channel.loseConnection()
        return
    half_close()
    channel._networkProducer.resumeProducing()  # read and drop until the client hangs up
    asyncio.get_event_loop().call_later(LINGER_SECONDS, _hang_up, transport)
    _log_refusal(request, status, len(body))


def _log_refusal(request: Any, status: int, size: int) -> None:
    """Daphne's access log line, which a request answered here would otherwise miss."""
    scope, server = request._sandbox_scope, getattr(request, "server", None)
    if server is None:
        return
    query = scope["query_string"]
    client = scope["client"]
    details = {
        "path": scope["raw_path"].decode("ascii") + ("?" + query.decode("ascii") if query else ""),
        "status": status,
        "method": scope["method"],
        "client": f"{client[0]}:{client[1]}" if client else None,
        "time_taken": 0.0,
        "size": size,
    }
    try:
        server.log_action("http", "complete", details)
    except Exception:  # a log line is never worth failing a refusal
        log.exception("logging a refused request failed")


def _hang_up(transport: Any) -> None:
    if getattr(transport, "connected", False):
        transport.abortConnection()


def _daphne_protocol(send: Send) -> Any:
    """The Daphne protocol behind ``send`` (``partial(server.handle_reply, protocol)``):
    a ``WebRequest`` for HTTP, a WebSocket protocol; None under another server."""
    if not isinstance(send, partial) or not send.args:
        return None
    server = getattr(send.func, "__self__", None)
    if not isinstance(server, daphne.server.Server):
        return None
    return send.args[0]


def _lazy_receive(receive: Receive, body: io.IOBase) -> Receive:
    state = {"started": False, "done": False}

    async def lazy() -> Message:
        if state["done"]:
            return await receive()
        if not state["started"]:
            state["started"] = True
            first = await receive()  # Daphne's placeholder: the empty body
            if first.get("type") != "http.request":
                state["done"] = True
                return first
        try:
            chunk = body.read(BODY_CHUNK)
        except (OSError, ValueError):  # the connection went and Twisted closed the file
            state["done"] = True
            return {"type": "http.disconnect"}
        more = len(chunk) == BODY_CHUNK
        if not more:
            state["done"] = True
        return {"type": "http.request", "body": chunk, "more_body": more}

    return lazy


def wrap(app: App, gate: Gate | None = None) -> App:
    """The ASGI application, with large request bodies fed to it lazily, each body
    admitted by ``gate`` (when given) before any of it is stored, and WebSockets told
    their send buffer (``SEND_BUFFER``)."""
    global _gate
    install()
    _gate = gate

    async def flow(scope: Scope, receive: Receive, send: Send) -> None:
        protocol = _daphne_protocol(send)
        if protocol is not None and scope.get("type") == "websocket":
            probe = {"unsent": partial(unsent_bytes, protocol)}
            scope["extensions"] = {**(scope.get("extensions") or {}), SEND_BUFFER: probe}
        request = protocol if isinstance(protocol, WebRequest) else None
        if request is None:
            return await app(scope, receive, send)
        if getattr(request, "_sandbox_gate", None) == _OPEN:
            scope["extensions"] = {**(scope.get("extensions") or {}), ADMITTED: {}}
        body = request.__dict__.pop("_sandbox_lazy_body", None)
        if body is not None:
            body.seek(0)
            receive = _lazy_receive(receive, body)
        await app(scope, receive, send)

    return flow


# --------------------------------------------------------- response backpressure


def unsent_bytes(protocol: Any) -> int:
    """Bytes Twisted holds for this connection that its socket has not taken yet.

    0 once the connection is gone, and on a transport that is not a socket's (a TLS
    endpoint keeps its own buffers; terminate TLS in a proxy in front)."""
    # A finished request has let go of its channel (the client went away).
    channel = getattr(protocol, "channel", None) if isinstance(protocol, WebRequest) else protocol
    transport = getattr(channel, "transport", None)  # None once the request finished
    if not isinstance(transport, abstract.FileDescriptor) or not transport.connected:
        return 0
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


class FlowControlServer(daphne.server.Server):  # type: ignore[misc]  # Daphne is untyped
    """Daphne's server, whose ``send`` waits while the client's socket is behind."""

    def started(self) -> None:
        """Called once the reactor, and the asyncio loop under it, runs."""

    def run(self) -> None:
        reactor.callWhenRunning(self.started)
        super().run()

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        await super().handle_reply(protocol, message)
        # Twisted sends at most 128 KB per turn of the loop, so a fast client drains a
        # 1 MB send over several turns: while each turn sends something, look again
        # after the next one (a timer would leave the socket idle for the rest of it);
        # once nothing moves (a slow client), back off from 1 to 50 ms.
        delay = 0.0
        unsent = unsent_bytes(protocol)
        while unsent > HIGH_WATER:
            state = self.connections.get(protocol)
            if state is None or state.get("disconnected"):
                return
            await asyncio.sleep(delay)
            before, unsent = unsent, unsent_bytes(protocol)
            delay = 0.0 if unsent < before else min(max(delay * 2, 0.001), 0.05)


def command_line(server_class: type[FlowControlServer] = FlowControlServer) -> None:
    """Daphne's command line (the same options), serving with ``server_class``."""
    cli: Any = type("FlowControlCLI", (CommandLineInterface,), {"server_class": server_class})
    cli.entrypoint()
