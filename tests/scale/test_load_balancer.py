"""Two server processes behind nginx (the shipped deploy/nginx/ configuration), with
no sticky sessions, on PostgreSQL and Redis: the same sandboxes through either one.

The cross-process cases come first: an exec through one process and a terminal
through the other; one process lost at run time (requests keep working, terminals
reconnect through the load balancer with their screen replayed, the workspace is
intact). Then a slice of the integration suite runs through the load balancer: its
``server``, ``api`` and ``shared_sandbox`` are this module's, nginx's URL in front.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.test_exec import (  # noqa: F401 - run through the load balancer
    test_concurrent_execs,
    test_cwd_env_stdin,
    test_disconnect_kills_a_streamed_command,
    test_shell_string_and_argv,
    test_stream_arrives_live_then_exit,
)
from tests.integration.test_files import (  # noqa: F401
    test_binary_is_byte_exact,
    test_multipart_upload_of_two_files,
    test_range_requests,
    test_twenty_megabyte_round_trip,
    test_upload_too_large_is_413,
    test_watch_sees_changes_from_commands,
    test_write_read_replace,
    workdir,
)
from tests.integration.test_preview import (  # noqa: F401
    HTTP_PORT,
    apps,
    expose,
    exposed,
    preview,
    test_every_method_with_body_query_and_headers,
    test_expose_list_unexpose,
    test_sse_chunks_arrive_live,
    test_status_redirect_head_chunked,
    test_unknown_hosts_and_wrong_tokens_are_404,
    test_websocket_echo_text_binary_subprotocol,
    web,
)
from tests.integration.test_processes import (  # noqa: F401
    test_follow_streams_live_then_exit,
    test_start_get_list_logs_and_exit_code,
)
from tests.integration.test_terminals import (  # noqa: F401
    Screen,
    open_terminal,
    test_echo_round_trip_and_resize,
    test_reattach_replays_output_and_keeps_shell_state,
)
from tests.scale.cluster import Cluster, cluster
from tests.scale.nginx import nginx, served_by
from tests.scale.services import postgres, redis_server
from tests.server import LiveServer


@pytest.fixture(scope="module")
def two(sandbox_image: str) -> Iterator[Cluster]:
    with (
        postgres() as database_url,
        redis_server() as redis_url,
        cluster("sbxlb", database_url, redis_url, count=2) as processes,
    ):
        yield processes


@pytest.fixture(scope="module")
def server(two: Cluster) -> LiveServer:
    return two.front


@pytest.fixture(scope="module")
def api(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client("alice") as client:
        yield client


@pytest.fixture(scope="module")
def shared_sandbox(api: httpx.Client) -> dict[str, object]:
    response = api.post("/sandboxes", json={"name": "shared", "keep_alive": True})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _exec_on(api: httpx.Client, sid: str, command: str, wanted: str) -> httpx.Response:
    """An exec that the process at ``wanted`` answered: nginx takes turns, so one of a
    few tries lands there."""
    for _ in range(20):
        response = api.post(f"/sandboxes/{sid}/exec", json={"command": command})
        assert response.status_code == 200, response.text
        if served_by(response.headers) == wanted:
            return response
    raise AssertionError(f"no exec reached {wanted} in 20 tries")


def _elsewhere(two: Cluster, address: str) -> str:
    return next(
        two.address(process) for process in two.processes if two.address(process) != address
    )


def test_an_exec_through_one_process_and_a_terminal_through_the_other(
    two: Cluster, api: httpx.Client, shared_sandbox: dict
) -> None:
    sid = shared_sandbox["id"]
    with open_terminal(two.front, shared_sandbox, "crossed") as ws:
        screen = Screen(ws)
        terminal_at = served_by(ws.response.headers)
        ws.send(b"echo from-the-terminal > /workspace/crossed.txt; echo typed-$((2+3))\n")
        screen.until(b"typed-5")

        other = _elsewhere(two, terminal_at)
        seen = _exec_on(api, sid, "cat /workspace/crossed.txt", other).json()
        assert seen["stdout"] == "from-the-terminal\n"
        _exec_on(api, sid, "echo from-the-exec-$((6*7)) > /workspace/crossed.txt", other)

        ws.send(b"cat /workspace/crossed.txt\n")
        screen.until(b"from-the-exec-42")

        # The other process lists the terminal it does not serve, with its client.
        for _ in range(20):
            listed = api.get(f"/sandboxes/{sid}/terminals")
            if served_by(listed.headers) == other:
                break
        names = {t["name"]: t for t in listed.json()["terminals"]}
        assert names["crossed"]["clients"] == 1


def test_a_preview_revoked_through_one_process_is_gone_through_the_other_at_once(
    two: Cluster,
    apps: dict,  # noqa: F811 - the imported fixture
) -> None:
    """Each process remembers the previews it looked up lately; a change made through
    another process must reach that memory at once, not when it expires."""
    first, second = two.processes
    with first.client("alice") as through_first:
        url = expose(through_first, apps, HTTP_PORT, name="crossed")["url"]
        with preview(second, url) as seen_by_second:
            for _ in range(3):  # looked up, then served from the second's memory
                assert seen_by_second.get("/echo").status_code == 200
            gone = through_first.delete(f"/sandboxes/{apps['id']}/ports/{HTTP_PORT}")
            assert gone.status_code == 204, gone.text
            assert seen_by_second.get("/echo").status_code == 404
        again = expose(through_first, apps, HTTP_PORT, name="crossed")["url"]
        with preview(second, again) as new_link:
            assert new_link.get("/echo").status_code == 200
        with preview(second, url) as old_link:
            assert old_link.get("/echo").status_code == 404


def test_a_silent_exec_outlasts_nginx_default_timeouts(
    api: httpx.Client, shared_sandbox: dict
) -> None:
    """nginx gives up on a response silent for 60 s unless told otherwise; an exec may
    say nothing for as long as its own timeout allows."""
    response = api.post(
        f"/sandboxes/{shared_sandbox['id']}/exec",
        json={"command": "sleep 65; echo still-answered", "timeout": 120},
        timeout=180,
    )
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "still-answered\n"


def _wait_closed(ws: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ws.recv(timeout=1)  # type: ignore[attr-defined]
        except TimeoutError:
            continue
        except ConnectionClosed:
            return
    raise AssertionError("the WebSocket of a killed process stayed open")


def test_one_process_lost_at_run_time(two: Cluster, shared_sandbox: dict) -> None:
    """The process serving a terminal is killed: requests through the load balancer keep
    working, the terminal reconnects through it with its screen and shell, and nothing
    in the workspace is lost. Then the process comes back and takes requests again."""
    sid = shared_sandbox["id"]
    with two.front.client("alice") as api:
        payload = bytes(range(256)) * 4096  # 1 MiB
        put = api.put(
            f"/sandboxes/{sid}/files/content", params={"path": "kept.bin"}, content=payload
        )
        assert put.status_code in (200, 201), put.text
        started = api.post(
            f"/sandboxes/{sid}/processes",
            json={"command": "while true; do date +%s >> /workspace/ticks; sleep 0.2; done"},
        )
        assert started.status_code == 201, started.text
        background = started.json()["pid"]

        with open_terminal(two.front, shared_sandbox, "survivor") as ws:
            screen = Screen(ws)
            ws.send(b"export BEFORE=still-here; echo before-loss-$((40+2))\n")
            screen.until(b"before-loss-42")
            lost = two.process_at(served_by(ws.response.headers))
            two.kill(lost)
            _wait_closed(ws)

        # Every request through nginx is answered, none by the lost process.
        for i in range(30):
            out = api.post(f"/sandboxes/{sid}/exec", json={"command": f"echo alive-{i}"})
            assert out.status_code == 200, out.text
            assert out.json()["stdout"] == f"alive-{i}\n"
            assert served_by(out.headers) != two.address(lost)
            assert api.get("/sandboxes").status_code == 200

        # The terminal reconnects through the load balancer: same screen, same shell.
        with open_terminal(two.front, shared_sandbox, "survivor") as again:
            replay = Screen(again)
            replay.until(b"before-loss-42")
            again.send(b"echo $BEFORE\n")
            replay.until(b"still-here\r\n")

        # Nothing in the workspace is lost; the background process kept running.
        read = api.get(f"/sandboxes/{sid}/files/content", params={"path": "kept.bin"})
        assert read.content == payload
        process = api.get(f"/sandboxes/{sid}/processes/{background}").json()
        assert process["status"] == "running"
        ticks = api.post(f"/sandboxes/{sid}/exec", json={"command": "wc -l < /workspace/ticks"})
        first = int(ticks.json()["stdout"])
        time.sleep(1)
        ticks = api.post(f"/sandboxes/{sid}/exec", json={"command": "wc -l < /workspace/ticks"})
        assert int(ticks.json()["stdout"]) > first
        api.delete(f"/sandboxes/{sid}/processes/{background}", params={"signal": "KILL"})

        # Back again, the process takes its share once nginx tries it (fail_timeout).
        lost.start()
        deadline = time.monotonic() + 30
        answered = set()
        while two.address(lost) not in answered:
            assert time.monotonic() < deadline, f"only {answered} answered after the restart"
            response = api.get("/sandboxes")
            assert response.status_code == 200
            answered.add(served_by(response.headers))
            time.sleep(0.2)


def test_without_nginx_installed_the_tier_fails_and_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tests.scale.nginx.NGINX", "/nonexistent/sbin/nginx")
    with (
        pytest.raises(pytest.fail.Exception) as failed,
        nginx(["127.0.0.1:9"], "preview.localhost"),
    ):
        pass
    assert str(failed.value) == (
        "nginx is not installed (no /usr/sbin/nginx): run .ci/run, which installs the "
        "Debian package nginx."
    )
