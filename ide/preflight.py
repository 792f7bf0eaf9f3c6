"""Start-up checks, run by ``manage.py`` and ``python -m ide.server`` before anything else.

A bad setting, or a PostgreSQL (``DATABASE_URL``) or Redis (``REDIS_URL``) that does not
let us in, ends the process with one sentence naming the setting and the address it
tried, and exit status 1: not a driver's traceback from the first request, minutes
later, or a server that starts and then fails every WebSocket.

A server process also claims its database (``claim_server``): without ``REDIS_URL``
locks and counters live in the process's memory, so a second server process on the
same database is refused the same way rather than left to race the first.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

CONNECT_TIMEOUT = 5  # seconds; a firewall that drops packets must not hang start-up
UNREACHABLE = (
    "connection refused",
    "timeout",
    "timed out",
    "could not translate host name",
    "name or service not known",
    "no such file or directory",
    "network is unreachable",
    "no route to host",
)
# OPTIONS Django's PostgreSQL backend reads itself; the rest go to libpq.
DJANGO_ONLY_OPTIONS = {"pool", "isolation_level", "server_side_binding", "assume_role"}


def problem() -> str | None:
    """The first thing wrong with the settings or the services they name, as a sentence."""
    try:
        database = settings.DATABASES["default"]  # reading a setting imports ide/settings.py
    except ImproperlyConfigured as exc:
        return str(exc)
    return _database_problem(database) or _redis_problem(getattr(settings, "REDIS_URL", ""))


def check_or_exit() -> None:
    message = problem()
    if message:
        print(message, file=sys.stderr)
        raise SystemExit(1)


def _database_problem(database: Mapping[str, Any]) -> str | None:
    if database["ENGINE"] != "django.db.backends.postgresql":
        return None  # SQLite is a file in var/, created by migrate
    import psycopg

    host = str(database.get("HOST") or "")
    port = database.get("PORT") or 5432
    where = host if host.startswith("/") else f"{host}:{port}" if host else "the local socket"
    options = {
        k: v for k, v in (database.get("OPTIONS") or {}).items() if k not in DJANGO_ONLY_OPTIONS
    }
    try:
        psycopg.connect(
            dbname=database.get("NAME") or None,
            user=database.get("USER") or None,
            password=database.get("PASSWORD") or None,
            host=database.get("HOST") or None,
            port=database.get("PORT") or None,
            **{"connect_timeout": CONNECT_TIMEOUT, **options},
        ).close()
    except psycopg.Error as exc:
        reason = _pg_reason(exc)
        advice = (
            "start PostgreSQL there or correct the URL"
            if _unreachable(reason)
            else "correct the user, password or database name in the URL, or let them in"
        )
        return (
            f"Setting DATABASE_URL: cannot connect to PostgreSQL at {where}, database "
            f"{database.get('NAME')!r} ({reason}): {advice}."
        )
    return None


def _unreachable(reason: str) -> bool:
    """Nothing answered (as opposed to a server that answered no)."""
    return any(words in reason.lower() for words in UNREACHABLE)


def _pg_reason(exc: Exception) -> str:
    """libpq's cause without its preamble: 'Connection refused', 'password
    authentication failed for user "ide"', 'database "ide" does not exist'."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    reason = first.rsplit(" failed: ", 1)[-1]
    return " ".join(reason.removeprefix("FATAL:").split())


def _redis_problem(url: str) -> str | None:
    if not url:
        return None  # Channels' in-memory layer
    import redis

    parts = urlsplit(url)
    where = parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
        )
    except ValueError as exc:
        return f"Setting REDIS_URL is not a Redis URL ({exc}); use redis://HOST:PORT/DB."
    try:
        client.ping()
    except redis.RedisError as exc:
        found = re.search(r"connecting to \S+?\.? (.+)", str(exc))
        reason = (found[1] if found else str(exc) or type(exc).__name__).rstrip(".")
        advice = (
            "start Redis there or correct the URL"
            if _unreachable(reason)
            else "correct the password or database number in the URL"
        )
        return f"Setting REDIS_URL: cannot connect to Redis at {where} ({reason}): {advice}."
    finally:
        client.close()
    return None


# The claim of this server process on its database, held until it exits (the kernel
# or PostgreSQL lets go when it dies, however it dies).
_claims: list[object] = []
ADVISORY_KEY = 0x53_42_58_31  # "SBX1": pg_try_advisory_lock's key for one server


def claim_server() -> str | None:
    """Make this the only server process on its database unless Redis coordinates
    several; the sentence saying why not if another one serves it already."""
    if _claims:
        return None
    if getattr(settings, "REDIS_URL", "") or settings.ALLOW_UNCOORDINATED_SERVERS:
        return None
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return _claim_sqlite(Path(str(database["NAME"])))
    if database["ENGINE"] == "django.db.backends.postgresql":
        return _claim_postgres(database)
    return None


def claim_server_or_exit() -> None:
    message = claim_server()
    if message:
        print(message, file=sys.stderr)
        raise SystemExit(1)


def _claim_sqlite(path: Path) -> str | None:
    handle = open(f"{path}.server", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "another process"
        handle.close()
        return (
            f"Setting DATABASE_URL: server process {other} already serves the SQLite "
            f"database {path}, and several server processes need PostgreSQL "
            "(DATABASE_URL) and Redis (REDIS_URL): stop it, or move both settings."
        )
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    _claims.append(handle)
    return None


def _claim_postgres(database: Mapping[str, Any]) -> str | None:
    import psycopg

    options = {
        k: v for k, v in (database.get("OPTIONS") or {}).items() if k not in DJANGO_ONLY_OPTIONS
    }
    connection = psycopg.connect(
        dbname=database.get("NAME") or None,
        user=database.get("USER") or None,
        password=database.get("PASSWORD") or None,
        host=database.get("HOST") or None,
        port=database.get("PORT") or None,
        autocommit=True,
        **{"connect_timeout": CONNECT_TIMEOUT, **options},
    )
    row = connection.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY]).fetchone()
    if not row or not row[0]:
        connection.close()
        return (
            "Setting REDIS_URL is required for several server processes: another server "
            f"process already serves the PostgreSQL database {database.get('NAME')!r} "
            "without it. Set REDIS_URL to the same Redis in every server process."
        )
    _claims.append(connection)
    return None
