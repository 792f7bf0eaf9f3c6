"""Where the server is and who we are: arguments first, then the environment."""

from __future__ import annotations

import os

from .errors import AuthenticationError

DEFAULT_URL = "http://127.0.0.1:8000"


def resolve(url: str | None, token: str | None) -> tuple[str, str]:
    url = (url or os.environ.get("SANDBOX_IDE_URL") or DEFAULT_URL).rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    token = token or os.environ.get("SANDBOX_IDE_TOKEN")
    if not token:
        raise AuthenticationError(
            "No API token: set SANDBOX_IDE_TOKEN or pass token= (create one on the "
            "account page or with `python manage.py create_api_token USERNAME`).",
            code="missing_token",
        )
    return url, token


def ws_url(base: str) -> str:
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :]
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :]
    return base
