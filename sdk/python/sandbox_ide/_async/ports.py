"""Ports: exposing the sandbox's ports at preview URLs, and sharing them."""

from __future__ import annotations

from .. import _api
from ..models import ExposedPort, PortList
from .resource import AsyncPart


class AsyncPorts(AsyncPart):
    """Expose ports of the sandbox at preview URLs, and say who may open them:
    ``"private"`` (the owner and those who may look at the sandbox), ``"course"``,
    ``"authenticated"`` or ``"public"`` (anyone with the URL)."""

    _prefix = "ports"

    async def expose(
        self,
        port: int,
        name: str | None = None,
        visibility: str | None = None,
        expires_in: int | None = None,
    ) -> ExposedPort:
        """Expose ``port`` with a new URL; without ``visibility`` it is public."""
        body = _api.drop_none(
            port=int(port), name=name, visibility=visibility, expires_in=expires_in
        )
        return ExposedPort.from_json(await self._http.json("POST", self._url(), json=body))

    async def share(
        self, port: int, visibility: str | None = None, expires_in: int | None = None
    ) -> ExposedPort:
        """Change who may open ``port`` (``visibility``; None keeps it) and for how
        many seconds (``expires_in``; None: no end). ``"private"`` revokes the link."""
        body: dict[str, object] = {"expires_in": expires_in}
        if visibility is not None:
            body["visibility"] = visibility
        data = await self._http.json("PATCH", self._url(int(port)), json=body)
        return ExposedPort.from_json(data)

    async def revoke(self, port: int) -> ExposedPort:
        """Stop sharing ``port`` at once: only the owner (and viewers) may open it."""
        return await self.share(port, "private")

    async def list(self) -> PortList:
        return PortList.from_json(await self._http.json("GET", self._url()))

    async def unexpose(self, port: int) -> None:
        """Revoke the port's URL at once."""
        await self._http.request("DELETE", self._url(int(port)))
