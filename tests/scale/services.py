"""PostgreSQL and Redis for the scale tier: real servers from the Debian packages
(``postgresql``, ``redis-server``; ``.ci/run`` installs them), each in a temporary
directory on a free loopback port, stopped and removed when the block ends, also when
a test failed. Missing binaries fail the tier with a sentence; it never skips.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis

from tests.server import free_port

INSTALL = "run .ci/run, which installs the Debian packages postgresql and redis-server"


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        pytest.fail(f"PostgreSQL is not installed (no initdb): {INSTALL}.", pytrace=False)
    return found[-1].parent


def _as_postgres(root: Path) -> list[str]:
    """PostgreSQL refuses to run as root: as root, hand it the folder and drop to its
    package's ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    shutil.chown(root, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres() -> Iterator[str]:
    """A fresh cluster on 127.0.0.1 with password authentication; yields the URL of an
    empty database ``sandbox_ide`` as ``DATABASE_URL`` takes it."""
    bindir = _postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="sbx-postgres-", dir="/tmp"))
    root.chmod(0o700)
    user = _as_postgres(root)
    password = secrets.token_hex(12)
    (root / "password").write_text(password + "\n")
    if user:
        shutil.chown(root / "password", "postgres", "postgres")
    data, port = root / "data", free_port()
    pg_ctl = [*user, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*user, str(bindir / "initdb"), "-D", str(data), "-U", "ide", "--no-sync"]
            + ["--auth=scram-sha-256", f"--pwfile={root / 'password'}", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
        subprocess.run(
            [*pg_ctl, "-l", str(root / "log"), "-w", "-t", "60", "-o", options, "start"],
            check=True,
            capture_output=True,
        )
        base = f"postgres://ide:{password}@127.0.0.1:{port}"
        with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
            connection.execute("CREATE DATABASE sandbox_ide")
        yield f"{base}/sandbox_ide"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[str]:
    """redis-server on 127.0.0.1 with nothing written to disk; yields its URL."""
    program = shutil.which("redis-server")
    if program is None:
        pytest.fail(f"Redis is not installed (no redis-server): {INSTALL}.", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="sbx-redis-", dir="/tmp"))
    port = free_port()
    with open(root / "log", "wb") as log:
        process = subprocess.Popen(
            [program, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
            + ["--appendonly", "no", "--dir", str(root), "--daemonize", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((root / "log").read_text(errors="replace")) from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)
