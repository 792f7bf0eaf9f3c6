"""Commands (docs/api.md, Commands) in a real sandbox: JSON and Server-Sent Events."""

from __future__ import annotations

import json
import time

import httpx


def run(api: httpx.Client, sandbox: dict, **body: object) -> dict:
    response = api.post(f"/sandboxes/{sandbox['id']}/exec", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events = []
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def test_shell_string_and_argv(api: httpx.Client, shared_sandbox: dict) -> None:
    out = run(api, shared_sandbox, command="echo out; echo err >&2; exit 3")
    assert out["stdout"] == "out\n" and out["stderr"] == "err\n"
    assert out["exit_code"] == 3 and out["success"] is False and out["timed_out"] is False
    assert out["duration_ms"] >= 0
    argv = run(api, shared_sandbox, command=["printf", "%s|", "a b", "$HOME", "*"])
    assert argv["stdout"] == "a b|$HOME|*|"  # no shell: nothing expanded
    assert argv["success"] is True


def test_cwd_env_stdin(api: httpx.Client, shared_sandbox: dict) -> None:
    run(api, shared_sandbox, command="mkdir -p /workspace/sub")
    assert run(api, shared_sandbox, command="pwd", cwd="sub")["stdout"] == "/workspace/sub\n"
    assert run(api, shared_sandbox, command="pwd", cwd="/tmp")["stdout"] == "/tmp\n"
    assert run(api, shared_sandbox, command=["pwd"])["stdout"] == "/workspace\n"
    env = run(api, shared_sandbox, command="echo $A-$B", env={"A": "1", "B": "two words"})
    assert env["stdout"] == "1-two words\n"
    assert run(api, shared_sandbox, command=["cat"], stdin="piped\nin")["stdout"] == "piped\nin"
    assert run(api, shared_sandbox, command="wc -c", stdin="")["stdout"].strip() == "0"


def test_missing_program_and_unicode(api: httpx.Client, shared_sandbox: dict) -> None:
    missing = run(api, shared_sandbox, command=["no-such-program"])
    assert missing["exit_code"] == 127 and "not found" in missing["stderr"]
    assert run(api, shared_sandbox, command="no-such-program")["exit_code"] == 127
    text = run(api, shared_sandbox, command="printf 'h\\xc3\\xa9llo \\xe2\\x9c\\x93'")
    assert text["stdout"] == "héllo ✓"


def test_timeout_kills_the_whole_process_group(api: httpx.Client, shared_sandbox: dict) -> None:
    started = time.monotonic()
    out = run(
        api,
        shared_sandbox,
        command="(sleep 300 & echo $! > /tmp/child.pid; wait) & sleep 300",
        timeout=1,
    )
    assert time.monotonic() - started < 10
    assert out["timed_out"] is True and out["exit_code"] is None and out["success"] is False
    time.sleep(0.3)
    alive = run(api, shared_sandbox, command="kill -0 $(cat /tmp/child.pid) 2>/dev/null; echo $?")
    assert alive["stdout"].strip() == "1"  # the grandchild was killed with the group


def test_background_child_does_not_hold_the_exec(api: httpx.Client, shared_sandbox: dict) -> None:
    started = time.monotonic()
    out = run(api, shared_sandbox, command="sleep 60 & echo started")
    assert out["stdout"] == "started\n" and out["exit_code"] == 0
    assert time.monotonic() - started < 5


def test_large_output_is_capped_not_lost(api: httpx.Client, shared_sandbox: dict) -> None:
    out = run(api, shared_sandbox, command="head -c 3000000 /dev/zero | tr '\\0' x")
    assert len(out["stdout"]) == 3_000_000


def test_stream_arrives_live_then_exit(api: httpx.Client, shared_sandbox: dict) -> None:
    arrivals = []
    with api.stream(
        "POST",
        f"/sandboxes/{shared_sandbox['id']}/exec",
        json={"command": "for i in 1 2 3; do echo line$i; sleep 0.4; done; echo bad >&2; exit 4"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = []
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                arrivals.append(time.monotonic())
    stdout = "".join(d["data"] for n, d in events if n == "stdout")
    assert stdout == "line1\nline2\nline3\n"
    assert [d["data"] for n, d in events if n == "stderr"] == ["bad\n"]
    name, exit_data = events[-1]
    assert name == "exit"
    assert exit_data["exit_code"] == 4 and exit_data["success"] is False
    assert exit_data["timed_out"] is False and "duration_ms" in exit_data
    # the first line came well before the last: it was streamed, not buffered
    assert arrivals[-1] - arrivals[0] > 0.6


def test_stream_timeout(api: httpx.Client, shared_sandbox: dict) -> None:
    with api.stream(
        "POST",
        f"/sandboxes/{shared_sandbox['id']}/exec",
        json={"command": "echo begin; sleep 30", "timeout": 0.5},
        headers={"Accept": "text/event-stream"},
    ) as response:
        events = sse_events(response)
    assert events[0] == ("stdout", {"data": "begin\n"})
    assert events[-1][0] == "exit"
    assert events[-1][1]["timed_out"] is True and events[-1][1]["exit_code"] is None


def test_stream_errors_before_output_are_json(api: httpx.Client) -> None:
    response = api.post(
        "/sandboxes/doesnotexist/exec",
        json={"command": "true"},
        headers={"Accept": "text/event-stream"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_disconnect_kills_a_streamed_command(api: httpx.Client, shared_sandbox: dict) -> None:
    with api.stream(
        "POST",
        f"/sandboxes/{shared_sandbox['id']}/exec",
        json={"command": "echo $$ > /tmp/streamed.pid; echo go; sleep 120"},
        headers={"Accept": "text/event-stream"},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and "go" in line:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = run(api, shared_sandbox, command="kill -0 $(cat /tmp/streamed.pid) 2>/dev/null")
        if alive["exit_code"] != 0:
            break
        time.sleep(0.2)
    assert alive["exit_code"] != 0, "the command outlived its client"


def test_concurrent_execs(api: httpx.Client, shared_sandbox: dict) -> None:
    import concurrent.futures

    def one(i: int) -> str:
        return run(api, shared_sandbox, command=f"echo {i}")["stdout"]

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(20)))
    assert results == [f"{i}\n" for i in range(20)]
