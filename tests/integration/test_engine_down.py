"""Engine failures named by their cause: from the tools at setup time and from the API."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandboxes.engine_faults import NO_DEBOOTSTRAP, NO_MIRROR, NOT_RUNNING, PERMISSION_DENIED
from tests.server import ROOT, running_server

NO_ENGINE = {"DOCKER_HOST": "unix:///tmp/no-docker-here.sock"}


def manage(*args: str, env: dict[str, str], prefix: list[str] | None = None) -> str:
    """Run manage.py, expect it to fail with one sentence on stderr, return that."""
    result = subprocess.run(
        [*(prefix or []), sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip()


def path_without(program: str) -> str:
    """$PATH without the directories that hold ``program``."""
    return os.pathsep.join(
        folder
        for folder in os.environ["PATH"].split(os.pathsep)
        if not (Path(folder) / program).exists()
    )


@pytest.fixture
def denied_socket(tmp_path: Path) -> Iterator[Path]:
    """A listening socket nobody but its owner (not us) may connect to."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        os.chown(path, 65534, 65534)
        path.chmod(0o600)
        yield path


def test_check_engine_says_dockerd_is_not_running() -> None:
    message = manage("check_engine", env=NO_ENGINE)
    assert message == NOT_RUNNING.message
    assert message.startswith("dockerd is not running") and "systemctl start docker" in message


def test_check_engine_says_permission_denied_on_the_socket(denied_socket: Path) -> None:
    # As root without the capabilities that bypass file modes, as a user outside the
    # socket's group would be.
    drop = "-dac_override,-dac_read_search"
    message = manage(
        "check_engine",
        env={"DOCKER_HOST": f"unix://{denied_socket}"},
        prefix=["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"],
    )
    assert message == PERMISSION_DENIED.message
    assert message.startswith(
        "permission denied on the Docker socket (add yourself to the docker group or run as root)"
    )


def test_the_image_build_says_debootstrap_is_missing(docker_engine: None) -> None:
    assert shutil.which("debootstrap", path=path_without("debootstrap")) is None
    message = manage(
        "build_sandbox_image",
        env={
            "SANDBOX_IMAGE": "sbxtest-missing-image:none",
            "SANDBOX_BASE_IMAGE": "sbxtest-missing-base:none",
            "SANDBOX_BASE_FROM_REGISTRY": "no",
            "PATH": path_without("debootstrap"),
        },
    )
    assert message == f"CommandError: {NO_DEBOOTSTRAP.message}"


def test_the_image_build_says_the_debian_mirror_is_unreachable(docker_engine: None) -> None:
    message = manage(
        "build_sandbox_image",
        env={
            "SANDBOX_IMAGE": "sbxtest-missing-image:none",
            "SANDBOX_BASE_IMAGE": "sbxtest-missing-base:none",
            "SANDBOX_BASE_FROM_REGISTRY": "no",
            "DEBIAN_MIRROR": "http://127.0.0.1:9/debian",  # nothing listens on port 9
        },
    )
    assert message == f"CommandError: {NO_MIRROR.message}"


def test_api_answers_503_saying_dockerd_is_not_running(docker_engine: None) -> None:
    with running_server("sbxtest-noengine", NO_ENGINE) as server:
        with server.client("alice") as api:
            response = api.post("/sandboxes", json={"name": "x"})
        assert response.status_code == 503
        assert response.json() == {
            "error": {"code": "engine_unavailable", "message": NOT_RUNNING.message}
        }
        listing = httpx.get(
            server.url + "/api/v1/sandboxes",
            headers={"Authorization": f"Bearer {server.token('alice')}"},
        )
        assert listing.status_code == 200  # what needs no engine still works
