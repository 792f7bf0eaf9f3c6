"""Template image builds: jobs that turn a template's Dockerfile into an image.

``start`` checks the Dockerfile (``dockerfile.validate``), records a ``TemplateBuild``
and answers at once; a thread of this server process runs the build with the
engine's own builder, writing the log into the row as it comes (bounded, oldest
text dropped first), and reports the step it is on. The image is tagged by a hash
of everything it is built from, so a second build of the same inputs reuses it.

After a build the image is checked (``verify``): the agent's files, the programs
that start it and the interpreter it runs on must be byte for byte the sandbox
image's, and nothing may preload code into them. A ``RUN`` step runs as root in
the image, so this check, not the text rules, is what keeps the agent the server's
(docs/security.md, Template images).

Readers follow a build by polling its row (``follow``), so any server process can
stream the log of a build another one runs; a row not touched for ``STALE_AFTER``
seconds belonged to a process that stopped, and is marked failed when read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import re
import subprocess
import tarfile
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import docker
import docker.errors
from django.conf import settings
from django.contrib.auth.models import User
from django.db import close_old_connections, connection
from django.utils import timezone

from sandboxes.backends import get_backend, isolation
from sandboxes.backends.docker import DockerBackend
from sandboxes.errors import BadRequest, LimitReached, NotFound
from sandboxes.images import image_tag
from sandboxes.models import Template, TemplateBuild

from . import dockerfile

log = logging.getLogger(__name__)
Status = TemplateBuild.Status

# Builds running at once in this process (the rest wait as "queued"), and builds
# one user may have queued or running.
CONCURRENCY = 2
PER_USER = 2
# The most log text kept per build, and the lines of a failing step kept apart.
MAX_LOG = 256 * 1024
TAIL_LINES = 20
# How often the log is written while a build runs, and when a silent row is stale.
FLUSH_EVERY = 0.5
HEARTBEAT = 5.0
STALE_AFTER = 60.0
# How often a reader looks for more log.
POLL = 0.3
# What the agent is and runs on, compared between the sandbox image and a built one.
CHECKED = (
    *dockerfile.PROTECTED,
    "/usr/bin/tini",
    "/usr/bin/sh",
    "/usr/bin/dash",
    "/usr/bin/python3",
    "/usr/bin/python3.11",
    "/usr/lib/python3.11",
    "/etc/ld.so.preload",
)
# Variables that would make the start-up chain load other code.
_LOADER_ENV = re.compile(r"^(LD_|PYTHON)")
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# The engine colours a step's stderr; the log is plain text.
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")

_slots = threading.BoundedSemaphore(CONCURRENCY)
_fingerprints: dict[str, dict[str, str]] = {}


class BuildError(Exception):
    """Why a build failed, in a sentence for the template's owner; ``in_step``: the
    step the log was on failed (not a check after the steps)."""

    def __init__(self, message: str, *, in_step: bool = False) -> None:
        super().__init__(message)
        self.in_step = in_step


# ------------------------------------------------------------------ queries


async def _current(build: TemplateBuild) -> TemplateBuild:
    """The build, marked failed if the process that ran it stopped."""
    active = build.status in (Status.QUEUED, Status.RUNNING)
    if active and build.updated_at < timezone.now() - timedelta(seconds=STALE_AFTER):
        build.status = Status.FAILED
        build.error = "The server stopped during this build; start the build again."
        build.finished_at = timezone.now()
        await TemplateBuild.objects.filter(
            pk=build.pk, status__in=[Status.QUEUED, Status.RUNNING]
        ).aupdate(status=build.status, error=build.error, finished_at=build.finished_at)
    return build


async def get_build(user: User, build_id: str) -> TemplateBuild:
    """A build of a template the user may use; anyone else's looks like a missing one."""
    build = await TemplateBuild.objects.select_related("template").filter(pk=build_id).afirst()
    if build is None or (
        build.template.owner_id != user.pk and not getattr(user, "is_staff", False)
    ):
        raise NotFound(f"No build with id {build_id!r}.", code="not_found")
    return await _current(build)


async def recent(template: Template, count: int = 20) -> list[TemplateBuild]:
    """The template's newest builds, newest first."""
    return [
        await _current(b) async for b in TemplateBuild.objects.filter(template=template)[:count]
    ]


