# GENERATED from sandbox_ide/_async/tutorial.py by sdk/python/unasync.py: edit that file, then run
# `python sdk/python/unasync.py`.
"""A sandbox's guided tutorial: its steps, the learner's progress, and Check."""

from __future__ import annotations

from .._wire import NO_READ_TIMEOUT
from ..models import TutorialCheck, TutorialInfo, TutorialPage
from .resource import Part


class Tutorial(Part):
    """The tutorial of a sandbox made from a template that has one. The owner checks
    steps; a course's teacher reads the same (a check raises PermissionDeniedError
    with code ``read_only``)."""

    _prefix = "tutorial"

    def get(self) -> TutorialInfo:
        """The steps, which are done, and the current one (the first look starts it)."""
        return TutorialInfo.from_json(self._http.json("GET", self._url()))

    def step(self, index: int) -> TutorialPage:
        """A page: 0 the intro, 1..N the steps, N+1 the finish; later steps are locked."""
        return TutorialPage.from_json(self._http.json("GET", self._url("steps", index)))

    def check(self, step: int | None = None) -> TutorialCheck:
        """Run the current step's verify script (or ``step``, one already reached);
        ``passed`` says whether the learner moved on, ``output`` why not."""
        body = {} if step is None else {"step": step}
        data = self._http.json("POST", self._url("check"), json=body, timeout=NO_READ_TIMEOUT)
        return TutorialCheck.from_json(data)
