"""Git through GitPython (issue 3)."""

from __future__ import annotations

from typing import Any

HANDLERS: dict[Any, Any] = {}