# ------------------------------------------------------------------ starting


async def start(template: Template) -> TemplateBuild:
    """Check the template's Dockerfile and start building it; the build is queued or
    running when this returns (or already succeeded when its image exists)."""
    if not template.dockerfile.strip():
        raise BadRequest(
            "This template has no Dockerfile: set one (PATCH the template) first.",
            code="no_dockerfile",
        )
    rendered = dockerfile.render(template.dockerfile)
    tag = dockerfile.image_for(rendered)
    active = TemplateBuild.objects.filter(
        template__owner_id=template.owner_id, status__in=[Status.QUEUED, Status.RUNNING]
    )
    busy = [await _current(b) async for b in active]
    if sum(b.status in (Status.QUEUED, Status.RUNNING) for b in busy) >= PER_USER:
        raise LimitReached(
            f"At most {PER_USER} template builds may run at once for one owner; wait for "
            "one to end.",
            code="too_many_builds",
        )
    build = await TemplateBuild.objects.acreate(template=template, image=tag)
    thread = threading.Thread(
        target=_run, args=(build.pk, rendered, tag), name=f"build-{build.pk}", daemon=True
    )
    thread.start()
    return build


# ------------------------------------------------------------------ running


class _Recorder:
    """The build's log and step, written to its row every ``FLUSH_EVERY`` seconds."""

    def __init__(self, build_id: str) -> None:
        self.build_id = build_id
        self.pending = ""
        self.flushed = time.monotonic()
        self.step = 0
        self.steps = 0
        self.step_text = ""
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.partial = ""

    def write(self, text: str) -> None:
        text = _COLOUR.sub("", text)
        self.pending += text
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            match = _STEP.match(line.strip())
            if match:
                self.step, self.steps = int(match[1]), int(match[2])
                self.step_text = line.strip()
                self.tail.clear()
            elif line.strip() and not line.startswith((" ---> ", "Removing intermediate")):
                self.tail.append(line.rstrip())
        if time.monotonic() - self.flushed >= FLUSH_EVERY:
            self.flush()

    def flush(self, **fields: Any) -> None:
        build = TemplateBuild.objects.get(pk=self.build_id)
        text = build.log + self.pending
        dropped = max(len(text) - MAX_LOG, 0)
        build.log = text[dropped:]
        build.log_dropped += dropped
        build.step, build.steps, build.step_text = self.step, self.steps, self.step_text
        for key, value in fields.items():
            setattr(build, key, value)
        build.save()
        self.pending = ""
        self.flushed = time.monotonic()


def _run(build_id: str, rendered: str, tag: str) -> None:
    """The build thread: wait for a slot, build, verify, record the outcome."""
    close_old_connections()
    recorder = _Recorder(build_id)
    done = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(build_id, done), daemon=True)
    beat.start()
    try:
        with _slots:
            recorder.flush(status=Status.RUNNING, started_at=timezone.now())
            reused = _build(rendered, tag, recorder)
            recorder.flush(status=Status.SUCCEEDED, reused=reused, finished_at=timezone.now())
            template = Template.objects.get(builds__pk=build_id)
            replaced = template.built_image
            Template.objects.filter(pk=template.pk).update(built_image=tag)
            if replaced != tag:
                forget_image(replaced)
    except BuildError as exc:
        failed_step = recorder.step_text if exc.in_step and recorder.steps else ""
        last_lines = list(recorder.tail) if failed_step else []
        recorder.write(f"\n{exc}\n")
        recorder.flush(
            status=Status.FAILED,
            error=str(exc),
            failed_step=failed_step,
            last_lines=last_lines,
            finished_at=timezone.now(),
        )
    except (TemplateBuild.DoesNotExist, Template.DoesNotExist):
        pass  # the template was deleted meanwhile
    except Exception as exc:
        log.exception("template build %s failed", build_id)
        with contextlib.suppress(Exception):
            recorder.flush(
                status=Status.FAILED,
                error=f"The build stopped on an unexpected error: {exc}",
                finished_at=timezone.now(),
            )
    finally:
        done.set()
        beat.join()
        connection.close()


