"""Why the container engine or an image build failed, as one sentence saying what to do.

The engine and the build tools report their failures as free text (a docker-py
exception, the docker CLI, apt-get, debootstrap); ``classify`` finds the known causes
in it. Standard library only: ``ide/stages.py`` reads the setup logs with it before
the virtualenv exists, and the Docker backend words its ``EngineUnavailable`` with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    kind: str
    message: str


NOT_RUNNING = Fault(
    "not_running",
    "dockerd is not running (nothing answers on the Docker socket): start it with "
    "`sudo systemctl start docker`, or `sudo dockerd &` where there is no systemd, wait "
    "until `docker info` works, and try again.",
)
PERMISSION_DENIED = Fault(
    "permission_denied",
    "permission denied on the Docker socket (add yourself to the docker group or run as "
    "root): `sudo usermod -aG docker $USER`, then log in again so that the group applies.",
)
NO_DEBOOTSTRAP = Fault(
    "no_debootstrap",
    "debootstrap is missing, and no registry gave debian:bookworm-slim to build on: "
    "install it with `sudo apt-get install -y debootstrap` (or make a registry "
    "reachable) and try again.",
)
DISK_FULL = Fault(
    "disk_full",
    "no space left on device: free space on the disk that holds Docker's data "
    "(`docker system df` shows what images, containers and the build cache use; "
    "`docker image prune` removes unused images) and try again.",
)
NO_MIRROR = Fault(
    "no_mirror",
    "no network to the Debian mirror: the image build fetches Debian packages from "
    "deb.debian.org (DEBIAN_MIRROR names another mirror for the base image); check "
    "the network, DNS or proxy of this machine and try again.",
)

# Most specific first: a full disk or an unreachable mirror can also make a build print
# words that look like an engine problem, never the other way round.
_PATTERNS: tuple[tuple[Fault, re.Pattern[str]], ...] = tuple(
    (fault, re.compile("|".join(patterns), re.IGNORECASE))
    for fault, patterns in (
        (DISK_FULL, [r"no space left on device", r"(have|not) enough free space", r"\bENOSPC\b"]),
        (NO_DEBOOTSTRAP, [r"debootstrap is missing", r"debootstrap: (command )?not found"]),
        (
            NO_MIRROR,
            [
                r"Temporary failure resolving",
                r"Could not resolve '",
                r"Failed getting release file",
                r"Failed to fetch https?://",
                r"Unable to connect to \S+:https?",
                r"Could not connect to \S+:(80|443|http)",
                r"Network is unreachable",
            ],
        ),
        (
            PERMISSION_DENIED,
            [
                r"PermissionError\(13",
                r"permission denied while trying to connect to the docker",
                r"docker\.sock: connect: permission denied",
            ],
        ),
        (
            NOT_RUNNING,
            [
                r"Cannot connect to the Docker daemon",
                r"Is the docker daemon running",
                r"FileNotFoundError\(2",
                r"ConnectionRefusedError",
                r"\[Errno 111\] Connection refused",
                r"docker\.sock: connect: (no such file or directory|connection refused)",
            ],
        ),
    )
)


def classify(text: str) -> Fault | None:
    """The known cause named in ``text`` (an error message, or the end of a log, which
    may hold one of our own sentences already), if any."""
    for fault, pattern in _PATTERNS:
        if fault.message in text or pattern.search(text):
            return fault
    return None
