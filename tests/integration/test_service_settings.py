"""A database or Redis that does not answer, and settings that do not go together, stop
``manage.py``, the server and ``make run`` at start-up with one sentence naming the
setting and the address tried (ide/preflight.py): exit status 1, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_make_run import SYSTEM_PYTHON
from tests.server import ROOT, free_port

SERVER = [sys.executable, "-m", "ide.server", "-b", "127.0.0.1", "ide.asgi:application"]
MIGRATE = [sys.executable, "manage.py", "migrate", "--noinput"]


def refused(command: list[str], tmp_path: Path, **settings: str) -> str:
    """Run ``command`` with these settings (and no others of these kinds); expect one
    sentence on stderr and exit status 1; return the sentence."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY") and not k.startswith("PYTEST")
    }
    env.update(SANDBOX_IDE_VAR_DIR=str(tmp_path / "var"), **settings)
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", [MIGRATE, SERVER], ids=["migrate", "server"])
def test_postgres_that_does_not_answer(command: list[str], tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    message = refused(
        [*command, "-p", str(free_port())] if command is SERVER else command,
        tmp_path,
        DATABASE_URL=f"postgres://ide:secret@127.0.0.1:{port}/ide",
        SECRET_KEY="k" * 50,
    )
    assert message == (
        f"Setting DATABASE_URL: cannot connect to PostgreSQL at 127.0.0.1:{port}, database "
        "'ide' (Connection refused): start PostgreSQL there or correct the URL."
    )
    assert "secret" not in message  # the password is not repeated


@pytest.mark.parametrize("command", [MIGRATE, SERVER], ids=["migrate", "server"])
def test_redis_that_does_not_answer(command: list[str], tmp_path: Path) -> None:
    port = free_port()
    message = refused(
        [*command, "-p", str(free_port())] if command is SERVER else command,
        tmp_path,
        REDIS_URL=f"redis://:secret@127.0.0.1:{port}/0",
    )
    assert message == (
        f"Setting REDIS_URL: cannot connect to Redis at 127.0.0.1:{port} (Connection "
        "refused): start Redis there or correct the URL."
    )


def test_redis_url_that_is_not_one(tmp_path: Path) -> None:
    message = refused(MIGRATE, tmp_path, REDIS_URL="http://127.0.0.1:6379")
    assert message.startswith("Setting REDIS_URL is not a Redis URL (")
    assert message.endswith("use redis://HOST:PORT/DB.")


def test_a_shared_database_needs_secret_key(tmp_path: Path) -> None:
    message = refused(MIGRATE, tmp_path, DATABASE_URL="postgres://ide@127.0.0.1:5432/ide")
    assert message.startswith(
        "Setting SECRET_KEY is required when DATABASE_URL is not SQLite (every server "
        "process on a shared database must sign with the same key)"
    )
    assert not (tmp_path / "var" / "secret_key").exists()


def test_make_run_says_which_setting_and_where(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("PYTEST")
    }
    env.update(SANDBOX_IDE_VAR_DIR=str(tmp_path / "var"), REDIS_URL=f"redis://127.0.0.1:{port}")
    result = subprocess.run(
        [SYSTEM_PYTHON, "-m", "ide.stages", "run", "--port", str(free_port())]
        + ["--logs", str(tmp_path / "logs")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    sentence = (
        f"Setting REDIS_URL: cannot connect to Redis at 127.0.0.1:{port} (Connection "
        "refused): start Redis there or correct the URL."
    )
    lines = result.stdout.splitlines()
    assert any(line.startswith("[FAIL] database") for line in lines), result.stdout
    assert lines[-1] == f"What to do: {sentence}"
    assert "Traceback" not in result.stdout
