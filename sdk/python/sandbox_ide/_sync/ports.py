# GENERATED from sandbox_ide/_async/ports.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""Ports: exposing the sandbox's ports at preview URLs."""

from __future__ import annotations

from .. import _api
from ..models import ExposedPort, PortList
from .resource import Part


class Ports(Part):
    """Expose ports of the sandbox at preview URLs (anyone with the URL can open it)."""

    _prefix = "ports"

    def expose(self, port: int, name: str | None = None) -> ExposedPort:
        body = _api.drop_none(port=int(port), name=name)
        return ExposedPort.from_json(self._http.json("POST", self._url(), json=body))

    def list(self) -> PortList:
        return PortList.from_json(self._http.json("GET", self._url()))

    def unexpose(self, port: int) -> None:
        """Revoke the port's URL at once."""
        self._http.request("DELETE", self._url(int(port)))
