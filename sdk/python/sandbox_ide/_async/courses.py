"""Courses: invites, the roster, resets with archives, starter updates and sharing."""

from __future__ import annotations

import builtins
import os
import tempfile
from pathlib import Path
from typing import Any

from .. import _api, _transfer
from .._transfer import Progress
from .._wire import NO_READ_TIMEOUT
from ..errors import NotFoundError
from ..models import (
    Archive,
    CourseInfo,
    CourseUpdate,
    Invite,
    InviteDetails,
    JoinResult,
    SandboxInfo,
    Share,
    Student,
    TemplateInfo,
)
from .files import save
from .http import AsyncHTTP
from .resource import AsyncResource
from .sandbox import AsyncSandbox
from .templates import AsyncTemplate


class AsyncCourse(AsyncResource[CourseInfo]):
    """A course on a template. Its teacher makes invite links, sees the roster,
    resets a student's workspace (archived first) and pushes starter updates;
    students join with an invite's token and get their own sandbox.

    A teacher reads (never writes) a student's sandbox with
    ``AsyncSandbox.connect(student.sandbox_id)`` or ``course.student_sandbox(s)``;
    writes raise PermissionDeniedError with code ``read_only``. Listed and found by
    name, the courses you teach come before those you joined.
    """

    _collection = "courses"
    _repr_fields = ("role",)
    _missing = (
        "You teach or attend no course named {name!r}: `sandbox-ide course list` shows yours."
    )

    @classmethod
    def _info(cls, data: Any) -> CourseInfo:
        return CourseInfo.from_json(data)

    @classmethod
    def _items(cls, data: Any) -> builtins.list[Any]:
        return [*data["teaching"], *data["enrolled"]]

    # -- finding and making courses -------------------------------------------------------

    @classmethod
    async def create(
        cls,
        name: str,
        template: AsyncTemplate | TemplateInfo | str,
        *,
        url: str | None = None,
        token: str | None = None,
    ) -> AsyncCourse:
        """Start a course on one of your templates; you are its teacher."""
        return await cls._create({"name": name, "template": _api.ref(template)}, url, token)

    @classmethod
    async def get(
        cls, course_id: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncCourse:
        """A course you teach or joined, by id."""
        return await cls._by_id(course_id, url, token)

    @classmethod
    async def invite_details(
        cls, invite: str, *, url: str | None = None, token: str | None = None
    ) -> InviteDetails:
        """What an invite (its token or link) leads to; GoneError if it expired or
        was revoked."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json("GET", _api.path("invites", _api.invite_token(invite)))
        finally:
            await http.aclose()
        return InviteDetails.from_json(data)

    @classmethod
    async def join(
        cls, invite: str, *, url: str | None = None, token: str | None = None
    ) -> AsyncSandbox:
        """Join a course with an invite's token (or its link): your own sandbox from
        the course's template, ready, with the starter code. Joining again returns
        the same sandbox. GoneError if the invite expired or was revoked.
        ``sandbox.joined`` says how it went."""
        http = AsyncHTTP(url, token)
        try:
            data = await http.json(
                "POST",
                _api.path("invites", _api.invite_token(invite), "join"),
                timeout=NO_READ_TIMEOUT,
            )
            joined = JoinResult.from_json(data)
            info = await http.json("GET", _api.path("sandboxes", joined.sandbox))
        except BaseException:
            await http.aclose()
            raise
        sandbox = AsyncSandbox(SandboxInfo.from_json(info), http)
        sandbox.joined = joined
        return sandbox

    # -- the course -----------------------------------------------------------------------

    async def delete(self) -> None:
        """Delete the course (students keep their sandboxes), then close the client."""
        await self._delete()

    # -- invites ----------------------------------------------------------------------------

    async def invite(self, days: float | None = None) -> Invite:
        """A new invite link, valid for ``days`` (the server's default: 14)."""
        data = await self._http.json(
            "POST", self._path + "/invites", json=_api.drop_none(expires_in_days=days)
        )
        return Invite.from_json(data, self._http.url)

    async def invites(self) -> builtins.list[Invite]:
        data = await self._http.json("GET", self._path + "/invites")
        return [Invite.from_json(i, self._http.url) for i in data["invites"]]

    async def revoke_invite(self, invite: Invite | int) -> Invite:
        """Revoke an invite at once (students who joined stay)."""
        invite_id = invite.id if isinstance(invite, Invite) else int(invite)
        data = await self._http.json("DELETE", f"{self._path}/invites/{invite_id}")
        return Invite.from_json(data, self._http.url)

    # -- the teacher's view -------------------------------------------------------------------

    async def roster(self) -> builtins.list[Student]:
        """Each student with their sandbox's status, last activity and starter version."""
        data = await self._http.json("GET", self._path + "/students")
        return [Student.from_json(s) for s in data["students"]]

    async def progress(self) -> dict[str, Any]:
        """Every student's step and checks in the course's tutorial::

        {"title", "total", "steps": [{"index", "title"}], "students": [{"student",
         "sandbox", "current", "finished", "checks", "last_check", "steps": [...]}]}
        """
        result: dict[str, Any] = await self._http.json("GET", self._path + "/progress")
        return result

    async def progress_csv(self) -> str:
        """The same as CSV: a row per student, two columns per step."""
        response = await self._http.request(
            "GET", self._path + "/progress", params={"format": "csv"}
        )
        return response.text

    async def _student_id(self, student: Student | int | str) -> int:
        if isinstance(student, Student):
            return student.id
        if isinstance(student, int):
            return student
        for row in await self.roster():
            if row.username == student:
                return row.id
        raise NotFoundError(f"No student {student!r} in course {self.name!r}.", status=404)

    async def student_sandbox(self, student: Student | int | str) -> AsyncSandbox:
        """A student's sandbox, to read (the teacher may look, never change)."""
        if isinstance(student, Student) and student.sandbox_id:
            sandbox_id = student.sandbox_id
        else:
            wanted = student.id if isinstance(student, Student) else student
            rows = [s for s in await self.roster() if wanted in (s.id, s.username)]
            if not rows:
                raise NotFoundError(f"No student {wanted!r} in course {self.name!r}.", status=404)
            if not rows[0].sandbox_id:
                raise NotFoundError(f"Student {wanted!r} has no sandbox yet.", status=404)
            sandbox_id = rows[0].sandbox_id
        return await AsyncSandbox.connect(sandbox_id, url=self._http.url, token=self._http.token)

    async def reset(self, student: Student | int | str) -> Archive:
        """Archive the student's ``/workspace`` (kept on the server; see
        ``download_archive``), empty it and install the starter code afresh."""
        student_id = await self._student_id(student)
        data = await self._http.json(
            "POST", f"{self._path}/students/{student_id}/reset", timeout=NO_READ_TIMEOUT
        )
        return Archive.from_json(data)

    async def archives(self, student: Student | int | str) -> builtins.list[Archive]:
        """The archives of a student's reset workspaces, oldest first."""
        student_id = await self._student_id(student)
        data = await self._http.json("GET", f"{self._path}/students/{student_id}/archives")
        return [Archive.from_json(a) for a in data["archives"]]

    async def download_archive(
        self,
        archive: Archive | int,
        local: str | os.PathLike[str],
        *,
        extract: bool = False,
        progress: Progress | None = None,
    ) -> Path:
        """Save an archive (a ``.tar.gz``) to ``local``, or into it when it is a
        folder; with ``extract=True`` unpack it into the folder ``local`` instead
        (the files are under ``workspace/`` in it)."""
        archive_id = archive.id if isinstance(archive, Archive) else int(archive)
        target = Path(local)
        async with self._http.stream("GET", f"{self._path}/archives/{archive_id}") as response:
            if extract:
                with tempfile.TemporaryDirectory() as tmp:
                    saved = Path(tmp) / "archive.tar.gz"
                    await save(response, saved, progress)
                    target.mkdir(parents=True, exist_ok=True)
                    _transfer.extract(saved, target)
                return target
            if target.is_dir():
                target = target / _transfer.archive_name(response.headers, archive_id)
            target.parent.mkdir(parents=True, exist_ok=True)
            await save(response, target, progress)
        return target

    async def push_update(self) -> CourseUpdate:
        """Fetch the starter again (from its repository, if any) and merge it into
        every student's workspace; their edits are never overwritten (conflicts are
        kept beside, see each report's ``conflicts``)."""
        data = await self._http.json("POST", self._path + "/update", timeout=NO_READ_TIMEOUT)
        return CourseUpdate.from_json(data)

    # -- sharing ---------------------------------------------------------------------------------

    async def shares(self) -> builtins.list[Share]:
        """What students share with the class."""
        data = await self._http.json("GET", self._path + "/shares")
        return [Share.from_json(s) for s in data["shares"]]

    async def share(
        self,
        sandbox: AsyncSandbox | str,
        kind: str = "view",
        *,
        port: int | None = None,
    ) -> Share:
        """Share one of your sandboxes with the class: a read-only ``view``, or a
        ``preview`` of ``port`` (exposed if it is not yet)."""
        data = await self._http.json(
            "POST",
            self._path + "/shares",
            json=_api.drop_none(sandbox=_api.ref(sandbox), kind=kind, port=port),
        )
        return Share.from_json(data)

    async def unshare(self, share: Share | int) -> None:
        """Stop sharing (the student who shared, or the teacher); a preview URL dies."""
        share_id = share.id if isinstance(share, Share) else int(share)
        await self._http.request("DELETE", f"{self._path}/shares/{share_id}")
