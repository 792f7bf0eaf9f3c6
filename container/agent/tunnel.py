"""TCP tunnels to 127.0.0.1:PORT and listening-port detection (issue 5)."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[Any, Any] = {}
