"""Git in the sandbox: clone, status, log, diff, branches, commit, pull and push."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from .. import _api
from .._wire import NO_READ_TIMEOUT
from ..models import CloneResult, GitBranches, GitCommit, GitHead, GitStatus
from .resource import AsyncPart


class AsyncGit(AsyncPart):
    """Git in the sandbox. ``path`` is the repository (default ``/workspace``);
    ``clone``, ``pull`` and ``push`` take credentials for that one call."""

    _prefix = "git"

    async def _post(self, action: str, **body: Any) -> Any:
        return await self._http.json(
            "POST", self._url(action), json=_api.drop_none(**body), timeout=NO_READ_TIMEOUT
        )

    async def _get(self, action: str, **params: Any) -> Any:
        return await self._http.json("GET", self._url(action), params=_api.drop_none(**params))

    async def clone(
        self,
        url: str,
        path: str | None = None,
        *,
        branch: str | None = None,
        depth: int | None = None,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
    ) -> CloneResult:
        """Clone ``url`` inside the sandbox (``path`` defaults to the repo's name)."""
        data = await self._post(
            "clone",
            url=url,
            path=path,
            branch=branch,
            depth=depth,
            username=username,
            password=password,
            token=token,
        )
        return CloneResult.from_json(data)

    async def status(self, path: str | None = None) -> GitStatus:
        return GitStatus.from_json(await self._get("status", path=path))

    async def log(self, path: str | None = None, *, limit: int = 20) -> builtins.list[GitCommit]:
        data = await self._get("log", path=path, limit=limit)
        return [GitCommit.from_json(c) for c in data["commits"]]

    async def diff(self, path: str | None = None, *, staged: bool = False) -> str:
        return str((await self._get("diff", path=path, staged=staged or None))["diff"])

    async def branches(self, path: str | None = None) -> GitBranches:
        return GitBranches.from_json(await self._get("branches", path=path))

    async def checkout(
        self, branch: str, path: str | None = None, *, create: bool = False
    ) -> GitHead:
        return GitHead.from_json(
            await self._post("checkout", path=path, branch=branch, create=create or None)
        )

    async def add(self, paths: Sequence[str] = (), path: str | None = None) -> GitStatus:
        """Stage ``paths`` (every change when empty)."""
        return GitStatus.from_json(await self._post("add", path=path, paths=list(paths)))

    async def commit(
        self,
        message: str,
        path: str | None = None,
        *,
        all: bool = False,  # noqa: A002 - git's own name
        author_name: str | None = None,
        author_email: str | None = None,
    ) -> GitHead:
        data = await self._post(
            "commit",
            path=path,
            message=message,
            all=all or None,
            author_name=author_name,
            author_email=author_email,
        )
        return GitHead.from_json(data)

    async def pull(self, path: str | None = None, **credentials: str) -> GitHead:
        return GitHead.from_json(await self._post("pull", path=path, **credentials))

    async def push(self, path: str | None = None, **credentials: str) -> GitHead:
        return GitHead.from_json(await self._post("push", path=path, **credentials))