def _heartbeat(build_id: str, done: threading.Event) -> None:
    """Touch the row while the build waits or runs silently (readers take a row left
    untouched for ``STALE_AFTER`` seconds for one whose process stopped)."""
    try:
        while not done.wait(HEARTBEAT):
            TemplateBuild.objects.filter(pk=build_id).update(updated_at=timezone.now())
    finally:
        connection.close()


def _client() -> docker.DockerClient:
    try:
        return docker.from_env(timeout=120)
    except docker.errors.DockerException as exc:
        raise BuildError(f"The container engine cannot be reached: {exc}") from None


def _build(rendered: str, tag: str, recorder: _Recorder) -> bool:
    """Build ``rendered`` as ``tag`` (True: an image of that tag existed already)."""
    client = _client()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        pass
    else:
        recorder.write(f"Using {tag}, built before from the same Dockerfile.\n")
        return True
    recorder.write(f"Building {tag} on {image_tag()}\n")
    _engine_build(rendered, tag, recorder, _build_network())
    recorder.write("Checking that the sandbox agent is unchanged\n")
    recorder.flush()
    try:
        _verify(client, tag)
    except BuildError:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, force=True)
        raise
    recorder.write(f"Built {tag}\n")
    return False


def _build_network() -> str:
    """Build steps are the template owner's code: they run on the sandboxes' network,
    behind its firewall, so a ``RUN`` reaches what a sandbox may and no more."""
    backend = get_backend()
    if not isinstance(backend, DockerBackend):
        raise BuildError("Template images are built only with the Docker backend.")
    try:
        return backend.build_network()
    except isolation.FirewallUnavailable as exc:
        raise BuildError(
            "The build cannot start: the firewall rules that keep build steps, like "
            f"sandboxes, off the host and private networks could not be installed ({exc})."
        ) from None


def _engine_build(rendered: str, tag: str, recorder: _Recorder, network: str) -> None:
    """``docker build`` of ``rendered`` (sent as the only file of the context) on
    ``network``, its output into the log; stopped after ``TEMPLATE_BUILD_TIMEOUT``
    seconds (the engine cancels a build whose client leaves, and removes its step's
    container)."""
    memory = str(int(settings.SANDBOX_MEMORY_LIMIT))
    command = ["docker", "build", "--rm", "--force-rm", "--network", network]
    command += ["--memory", memory, "--memory-swap", memory, "-t", tag, "-"]
    limit = float(settings.TEMPLATE_BUILD_TIMEOUT)
    try:
        process = subprocess.Popen(  # noqa: S603 - a fixed command; the text goes to stdin
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},  # its log names each step
            text=True,
            errors="replace",
        )
    except FileNotFoundError:
        raise BuildError(
            "The Docker command-line client (`docker`) is missing on the server, and "
            "template images are built with it: install it and start the build again."
        ) from None
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        process.kill()

    timer = threading.Timer(limit, stop)
    timer.start()
    last = ""
    try:
        assert process.stdin is not None and process.stdout is not None  # noqa: S101 (PIPE)
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(rendered)
            process.stdin.close()
        for line in process.stdout:
            recorder.write(line)
            last = line.strip() or last
        process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    where = recorder.step_text or "The build"
    if stopped.is_set():
        raise BuildError(
            f"{where} was stopped: the build took longer than {limit:g} s "
            "(TEMPLATE_BUILD_TIMEOUT).",
            in_step=True,
        )
    if process.returncode:
        if recorder.tail and recorder.tail[-1] == last:
            recorder.tail.pop()  # the engine's reason: it is in the message
        raise BuildError(f"{where} failed: {last or 'the engine gave no reason'}", in_step=True)


def forget_image(tag: str) -> None:
    """Remove a template image no template uses any more (kept while a container,
    a sandbox's or a pooled one, still uses it: the engine refuses then)."""
    if not tag or Template.objects.filter(built_image=tag).exists():
        return
    with contextlib.suppress(docker.errors.DockerException):
        _client().images.remove(tag)


# ------------------------------------------------------------------ verifying


