# GENERATED from sandbox_ide/_async/git.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""Git in the sandbox: clone, status, log, diff, branches, commit, pull and push."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from .. import _api
from .._wire import NO_READ_TIMEOUT
from ..models import CloneResult, GitBranches, GitCommit, GitHead, GitStatus
from .resource import Part


class Git(Part):
    """Git in the sandbox. ``path`` is the repository (default ``/workspace``);
    ``clone``, ``pull`` and ``push`` take credentials for that one call."""

    _prefix = "git"

    def _post(self, action: str, **body: Any) -> Any:
        return self._http.json(
            "POST", self._url(action), json=_api.drop_none(**body), timeout=NO_READ_TIMEOUT
        )

    def _get(self, action: str, **params: Any) -> Any:
        return self._http.json("GET", self._url(action), params=_api.drop_none(**params))

    def clone(
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
        data = self._post(
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

    def status(self, path: str | None = None) -> GitStatus:
        return GitStatus.from_json(self._get("status", path=path))

    def log(self, path: str | None = None, *, limit: int = 20) -> builtins.list[GitCommit]:
        data = self._get("log", path=path, limit=limit)
        return [GitCommit.from_json(c) for c in data["commits"]]

    def diff(self, path: str | None = None, *, staged: bool = False) -> str:
        return str((self._get("diff", path=path, staged=staged or None))["diff"])

    def branches(self, path: str | None = None) -> GitBranches:
        return GitBranches.from_json(self._get("branches", path=path))

    def checkout(self, branch: str, path: str | None = None, *, create: bool = False) -> GitHead:
        return GitHead.from_json(
            self._post("checkout", path=path, branch=branch, create=create or None)
        )

    def add(self, paths: Sequence[str] = (), path: str | None = None) -> GitStatus:
        """Stage ``paths`` (every change when empty)."""
        return GitStatus.from_json(self._post("add", path=path, paths=list(paths)))

    def commit(
        self,
        message: str,
        path: str | None = None,
        *,
        all: bool = False,  # noqa: A002 - git's own name
        author_name: str | None = None,
        author_email: str | None = None,
    ) -> GitHead:
        data = self._post(
            "commit",
            path=path,
            message=message,
            all=all or None,
            author_name=author_name,
            author_email=author_email,
        )
        return GitHead.from_json(data)

    def pull(self, path: str | None = None, **credentials: str) -> GitHead:
        return GitHead.from_json(self._post("pull", path=path, **credentials))

    def push(self, path: str | None = None, **credentials: str) -> GitHead:
        return GitHead.from_json(self._post("push", path=path, **credentials))
