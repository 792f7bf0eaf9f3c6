"""The sandbox image: its tag, and building it from container/.

The default tag carries a hash of everything the image is built from, so changing
the Dockerfile or the agent gives a new tag and ``make run`` rebuilds on its own,
while an unchanged tree reuses the image it has.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections import deque
from collections.abc import Callable
from functools import cache
from pathlib import Path

from django.conf import settings

from sandboxes.engine_faults import classify

CONTEXT = Path(settings.BASE_DIR) / "container"
BASE_SCRIPT = CONTEXT / "build-base.sh"


def context_files() -> list[Path]:
    return sorted(
        p
        for p in CONTEXT.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


@cache
def image_tag() -> str:
    """The image new sandboxes use (hashed once per process: the tree is fixed while
    a server runs)."""
    if settings.SANDBOX_IMAGE:
        return settings.SANDBOX_IMAGE
    digest = hashlib.sha256()
    for path in context_files():
        digest.update(str(path.relative_to(CONTEXT)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"sandbox-ide:{digest.hexdigest()[:12]}"


def image_exists(tag: str) -> bool:
    import docker.errors

    from sandboxes.backends.docker import DockerBackend

    try:
        DockerBackend().client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


class BuildFailed(Exception):
    """A build command failed; the message names the cause and what to do."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def run_build(command: list[str], log: Callable[[str], None]) -> None:
    """Run ``command``, passing its output to ``log`` line by line as it comes; on
    failure raise ``BuildFailed`` with the cause found in the output's last lines."""
    tail: deque[str] = deque(maxlen=60)
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except FileNotFoundError:
        raise BuildFailed(
            f"`{command[0]}` is missing: the image build runs the Docker command-line "
            "client; install it (e.g. `sudo apt-get install docker.io`) and try again."
        ) from None
    with process:
        assert process.stdout is not None  # noqa: S101 (stdout=PIPE)
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            log(tail[-1])
    if process.returncode:
        fault = classify("\n".join(tail))
        raise BuildFailed(
            fault.message
            if fault
            else f"`{Path(command[0]).name}` failed (exit status {process.returncode}): "
            "its last lines above say why."
        )


def ensure_base(log: Callable[[str], None] = print) -> None:
    """Make the base image (pulled or bootstrapped) unless it is there."""
    run_build([str(BASE_SCRIPT), settings.SANDBOX_BASE_IMAGE], log)


def build_image(tag: str, *, log: Callable[[str], None] = print, no_cache: bool = False) -> None:
    """Make the base image if needed, then build container/Dockerfile on it."""
    ensure_base(log)
    command = [
        "docker",
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE={settings.SANDBOX_BASE_IMAGE}",
        "--label",
        "sandbox-ide.image=true",
        "-t",
        tag,
        str(CONTEXT),
    ]
    if no_cache:
        command.insert(2, "--no-cache")
    log(f"building {tag}: {' '.join(command)}")
    run_build(command, log)
