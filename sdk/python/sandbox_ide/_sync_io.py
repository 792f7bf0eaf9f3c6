"""The few primitives that differ between the async client and its generated sync twin."""

from __future__ import annotations

import time
from typing import Any

from websockets.sync.client import ClientConnection, connect


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def maybe_await(value: Any) -> Any:
    return value


def ws_connect(url: str, headers: dict[str, str], open_timeout: float) -> ClientConnection:
    ws = connect(url, additional_headers=headers, open_timeout=open_timeout, max_size=None)
    return ws.__enter__()  # entered: closed by Terminal.close(), no legacy warning


def ws_recv(ws: ClientConnection, timeout: float | None) -> str | bytes:
    return ws.recv(timeout)
