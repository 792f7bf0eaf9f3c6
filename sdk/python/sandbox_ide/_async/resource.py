"""What every top-level resource (a sandbox, a template, a course) does the same way:
find it by id or by name, list them, reload it, close its client; and the base of
the groups of one sandbox's calls (``sandbox.files``, ``.git`` ...)."""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar

from .. import _api
from ..errors import NotFoundError
from .http import AsyncHTTP

if TYPE_CHECKING:
    from .sandbox import AsyncSandbox


class Info(Protocol):
    """What the server says about a resource: at least its id and name."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


InfoT = TypeVar("InfoT", bound=Info)


class AsyncResource(ABC, Generic[InfoT]):
    """A resource of the API at ``/{collection}/{id}``, described by ``info``; its
    client is closed by ``close()`` or by leaving ``async with``."""

    _collection: ClassVar[str]
    """The API's collection: ``sandboxes``, ``templates`` ..."""
    _repr_fields: ClassVar[tuple[str, ...]] = ()
    """Fields of ``info`` that ``repr`` shows after the name and id."""
    _by_id_too: ClassVar[bool] = True
    """Whether ``from_name`` also takes an id."""
    _missing: ClassVar[str]
    """Why ``from_name`` found nothing and what to do (``{name}`` is filled in)."""

    def __init__(self, info: InfoT, http: AsyncHTTP) -> None:
        self.info = info
        self._http = http
        self._path = _api.path(self._collection, info.id)

    def __repr__(self) -> str:
        extra = "".join(f" {f}={getattr(self.info, f)}" for f in self._repr_fields)
        return f"<{type(self).__name__} {self.name} id={self.id}{extra}>"

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    # -- what each kind of resource says -----------------------------------------------

    @classmethod
    @abstractmethod
    def _info(cls, data: Any) -> InfoT:
        """``info`` from the server's JSON."""

    @classmethod
    def _items(cls, data: Any) -> builtins.list[Any]:
        """The items of the collection's listing."""
        return builtins.list(data[cls._collection])

    # -- finding and listing ------------------------------------------------------------

    @classmethod
    async def _create(
        cls, body: dict[str, Any], url: str | None, token: str | None, **kwargs: Any
    ) -> Self:
        """A new resource (or the existing one the server answers with), with a client
        of its own."""
        http = AsyncHTTP(url, token)
        data = await http.owned_json("POST", "/" + cls._collection, json=body, **kwargs)
        return cls(cls._info(data), http)

    @classmethod
    async def _by_id(cls, resource_id: str, url: str | None, token: str | None) -> Self:
        """An existing resource by id, with a client of its own."""
        http = AsyncHTTP(url, token)
        data = await http.owned_json("GET", _api.path(cls._collection, resource_id))
        return cls(cls._info(data), http)

    @classmethod
    async def from_name(
        cls, name: str, *, url: str | None = None, token: str | None = None
    ) -> Self:
        """One of yours by name (NotFoundError if there is none)."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/" + cls._collection)
            for item in cls._items(data):
                if name == item["name"] or (cls._by_id_too and name == item["id"]):
                    return cls(cls._info(item), http)
            raise NotFoundError(cls._missing.format(name=name), status=404)
        except BaseException:
            await http.aclose()
            raise

    @classmethod
    async def list(
        cls, *, url: str | None = None, token: str | None = None
    ) -> builtins.list[InfoT]:
        """Yours, as the server describes them."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", "/" + cls._collection)
        finally:
            await http.aclose()
        return [cls._info(item) for item in cls._items(data)]

    # -- one resource ---------------------------------------------------------------------

    async def refresh(self) -> InfoT:
        """Reload ``info`` from the server."""
        self.info = self._info(await self._http.json("GET", self._path))
        return self.info

    async def _delete(self, **kwargs: Any) -> None:
        """Delete the resource on the server, then close the client whatever happened."""
        try:
            await self._http.request("DELETE", self._path, **kwargs)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the HTTP connections (nothing changes on the server)."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncPart:
    """A group of one sandbox's calls under ``/sandboxes/{id}/{prefix}``."""

    _prefix: ClassVar[str]

    def __init__(self, sandbox: AsyncSandbox) -> None:
        self._sb = sandbox

    @property
    def _http(self) -> AsyncHTTP:
        return self._sb._http

    def _url(self, *parts: str | int) -> str:
        return self._sb._path + _api.path(self._prefix, *parts)
