"""The project's test server: Daphne in a subprocess, on its own database and
container-name prefix, talking to the real Docker engine.

Integration and browser tests (and the SDK tests) use it as a user would: over HTTP
and WebSockets on loopback. Containers it creates carry the prefix, so the session
removes exactly those at the end, and prints their logs when a test failed.

Tests that need other settings start their own with ``running_server``:

    @pytest.fixture(scope="module")
    def school(sandbox_image: str) -> Iterator[LiveServer]:
        with running_server("sbxclass", {"CLASSROOM_WARM_POOL": "0"}) as server:
            yield server
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
MANAGE = [sys.executable, str(ROOT / "manage.py")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@dataclass
class LiveServer:
    url: str
    port: int
    env: dict[str, str]
    var_dir: Path
    prefix: str
    process: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [*MANAGE, *args], env=self.env, capture_output=True, text=True, cwd=ROOT, check=False
        )
        if result.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def token(self, username: str) -> str:
        if username not in self.tokens:
            out = self.manage("create_api_token", username, "--create-user")
            self.tokens[username] = out.strip().splitlines()[-1]
        return self.tokens[username]

    def client(self, username: str = "alice", **kwargs: object) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token(username)}"},
            timeout=120,
            **kwargs,  # type: ignore[arg-type]
        )

    def start(self) -> None:
        log = open(self.var_dir / "server.log", "ab")  # noqa: SIM115 - lives with the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ide.server",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "ide.asgi:application",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120  # generous: a loaded CI machine is slow
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/api/v1/openapi.json", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"the test server did not start: {self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        path = self.var_dir / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def containers(self) -> list[str]:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=sandbox-ide.prefix={self.prefix}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return out.split()


def _remove_prefixed(prefix: str) -> None:
    """Remove a test server's containers, volumes, network and firewall rules."""
    from sandboxes.backends import egress_rules
    from sandboxes.backends.docker import bridge_name
    from sandboxes.backends.isolation import release_bridge

    _remove_labelled(prefix)
    release_bridge(bridge_name(prefix))
    egress_rules.release_bridge(bridge_name(prefix))


def _remove_labelled(prefix: str) -> None:
    # containers before the images (snapshots') they use, and the volumes they mount
    for kind in ("container", "image", "volume", "network"):
        ids = subprocess.run(
            ["docker", kind, "ls", "-q", "--filter", f"label=sandbox-ide.prefix={prefix}"]
            + (["-a"] if kind in ("container", "image") else []),
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        if ids:
            flag = ["-f"] if kind in ("container", "image", "volume") else []
            subprocess.run(["docker", kind, "rm", *flag, *ids], capture_output=True, check=False)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Integration tests need a real engine: without one they fail, never skip."""
    if not docker_answers():
        pytest.fail(
            "No Docker engine answers: start dockerd (see .ci/run) - integration tests "
            "run against a real engine and do not skip.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def sandbox_image(docker_engine: None) -> str:
    result = subprocess.run([*MANAGE, "build_sandbox_image"], cwd=ROOT, check=False)
    if result.returncode:
        pytest.fail("building the sandbox image failed", pytrace=False)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ide.settings")
    from sandboxes.images import image_tag

    image_tag.cache_clear()  # settings may have been overridden by earlier tests
    tag = image_tag()
    # Servers started by the tests use exactly this image, even if container/ changes
    # while the session runs.
    os.environ["SANDBOX_IMAGE"] = tag
    return tag


def _server_env(var_dir: Path, port: int, prefix: str, extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.pop("DATABASE_URL", None)  # SQLite in var_dir unless these settings name one
    env.update(
        {
            "SANDBOX_IDE_VAR_DIR": str(var_dir),
            "SANDBOX_NAME_PREFIX": prefix,
            "SECRET_KEY": secrets.token_urlsafe(32),
            "ALLOWED_HOSTS": "localhost,127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "DJANGO_SETTINGS_MODULE": "ide.settings",
            **extra,
        }
    )
    return env


def make_server(prefix: str, extra_env: Mapping[str, str] | None = None) -> LiveServer:
    """A migrated server, not started; ``running_server`` also starts and cleans up."""
    var_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp"))
    port = free_port()
    env = _server_env(var_dir, port, prefix, extra_env or {})
    server = LiveServer(
        url=f"http://127.0.0.1:{port}", port=port, env=env, var_dir=var_dir, prefix=prefix
    )
    server.manage("migrate", "--noinput", "-v0")
    return server


@contextmanager
def running_server(name: str, settings: Mapping[str, str] | None = None) -> Iterator[LiveServer]:
    """A live server with these settings (environment variables) on the real engine,
    its prefix ``name`` plus a random suffix; stopped at the end, its containers,
    volumes, network, firewall rules and files removed."""
    server = make_server(f"{name}-{secrets.token_hex(3)}", settings)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        _remove_prefixed(server.prefix)
        shutil.rmtree(server.var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def server(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxtest") as server:
        yield server


@pytest.fixture(scope="session")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client("alice") as client:
        yield client


@pytest.fixture(scope="session")
def shared_sandbox(api: httpx.Client) -> dict[str, object]:
    """One running sandbox reused by tests that only run commands in it."""
    response = api.post("/sandboxes", json={"name": "shared", "keep_alive": True})
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when != "call" or not report.failed:
        return report
    servers = {
        name: value
        for name, value in getattr(item, "funcargs", {}).items()
        if isinstance(value, LiveServer)
    }
    for name, server in servers.items():
        report.sections.append((f"test server log ({name})", server.log_tail()))
        for container in server.containers()[:5]:
            logs = subprocess.run(
                ["docker", "logs", "--tail", "20", container], capture_output=True, text=True
            )
            report.sections.append((f"container {container}", logs.stdout + logs.stderr))
    return report
