"""Several server processes on one PostgreSQL and one Redis: limits, locks, the reaper
and revocations hold across all of them, and losing Redis or a process keeps the
others serving (sandboxes/coordination/).

Two real server processes share the database, Redis, the engine and ``var/`` (as two
processes on one machine do); each has its own port and log.
"""

from __future__ import annotations

import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from websockets.sync.client import connect

from tests.integration.test_classroom import make_template
from tests.integration.test_terminals import Screen
from tests.integration.test_viewer_previews import login, set_password
from tests.scale.services import postgres
from tests.server import ROOT, LiveServer, _remove_prefixed, free_port, make_server

SERVE = [sys.executable, "-m", "ide.server", "-b", "127.0.0.1"]
PLAIN_DAPHNE = [sys.executable, "-m", "daphne", "-b", "127.0.0.1"]
UVICORN = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--lifespan", "on"]
MAX_EXECS, MAX_PER_USER, WARM_POOL = 2, 2, 2
PASS = re.compile(rb"reaper pass \(process (\d+)\)")


# --------------------------------------------------------------------------- services


class Redis:
    """redis-server on a fixed loopback port that a test may stop and start again."""

    def __init__(self) -> None:
        self.program = shutil.which("redis-server")
        if self.program is None:
            pytest.fail("Redis is not installed (no redis-server): run .ci/run.", pytrace=False)
        self.root = Path(tempfile.mkdtemp(prefix="sbx-redis-", dir="/tmp"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.root / "log", "ab") as log:
            self.process = subprocess.Popen(
                [str(self.program), "--bind", "127.0.0.1", "--port", str(self.port)]
                + ["--save", "", "--appendonly", "no", "--dir", str(self.root)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_for(self.answers, 30), (self.root / "log").read_text()

    def answers(self) -> bool:
        with _Ping(self.port) as ping:
            return ping()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[Redis]:
        """A started redis-server, stopped and its folder removed at the end."""
        service = cls()
        service.start()
        try:
            yield service
        finally:
            service.stop()
            shutil.rmtree(service.root, ignore_errors=True)

    def lease_holder(self) -> int | None:
        """The pid of the process holding the reaper lease, read from Redis."""
        with _Ping(self.port) as ping:
            keys = ping.command("KEYS", "*lease:reaper")
            value = ping.command("GET", keys.split()[-1]) if keys.strip() else ""
        found = re.search(r":(\d+):", value)
        return int(found[1]) if found else None


class _Ping:
    """Just enough of the Redis protocol for a test to poke at a server."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=2)

    def __enter__(self) -> _Ping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def __call__(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def command(self, *args: str) -> str:
        answer = self.client.execute_command(*args)
        if isinstance(answer, list):
            return " ".join(a.decode() for a in answer)
        return answer.decode() if isinstance(answer, bytes) else str(answer or "")


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# --------------------------------------------------------------------------- servers


@dataclass
class Process:
    """One server process of an installation: ``server`` holds what the processes
    share (environment, ``var/``, container prefix); each has its own port and log."""

    server: LiveServer
    name: str
    command: list[str]
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.server.var_dir / f"{self.name}.log"

    def start(self) -> None:
        self.port = self.port or free_port()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*self.command, "--port" if "uvicorn" in self.command else "-p"]
                + [str(self.port), "ide.asgi:application"],
                env=self.server.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        assert wait_for(self.answers, 120), self.log.read_text(errors="replace")[-3000:]

    def answers(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        try:
            return httpx.get(self.url + "/api/v1/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """As a crash would: no clean-up of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )

    def passes(self) -> list[int]:
        """The pids of the reaper passes this process's log shows, in order."""
        return [int(pid) for pid in PASS.findall(self.log.read_bytes())]


@contextmanager
def installation(
    name: str, settings: dict[str, str], commands: list[list[str]]
) -> Iterator[tuple[LiveServer, list[Process]]]:
    """Server processes (one per command) on the same database, Redis and ``var/``."""
    server = make_server(f"{name}-{secrets.token_hex(3)}", settings)
    processes = [Process(server, f"server-{i}", command) for i, command in enumerate(commands)]
    try:
        for process in processes:
            process.start()
        yield server, processes
    finally:
        for process in processes:
            process.stop()
        _remove_prefixed(server.prefix)
        shutil.rmtree(server.var_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with postgres() as url:
        yield url


@pytest.fixture(scope="module")
def redis_service() -> Iterator[Redis]:
    with Redis.running() as service:
        yield service


@pytest.fixture(scope="module")
def pair(
    sandbox_image: str, database_url: str, redis_service: Redis
) -> Iterator[tuple[LiveServer, list[Process]]]:
    settings = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_service.url,
        "SANDBOX_MAX_EXECS": str(MAX_EXECS),
        "SANDBOX_MAX_PER_USER": str(MAX_PER_USER),
        "SANDBOX_REAP_INTERVAL": "0.5",  # the reaper lease lasts 5 s
        "WARM_POOL_MAX_PER_USER": str(WARM_POOL),
        "CLASSROOM_WARM_POOL": "0",
        "LOG_LEVEL": "DEBUG",  # each reaper pass, with its pid, is logged at DEBUG
    }
    with installation("sbxpair", settings, [SERVE, SERVE]) as both:
        yield both


def sandbox(api: httpx.Client, name: str, **options: object) -> str:
    answer = api.post("/sandboxes", json={"name": name, **options})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def engine_paused(server: LiveServer, sandbox_id: str) -> bool:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Paused}}", f"{server.prefix}-{sandbox_id}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return out.strip() == "true"


