"""The few primitives that differ between the async client and its generated sync twin."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


async def sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def ws_connect(url: str, headers: dict[str, str], open_timeout: float) -> ClientConnection:
    return await connect(url, additional_headers=headers, open_timeout=open_timeout, max_size=None)


async def ws_recv(ws: ClientConnection, timeout: float | None) -> str | bytes:
    if timeout is None:
        return await ws.recv()
    return await asyncio.wait_for(ws.recv(), timeout)
