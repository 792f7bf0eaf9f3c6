"""A Server-Sent Events decoder fed line by line (httpx ``iter_lines``)."""

from __future__ import annotations

import json
from typing import Any


class SSEDecoder:
    """Feed lines; complete events come back as ``(event, data)`` with JSON data decoded."""

    def __init__(self) -> None:
        self._event = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> tuple[str, Any] | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data:
                self._event = "message"
                return None
            raw = "\n".join(self._data)
            event, self._event, self._data = self._event, "message", []
            try:
                return event, json.loads(raw)
            except ValueError:
                return event, raw
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None

    def flush(self) -> tuple[str, Any] | None:
        return self.feed("")
