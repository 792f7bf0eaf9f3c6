"""What ``make run`` prints: one line per stage, the closing note, and on failure the
stage, the end of its log and what to do (ide/stages.py, run as ``make`` runs it)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pexpect

from sandboxes.engine_faults import NO_DEBOOTSTRAP, NOT_RUNNING
from tests.server import ROOT, free_port

SYSTEM_PYTHON = shutil.which("python3") or "python3"
STAGES = ["virtualenv", "dependencies", "database", "engine check", "base image"]


def stage_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A throwaway database and log folder, and a prefix no other server uses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.pop("DATABASE_URL", None)
    env.update(
        SANDBOX_IDE_VAR_DIR=str(tmp_path / "var"),
        SANDBOX_NAME_PREFIX=f"sbxtest-stages-{secrets.token_hex(3)}",
        LOG_LEVEL="WARNING",
        **extra,
    )
    return env


def setup(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SYSTEM_PYTHON, "-m", "ide.stages", "setup", "--logs", str(tmp_path / "logs")],
        cwd=ROOT,
        env=stage_env(tmp_path, **extra),
        capture_output=True,
        text=True,
    )


def test_a_failing_stage_shows_the_end_of_its_log_and_what_to_do(tmp_path: Path) -> None:
    result = setup(tmp_path, DOCKER_HOST="unix:///tmp/no-docker-here.sock")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "\033" not in result.stdout  # no terminal: plain lines
    for name in ["virtualenv", "dependencies", "database"]:
        assert any(line.startswith("[ok]") and f" {name} " in line for line in lines), name
    failed = next(i for i, line in enumerate(lines) if line.startswith("[FAIL]"))
    assert " engine check " in lines[failed]
    log = tmp_path / "logs" / "engine-check.log"
    assert lines[failed + 1] == f"--- the last 3 lines of {log} ---"
    assert lines[failed + 2].strip().endswith("manage.py check_engine")
    assert lines[failed + 3].strip() == NOT_RUNNING.message
    assert lines[failed + 4].strip() == "(exit status 1)"
    assert lines[-1] == f"What to do: {NOT_RUNNING.message}"
    assert not any(" base image " in line for line in lines)  # stopped there
    assert NOT_RUNNING.message in log.read_text()


def test_a_failing_image_build_names_a_missing_debootstrap(tmp_path: Path) -> None:
    path = os.pathsep.join(
        folder
        for folder in os.environ["PATH"].split(os.pathsep)
        if not (Path(folder) / "debootstrap").exists()
    )
    result = setup(
        tmp_path,
        SANDBOX_IMAGE="sbxtest-missing-image:none",
        SANDBOX_BASE_IMAGE="sbxtest-missing-base:none",
        SANDBOX_BASE_FROM_REGISTRY="no",
        PATH=path,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("[ok]") and " engine check " in line for line in lines)
    assert any(line.startswith("[FAIL]") and " base image " in line for line in lines)
    assert lines[-1] == f"What to do: {NO_DEBOOTSTRAP.message}"
    assert "debootstrap is missing" in (tmp_path / "logs" / "base-image.log").read_text()


def test_make_run_on_a_terminal_ends_with_the_url_that_serves(
    tmp_path: Path, sandbox_image: str
) -> None:
    port = free_port()
    child = pexpect.spawn(
        SYSTEM_PYTHON,
        ["-m", "ide.stages", "run", "--port", str(port), "--logs", str(tmp_path / "logs")],
        cwd=str(ROOT),
        env=stage_env(tmp_path),
        encoding="utf-8",
        timeout=300,
        dimensions=(40, 160),
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        child.expect_exact(f"Open {url}\r\n")
        printed = child.before.replace("\r\n", "\n")
        lines = [line.rpartition("\r\033[K")[2] for line in printed.rstrip("\n").split("\n")]
        for name in [*STAGES, "sandbox image", "serving"]:
            assert sum(bool(re.match(rf"\[ok\] +{name} ", line)) for line in lines) == 1, name
        assert "\r\033[K[..]" in printed  # progress updated in place while stages work
        assert f"sign up at {url}accounts/signup/" in printed
        assert "manage.py create_api_token NAME --create-user" in printed
        assert len(lines) + 1 <= 30
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(url + "accounts/signup/")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.5)
        assert response.status_code == 200
    finally:
        child.terminate(force=True)
