"""What a server process runs besides answering requests: the sandbox reaper (whose
passes one process at a time runs, under a lease) and the egress proxy for sandboxes
with an allow-list.

``python -m ide.server`` starts them once Daphne is up; the ASGI application starts
them itself on lifespan start-up or on its first request (``Background``), so a
server started any other way (``daphne``, ``uvicorn``, ``hypercorn``) runs them too.
Either way the process first claims its database (``ide.preflight.claim_server``):
a second server process where only one may run is refused with one sentence.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from django.conf import settings

from ide.preflight import claim_server
from sandboxes.egress.proxy import listen_if_needed
from sandboxes.reaper import run_forever

_tasks: list[asyncio.Future[None]] = []


def start() -> None:
    """Start the background tasks in this process's event loop, once."""
    if _tasks:
        return
    message = claim_server()
    if message:
        print(message, file=sys.stderr, flush=True)
        os._exit(1)  # from inside a running server: nothing else would end it
    _tasks.append(asyncio.ensure_future(listen_if_needed()))
    if settings.SANDBOX_REAPER:
        _tasks.append(asyncio.ensure_future(run_forever()))


class Background:
    """ASGI middleware: ``start()`` on lifespan start-up or the first request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        start()
        await self.app(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                refusal = claim_server()
                if refusal:
                    await send({"type": "lifespan.startup.failed", "message": refusal})
                    return
                start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