# --------------------------------------------------------------------------- limits


def test_the_exec_cap_holds_across_processes(pair: tuple[LiveServer, list[Process]]) -> None:
    server, (a, b) = pair
    token = server.token("execs")
    with a.api(token) as on_a, b.api(token) as on_b:
        sid = sandbox(on_a, "busy", keep_alive=True)
        slow = {"command": "sleep 4; echo done"}
        with ThreadPoolExecutor(2) as pool:
            running = [
                pool.submit(api.post, f"/sandboxes/{sid}/exec", json=slow) for api in (on_a, on_b)
            ]
            time.sleep(1.5)  # both are running now, one through each process
            for api in (on_a, on_b):
                refused = api.post(f"/sandboxes/{sid}/exec", json={"command": "true"})
                assert refused.status_code == 429, refused.text
                assert refused.json()["error"]["code"] == "too_many_execs"
                assert f"already runs {MAX_EXECS} commands" in refused.json()["error"]["message"]
            assert all(r.result().json()["stdout"] == "done\n" for r in running)
        # Finished commands give their places back, in both processes.
        for api in (on_a, on_b):
            assert api.post(f"/sandboxes/{sid}/exec", json={"command": "true"}).status_code == 200


def test_creates_racing_on_both_processes_keep_the_per_user_cap(
    pair: tuple[LiveServer, list[Process]],
) -> None:
    server, (a, b) = pair
    token = server.token("racer")
    with a.api(token) as on_a, b.api(token) as on_b:
        names = [f"r{i}" for i in range(6)]
        with ThreadPoolExecutor(len(names)) as pool:
            answers = list(
                pool.map(
                    lambda i: (on_a, on_b)[i % 2].post("/sandboxes", json={"name": names[i]}),
                    range(len(names)),
                )
            )
        made = [r for r in answers if r.status_code == 201]
        assert len(made) == MAX_PER_USER, [r.text for r in answers]
        for refused in (r for r in answers if r.status_code != 201):
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "too_many_sandboxes"
        assert len(on_b.get("/sandboxes").json()["sandboxes"]) == MAX_PER_USER


def test_the_warm_pool_is_filled_once_not_once_per_process(
    pair: tuple[LiveServer, list[Process]],
) -> None:
    server, (a, b) = pair
    teacher = httpx.Client(
        base_url=a.url + "/api/v1",
        headers={"Authorization": f"Bearer {server.token('teacher')}"},
        timeout=120,
    )
    template = make_template(teacher, "pooled", warm_pool=0)
    # Courses with invite links, made through both processes: each asks for a fill,
    # and so does the reaper's pass, once the template wants sandboxes.
    server.manage(
        "shell",
        "-c",
        "from sandboxes.models import Template\n"
        f"Template.objects.filter(pk={template['id']!r}).update(warm_pool={WARM_POOL})\n",
    )
    for process in (a, b):
        with process.api(server.token("teacher")) as api:
            course = api.post("/courses", json={"name": process.name, "template": template["id"]})
            assert course.status_code == 201, course.text
            assert api.post(f"/courses/{course.json()['id']}/invites", json={}).status_code == 201
    most, full_since = 0, None
    deadline = time.monotonic() + 180
    while full_since is None or time.monotonic() - full_since < 8:
        assert time.monotonic() < deadline, "the pool was never filled"
        built = pool_sandboxes(server)
        most = max(most, built)
        if built >= WARM_POOL and full_since is None:
            full_since = time.monotonic()
        time.sleep(0.2)
    # Each sandbox the pool ever held exists once: no process built a second set
    # (that the caps would then have thrown away).
    assert most == WARM_POOL
    teacher.close()


