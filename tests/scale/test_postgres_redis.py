"""The product on PostgreSQL (``DATABASE_URL``) and Redis (``REDIS_URL``: the
channel layer and what server processes share): a live server on real ones, used
as a user would, end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from tests.integration.test_engine_down import path_without
from tests.integration.test_service_settings import MIGRATE, refused
from tests.integration.test_terminals import Screen, open_terminal
from tests.integration.test_viewer_previews import browser_of
from tests.scale.services import postgres, redis_server
from tests.server import LiveServer, running_server


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with postgres() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def shared(sandbox_image: str, database_url: str, redis_url: str) -> Iterator[LiveServer]:
    settings = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    with running_server("sbxscale", settings) as server:
        yield server


def test_a_sandbox_lives_its_whole_life_on_postgres_and_redis(
    shared: LiveServer, database_url: str, redis_url: str
) -> None:
    with shared.client("alice") as api:
        box = api.post("/sandboxes", json={"name": "on-postgres"})
        assert box.status_code == 201, box.text
        sid = box.json()["id"]

        out = api.post(f"/sandboxes/{sid}/exec", json={"command": "echo $((6 * 7))"}).json()
        assert out["stdout"] == "42\n" and out["exit_code"] == 0

        put = api.put(
            f"/sandboxes/{sid}/files/content", params={"path": "notes.txt"}, content=b"kept\n"
        )
        assert put.status_code in (200, 201), put.text

        with open_terminal(shared, {"id": sid}, "main") as ws:
            screen = Screen(ws)
            ws.send(b"cat notes.txt; echo done-$((1 + 1))\n")
            screen.until(b"kept\r\ndone-2")

        # A command takes its place under SANDBOX_MAX_EXECS in Redis, shared by every
        # server process (sandboxes/coordination/).
        before = _redis_commands(redis_url)
        assert api.post(f"/sandboxes/{sid}/exec", json={"command": "true"}).status_code == 200
        assert _redis_commands(redis_url) > before

        slept = api.post(f"/sandboxes/{sid}/sleep", json={"tier": "stop"}).json()
        assert slept["status"] == "sleeping" and slept["sleep_tier"] == "stopped"
        assert api.post(f"/sandboxes/{sid}/wake").json()["status"] == "running"
        read = api.get(f"/sandboxes/{sid}/files/content", params={"path": "notes.txt"})
        assert read.content == b"kept\n"

    # What the API said lives in PostgreSQL, not in a SQLite file of the server's.
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT name, status FROM sandboxes_sandbox WHERE id = %s", [sid]
        ).fetchone()
    assert row == ("on-postgres", "running")
    assert not (shared.var_dir / "db.sqlite3").exists()


def test_a_server_restart_keeps_everything_in_postgres(shared: LiveServer) -> None:
    with shared.client("bob") as api:
        sid = api.post("/sandboxes", json={"name": "survivor"}).json()["id"]
        shared.restart()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = [s["id"] for s in api.get("/sandboxes").json()["sandboxes"]]
            if sid in listed:
                break
            time.sleep(0.2)
        assert sid in listed
        out = api.post(f"/sandboxes/{sid}/exec", json={"command": "echo back"}).json()
        assert out["stdout"] == "back\n"


def test_requests_borrow_pooled_connections(shared: LiveServer, database_url: str) -> None:
    """Every page request does its database work in a thread of its own, and the API
    hands its thread's connection back at each request: with the pool neither opens a
    PostgreSQL connection per request."""
    with browser_of(shared, "carol") as browser, shared.client("carol") as api:
        for _ in range(3):  # the pool opens what the server needs at all
            assert browser.get(shared.url + "/").status_code == 200
            assert api.get("/sandboxes").status_code == 200
        before = _sessions(database_url)
        for _ in range(20):
            assert browser.get(shared.url + "/").status_code == 200
            assert api.get("/sandboxes").status_code == 200
        assert _sessions(database_url) - before <= 2  # our own, and at most one more


def _sessions(url: str) -> int:
    """Connections PostgreSQL has accepted to the database so far."""
    with psycopg.connect(url) as connection:
        time.sleep(1.5)  # a backend reports its statistics at most once a second
        connection.execute("SELECT pg_stat_clear_snapshot()")
        row = connection.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _redis_commands(url: str) -> int:
    """Commands Redis has run so far for others than this checker (its own INFO, the
    handshake and ping of a connection do not count)."""
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    ours = {"cmdstat_info", "cmdstat_ping", "cmdstat_hello", "cmdstat_client", "cmdstat_select"}
    return sum(int(value["calls"]) for key, value in stats.items() if key not in ours)


def test_without_redis_installed_the_tier_fails_and_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", path_without("redis-server"))
    with pytest.raises(pytest.fail.Exception) as failed, redis_server():
        pass
    assert str(failed.value) == (
        "Redis is not installed (no redis-server): run .ci/run, which installs the Debian "
        "packages postgresql and redis-server."
    )


def test_a_wrong_password_is_named_at_start_up(database_url: str, tmp_path: Path) -> None:
    where = urlsplit(database_url)
    wrong = database_url.replace(f":{where.password}@", ":not-the-password@")
    message = refused(MIGRATE, tmp_path, DATABASE_URL=wrong, SECRET_KEY="k" * 50)
    assert message == (
        f"Setting DATABASE_URL: cannot connect to PostgreSQL at 127.0.0.1:{where.port}, "
        "database 'sandbox_ide' (password authentication failed for user \"ide\"): correct "
        "the user, password or database name in the URL, or let them in."
    )
