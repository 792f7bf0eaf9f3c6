"""Sleep, wake, reaping, restart safety and limits, on a server with fast timers."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.server import LiveServer, make_server, running_server


@pytest.fixture(scope="module")
def fast(sandbox_image: str) -> Iterator[LiveServer]:
    settings = {
        "SANDBOX_REAP_INTERVAL": "0.3",
        "SANDBOX_STOP_AFTER": "3",
        "SANDBOX_ORPHAN_GRACE": "0",
        "SANDBOX_MAX_PER_USER": "3",
        "SANDBOX_MAX_EXECS": "3",
        "TERMINAL_MAX_PER_SANDBOX": "2",
    }
    with running_server("sbxlife", settings) as server:
        yield server


def inspect(server: LiveServer, sandbox_id: str, fmt: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", fmt, f"{server.prefix}-{sandbox_id}"],
        capture_output=True,
        text=True,
    ).stdout.strip()


def wait_for(predicate, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_idle_sandbox_pauses_then_stops_and_wakes_with_its_files(fast: LiveServer) -> None:
    with fast.client("sleepy") as api:
        box = api.post("/sandboxes", json={"name": "idle", "sleep_after": 1}).json()
        sid = box["id"]
        api.post(
            f"/sandboxes/{sid}/exec",
            json={"command": "echo kept > /workspace/f; touch /tmp/rootfs-kept"},
        )
        assert wait_for(lambda: api.get(f"/sandboxes/{sid}").json()["sleep_tier"] == "paused")
        assert api.get(f"/sandboxes/{sid}").json()["status"] == "sleeping"
        # The state is claimed in the database before the engine is told, so the
        # container may lag the API by the time a pause or stop takes.
        assert wait_for(lambda: inspect(fast, sid, "{{.State.Paused}}") == "true")
        assert wait_for(lambda: api.get(f"/sandboxes/{sid}").json()["sleep_tier"] == "stopped")
        assert wait_for(lambda: inspect(fast, sid, "{{.State.Running}}") == "false")
        out = api.post(
            f"/sandboxes/{sid}/exec", json={"command": "cat /workspace/f; ls /tmp/rootfs-kept"}
        ).json()
        assert out["stdout"] == "kept\n/tmp/rootfs-kept\n"
        now = api.get(f"/sandboxes/{sid}").json()
        assert now["status"] == "running" and now["sleep_tier"] == ""


def test_keep_alive_and_running_exec_keep_it_awake(fast: LiveServer) -> None:
    with fast.client("awake") as api:
        pinned = api.post(
            "/sandboxes", json={"name": "pinned", "sleep_after": 1, "keep_alive": True}
        ).json()
        busy = api.post("/sandboxes", json={"name": "busy", "sleep_after": 2}).json()
        out = api.post(
            f"/sandboxes/{busy['id']}/exec", json={"command": "sleep 5; echo done"}
        ).json()
        assert out["stdout"] == "done\n"
        assert api.get(f"/sandboxes/{busy['id']}").json()["status"] == "running"
        assert api.get(f"/sandboxes/{pinned['id']}").json()["status"] == "running"


def test_manual_sleep_tiers_and_wake(fast: LiveServer) -> None:
    with fast.client("manual") as api:
        sid = api.post("/sandboxes", json={"name": "m", "keep_alive": True}).json()["id"]
        api.post(f"/sandboxes/{sid}/exec", json={"command": "setsid -f sleep 1000"})
        paused = api.post(f"/sandboxes/{sid}/sleep").json()
        assert paused["status"] == "sleeping" and paused["sleep_tier"] == "paused"
        assert inspect(fast, sid, "{{.State.Paused}}") == "true"
        assert api.post(f"/sandboxes/{sid}/wake").json()["status"] == "running"
        # pausing keeps processes: the background sleep is still there
        ps = api.post(f"/sandboxes/{sid}/exec", json={"command": "pgrep -c -x sleep"}).json()
        assert ps["stdout"].strip() == "1"
        stopped = api.post(f"/sandboxes/{sid}/sleep", json={"tier": "stop"}).json()
        assert stopped["sleep_tier"] == "stopped"
        assert inspect(fast, sid, "{{.State.Running}}") == "false"
        bad = api.post(f"/sandboxes/{sid}/sleep", json={"tier": "forever"})
        assert bad.status_code == 400
        assert (
            api.post(f"/sandboxes/{sid}/exec", json={"command": ["true"]}).json()["exit_code"] == 0
        )


def test_vanished_container_is_recreated_on_its_workspace(fast: LiveServer) -> None:
    with fast.client("vanish") as api:
        sid = api.post("/sandboxes", json={"name": "v", "keep_alive": True}).json()["id"]
        api.post(f"/sandboxes/{sid}/exec", json={"command": "echo survived > /workspace/w"})
        subprocess.run(
            ["docker", "rm", "-f", f"{fast.prefix}-{sid}"], check=True, capture_output=True
        )
        out = api.post(f"/sandboxes/{sid}/exec", json={"command": "cat /workspace/w"}).json()
        assert out["stdout"] == "survived\n"
        assert "recreated" in api.get(f"/sandboxes/{sid}").json()["status_detail"]


def test_orphan_container_is_removed(fast: LiveServer) -> None:
    with fast.client("orphaned") as api:
        sid = api.post("/sandboxes", json={"name": "o", "keep_alive": True}).json()["id"]
    fast.manage(
        "shell",
        "-c",
        f"from sandboxes.models import Sandbox; Sandbox.objects.filter(pk={sid!r}).delete()",
    )
    assert wait_for(lambda: inspect(fast, sid, "{{.Id}}") == "")


def test_server_restart_loses_nothing(fast: LiveServer) -> None:
    with fast.client("restart") as api:
        sid = api.post("/sandboxes", json={"name": "r", "keep_alive": True}).json()["id"]
        started = api.post(
            f"/sandboxes/{sid}/processes", json={"command": "while :; do date; sleep 0.2; done"}
        )
        assert started.status_code == 201, started.text
        pid = started.json()["pid"]
        api.post(
            f"/sandboxes/{sid}/exec", json={"command": "export X=1; echo state > /workspace/s"}
        )
    fast.restart()
    with fast.client("restart") as api:
        assert api.get(f"/sandboxes/{sid}").json()["status"] == "running"
        process = api.get(f"/sandboxes/{sid}/processes/{pid}").json()
        assert process["status"] == "running"
        assert (
            api.post(f"/sandboxes/{sid}/exec", json={"command": "cat /workspace/s"}).json()[
                "stdout"
            ]
            == "state\n"
        )


def test_agent_restarts_if_it_dies(fast: LiveServer) -> None:
    with fast.client("agentdeath") as api:
        sid = api.post("/sandboxes", json={"name": "a", "keep_alive": True}).json()["id"]
        api.post(f"/sandboxes/{sid}/exec", json={"command": "setsid -f sleep 1000"})
        agent = "pgrep -of '^python3 (-S )?-m sandbox_agent'"
        before = api.post(f"/sandboxes/{sid}/exec", json={"command": agent}).json()["stdout"]
        assert before.strip().isdigit(), before
        # The sandbox's own code may not kill its agent (tests/security): a crash is
        # simulated from the host, as root in the container.
        subprocess.run(
            [
                "docker",
                "exec",
                "-u",
                "0",
                f"{fast.prefix}-{sid}",
                "pkill",
                "-KILL",
                "-of",
                "^python3 (-S )?-m sandbox_agent",
            ],
            check=True,
        )
        out = api.post(f"/sandboxes/{sid}/exec", json={"command": "pgrep -c -x sleep"}, timeout=60)
        assert out.status_code == 200, out.text
        assert out.json()["stdout"].strip() == "1"  # user processes survived the agent
        after = api.post(f"/sandboxes/{sid}/exec", json={"command": agent}).json()["stdout"]
        assert after.strip().isdigit() and after != before  # a new agent answered


def test_sandboxes_per_user_limit(fast: LiveServer) -> None:
    with fast.client("greedy") as api:
        for i in range(3):
            assert api.post("/sandboxes", json={"name": f"g{i}"}).status_code == 201
        refused = api.post("/sandboxes", json={"name": "g3"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_sandboxes"
        assert api.post("/sandboxes", json={"name": "g0"}).status_code == 200  # existing: fine


def test_concurrent_exec_limit(fast: LiveServer) -> None:
    with fast.client("parallel") as api:
        sid = api.post("/sandboxes", json={"name": "p", "keep_alive": True}).json()["id"]

        def slow(_: int) -> httpx.Response:
            with fast.client("parallel") as c:
                return c.post(f"/sandboxes/{sid}/exec", json={"command": "sleep 2"})

        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            codes = sorted(r.status_code for r in pool.map(slow, range(5)))
        assert codes.count(200) == 3 and codes.count(429) == 2, codes


def test_terminals_per_sandbox_limit(fast: LiveServer) -> None:
    with fast.client("terms") as api:
        sid = api.post("/sandboxes", json={"name": "t", "keep_alive": True}).json()["id"]
    base = fast.url.replace("http://", "ws://") + f"/ws/sandboxes/{sid}/terminals"
    token = "?token=" + fast.token("terms")
    with (
        connect(f"{base}/one{token}", open_timeout=60),
        connect(f"{base}/two{token}", open_timeout=60),
    ):
        with connect(f"{base}/three{token}", open_timeout=60) as third:
            event = json.loads(third.recv(timeout=30))
            assert event["type"] == "error" and event["code"] == "limit_reached"
            assert "TERMINAL_MAX_PER_SANDBOX" in event["message"]
            with pytest.raises(ConnectionClosed) as closed:
                third.recv(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
        # re-attaching to an existing terminal is not a new one
        with connect(f"{base}/one{token}", open_timeout=60):
            pass
    with fast.client("terms") as api:
        names = {t["name"] for t in api.get(f"/sandboxes/{sid}/terminals").json()["terminals"]}
    assert names == {"one", "two"}


def test_another_installations_containers_are_left_alone(fast: LiveServer) -> None:
    """Two servers on one engine, even with one name prefix: neither sweeps the
    other's sandboxes as orphans (fast sweeps with no grace at all)."""
    other = make_server(fast.prefix, {"SANDBOX_REAPER": "false"})
    other.start()
    try:
        with other.client("neighbour") as api:
            sid = api.post("/sandboxes", json={"name": "theirs", "keep_alive": True}).json()["id"]
        time.sleep(3)  # ten of fast's reaper passes
        assert inspect(fast, sid, "{{.State.Running}}") == "true"
    finally:
        other.stop()