def pool_sandboxes(server: LiveServer) -> int:
    code = (
        "from sandboxes.models import Sandbox\n"
        "print(Sandbox.objects.filter(owner__username='sandbox-pool').count())\n"
    )
    return int(server.manage("shell", "-c", code).strip().splitlines()[-1])


# --------------------------------------------------------------------------- the reaper


def test_one_reaper_at_a_time_and_the_lease_moves_when_its_holder_dies(
    pair: tuple[LiveServer, list[Process]], redis_service: Redis
) -> None:
    server, processes = pair
    assert wait_for(lambda: sum(len(p.passes()) for p in processes) >= 6)
    holder = redis_service.lease_holder()
    pids = {p.process.pid for p in processes if p.process}
    assert holder in pids
    before = {p.name: len(p.passes()) for p in processes}
    time.sleep(3)  # six more passes' worth
    ran = {p.name: p.passes()[before[p.name] :] for p in processes}
    assert [name for name, passes in ran.items() if passes] != []
    assert len([name for name, passes in ran.items() if passes]) == 1, ran

    dying = next(p for p in processes if p.process and p.process.pid == holder)
    survivor = next(p for p in processes if p is not dying)
    with survivor.api(server.token("reaped")) as api:
        sid = sandbox(api, "idle-later", sleep_after=600)
        api.post(f"/sandboxes/{sid}/exec", json={"command": "echo kept > /workspace/f"})
        dying.kill()
        # The survivor takes the lease once the dead holder's runs out (5 s) and
        # reaps: a sandbox made idle now is put to sleep by it.
        api.patch(f"/sandboxes/{sid}", json={"sleep_after": 1})
        assert wait_for(lambda: redis_service.lease_holder() == survivor.process.pid, 20)
        assert wait_for(lambda: api.get(f"/sandboxes/{sid}").json()["status"] == "sleeping", 20)
        # Requests through the survivor kept working, and the workspace is whole.
        out = api.post(f"/sandboxes/{sid}/exec", json={"command": "cat /workspace/f"})
        assert out.json()["stdout"] == "kept\n"
    dying.process = None
    dying.start()  # the installation has two processes again for the next tests


@pytest.mark.parametrize("command", [PLAIN_DAPHNE, UVICORN], ids=["daphne", "uvicorn"])
def test_the_reaper_runs_under_a_plain_asgi_server(sandbox_image: str, command: list[str]) -> None:
    settings = {"SANDBOX_REAP_INTERVAL": "0.3", "LOG_LEVEL": "DEBUG"}
    with installation("sbxasgi", settings, [command]) as (server, (process,)):
        with process.api(server.token("plain")) as api:
            sid = sandbox(api, "idle", sleep_after=1)
            assert wait_for(lambda: api.get(f"/sandboxes/{sid}").json()["status"] == "sleeping")
        assert process.passes()


