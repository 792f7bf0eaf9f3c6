"""Terminals (docs/api.md, Terminals) against the live server and real containers,
over real WebSockets, as a browser tab or a program would use them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pyte
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from container.agent.screens import UNPARSEABLE
from tests.server import LiveServer


def ws_url(server: LiveServer, path: str) -> str:
    return server.url.replace("http://", "ws://", 1) + path


def open_terminal(
    server: LiveServer,
    sandbox: dict,
    name: str,
    query: str = "",
    user: str = "alice",
    **kwargs: Any,
) -> ClientConnection:
    url = ws_url(
        server,
        f"/ws/sandboxes/{sandbox['id']}/terminals/{name}?token={server.token(user)}{query}",
    )
    return connect(url, open_timeout=60, max_size=None, compression=None, **kwargs)


class Screen:
    """What a client has seen: output bytes, and JSON events in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.output = b""
        self.events: list[dict] = []

    def until(self, needle: bytes, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {needle!r} in {self.output[-500:]!r}")
            message = self.ws.recv(timeout=remaining)
            if isinstance(message, bytes):
                self.output += message
            else:
                self.events.append(json.loads(message))
        return self.output

    def event(self, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while not self.events:
            message = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(message, bytes):
                self.output += message
            else:
                self.events.append(json.loads(message))
        return self.events.pop(0)


def terminals_of(api: httpx.Client, sandbox: dict) -> dict[str, dict]:
    response = api.get(f"/sandboxes/{sandbox['id']}/terminals")
    assert response.status_code == 200, response.text
    return {t["name"]: t for t in response.json()["terminals"]}


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_echo_round_trip_and_resize(server: LiveServer, shared_sandbox: dict) -> None:
    with open_terminal(server, shared_sandbox, "echo", "&cols=100&rows=30") as ws:
        screen = Screen(ws)
        ws.send(b"echo round-$((20+22))-trip\n")
        screen.until(b"round-42-trip")
        ws.send(b"stty size; echo $TERM; pwd\n")
        screen.until(b"30 100\r\nxterm-256color\r\n/workspace\r\n")
        ws.send(json.dumps({"type": "resize", "cols": 132, "rows": 43}))
        ws.send(b"stty size\n")
        screen.until(b"43 132\r\n")
        ws.send(b"tty; test -t 0 && echo interactive-$((1+1))\n")
        screen.until(b"interactive-2")  # a real terminal, with job control
        assert b"/dev/pts/" in screen.output


def test_reattach_replays_output_and_keeps_shell_state(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    with open_terminal(server, shared_sandbox, "keep") as ws:
        screen = Screen(ws)
        ws.send(b"export KEPT=yes-kept; mkdir -p /workspace/kdir && cd /workspace/kdir\n")
        ws.send(b"echo marker-$((3*3))\n")
        screen.until(b"marker-9")
    # The tab is gone (the server notices within moments); the shell is not.
    deadline = time.monotonic() + 5
    while terminals_of(api, shared_sandbox)["keep"]["clients"] != 0:
        assert time.monotonic() < deadline, "the closed client is still attached"
        time.sleep(0.05)
    with open_terminal(server, shared_sandbox, "keep") as ws:
        screen = Screen(ws)
        screen.until(b"marker-9")  # the replay comes first
        ws.send(b"echo $KEPT in $PWD\n")
        screen.until(b"yes-kept in /workspace/kdir")


class _PlainScreen(pyte.Screen):  # type: ignore[misc]
    def select_graphic_rendition(self, *attrs: int, private: bool = False) -> None:
        if not private:  # xterm's CSI ? Pm m is no SGR
            super().select_graphic_rendition(*attrs)


class _PlainStream(pyte.ByteStream):  # type: ignore[misc]
    def feed(self, data: bytes) -> None:
        # pyte misreads a few sequences programs send (vim's modifyOtherKeys …).
        super().feed(UNPARSEABLE.sub(b"", data))


class Emulator:
    """A client's terminal emulator (plain pyte with no alternate screen, not the
    agent's screen): what a person would see on the screen this client drew."""

    def __init__(self, ws: ClientConnection, cols: int = 80, rows: int = 24) -> None:
        self.ws = ws
        self.screen = _PlainScreen(cols, rows)
        self.stream = _PlainStream(self.screen)

    def settle(self, quiet: float = 1.0, timeout: float = 60) -> None:
        """Read until nothing has come for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.ws.recv(timeout=quiet)
            except TimeoutError:
                return
            if isinstance(message, bytes):
                self.stream.feed(message)
        raise AssertionError("the terminal never went quiet")

    def wait_for(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.screen.display):
            assert time.monotonic() < deadline, f"no {text!r} on {self.screen.display}"
            message = self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(message, bytes):
                self.stream.feed(message)

    def seen(self) -> list[str]:
        """The screen's lines, and where the cursor is."""
        cursor = self.screen.cursor
        return [*self.screen.display, f"cursor at {cursor.x},{cursor.y}"]


def _differences(seen: list[str], expected: list[str]) -> list[str]:
    return [f"{a!r} != {b!r}" for a, b in zip(seen, expected, strict=True) if a != b]


def _same_screen_on_reattach(
    server: LiveServer,
    api: httpx.Client,
    sandbox: dict,
    name: str,
    steps: list[tuple[bytes, str]],
    then: Callable[[Emulator], None],
) -> None:
    """On a new terminal, type each step's keys and wait for its text; leave, come
    back as a watcher and as a writer: each fresh client sees what the first one,
    there from the start, saw when it left. ``then`` goes on with the writer."""
    with open_terminal(server, sandbox, name) as ws:
        first = Emulator(ws)
        for keys, shows in steps:
            ws.send(keys)
            first.wait_for(shows, timeout=60)
        first.settle()
        before = first.seen()
    deadline = time.monotonic() + 5
    while terminals_of(api, sandbox)[name]["clients"] != 0:
        assert time.monotonic() < deadline, "the closed client is still attached"
        time.sleep(0.05)
    with open_terminal(server, sandbox, name, "&readonly=1") as watching:
        watcher = Emulator(watching)
        watcher.settle()
        assert _differences(watcher.seen(), before) == []
    with open_terminal(server, sandbox, name) as ws:
        again = Emulator(ws)
        again.settle()
        assert _differences(again.seen(), before) == []
        then(again)


def test_reattach_shows_vim_as_it_was(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    start = (
        b"seq -f 'line %g of the file' 1 300 > /tmp/vim-me.txt; vim.tiny -u NONE /tmp/vim-me.txt\n"
    )
    # To line 120, two words on, type there and leave insert mode.
    edit = b"120Gwwiedited \x1b"

    def quit_vim(again: Emulator) -> None:  # the program goes on where it was
        again.ws.send(b":q!\r")
        again.settle()  # vim would read what comes before it quits
        again.ws.send(b"echo vim-left-$((2*4))\n")
        again.wait_for("vim-left-8")

    _same_screen_on_reattach(
        server,
        api,
        shared_sandbox,
        "vim",
        [(start, "line 23 of the file"), (edit, "line 120 edited of the file")],
        quit_vim,
    )


def test_reattach_after_a_long_run_of_small_updates(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    """A program that draws its screen once and then rewrites one field in place
    (top, a progress line) far past any replay of raw output: the screen is still
    all there."""
    command = (
        b"printf '\\033[?1049h\\033[H\\033[2J\\033[1;7m status board \\033[0m\\n'; "
        b"seq 101 118; for i in $(seq 1 40000); do "
        b"printf '\\033[22;1H\\033[32mtick %06d\\033[0m' $i; done; "
        b"printf '\\033[22;20Hall-ticks-done'; read -r _\n"
    )

    def check(board: Emulator) -> None:
        lines = board.screen.display
        assert lines[0].startswith(" status board ") and lines[1].startswith("101")
        assert lines[21].startswith("tick 040000")
        assert board.screen.buffer[0][1].reverse and board.screen.buffer[21][0].fg == "green"
        board.ws.send(b"\n")

    _same_screen_on_reattach(
        server, api, shared_sandbox, "board", [(command, "all-ticks-done")], check
    )


def test_exit_event_carries_the_exit_code(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    with open_terminal(server, shared_sandbox, "leaving") as ws:
        screen = Screen(ws)
        ws.send(b"exit 5\n")
        assert screen.event() == {"type": "exit", "exit_code": 5}
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1000
    assert "leaving" not in terminals_of(api, shared_sandbox)
    # The name is free again: a new shell starts.
    with open_terminal(server, shared_sandbox, "leaving") as ws:
        screen = Screen(ws)
        ws.send(b"echo again-$((1+1))\n")
        screen.until(b"again-2")


def test_flood_keeps_server_memory_flat_and_ctrl_c_answers(
    server: LiveServer, shared_sandbox: dict
) -> None:
    assert server.process is not None
    pid = server.process.pid
    with open_terminal(server, shared_sandbox, "flood") as ws:
        screen = Screen(ws)
        ws.send(b"yes flood-line-of-text\n")
        screen.until(b"flood-line-of-text\r\nflood-line-of-text\r\n")
        before = rss_mb(pid)
        received = 0
        started = time.monotonic()
        while time.monotonic() - started < 3:  # read as fast as we can
            message = ws.recv(timeout=10)
            received += len(message)
        rate = received / (time.monotonic() - started) / 2**20
        time.sleep(3)  # now a stalled browser: read nothing at all
        after = rss_mb(pid)
        assert after - before < 40, (before, after)
        assert rate > 1, f"only {rate:.1f} MB/s of terminal output"
        sent = time.monotonic()
        ws.send(b"\x03")
        # Typed-ahead input is discarded with the interrupt (tty semantics), so the
        # command is typed again until the shell has answered.
        typed = 0.0
        tail = b""
        while b"stopped-42" not in tail:
            assert time.monotonic() - sent < 5, f"no prompt after Ctrl-C: {tail[-300:]!r}"
            if time.monotonic() - typed > 1:
                ws.send(b"echo stopped-$((6*7))\n")
                typed = time.monotonic()
            try:
                message = ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            if isinstance(message, bytes):
                tail = tail[-4096:] + message
        assert rss_mb(pid) - before < 40


def test_two_clients_and_a_readonly_watcher(server: LiveServer, shared_sandbox: dict) -> None:
    with (
        open_terminal(server, shared_sandbox, "pair") as student,
        open_terminal(server, shared_sandbox, "pair", "&readonly=1") as teacher,
    ):
        mine, theirs = Screen(student), Screen(teacher)
        student.send(b"echo typed-by-$((1+1))-student\n")
        mine.until(b"typed-by-2-student")
        theirs.until(b"typed-by-2-student")
        teacher.send(b"echo sneaky-$((1+1))\n")  # ignored: read-only
        teacher.send(json.dumps({"type": "resize", "cols": 20, "rows": 5}))  # ignored too
        time.sleep(0.3)
        student.send(b"stty size; echo end-$((2+2))\n")
        mine.until(b"end-4")
        theirs.until(b"end-4")
        assert b"sneaky-2" not in mine.output and b"sneaky-2" not in theirs.output
        assert b"24 80" in mine.output and b"5 20" not in mine.output


def _refused(url: str, **kwargs: Any) -> int:
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=30, **kwargs)
    return refused.value.response.status_code


def _session_cookie(server: LiveServer, username: str) -> str:
    server.token(username)  # creates the user
    code = (
        "from importlib import import_module\n"
        "from django.conf import settings\n"
        "from django.contrib.auth import get_user_model\n"
        f"u = get_user_model().objects.get(username={username!r})\n"
        "s = import_module(settings.SESSION_ENGINE).SessionStore()\n"
        "s['_auth_user_id'] = str(u.pk)\n"
        "s['_auth_user_backend'] = 'django.contrib.auth.backends.ModelBackend'\n"
        "s['_auth_user_hash'] = u.get_session_auth_hash()\n"
        "s.create()\n"
        "print(s.session_key)\n"
    )
    return server.manage("shell", "-c", code).strip().splitlines()[-1]


def test_refused_upgrades(server: LiveServer, shared_sandbox: dict) -> None:
    base = ws_url(server, f"/ws/sandboxes/{shared_sandbox['id']}/terminals/guarded")
    assert _refused(base) == 403  # no credentials
    assert _refused(base + "?token=sbx_not-a-real-token") == 403
    assert _refused(base, additional_headers={"Authorization": "Bearer nope"}) == 403
    assert _refused(base + f"?token={server.token('bob')}") == 403  # not bob's sandbox
    assert _refused(base.replace("guarded", "Not_A_Name") + f"?token={server.token('alice')}")
    # The browser: the session cookie works from the IDE's own origin only.
    cookie = {"Cookie": f"sessionid={_session_cookie(server, 'alice')}"}
    evil = _refused(base, additional_headers=cookie, origin="http://evil.example")
    assert evil == 403
    own_origin = server.url.replace("127.0.0.1", "localhost")
    with connect(base, additional_headers=cookie, origin=own_origin, open_timeout=60) as ws:
        screen = Screen(ws)
        ws.send(b"echo via-session-$((2*2))\n")
        screen.until(b"via-session-4")
    # A program with the token in a header.
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    with connect(base, additional_headers=headers, open_timeout=60) as ws:
        Screen(ws).until(b"via-session-4")  # same terminal: replayed


def test_list_and_delete_terminals(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    sid = shared_sandbox["id"]
    with open_terminal(server, shared_sandbox, "listed", "&cols=90&rows=20") as ws:
        screen = Screen(ws)
        ws.send(b"echo hello\n")
        screen.until(b"hello")
        listed = terminals_of(api, shared_sandbox)["listed"]
        assert listed["cols"] == 90 and listed["rows"] == 20 and listed["clients"] == 1
        assert listed["created_at"].startswith("20")
        with server.client("bob") as bob:
            assert bob.get(f"/sandboxes/{sid}/terminals").status_code == 404
            assert bob.delete(f"/sandboxes/{sid}/terminals/listed").status_code == 404
        started = time.monotonic()
        assert api.delete(f"/sandboxes/{sid}/terminals/listed").status_code == 204
        assert time.monotonic() - started < 5
        event = screen.event()
        assert event["type"] == "exit" and event["exit_code"] != 0
    assert "listed" not in terminals_of(api, shared_sandbox)
    missing = api.delete(f"/sandboxes/{sid}/terminals/listed")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = api.delete(f"/sandboxes/{sid}/terminals/Bad_Name")
    assert bad.status_code == 400 and "error" in bad.json()


def test_idle_terminal_ends_after_its_timeout_not_before(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    with open_terminal(server, shared_sandbox, "idler", "&idle_timeout=3") as ws:
        Screen(ws).until(b"$ ")
    time.sleep(1.5)
    assert "idler" in terminals_of(api, shared_sandbox)
    deadline = time.monotonic() + 10
    while "idler" in terminals_of(api, shared_sandbox):
        assert time.monotonic() < deadline, "the idle terminal did not end"
        time.sleep(0.3)


def test_exec_over_websocket(server: LiveServer, shared_sandbox: dict) -> None:
    url = ws_url(server, f"/ws/sandboxes/{shared_sandbox['id']}/exec?token={server.token('alice')}")
    with connect(url, open_timeout=60) as ws:
        ws.send(json.dumps({"command": "echo one; sleep 0.3; echo two >&2; exit 4"}))
        events = []
        arrivals = []
        while True:
            events.append(json.loads(ws.recv(timeout=20)))
            arrivals.append(time.monotonic())
            if events[-1]["type"] in ("exit", "error"):
                break
    assert events[0] == {"type": "stdout", "data": "one\n"}
    assert {"type": "stderr", "data": "two\n"} in events
    assert arrivals[-1] - arrivals[0] > 0.2  # streamed as it ran, not at the end
    assert events[-1]["type"] == "exit" and events[-1]["exit_code"] == 4
    assert events[-1]["success"] is False and events[-1]["timed_out"] is False
    with connect(url, open_timeout=60) as ws:
        ws.send(json.dumps({"command": ""}))
        error = json.loads(ws.recv(timeout=20))
        assert error["type"] == "error" and error["code"] == "bad_request"


def test_a_slow_watcher_does_not_slow_the_typist(server: LiveServer, shared_sandbox: dict) -> None:
    with open_terminal(server, shared_sandbox, "fanout") as ws:
        Screen(ws).until(b"$ ")
        with open_terminal(
            server, shared_sandbox, "fanout", "&readonly=1", close_timeout=2
        ) as stalled:  # reads nothing while the typist works, once attached:
            Screen(stalled).until(b"$ ")  # (the replay proves it is)
            ws.send(b"head -c 20000000 /dev/zero | tr '\\0' y | fold -w 100; echo fin-$((5*5))\n")
            deadline = time.monotonic() + 90
            tail = b""
            while b"fin-25" not in tail:
                message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
                if isinstance(message, bytes):
                    tail = tail[-200:] + message
            # The watcher gets what fitted in its queue, then is told what it missed.
            received = skipped = 0
            while True:
                message = stalled.recv(timeout=30)
                if isinstance(message, bytes):
                    received += len(message)
                    continue
                event = json.loads(message)
                assert event["type"] == "lagged"
                skipped += event["skipped"]  # told in one notice or in several
                if skipped > 1_000_000:
                    break
            assert received < 10_000_000


def test_a_watcher_cannot_start_a_shell(server: LiveServer, shared_sandbox: dict) -> None:
    with open_terminal(server, shared_sandbox, "nobody-here", "&readonly=1") as ws:
        event = Screen(ws).event()
        assert event["type"] == "error" and event["code"] == "not_found"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 4404


def test_the_shell_outlives_a_server_restart(server: LiveServer, shared_sandbox: dict) -> None:
    with open_terminal(server, shared_sandbox, "durable") as ws:
        screen = Screen(ws)
        ws.send(b"export SURVIVED=restart-ok; echo before-$((2+3))\n")
        screen.until(b"before-5")
    server.restart()
    with open_terminal(server, shared_sandbox, "durable") as ws:
        screen = Screen(ws)
        screen.until(b"before-5")  # replayed by the agent, which kept the shell
        ws.send(b"echo $SURVIVED\n")
        screen.until(b"restart-ok\r\n")
