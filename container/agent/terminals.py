"""Named PTY terminals (issue 4)."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[Any, Any] = {}
