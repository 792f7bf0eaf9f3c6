"""WebSocket URL routes (Channels). Consumers live next to the feature they serve."""

from __future__ import annotations

from typing import Any

from django.urls import re_path

from sandboxes.consumers import ExecConsumer, TerminalConsumer

websocket_urlpatterns: list[Any] = [
    # Terminals and live command output. The name is matched loosely so a
    # bad one is refused with a clear code (4400) instead of an unrouted upgrade.
    re_path(
        r"^ws/sandboxes/(?P<sandbox_id>[^/]+)/terminals/(?P<name>[^/]*)$",
        TerminalConsumer.as_asgi(),
    ),
    re_path(r"^ws/sandboxes/(?P<sandbox_id>[^/]+)/exec$", ExecConsumer.as_asgi()),
]