def second_server(server: LiveServer) -> list[str]:
    """What a second server process on the same settings says, on stderr; it must
    end at once with exit status 1."""
    second = subprocess.run(
        [*SERVE, "-p", str(free_port()), "ide.asgi:application"],
        env=server.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode == 1, second
    return second.stderr.strip().splitlines()


def test_a_second_server_process_on_sqlite_is_refused(sandbox_image: str) -> None:
    with installation("sbxsolo", {}, [SERVE]) as (server, (first,)):
        assert first.process is not None
        assert second_server(server) == [
            f"Setting DATABASE_URL: server process {first.process.pid} already serves the "
            f"SQLite database {server.var_dir / 'db.sqlite3'}, and several server processes "
            "need PostgreSQL (DATABASE_URL) and Redis (REDIS_URL): stop it, or move both "
            "settings."
        ]
        assert first.answers()  # the first one serves on
        first.stop()
        first.start()  # and once it is gone, the next one starts


def test_a_second_server_process_on_postgres_without_redis_is_refused(
    sandbox_image: str, database_url: str
) -> None:
    # (No reaper: the database is the one the other tests' installation uses.)
    settings = {"DATABASE_URL": database_url, "SANDBOX_REAPER": "false"}
    with installation("sbxnoredis", settings, [SERVE]) as (server, (first,)):
        assert second_server(server) == [
            "Setting REDIS_URL is required for several server processes: another server "
            "process already serves the PostgreSQL database 'sandbox_ide' without it. Set "
            "REDIS_URL to the same Redis in every server process."
        ]
        assert first.answers()


def test_sleep_and_wake_racing_across_processes_never_leave_a_paused_sandbox_running(
    pair: tuple[LiveServer, list[Process]], redis_service: Redis
) -> None:
    server, processes = pair
    holder = redis_service.lease_holder()
    waker = next(p for p in processes if p.process and p.process.pid != holder)
    boxes: list[tuple[str, str]] = []  # (token, sandbox id)
    for user in ("insomniac-1", "insomniac-2", "insomniac-3"):
        token = server.token(user)
        with waker.api(token) as api:
            boxes += [(token, sandbox(api, f"nap-{i}", sleep_after=1)) for i in range(2)]
    wrong: list[str] = []
    stop = threading.Event()

    def wake_around_idle(token: str, sid: str, seed: int) -> None:
        """Wake the sandbox through the other process about when the reaper pauses it."""
        rng = random.Random(seed)  # noqa: S311 - timing, not secrets
        with waker.api(token) as api:
            while not stop.is_set():
                time.sleep(rng.uniform(1.0, 1.6))
                api.post(f"/sandboxes/{sid}/wake")

    def watch(token: str, sid: str) -> None:
        """Running in the database but paused in the engine, with no wake in between
        (a wake after a sleep moves ``last_active_at``)."""
        with waker.api(token) as api:
            while not stop.is_set():
                first = api.get(f"/sandboxes/{sid}").json()
                paused = engine_paused(server, sid)
                then = api.get(f"/sandboxes/{sid}").json()
                if (
                    paused
                    and first["status"] == then["status"] == "running"
                    and first["last_active_at"] == then["last_active_at"]
                ):
                    wrong.append(f"{sid} running in the database, paused in the engine")

    threads = [
        threading.Thread(target=wake_around_idle, args=(token, sid, seed))
        for seed, (token, sid) in enumerate(boxes)
    ]
    threads += [threading.Thread(target=watch, args=box) for box in boxes]
    for thread in threads:
        thread.start()
    time.sleep(40)
    stop.set()
    for thread in threads:
        thread.join()
    assert wrong == []
    # At rest every one of them is asleep in both places.
    for token, sid in boxes:
        with waker.api(token) as api:
            assert wait_for(lambda s=sid: api.get(f"/sandboxes/{s}").json()["status"] == "sleeping")
            assert wait_for(lambda s=sid: engine_paused(server, s))
            api.delete(f"/sandboxes/{sid}")


# --------------------------------------------------------------------------- revocation


def test_a_token_revoked_through_one_process_is_refused_by_the_other_at_once(
    pair: tuple[LiveServer, list[Process]],
) -> None:
    server, (a, b) = pair
    set_password(server, "revoker")
    token = server.token("revoker")
    with httpx.Client(follow_redirects=False, timeout=60) as browser, b.api(token) as on_b:
        assert on_b.get("/sandboxes").status_code == 200  # B has just verified it
        login(_as(server, a), browser, "revoker")
        page = browser.get(a.url + "/accounts/").text
        (token_id,) = re.findall(r"/accounts/tokens/(\d+)/revoke/", page)
        revoked = browser.post(
            f"{a.url}/accounts/tokens/{token_id}/revoke/",
            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": a.url + "/accounts/"},
        )
        assert revoked.status_code == 302, revoked.text
        refused = on_b.get("/sandboxes")
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "invalid_token"


def test_a_sandbox_deleted_through_one_process_is_gone_through_the_other_at_once(
    pair: tuple[LiveServer, list[Process]],
) -> None:
    """Each process keeps the sandbox rows it read (sandboxes/rows.py): a deletion
    anywhere must end them everywhere, not a TTL later."""
    server, (a, b) = pair
    token = server.token("deleter")
    with a.api(token) as on_a, b.api(token) as on_b:
        sid = sandbox(on_a, "doomed", keep_alive=True)
        changed = on_a.patch(f"/sandboxes/{sid}", json={"sleep_after": 900})
        assert changed.status_code == 200, changed.text
        for api in (on_b, on_a):  # both processes now hold the row
            ran = api.post(f"/sandboxes/{sid}/exec", json={"command": "true"})
            assert ran.status_code == 200, ran.text
        assert on_a.delete(f"/sandboxes/{sid}").status_code == 204
        gone = on_b.post(f"/sandboxes/{sid}/exec", json={"command": "true"})
        assert gone.status_code == 404, gone.text
        assert gone.json()["error"]["code"] == "not_found"


def test_a_session_logged_out_through_one_process_is_refused_by_the_other_at_once(
    pair: tuple[LiveServer, list[Process]],
) -> None:
    server, (a, b) = pair
    set_password(server, "leaver")
    with httpx.Client(follow_redirects=False, timeout=60) as browser:
        login(_as(server, a), browser, "leaver")
        assert browser.get(b.url + "/api/v1/sandboxes").status_code == 200
        out = browser.post(
            a.url + "/accounts/logout/",
            data={"csrfmiddlewaretoken": browser.cookies["csrftoken"]},
            headers={"Referer": a.url + "/"},
        )
        assert out.status_code == 302, out.text
        assert browser.get(b.url + "/api/v1/sandboxes").status_code == 401


def _as(server: LiveServer, process: Process) -> LiveServer:
    """The installation as seen through one process (what ``login`` needs)."""
    return LiveServer(process.url, process.port, server.env, server.var_dir, server.prefix)


# --------------------------------------------------------------------------- Redis lost


def test_redis_stopped_and_restarted_mid_run(
    pair: tuple[LiveServer, list[Process]], redis_service: Redis
) -> None:
    server, (a, b) = pair
    token = server.token("through-outage")
    with a.api(token) as on_a, b.api(token) as on_b:
        sid = sandbox(on_a, "survivor", keep_alive=True)
        assert on_a.put(
            f"/sandboxes/{sid}/files/content", params={"path": "kept.txt"}, content=b"before\n"
        ).status_code in (200, 201)
        redis_service.stop()
        try:
            # Both processes keep serving: sandboxes made, commands run, files kept.
            other = sandbox(on_b, "made-without-redis", keep_alive=True)
            for api, box in ((on_a, sid), (on_b, sid), (on_b, other)):
                out = api.post(f"/sandboxes/{box}/exec", json={"command": "echo up"})
                assert out.status_code == 200 and out.json()["stdout"] == "up\n", out.text
            read = on_b.get(f"/sandboxes/{sid}/files/content", params={"path": "kept.txt"})
            assert read.content == b"before\n"
            # Terminals too: WebSockets do not go through the channel layer.
            for process in (a, b):
                terminal = f"ws://127.0.0.1:{process.port}/ws/sandboxes/{sid}/terminals/outage"
                with connect(f"{terminal}?token={token}", open_timeout=60) as ws:
                    ws.send(b"echo typed-$((6*7))\n")
                    Screen(ws).until(b"typed-42")
            # Each process still holds the exec cap on its own.
            with ThreadPoolExecutor(MAX_EXECS) as pool:
                slow = {"command": "sleep 3"}
                running = [
                    pool.submit(on_a.post, f"/sandboxes/{sid}/exec", json=slow)
                    for _ in range(MAX_EXECS)
                ]
                time.sleep(1.5)
                refused = on_a.post(f"/sandboxes/{sid}/exec", json={"command": "true"})
                assert refused.status_code == 429, refused.text
                assert all(r.result().status_code == 200 for r in running)
        finally:
            redis_service.start()
        # Redis is back (empty): the cap holds across both processes again.
        with ThreadPoolExecutor(MAX_EXECS) as pool:
            slow = {"command": "sleep 4"}
            running = [
                pool.submit(api.post, f"/sandboxes/{sid}/exec", json=slow) for api in (on_a, on_b)
            ]
            time.sleep(2.5)  # past the one second a process waits before asking Redis again
            refused = on_b.post(f"/sandboxes/{sid}/exec", json={"command": "true"})
            assert refused.status_code == 429, refused.text
            assert all(r.result().status_code == 200 for r in running)
        read = on_a.get(f"/sandboxes/{sid}/files/content", params={"path": "kept.txt"})
        assert read.content == b"before\n"
    for process in (a, b):
        assert "Redis (REDIS_URL) does not answer" in process.log.read_text(errors="replace")
