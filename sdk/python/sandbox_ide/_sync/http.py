# GENERATED from sandbox_ide/_async/http.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""The transport: one connection pool to the server, with the API's errors
raised as exceptions and Server-Sent Events decoded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx

from .._config import resolve
from .._sse import SSEDecoder
from .._wire import DEFAULT_TIMEOUT, NO_READ_TIMEOUT, headers, status_error, transport_error
from ..errors import from_event


class HTTP:
    """The client of one server (``url``) for one token."""

    transport: ClassVar[httpx.BaseTransport | None] = None
    """The httpx transport every new client uses (None: the network); unit tests put
    an ``httpx.MockTransport`` here."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url, self.token = resolve(url, token)
        self.client = httpx.Client(
            base_url=self.url + "/api/v1",
            headers=headers(self.token),
            timeout=DEFAULT_TIMEOUT,
            transport=self.transport,
        )

    def close(self) -> None:
        self.client.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        content = response.read()
        raise status_error(response.status_code, content)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc
        return self._check(response)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    def owned_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``json()`` for a constructor: if the call fails no object will own this
        client, so it is closed here."""
        try:
            return self.json(method, path, **kwargs)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        kwargs.setdefault("timeout", NO_READ_TIMEOUT)
        try:
            with self.client.stream(method, path, **kwargs) as response:
                self._check(response)
                yield response
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc

    def events(self, method: str, path: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """The SSE events of a streaming call; an ``error`` event with a ``code``
        (a failure after the stream began) is raised."""
        headers = {**kwargs.pop("headers", {}), "Accept": "text/event-stream"}
        with self.stream(method, path, headers=headers, **kwargs) as response:
            decoder = SSEDecoder()
            for line in response.iter_lines():
                item = decoder.feed(line)
                if item is None:
                    continue
                name, data = item
                if name == "error" and isinstance(data, dict) and "code" in data:
                    raise from_event(data)
                yield name, data
            item = decoder.flush()
            if item is not None:
                yield item
