"""Guided tutorials: a template's scenario (``scenario.py``), each learner's progress,
and the checks that move it on.

What the server trusts (step texts, verify and background scripts) is read from the
template's starter as kept on the server (``starter.read_files``), never from the
sandbox's workspace, which its owner can edit: a student cannot pass a check by
rewriting its verify script. Scripts run in the sandbox through the exec service,
as the sandbox user, with a timeout and bounded output.

Steps are numbered from 1; step 0 is the intro and step N+1 the finish. A learner's
``current`` step starts at 1, moves on only when that step's check passes, and is
N+1 once the tutorial is finished.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import logging
import mimetypes
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from sandboxes import lifecycle
from sandboxes.classroom import scenario as reader
from sandboxes.classroom.models import Course, Enrollment, TutorialProgress
from sandboxes.errors import BadRequest, Conflict, NotFound, SandboxError
from sandboxes.execs import ExecRequest, exec_collect, exec_stream
from sandboxes.locks import KeyedLocks
from sandboxes.models import Sandbox, Template
from sandboxes.policy import Action
from sandboxes.templates import starter
from sandboxes.templates.launch import template_of

log = logging.getLogger(__name__)

# Parsed scenarios by (template, commit); a starter commit never changes, so entries
# never go stale, and the oldest are dropped. Relative images point at FILES, which
# each answer replaces with its own route (a sandbox's, or the template preview's).
_CACHE: OrderedDict[tuple[str, str], reader.Scenario | None] = OrderedDict()
FILES = "/__tutorial_files__"
CACHE_SIZE = 64
# The files a step's markdown may show (no SVG: it could carry script).
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_background: set[asyncio.Task[None]] = set()
_checking = KeyedLocks()


# ----------------------------------------------------------------------- loading


async def read_scenario(template: Template) -> reader.Scenario | None:
    """The template's tutorial at its current starter commit (None: it has none)."""
    commit = template.starter_head
    if not commit:
        return None
    key = (template.id, commit)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    files = await starter.read_files(template, commit)
    found = reader.read(files, FILES)
    _CACHE[key] = found
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return found


def _require(found: reader.Scenario | None) -> reader.Scenario:
    if found is None:
        raise NotFound("This sandbox's template has no tutorial.", code="no_tutorial")
    if not found.valid:
        listed = "; ".join(str(p) for p in found.errors[:10])
        raise BadRequest(
            f"The tutorial has {len(found.errors)} problem(s): {listed}", code="tutorial_invalid"
        )
    return found


@dataclass
class Tutorial:
    """A sandbox's tutorial as one caller sees it."""

    sandbox: Sandbox
    template: Template
    scenario: reader.Scenario
    progress: TutorialProgress
    owner: bool  # the caller may act (check, start); else a read-only look

    @property
    def files_url(self) -> str:
        return f"/api/v1/sandboxes/{self.sandbox.id}/tutorial/files"


async def open_tutorial(user: User, sandbox_id: str, action: Action = "view") -> Tutorial:
    """The sandbox's tutorial and progress, if ``user`` may ``action`` the sandbox.

    The owner's first look starts it (assets copied, the intro's and first step's
    background scripts run); someone only looking never changes anything.
    """
    sandbox = await lifecycle.get_sandbox(user, sandbox_id, action=action)
    template = await template_of(sandbox)
    if template is None:
        raise NotFound(
            "This sandbox was not made from a template with a tutorial.", code="no_tutorial"
        )
    found = _require(await read_scenario(template))
    owner = sandbox.owner_id == user.pk
    progress = await TutorialProgress.objects.filter(sandbox=sandbox).afirst()
    if progress is None:
        if owner:
            progress, created = await TutorialProgress.objects.aget_or_create(sandbox=sandbox)
            if created:
                _start(sandbox, found, progress)
        else:
            progress = TutorialProgress(sandbox=sandbox)
    return Tutorial(sandbox, template, found, progress, owner)


