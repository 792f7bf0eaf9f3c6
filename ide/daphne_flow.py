"""Flow control between Daphne and the application, for large bodies both ways.

Daphne (4.2, on Twisted) has three habits that hold a whole body in the server's
memory, which a file upload or download of a gigabyte must never do:

1. Twisted parses every ``multipart/form-data`` POST body into memory (for
   ``request.args``, which Daphne never uses).
2. Once a request body has arrived (Twisted keeps a large one in a temporary file),
   Daphne reads it *all* into the application's queue at once.
3. Response bodies are written to the socket with no backpressure: whatever the
   application sends while the client is slower piles up in Twisted's buffer.

``install()`` turns off (1); ``wrap(app)`` fixes (2) by hiding a large body from
Daphne and handing it to the application chunk by chunk from Twisted's temporary
file as the application asks, and (3) by registering a push producer on the
request, so that ``send()`` of a body chunk waits while the socket's buffer is full.

Everything is guarded: with another server (or a Daphne whose internals changed)
``wrap`` passes the application through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# Request bodies at least this large are handed over lazily; smaller ones as Daphne does.
LAZY_BODY_MIN = 256 * 1024
BODY_CHUNK = 256 * 1024

_installed = False


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


def install() -> bool:
    """Patch Daphne's request class (once); False when Daphne is not importable."""
    global _installed
    if _installed:
        return True
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:
        return False
    original = WebRequest.process

    def process(self: Any) -> Any:
        content = getattr(self, "content", None)
        try:
            upgrade = self.requestHeaders.hasHeader(b"upgrade")
            size = content.seek(0, os.SEEK_END) if content is not None else 0
            if content is not None:
                content.seek(0)
        except (AttributeError, OSError, ValueError):
            return original(self)
        if not upgrade and size >= LAZY_BODY_MIN:
            self._sandbox_lazy_body = content
            self.content = _HiddenBody(content)
        return original(self)

    WebRequest.process = process
    # Daphne never reads request.args: do not let Twisted parse form bodies into memory.
    WebRequest._parsePOSTFormSubmission = property(lambda self: False, lambda self, value: None)
    _installed = True
    return True


class _Producer:
    """A Twisted push producer whose pause state an asyncio task can wait on."""

    def __init__(self) -> None:
        self._resumed = asyncio.Event()
        self._resumed.set()

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's interface
        self._resumed.clear()

    def resumeProducing(self) -> None:  # noqa: N802
        self._resumed.set()

    def stopProducing(self) -> None:  # noqa: N802
        self._resumed.set()

    async def wait(self) -> None:
        await self._resumed.wait()


def _daphne_request(send: Send) -> Any:
    """The Daphne request behind ``send`` (``partial(server.handle_reply, request)``)."""
    args = getattr(send, "args", ())
    request = args[0] if args else None
    if request is None or not hasattr(request, "registerProducer"):
        return None
    return request


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


def wrap(app: App) -> App:
    """The ASGI application with request bodies fed lazily and responses paced."""
    if not install():
        return app

    async def flow(scope: Scope, receive: Receive, send: Send) -> None:
        request = _daphne_request(send) if scope.get("type") == "http" else None
        if request is None:
            return await app(scope, receive, send)
        body = request.__dict__.pop("_sandbox_lazy_body", None)
        if body is not None:
            body.seek(0)
            receive = _lazy_receive(receive, body)
        producer = _Producer()
        registered = False

        async def paced_send(message: Message) -> None:
            nonlocal registered
            more = message.get("type") == "http.response.body" and message.get("more_body")
            if more and not registered:
                with contextlib.suppress(Exception):
                    request.registerProducer(producer, True)
                    registered = True
                    if getattr(request.channel, "_waitingForTransport", False):
                        producer.pauseProducing()
            elif message.get("type") == "http.response.body" and not more and registered:
                with contextlib.suppress(Exception):
                    request.unregisterProducer()
                registered = False
            await send(message)
            if more and registered:
                await producer.wait()

        try:
            await app(scope, receive, paced_send)
        finally:
            if registered:
                with contextlib.suppress(Exception):
                    request.unregisterProducer()

    return flow
