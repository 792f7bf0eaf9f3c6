"""Several server processes behind nginx: what the scale tier and ``make bench scale``
run the product on.

Each process is ``python -m ide.server`` (Daphne) on a port of its own, with the same
settings as the others: one PostgreSQL database, one Redis, one ``SECRET_KEY``, one
var directory (the agents' sockets), one container-name prefix. nginx runs from the
shipped ``deploy/nginx/`` configuration in front of them (tests/scale/nginx.py).

``Cluster.front`` is a ``LiveServer`` whose URL is nginx's, so the integration suite's
helpers (API clients, tokens, terminals, previews) work through the load balancer
unchanged; ``Cluster.processes`` are the servers behind it, to kill and revive.
"""

from __future__ import annotations

import secrets
import shutil
import signal
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.scale.nginx import Nginx, nginx
from tests.server import LiveServer, _remove_prefixed, free_port, make_server

PREVIEW_DOMAIN = "preview.localhost"


@dataclass
class Cluster:
    front: LiveServer
    processes: list[LiveServer]
    balancer: Nginx

    def address(self, process: LiveServer) -> str:
        return f"127.0.0.1:{process.port}"

    def process_at(self, address: str) -> LiveServer:
        """The process listening at ``address`` (as ``X-Upstream`` names it)."""
        return next(process for process in self.processes if self.address(process) == address)

    def kill(self, process: LiveServer) -> None:
        """Lose a process as a crash would: SIGKILL, no chance to close anything."""
        assert process.process is not None
        process.process.send_signal(signal.SIGKILL)
        process.process.wait(30)

    def log_tail(self) -> str:
        return self.processes[0].log_tail() + "\n--- nginx\n" + self.balancer.error_log()


def fresh_database(url: str) -> str:
    """A new, empty database in the PostgreSQL cluster of ``url``: each cluster of
    processes has its own, as each test server has its own SQLite file."""
    name = f"sbx_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def cluster(
    name: str,
    database_url: str,
    redis_url: str,
    count: int = 2,
    settings: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """``count`` processes behind nginx, on a fresh database; all stopped at the end,
    their containers, volumes, network and files removed."""
    first = make_server(
        f"{name}-{secrets.token_hex(3)}",
        {
            "DATABASE_URL": fresh_database(database_url),
            "REDIS_URL": redis_url,
            "PREVIEW_DOMAIN": PREVIEW_DOMAIN,
            **(settings or {}),
        },
    )
    processes = [first] + [
        LiveServer(
            url=f"http://127.0.0.1:{port}",
            port=port,
            env=dict(first.env),
            var_dir=first.var_dir,
            prefix=first.prefix,
            tokens=first.tokens,
        )
        for port in (free_port() for _ in range(count - 1))
    ]
    try:
        with ExitStack() as stack:
            for process in processes:
                stack.callback(process.stop)
                process.start()
            balancer = stack.enter_context(
                nginx([f"127.0.0.1:{process.port}" for process in processes], PREVIEW_DOMAIN)
            )
            front = LiveServer(
                url=balancer.url,
                port=balancer.port,
                env=first.env,
                var_dir=first.var_dir,
                prefix=first.prefix,
                tokens=first.tokens,
            )
            yield Cluster(front=front, processes=processes, balancer=balancer)
    finally:
        _remove_prefixed(first.prefix)
        shutil.rmtree(first.var_dir, ignore_errors=True)
