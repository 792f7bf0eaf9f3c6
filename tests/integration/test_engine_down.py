"""Without a Docker engine: one clear sentence from the tools, 503 from the API."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx

from tests.server import ROOT, running_server

NO_ENGINE = {"DOCKER_HOST": "unix:///tmp/no-docker-here.sock"}


def test_check_engine_says_how_to_start_docker() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check_engine"],
        cwd=ROOT,
        env={**os.environ, **NO_ENGINE},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "Traceback" not in result.stderr and len(message.splitlines()) == 1
    assert "No Docker engine answers" in message and "dockerd" in message


def test_api_answers_503_when_the_engine_is_down(docker_engine: None) -> None:
    with running_server("sbxtest-noengine", NO_ENGINE) as server:
        with server.client("alice") as api:
            response = api.post("/sandboxes", json={"name": "x"})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "engine_unavailable" and "docker" in error["message"].lower()
        listing = httpx.get(
            server.url + "/api/v1/sandboxes",
            headers={"Authorization": f"Bearer {server.token('alice')}"},
        )
        assert listing.status_code == 200  # what needs no engine still works
