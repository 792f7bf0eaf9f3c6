"""Engine and build failures are told apart from the texts the tools really print."""

from __future__ import annotations

import ast
import asyncio
import sys
from pathlib import Path

import docker.errors
import pytest
import requests

from sandboxes.backends.docker import DockerBackend
from sandboxes.engine_faults import (
    DISK_FULL,
    NO_DEBOOTSTRAP,
    NO_MIRROR,
    NOT_RUNNING,
    PERMISSION_DENIED,
    Fault,
    classify,
)
from sandboxes.errors import EngineUnavailable

ROOT = Path(__file__).resolve().parents[2]

# Printed by docker-py, the docker CLI, apt-get, debootstrap and container/build-base.sh.
REAL_TEXTS: list[tuple[str, Fault]] = [
    (
        "Error while fetching server API version: ('Connection aborted.', "
        "FileNotFoundError(2, 'No such file or directory'))",
        NOT_RUNNING,
    ),
    (
        "Error while fetching server API version: ('Connection aborted.', "
        "ConnectionRefusedError(111, 'Connection refused'))",
        NOT_RUNNING,
    ),
    (
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?",
        NOT_RUNNING,
    ),
    (
        "Error while fetching server API version: ('Connection aborted.', "
        "PermissionError(13, 'Permission denied'))",
        PERMISSION_DENIED,
    ),
    (
        "permission denied while trying to connect to the Docker daemon socket at "
        'unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.50/info": '
        "dial unix /var/run/docker.sock: connect: permission denied",
        PERMISSION_DENIED,
    ),
    (
        "debootstrap is missing, and no registry gave debian:bookworm-slim: install it "
        "with 'apt-get install -y debootstrap'",
        NO_DEBOOTSTRAP,
    ),
    ("container/build-base.sh: line 31: debootstrap: command not found", NO_DEBOOTSTRAP),
    (
        "failed to register layer: Error processing tar file(exit status 1): write "
        "/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1: no space left on device",
        DISK_FULL,
    ),
    ("E: You don't have enough free space in /var/cache/apt/archives/.", DISK_FULL),
    (
        "500 Server Error for http+docker://localhost/v1.41/containers/create: Internal "
        'Server Error ("mkdir /var/lib/docker/overlay2/abc-init: no space left on device")',
        DISK_FULL,
    ),
    (
        "Err:1 http://deb.debian.org/debian bookworm InRelease\n"
        "  Temporary failure resolving 'deb.debian.org'\n"
        "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  "
        "Temporary failure resolving 'deb.debian.org'\n"
        "E: Unable to locate package ca-certificates",
        NO_MIRROR,
    ),
    (
        "Err:2 http://deb.debian.org/debian bookworm/main amd64 git amd64 1:2.39.5-0\n"
        "  Could not connect to deb.debian.org:80 (151.101.2.132), connection timed out",
        NO_MIRROR,
    ),
    (
        "I: Retrieving InRelease\n"
        "E: Failed getting release file http://deb.debian.org/debian/dists/bookworm/Release",
        NO_MIRROR,
    ),
]


@pytest.mark.parametrize(("text", "fault"), REAL_TEXTS)
def test_each_real_text_names_its_cause(text: str, fault: Fault) -> None:
    assert classify(text) is fault


def test_the_causes_are_distinct_sentences_that_say_what_to_do() -> None:
    faults = {fault for _, fault in REAL_TEXTS}
    assert len({fault.message for fault in faults}) == len(faults) == 5
    assert NOT_RUNNING.message.startswith("dockerd is not running")
    assert PERMISSION_DENIED.message.startswith(
        "permission denied on the Docker socket (add yourself to the docker group or run as root)"
    )
    assert "apt-get install -y debootstrap" in NO_DEBOOTSTRAP.message
    assert DISK_FULL.message.startswith("no space left on device")
    assert NO_MIRROR.message.startswith("no network to the Debian mirror")


def test_unknown_failures_are_not_guessed() -> None:
    assert classify("E: Unable to locate package no-such-package") is None
    assert classify("Step 5/12 : RUN make\n/bin/sh: 1: make: not found") is None


@pytest.mark.parametrize(
    ("raised", "fault"),
    [
        (
            docker.errors.DockerException(
                "Error while fetching server API version: ('Connection aborted.', "
                "PermissionError(13, 'Permission denied'))"
            ),
            PERMISSION_DENIED,
        ),
        (
            requests.exceptions.ConnectionError(
                "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
            ),
            NOT_RUNNING,
        ),
    ],
)
def test_the_backend_says_which_engine_failure(raised: Exception, fault: Fault) -> None:
    def call() -> None:
        raise raised

    with pytest.raises(EngineUnavailable) as caught:
        asyncio.run(DockerBackend()._run(call))
    assert caught.value.code == "engine_unavailable" and caught.value.status == 503
    assert caught.value.message == fault.message


def test_a_full_disk_is_an_engine_failure_other_api_errors_are_not() -> None:
    response = requests.Response()
    response.status_code = 500
    full = docker.errors.APIError(
        "500 Server Error", response, explanation="write /var/lib/docker/x: no space left on device"
    )
    other = docker.errors.APIError("500 Server Error", response, explanation="bad parameter")
    backend = DockerBackend()

    def raising(exc: Exception) -> None:
        raise exc

    with pytest.raises(EngineUnavailable) as caught:
        asyncio.run(backend._run(raising, full))
    assert caught.value.message == DISK_FULL.message
    with pytest.raises(docker.errors.APIError):
        asyncio.run(backend._run(raising, other))


@pytest.mark.parametrize("module", ["ide/stages.py", "sandboxes/engine_faults.py"])
def test_what_runs_before_the_virtualenv_needs_only_the_standard_library(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or name == "sandboxes.engine_faults", name
