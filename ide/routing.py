"""WebSocket URL routes (Channels). Consumers live next to the feature they serve."""

from __future__ import annotations

from typing import Any

websocket_urlpatterns: list[Any] = []