# ----------------------------------------------------------------------- views


def _last_checks(progress: TutorialProgress) -> dict[int, dict[str, Any]]:
    last: dict[int, dict[str, Any]] = {}
    for check in progress.checks:
        last[int(check["step"])] = check
    return last


def _check_out(check: dict[str, Any] | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {k: check[k] for k in ("step", "passed", "at") if k in check}


def summary(found: reader.Scenario, progress: TutorialProgress) -> dict[str, Any]:
    """``GET .../tutorial``: the title, each step (done or not) and where one is."""
    total = len(found.steps)
    current = min(progress.current, total + 1)
    last = _last_checks(progress)
    checks = progress.checks
    return {
        "title": found.title,
        "description": found.description,
        "steps": [
            {
                "index": step.index,
                "title": step.title,
                "done": step.index < current,
                "verify": step.verify is not None,
                "last_check": _check_out(last.get(step.index)),
            }
            for step in found.steps
        ],
        "current": current,
        "total": total,
        "finished": current > total,
        "has_intro": found.intro is not None,
        "has_finish": found.finish is not None,
        "last_check": _check_out(checks[-1] if checks else None),
        "unsupported": list(found.unsupported),
        "warnings": [p.as_dict() for p in found.problems if p.level == "warning"],
        "events": list(progress.events)[-20:],
    }


def page_out(
    found: reader.Scenario, page: reader.Page, kind: str, files_url: str
) -> dict[str, Any]:
    return {
        "index": page.index,
        "kind": kind,
        "title": page.title,
        "markdown": page.markdown.replace(f"]({FILES}/", f"]({files_url}/"),
        "actions": [a.as_dict() for a in page.actions],
        "verify": page.verify is not None,
        "foreground": page.foreground,
        "total": len(found.steps),
    }


def page(found: reader.Scenario, n: int, current: int | None, files_url: str) -> dict[str, Any]:
    """``GET .../tutorial/steps/{n}``: 0 the intro, 1..N the steps, N+1 the finish;
    images through ``files_url``.

    With ``current`` (a learner's), steps beyond it are locked: 409 ``step_locked``.
    """
    total = len(found.steps)
    if n < 0 or n > total + 1:
        raise NotFound(f"The tutorial has steps 1 to {total} (0: intro, {total + 1}: finish).")
    if current is not None and n > current:
        raise Conflict(
            f"Step {n} opens when step {current} is done: press Check on step {current}.",
            code="step_locked",
        )
    if n == 0:
        if found.intro is None:
            raise NotFound("This tutorial has no intro.", code="not_found")
        return page_out(found, found.intro, "intro", files_url)
    if n == total + 1:
        if found.finish is None:
            return {
                "index": n,
                "kind": "finish",
                "title": "Finished",
                "markdown": "",
                "actions": [],
                "verify": False,
                "foreground": None,
                "total": total,
            }
        return page_out(found, found.finish, "finish", files_url)
    return page_out(found, found.steps[n - 1], "step", files_url)


# ----------------------------------------------------------------------- checks


@dataclass
class Ran:
    exit_code: int | None
    timed_out: bool
    output: str


async def run_script(sandbox: Sandbox, script: str, timeout: float, limit: int) -> Ran:
    """Run ``script`` with bash in /workspace as the sandbox user; the output of both
    streams interleaved, at most ``limit`` bytes kept (the rest drained and counted)."""
    request = ExecRequest(command=["bash", "-c", script], cwd="/workspace", timeout=timeout)
    kept = bytearray()
    dropped = 0
    exit_event = None
    async for event in exec_stream(sandbox, request):
        if event.kind in ("stdout", "stderr"):
            room = max(0, limit - len(kept))
            kept += event.data[:room]
            dropped += max(0, len(event.data) - room)
        elif event.kind == "exit":
            exit_event = event.exit
    output = kept.decode(errors="replace")
    if dropped:
        output += f"\n… ({dropped} more bytes of output not shown)"
    if exit_event is None:  # pragma: no cover - the stream always ends with exit
        raise SandboxError("The script ended without an exit status.")
    return Ran(exit_event.exit_code, exit_event.timed_out, output)


async def check(tutorial: Tutorial, step: int | None = None) -> dict[str, Any]:
    """Run the step's verify script (default: the current step) and move on when it
    exits 0; a step without one passes. Only the owner checks (others get 403).

    One check of a sandbox at a time (two tabs pressing Check at once must not both
    move the learner on), on the progress as stored when it starts."""
    async with _checking(tutorial.sandbox.id):
        tutorial.progress = await TutorialProgress.objects.aget(sandbox_id=tutorial.sandbox.id)
        return await _check_now(tutorial, step)


async def _check_now(tutorial: Tutorial, step: int | None) -> dict[str, Any]:
    found, progress = tutorial.scenario, tutorial.progress
    total = len(found.steps)
    current = min(progress.current, total + 1)
    n = current if step is None else step
    if current > total and step is None:
        raise Conflict("The tutorial is finished: every step passed.", code="tutorial_finished")
    if not 1 <= n <= total:
        raise NotFound(f"The tutorial has steps 1 to {total}.", code="not_found")
    if n > current:
        raise Conflict(
            f"Step {n} opens when step {current} is done: check step {current} first.",
            code="step_locked",
        )
    page_ = found.steps[n - 1]
    timeout = float(settings.TUTORIAL_VERIFY_TIMEOUT)
    if page_.verify is None:
        ran = Ran(0, False, "")
    else:
        ran = await run_script(
            tutorial.sandbox, page_.verify, timeout, int(settings.TUTORIAL_OUTPUT_LIMIT)
        )
    passed = ran.exit_code == 0 and not ran.timed_out
    output = ran.output
    if ran.timed_out:
        output = f"The check did not finish within {timeout:g} seconds and was stopped.\n" + output
    elif not passed and not output.strip():
        output = f"The check failed (exit code {ran.exit_code}) without saying why."
    now = timezone.now().isoformat()
    record = {"step": n, "passed": passed, "at": now, "exit_code": ran.exit_code}
    if ran.timed_out:
        record["timed_out"] = True
    progress.checks = [*progress.checks, record][-TutorialProgress.MAX_CHECKS :]
    moved = passed and n == current
    if moved:
        progress.current = n + 1
        if n + 1 > total:
            progress.finished_at = timezone.now()
    await progress.asave(update_fields=["current", "finished_at", "checks", "updated_at"])
    if moved and n + 1 <= total:
        _background_script(tutorial.sandbox, found.steps[n], progress.sandbox_id)
    return {
        "passed": passed,
        "output": output,
        "step": n,
        "current": progress.current,
        "finished": progress.current > total,
        "at": now,
    }


# ----------------------------------------------------------------------- scripts


def _start(sandbox: Sandbox, found: reader.Scenario, progress: TutorialProgress) -> None:
    """Copy the assets, then run the intro's and the first step's background scripts
    (in the background: a learner does not wait for an installation)."""
    task = asyncio.create_task(_start_now(sandbox, found))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _start_now(sandbox: Sandbox, found: reader.Scenario) -> None:
    if found.assets:
        await _record(sandbox.id, "assets", _copy_assets(sandbox, found.assets))
    for page_ in (found.intro, found.steps[0] if found.steps else None):
        if page_ is not None and page_.background:
            await _record(
                sandbox.id, f"step {page_.index} background", _run_background(sandbox, page_)
            )


def _background_script(sandbox: Sandbox, page_: reader.Page, sandbox_id: str) -> None:
    if not page_.background:
        return
    what = f"step {page_.index} background"
    task = asyncio.create_task(_record(sandbox_id, what, _run_background(sandbox, page_)))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _run_background(sandbox: Sandbox, page_: reader.Page) -> str:
    assert page_.background is not None  # noqa: S101 - callers check
    ran = await run_script(
        sandbox, page_.background, float(settings.TUTORIAL_BACKGROUND_TIMEOUT), 2000
    )
    if ran.timed_out:
        raise SandboxError("It timed out. " + ran.output[-500:])
    if ran.exit_code != 0:
        raise SandboxError(f"It exited with {ran.exit_code}. " + ran.output[-500:])
    return "done"


async def _copy_assets(sandbox: Sandbox, assets: list[reader.Asset]) -> str:
    """Each asset into its target folder (``~`` and ``/root`` mean the sandbox
    user's home, which is where Killercoda's root would find them)."""
    for asset in assets:
        target = asset.target
        if target == "/root" or target.startswith("/root/"):
            target = "~" + target[len("/root") :]
        script = (
            'set -e; t="$TARGET"; case "$t" in "~") t="$HOME";; "~/"*) t="$HOME/${t#\\~/}";; esac; '
            'mkdir -p -- "$t/$(dirname -- "$NAME")"; base64 -d > "$t/$NAME"; '
            'if [ "$EXEC" = 1 ]; then chmod +x "$t/$NAME"; fi'
        )
        result = await exec_collect(
            sandbox,
            ExecRequest(
                command=["bash", "-c", script],
                cwd="/workspace",
                env={
                    "TARGET": target,
                    "NAME": asset.path,
                    "EXEC": "1" if asset.executable else "0",
                },
                stdin=base64.b64encode(asset.data).decode(),
                timeout=60,
            ),
        )
        if result.exit_code != 0:
            raise SandboxError(
                f"{asset.path} could not be copied to {asset.target}: {result.stderr[-300:]}"
            )
    return f"{len(assets)} file(s) copied"


async def _record(sandbox_id: str, what: str, work: Any) -> None:
    """Keep what a script did on the learner's progress (shown in the panel)."""
    try:
        message, ok = await work, True
    except SandboxError as exc:
        message, ok = exc.message, False
    except Exception:  # a script must never take the server down with it
        log.exception("tutorial %s of %s failed", what, sandbox_id)
        message, ok = "It failed on the server.", False
    event = {"what": what, "ok": ok, "message": message, "at": timezone.now().isoformat()}
    progress = await TutorialProgress.objects.filter(sandbox_id=sandbox_id).afirst()
    if progress is not None:
        progress.events = [*progress.events, event][-50:]
        await progress.asave(update_fields=["events", "updated_at"])


async def reset(sandbox: Sandbox) -> None:
    """Forget the learner's progress (their workspace was reset)."""
    await TutorialProgress.objects.filter(sandbox=sandbox).adelete()


# ----------------------------------------------------------------------- teacher's view


async def course_progress(course: Course) -> dict[str, Any]:
    """Every student's step and checks in the course's tutorial."""
    found = await read_scenario(course.template)
    if found is None:
        raise NotFound("This course's template has no tutorial.", code="no_tutorial")
    total = len(found.steps)
    progress = {
        p.sandbox_id: p
        async for p in TutorialProgress.objects.filter(sandbox__enrollment__course=course)
    }
    students = []
    async for e in Enrollment.objects.filter(course=course).select_related("student"):
        students.append(student_row(e, progress.get(e.sandbox_id or ""), total))
    return {
        "title": found.title,
        "total": total,
        "valid": found.valid,
        "steps": [{"index": s.index, "title": s.title} for s in found.steps],
        "students": students,
    }


def student_row(
    enrollment: Enrollment, progress: TutorialProgress | None, total: int
) -> dict[str, Any]:
    checks = progress.checks if progress is not None else []
    current = min(progress.current, total + 1) if progress is not None else None
    last = _last_checks(progress) if progress is not None else {}
    return {
        "student": {"id": enrollment.student_id, "username": enrollment.student.get_username()},
        "sandbox": enrollment.sandbox_id,
        "started": progress is not None,
        "current": current,
        "finished": current is not None and current > total,
        "checks": len(checks),
        "last_check": _check_out(checks[-1] if checks else None),
        "steps": [
            {
                "index": i,
                "done": current is not None and i < current,
                "last_check": _check_out(last.get(i)),
                "failed_checks": sum(1 for c in checks if c["step"] == i and not c["passed"]),
            }
            for i in range(1, total + 1)
        ],
    }


async def _course_scenario(course: Course) -> reader.Scenario | None:
    """The course's tutorial if it has a valid one (the roster shows it then)."""
    try:
        found = await read_scenario(course.template)
    except SandboxError:
        return None
    return found if found is not None and found.valid else None


async def roster_tutorial(course: Course) -> dict[str, Any] | None:
    found = await _course_scenario(course)
    if found is None:
        return None
    return {"title": found.title, "total": len(found.steps)}


async def roster_columns(course: Course) -> dict[str, dict[str, Any]]:
    """For the roster: each enrolled sandbox's step and last check (empty when the
    course's template has no valid tutorial)."""
    found = await _course_scenario(course)
    if found is None:
        return {}
    total = len(found.steps)
    out: dict[str, dict[str, Any]] = {}
    async for p in TutorialProgress.objects.filter(sandbox__enrollment__course=course):
        checks = p.checks
        current = min(p.current, total + 1)
        out[p.sandbox_id] = {
            "current": current,
            "total": total,
            "finished": current > total,
            "last_check": _check_out(checks[-1] if checks else None),
        }
    return out


def _yes_no(value: Any) -> str:
    return "" if value is None else ("yes" if value else "no")


def progress_csv(data: dict[str, Any]) -> str:
    """The teacher's progress export: a row per student, a column pair per step."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    head = ["student", "sandbox", "step", "of", "finished", "checks", "last_check_step"]
    head += ["last_check_passed", "last_check_at"]
    for step in data["steps"]:
        head += [f"step {step['index']} done", f"step {step['index']} failed checks"]
    writer.writerow(head)
    for row in data["students"]:
        last = row["last_check"] or {}
        line = [
            row["student"]["username"],
            row["sandbox"] or "",
            row["current"] or "",
            data["total"],
            "yes" if row["finished"] else "no",
            row["checks"],
            last.get("step", ""),
            _yes_no(last.get("passed")),
            last.get("at", ""),
        ]
        for step in row["steps"]:
            line += ["yes" if step["done"] else "no", step["failed_checks"]]
        writer.writerow(line)
    return buffer.getvalue()


# ----------------------------------------------------------------------- authoring


async def validate(template: Template) -> dict[str, Any]:
    """The template's tutorial checked: every problem with its file and line."""
    found = await read_scenario(template)
    if found is None:
        return {
            "found": False,
            "valid": False,
            "problems": [
                {
                    "file": "index.json",
                    "line": None,
                    "message": "The starter has no index.json (at its root or in tutorial/).",
                    "level": "error",
                }
            ],
            "unsupported": [],
        }
    return {
        "found": True,
        "valid": found.valid,
        "title": found.title,
        "root": found.root,
        "steps": len(found.steps),
        "problems": [p.as_dict() for p in found.problems],
        "unsupported": list(found.unsupported),
    }


async def preview(template: Template) -> reader.Scenario:
    return _require(await read_scenario(template))


async def tutorial_file(template: Template, path: str) -> tuple[bytes, str]:
    """A file of the tutorial's folder (an image of a step), from the server's copy."""
    found = await read_scenario(template)
    if found is None:
        raise NotFound("This template has no tutorial.", code="no_tutorial")
    files = await starter.read_files(template, template.starter_head, (found.root,))
    data = files.get(path)
    kind = mimetypes.guess_type(path)[0] or ""
    if data is None or not path.startswith(found.root) or kind not in IMAGE_TYPES:
        raise NotFound(f"The tutorial has no image {path!r}.", code="not_found")
    return data[1], kind
