"""The transport: one connection pool to the server, with the API's errors
raised as exceptions and Server-Sent Events decoded."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import httpx

from .._config import resolve
from .._sse import SSEDecoder
from .._wire import DEFAULT_TIMEOUT, NO_READ_TIMEOUT, headers, status_error, transport_error
from ..errors import from_event


class AsyncHTTP:
    """The client of one server (``url``) for one token."""

    transport: ClassVar[httpx.AsyncBaseTransport | None] = None
    """The httpx transport every new client uses (None: the network); unit tests put
    an ``httpx.MockTransport`` here."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url, self.token = resolve(url, token)
        self.client = httpx.AsyncClient(
            base_url=self.url + "/api/v1",
            headers=headers(self.token),
            timeout=DEFAULT_TIMEOUT,
            transport=self.transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        content = await response.aread()
        raise status_error(response.status_code, content)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc
        return await self._check(response)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        return response.json() if response.content else None

    async def owned_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``json()`` for a constructor: if the call fails no object will own this
        client, so it is closed here."""
        try:
            return await self.json(method, path, **kwargs)
        except BaseException:
            await self.aclose()
            raise

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        kwargs.setdefault("timeout", NO_READ_TIMEOUT)
        try:
            async with self.client.stream(method, path, **kwargs) as response:
                await self._check(response)
                yield response
        except httpx.TransportError as exc:
            raise transport_error(self.url, exc) from exc

    async def events(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:
        """The SSE events of a streaming call; an ``error`` event with a ``code``
        (a failure after the stream began) is raised."""
        headers = {**kwargs.pop("headers", {}), "Accept": "text/event-stream"}
        async with self.stream(method, path, headers=headers, **kwargs) as response:
            decoder = SSEDecoder()
            async for line in response.aiter_lines():
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