class _Chunks(io.RawIOBase):
    """A file over the engine's archive stream (chunks as they arrive), so a large
    tree is hashed without holding it in memory."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.rest:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.rest = chunk
        size = min(len(buffer), len(self.rest))
        buffer[:size] = self.rest[:size]
        self.rest = self.rest[size:]
        return size


def _tree_digest(stream: Iterator[bytes]) -> str:
    """A digest of a tar stream's entries: names, kinds, owners, modes, link targets
    and contents (the engine's archive of a path, read without running the image),
    whatever order the engine lists them in."""
    entries: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BufferedReader(_Chunks(stream)), mode="r|") as tar:
        for member in tar:
            head = (member.name, member.type, member.mode, member.uid, member.gid)
            digest = hashlib.sha256(repr((*head, member.linkname)).encode())
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None:
                while block := handle.read(1 << 20):
                    digest.update(block)
            entries[member.name] = digest.digest()
    whole = hashlib.sha256()
    for name in sorted(entries):
        whole.update(entries[name])
    return whole.hexdigest()


def fingerprint(client: docker.DockerClient, image: str) -> dict[str, str]:
    """What the agent is and runs on in ``image``: a digest per checked path, and its
    start-up configuration. The image's programs are never run for this."""
    container = client.containers.create(image, command=["true"], network_disabled=True)
    try:
        out: dict[str, str] = {}
        for path in CHECKED:
            try:
                stream, _ = container.get_archive(path)
            except docker.errors.NotFound:
                out[path] = "absent"
                continue
            out[path] = _tree_digest(stream)
    finally:
        container.remove(force=True)
    config = client.images.get(image).attrs.get("Config") or {}
    for key in ("Entrypoint", "Cmd", "User", "WorkingDir"):
        out[f"config:{key}"] = repr(config.get(key))
    loaders = sorted(
        entry for entry in config.get("Env") or [] if _LOADER_ENV.match(entry.partition("=")[0])
    )
    out["config:Env"] = repr(loaders)
    return out


def _verify(client: docker.DockerClient, tag: str) -> None:
    """Refuse an image that grew too much (checked first: it is cheap, and bounds what
    the comparison reads) or that changed what the agent is or runs on."""
    base = image_tag()
    limit = int(settings.TEMPLATE_IMAGE_MAX_GROWTH)
    if limit:
        grown = int(client.images.get(tag).attrs.get("Size") or 0) - int(
            client.images.get(base).attrs.get("Size") or 0
        )
        if grown > limit:
            raise BuildError(
                f"The built image adds {grown // 2**20} MB to the sandbox image; at most "
                f"{limit // 2**20} MB (TEMPLATE_IMAGE_MAX_GROWTH) are allowed. "
                "The image was removed."
            )
    if base not in _fingerprints:
        _fingerprints[base] = fingerprint(client, base)
    expected = _fingerprints[base]
    found = fingerprint(client, tag)
    changed = [path for path, digest in expected.items() if found.get(path) != digest]
    if changed:
        raise BuildError(
            "The built image changes what the sandbox agent is or runs on "
            f"({', '.join(changed)}); a template may add to the sandbox image, never "
            "replace its agent. The image was removed."
        )


# ------------------------------------------------------------------ following


async def follow(build_id: str) -> AsyncIterator[tuple[str, Any]]:
    """The build's log from its start, then as it grows: ``("log", text)`` for whole
    lines, ``("progress", {step, steps, message})`` as each step begins (in order with
    the log), and ``("done", build)`` at the end."""
    position = 0
    while True:
        build = await TemplateBuild.objects.filter(pk=build_id).afirst()
        if build is None:
            return
        build = await _current(build)
        finished = build.status in (Status.SUCCEEDED, Status.FAILED)
        if position < build.log_dropped:
            yield "log", "[earlier lines dropped]\n"
            position = build.log_dropped
        text = build.log[position - build.log_dropped :]
        if not finished:
            text = text[: text.rfind("\n") + 1]
        position += len(text)
        for item in _split_steps(text):
            yield item
        if finished:
            yield "done", build
            return
        await asyncio.sleep(POLL)


def _split_steps(text: str) -> Iterator[tuple[str, Any]]:
    """``text`` as log pieces, with a progress item before each step's first line."""
    piece = ""
    for line in text.splitlines(keepends=True):
        match = _STEP.match(line.strip())
        if match:
            if piece:
                yield "log", piece
                piece = ""
            yield "progress", {"step": int(match[1]), "steps": int(match[2]), "message": match[3]}
        piece += line
    if piece:
        yield "log", piece
