"""Ports: exposing the sandbox's ports at preview URLs."""

from __future__ import annotations

from .. import _api
from ..models import ExposedPort, PortList
from .resource import AsyncPart


class AsyncPorts(AsyncPart):
    """Expose ports of the sandbox at preview URLs (anyone with the URL can open it)."""

    _prefix = "ports"

    async def expose(self, port: int, name: str | None = None) -> ExposedPort:
        body = _api.drop_none(port=int(port), name=name)
        return ExposedPort.from_json(await self._http.json("POST", self._url(), json=body))

    async def list(self) -> PortList:
        return PortList.from_json(await self._http.json("GET", self._url()))

    async def unexpose(self, port: int) -> None:
        """Revoke the port's URL at once."""
        await self._http.request("DELETE", self._url(int(port)))
