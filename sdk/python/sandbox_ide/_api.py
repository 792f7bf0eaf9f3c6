"""The API's paths and request bodies, built without I/O (shared by both clients)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from ._config import ws_url


class HasId(Protocol):
    @property
    def id(self) -> str: ...


def drop_none(**values: Any) -> dict[str, Any]:
    """A JSON body or query without the arguments left at None (the server's defaults)."""
    return {k: v for k, v in values.items() if v is not None}


def command(command: str | Sequence[str]) -> str | list[str]:
    """A command as the API takes it: a string for ``bash -lc``, or an argv list."""
    return command if isinstance(command, str) else [str(part) for part in command]


def path(*parts: str | int) -> str:
    """``/a/b/c`` with each part quoted (an id or a name never adds a path level)."""
    return "".join("/" + quote(str(part), safe="") for part in parts)


def ref(value: HasId | str) -> str:
    """The id of an object that has one (a template, a session ...), or the string itself."""
    return value if isinstance(value, str) else value.id


def invite_token(invite: str) -> str:
    """The token of an invite: the token itself or the link (``.../join/TOKEN/``)."""
    match = re.search(r"/join/([^/?#]+)", invite)
    return match.group(1) if match else invite.strip()


def terminal_url(base: str, sandbox_id: str, name: str, cols: int, rows: int) -> str:
    query = urlencode({"cols": cols, "rows": rows})
    return f"{ws_url(base)}/ws/sandboxes/{sandbox_id}/terminals/{quote(name, safe='')}?{query}"
