# GENERATED from sandbox_ide/_async/templates.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""Templates: image, starter code, setup command and limits that sandboxes are made from."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from .. import _api, _transfer
from .._wire import NO_READ_TIMEOUT
from ..errors import InvalidRequestError, SandboxIDEError
from ..models import BuildInfo, TemplateInfo, TutorialPage, TutorialValidation
from .resource import Resource


class Template(Resource[TemplateInfo]):
    """A template: image, starter code, setup command, env, limits and IDE hints that
    sandboxes (and a course's students' sandboxes) are made from.

    ``Template.create("py101", files="starter/")`` makes one;
    ``Sandbox.get_or_create(name, template=t)`` or a course uses it.
    """

    _collection = "templates"
    _missing = (
        "You have no template named {name!r}: create it with "
        "Template.create({name!r}, files=...) or `sandbox-ide template create {name}`."
    )

    @classmethod
    def _info(cls, data: Any) -> TemplateInfo:
        return TemplateInfo.from_json(data)

    @classmethod
    def create(
        cls,
        name: str,
        files: Any = None,
        *,
        description: str | None = None,
        image: str | None = None,
        repo_url: str | None = None,
        repo_branch: str | None = None,
        setup_command: str | None = None,
        dockerfile: str | None = None,
        env: dict[str, str] | None = None,
        limits: dict[str, Any] | None = None,
        open_files: Sequence[str] | None = None,
        preview_port: int | None = None,
        warm_pool: int | None = None,
        message: str | None = None,
        url: str | None = None,
        token: str | None = None,
    ) -> Template:
        """Make a template. Starter code comes from ``repo_url`` (fetched now; 400
        ``git_error`` with git's reason) and/or ``files``: ``{path: bytes | text |
        local path}``, a local folder, or a list of local files (see ``upload``).

        ``warm_pool``: how many ready sandboxes to keep for its courses' joins.
        ``dockerfile``: steps on the sandbox image (``FROM sandbox``), checked now
        and built by ``build()``.
        """
        body = _api.drop_none(
            name=name,
            description=description,
            image=image,
            repo_url=repo_url,
            repo_branch=repo_branch,
            setup_command=setup_command,
            dockerfile=dockerfile,
            env=env,
            limits=limits,
            open_files=builtins.list(open_files) if open_files is not None else None,
            preview_port=preview_port,
            warm_pool=warm_pool,
        )
        parts = _transfer.starter_parts(files) if files is not None else []
        template = cls._create(body, url, token, timeout=NO_READ_TIMEOUT)
        if parts:
            try:
                template._put_files(parts, message)
            except BaseException:
                with contextlib.suppress(SandboxIDEError):
                    template.delete()
                raise
        return template

    @classmethod
    def get(cls, template_id: str, *, url: str | None = None, token: str | None = None) -> Template:
        """A template by id (yours; NotFoundError for anyone else's)."""
        return cls._by_id(template_id, url, token)

    def update(self, **changes: Any) -> TemplateInfo:
        """Change fields (``name``, ``description``, ``image``, ``repo_url``,
        ``repo_branch``, ``setup_command``, ``dockerfile``, ``env``, ``limits``, ``open_files``,
        ``preview_port``, ``warm_pool``); a new ``repo_url`` is fetched at once."""
        data = self._http.json("PATCH", self._path, json=changes, timeout=NO_READ_TIMEOUT)
        self.info = TemplateInfo.from_json(data)
        return self.info

    def upload(self, files: Any, *, message: str | None = None) -> TemplateInfo:
        """Commit files on top of the starter code: ``{path: bytes | text | local
        path}`` (a path like ``src/app.py`` keeps its folders), a local folder (its
        contents land at the starter's root) or a list of local files (by name).
        Existing courses get it with ``course.push_update()``."""
        parts = _transfer.starter_parts(files)
        if not parts:
            raise InvalidRequestError("Give at least one file to upload.", code="invalid_upload")
        return self._put_files(parts, message)

    def _put_files(
        self, parts: builtins.list[tuple[str, bytes]], message: str | None
    ) -> TemplateInfo:
        data = self._http.json(
            "PUT",
            self._path + "/files",
            files=_transfer.starter_files(parts),
            data=_api.drop_none(message=message),
            timeout=NO_READ_TIMEOUT,
        )
        self.info = TemplateInfo.from_json(data)
        return self.info

    def refresh_repo(self) -> TemplateInfo:
        """Fetch the template's repository again (its branch's newest commit)."""
        data = self._http.json("POST", self._path + "/refresh", timeout=NO_READ_TIMEOUT)
        self.info = TemplateInfo.from_json(data)
        return self.info

    def validate_tutorial(self) -> TutorialValidation:
        """Check the tutorial in the starter: every problem with its file and line."""
        data = self._http.json("GET", self._path + "/tutorial/validate")
        return TutorialValidation.from_json(data)

    def preview_tutorial(self) -> builtins.list[TutorialPage]:
        """Every page of the tutorial as students will see them (intro, steps, finish)."""
        data = self._http.json("GET", self._path + "/tutorial/preview")
        return [TutorialPage.from_json(p) for p in data["pages"]]

    def build(self, on_log: Callable[[str], Any] | None = None) -> BuildInfo:
        """Build the template's Dockerfile and wait for the end; ``on_log`` gets the
        log as it comes (whole lines). Returns the finished build: ``.ok``, or
        ``.error`` with ``.failed_step`` and ``.last_lines``. Sandboxes made from the
        template afterwards get its image."""
        data = self._http.json("POST", self._path + "/build")
        result = BuildInfo.from_json(data)
        for name, event in self._http.events("GET", f"/builds/{result.id}/logs"):
            if name == "log" and on_log is not None:
                on_log(event["text"])
            elif name == "done":
                result = BuildInfo.from_json(event)
        self.refresh()
        return result

    def builds(self) -> builtins.list[BuildInfo]:
        """The template's latest builds, newest first."""
        data = self._http.json("GET", self._path + "/builds")
        return [BuildInfo.from_json(b) for b in data["builds"]]

    def delete(self) -> None:
        """Delete the template (ConflictError ``template_in_use`` while a course
        uses it), then close the client."""
        self._delete()
