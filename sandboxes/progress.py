"""Progress of long operations: what a service is doing now and how far it is.

A service that takes long (a sandbox made from a template, a clone, a course-wide
reset) accepts a ``Report`` callback and calls it at each stage; callers that do
not care pass nothing (``ignore``). ``follow`` runs such a service for a streaming
answer: its reports come out one by one, then its result. The work runs to its end
even when the listener leaves, so a class operation is never left half done.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One report: a stage name a program can branch on, a sentence for a person,
    and, where known, how far: ``current`` of ``total`` (students, objects, ...)
    or a ``percent``. ``detail`` carries stage-specific fields (a student's result)."""

    stage: str
    message: str
    current: int | None = None
    total: int | None = None
    percent: int | None = None
    detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


Report = Callable[[Step], Awaitable[None]]


async def ignore(step: Step) -> None:
    """The report of callers that want none."""


@dataclass(frozen=True)
class Done(Generic[T]):
    result: T


# Reports waiting for a slow listener before the work waits too.
BACKLOG = 64

# Work whose listener left, kept referenced until it ends (asyncio holds tasks weakly).
_orphans: set[asyncio.Task[Any]] = set()


async def follow(work: Callable[[Report], Awaitable[T]]) -> AsyncIterator[Step | Done[T]]:
    """Run ``work(report)``; yield each Step it reports, then ``Done(result)``.

    Its error is raised here after the steps reported before it. Reports wait while
    the listener is behind (a flood of them cannot pile up in memory); if the
    listener stops early, later reports are dropped and the work goes on to its end
    in the background.
    """
    queue: asyncio.Queue[Step] = asyncio.Queue(maxsize=BACKLOG)
    listening = True

    async def report(step: Step) -> None:
        if listening:
            await queue.put(step)

    task = asyncio.ensure_future(work(report))
    getter: asyncio.Future[Step] | None = None
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
                continue
            getter.cancel()
            while not queue.empty():
                yield queue.get_nowait()
            yield Done(task.result())
            return
    finally:
        listening = False
        if getter is not None:
            getter.cancel()
        while not queue.empty():  # wakes a report waiting for room
            queue.get_nowait()
        if not task.done():
            _orphans.add(task)
            task.add_done_callback(_orphan_done)


def _orphan_done(task: asyncio.Task[Any]) -> None:
    _orphans.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("work whose listener left failed: %s", exc)
