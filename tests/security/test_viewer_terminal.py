"""A read-only viewer changes nothing about the terminal it watches.

A teacher (or a classmate a view is shared with) attaches to a student's terminal
with ``?readonly=1``. Whatever else the viewer puts in that URL or sends over the
socket (an ``idle_timeout``, a size, resize messages, keystrokes), the student's
terminal must stay exactly as the student left it: same size, same shell, same idle
timeout. Before the fix a viewer's ``?readonly=1&idle_timeout=1`` became the
terminal's idle timeout, so the student's shell was killed a second after the
viewer left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.integration.test_classroom import join, new_class
from tests.integration.test_terminals import Screen, ws_url
from tests.server import LiveServer, running_server


@pytest.fixture(scope="module")
def school(sandbox_image: str) -> Iterator[LiveServer]:
    with running_server("sbxview", {"CLASSROOM_WARM_POOL": "0"}) as server:
        yield server


@dataclass
class Watched:
    server: LiveServer
    sandbox: str
    student: httpx.Client

    def attach(self, name: str, query: str, user: str) -> ClientConnection:
        url = f"/ws/sandboxes/{self.sandbox}/terminals/{name}?token={self.server.token(user)}"
        return connect(ws_url(self.server, url + query), open_timeout=60)

    def terminals(self) -> dict[str, dict]:
        response = self.student.get(f"/sandboxes/{self.sandbox}/terminals")
        assert response.status_code == 200, response.text
        return {t["name"]: t for t in response.json()["terminals"]}

    def wait_detached(self, name: str) -> None:
        deadline = time.monotonic() + 10
        while self.terminals()[name]["clients"] != 0:
            assert time.monotonic() < deadline, f"a client of {name} is still attached"
            time.sleep(0.05)

    def wait_gone(self, name: str) -> None:
        deadline = time.monotonic() + 30
        while name in self.terminals():
            assert time.monotonic() < deadline, f"{name} never ended"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def watched(school: LiveServer) -> Watched:
    """A student's sandbox in a course; the course's teacher may watch it read-only."""
    klass = new_class(school, "view-teacher", "viewing")
    joined = join(school, "view-student", klass.invite["token"])
    assert joined.status_code == 201, joined.text
    return Watched(school, joined.json()["sandbox"], school.client("view-student"))


def test_a_viewers_idle_timeout_does_not_end_the_owners_terminal(watched: Watched) -> None:
    # The student's shell keeps working while nobody is attached (default idle timeout).
    with watched.attach("work", "&cols=100&rows=30", "view-student") as ws:
        screen = Screen(ws)
        ws.send(b"export KEPT=still-$((6*7)); echo started-$((2+3))\n")
        screen.until(b"started-5")
    watched.wait_detached("work")

    # The teacher watches with every option that would change the terminal.
    attack = "&readonly=1&idle_timeout=1&cols=20&rows=5"
    with watched.attach("work", attack, "view-teacher") as viewer:
        seen = Screen(viewer)
        seen.until(b"started-5")  # the replay: the view itself works
        viewer.send(json.dumps({"type": "resize", "cols": 21, "rows": 6}))
        viewer.send(b"exit\n")
    watched.wait_detached("work")

    # A terminal of the student's own with idle_timeout=1, left after the viewer
    # left: once it has ended, more than the viewer's 1 s have passed for "work" too.
    with watched.attach("control", "&idle_timeout=1", "view-student") as ws:
        Screen(ws).until(b"$ ")
    watched.wait_gone("control")

    listed = watched.terminals()
    assert "work" in listed, "the viewer's idle_timeout ended the student's terminal"
    assert (listed["work"]["cols"], listed["work"]["rows"]) == (100, 30)
    with watched.attach("work", "&cols=100&rows=30", "view-student") as ws:
        screen = Screen(ws)
        ws.send(b"echo $KEPT; echo done-$((1+1))\n")
        screen.until(b"done-2")
        assert b"still-42\r\n" in screen.output  # the same shell: "exit" never reached it


def test_a_viewer_cannot_resize_or_type_into_the_owners_terminal(watched: Watched) -> None:
    with watched.attach("pair", "&cols=90&rows=25", "view-student") as student:
        mine = Screen(student)
        student.send(b"echo ready-$((3*3))\n")
        mine.until(b"ready-9")
        with watched.attach("pair", "&readonly=1&cols=7&rows=3", "view-teacher") as viewer:
            theirs = Screen(viewer)
            theirs.until(b"ready-9")
            viewer.send(json.dumps({"type": "resize", "cols": 11, "rows": 4}))
            viewer.send(json.dumps({"type": "resize", "cols": 11, "rows": 4, "readonly": 0}))
            viewer.send(b"echo typed-by-$((4+4))-viewer\n")
            # Sent before the student's line: a resize that got through lands first.
            student.send(b"stty size; echo end-$((5+5))\n")
            mine.until(b"end-10")
            theirs.until(b"end-10")
        assert b"25 90\r\n" in mine.output
        assert b"typed-by-8-viewer" not in mine.output
        listed = watched.terminals()["pair"]
        assert (listed["cols"], listed["rows"]) == (90, 25)


def test_a_watcher_does_not_keep_the_owners_idle_terminal_alive(watched: Watched) -> None:
    """The student chose a short idle timeout; a teacher watching does not change
    when it ends (the watcher's coming and going leaves the countdown alone)."""
    with watched.attach("brief", "&idle_timeout=8", "view-student") as ws:
        Screen(ws).until(b"$ ")
    watched.wait_detached("brief")
    with watched.attach("brief", "&readonly=1", "view-teacher") as viewer:
        seen = Screen(viewer)
        assert seen.event(timeout=60)["type"] == "exit"
    assert "brief" not in watched.terminals()
