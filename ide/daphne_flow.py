"""Request bodies for Daphne: streamed to the application, never held in memory.

Daphne (4.2, on Twisted) has two habits that hold a whole request body in the
server's memory, which a file upload of a gigabyte must never do:

1. Twisted parses every ``multipart/form-data`` POST body into memory (for
   ``request.args``, which Daphne never uses).
2. Once a body has arrived (Twisted keeps a large one in a temporary file), Daphne
   reads it *all* into the application's queue at once.

``install()`` turns off (1); ``wrap(app)`` fixes (2): a large body is hidden from
Daphne and handed to the application chunk by chunk from Twisted's temporary file,
as the application asks for it. (Responses get their backpressure in ide/server.py.)

Everything is guarded: with another server (or a Daphne whose internals changed)
``wrap`` passes the application through unchanged.
"""

from __future__ import annotations

import io
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

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


def _daphne_request(send: Send) -> Any:
    """The Daphne request behind ``send`` (``partial(server.handle_reply, request)``)."""
    args = getattr(send, "args", ())
    request = args[0] if args else None
    if request is None or not hasattr(request, "requestHeaders"):
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
    """The ASGI application, with large request bodies fed to it lazily."""
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
        await app(scope, receive, send)

    return flow
