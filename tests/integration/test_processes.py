"""Background processes (docs/api.md, Background processes) in a real sandbox."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server import LiveServer


def base(sandbox: dict) -> str:
    return f"/sandboxes/{sandbox['id']}/processes"


def start(api: httpx.Client, sandbox: dict, **body: object) -> dict:
    response = api.post(base(sandbox), json=body)
    assert response.status_code == 201, response.text
    return response.json()


def run(api: httpx.Client, sandbox: dict, command: str) -> dict:
    response = api.post(f"/sandboxes/{sandbox['id']}/exec", json={"command": command})
    assert response.status_code == 200, response.text
    return response.json()


def wait_exited(api: httpx.Client, sandbox: dict, pid: int, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        process = api.get(f"{base(sandbox)}/{pid}").json()
        if process["status"] == "exited" or time.monotonic() > deadline:
            return process
        time.sleep(0.1)


def sse(response: httpx.Response) -> Iterator[tuple[str, dict, float]]:
    name = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, json.loads(line[6:]), time.monotonic()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def agent_rss_kib(api: httpx.Client, sandbox: dict) -> int:
    """The agent's resident memory, read inside the sandbox."""
    agent = "$(pgrep -of '^python3 (-S )?-m sandbox_agent')"
    out = run(api, sandbox, f"grep VmRSS /proc/{agent}/status")
    return int(out["stdout"].split()[1])


def test_start_get_list_logs_and_exit_code(api: httpx.Client, shared_sandbox: dict) -> None:
    process = start(
        api,
        shared_sandbox,
        command="echo out-$GREETING; pwd; echo err >&2; exit 3",
        cwd="/tmp",
        env={"GREETING": "hi"},
    )
    assert isinstance(process["pid"], int) and process["pid"] > 0
    assert process["command"].startswith("echo out-")
    assert process["status"] in ("running", "exited")
    assert process["started_at"].endswith("Z")
    done = wait_exited(api, shared_sandbox, process["pid"])
    assert done["status"] == "exited" and done["exit_code"] == 3
    logs = api.get(f"{base(shared_sandbox)}/{process['pid']}/logs")
    assert logs.status_code == 200
    assert logs.json() == {"stdout": "out-hi\n/tmp\n", "stderr": "err\n"}
    listed = api.get(base(shared_sandbox)).json()["processes"]
    assert process["pid"] in [p["pid"] for p in listed]
    argv = start(api, shared_sandbox, command=["printf", "%s|", "a b", "$HOME"])
    wait_exited(api, shared_sandbox, argv["pid"])
    assert api.get(f"{base(shared_sandbox)}/{argv['pid']}/logs").json()["stdout"] == "a b|$HOME|"


def test_follow_streams_live_then_exit(api: httpx.Client, shared_sandbox: dict) -> None:
    process = start(
        api,
        shared_sandbox,
        command="for i in 1 2 3 4; do echo line$i; sleep 0.4; done; echo bye >&2; exit 4",
    )
    with api.stream(
        "GET",
        f"{base(shared_sandbox)}/{process['pid']}/logs?follow=1",
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = list(sse(response))
    stdout = [(data["data"], at) for name, data, at in events if name == "stdout"]
    assert "".join(text for text, _ in stdout) == "line1\nline2\nline3\nline4\n"
    assert stdout[-1][1] - stdout[0][1] > 0.8  # lines arrived over time, not at the end
    assert [d["data"] for n, d, _ in events if n == "stderr"] == ["bye\n"]
    name, exit_data, _ = events[-1]
    assert name == "exit" and exit_data["exit_code"] == 4 and exit_data["success"] is False


def test_two_followers_and_a_late_one(api: httpx.Client, shared_sandbox: dict) -> None:
    process = start(api, shared_sandbox, command="for i in $(seq 5); do echo n$i; sleep 0.2; done")
    url = f"{base(shared_sandbox)}/{process['pid']}/logs?follow=1"
    with api.stream("GET", url) as first, api.stream("GET", url) as second:
        a = "".join(d.get("data", "") for n, d, _ in sse(first) if n == "stdout")
        b = "".join(d.get("data", "") for n, d, _ in sse(second) if n == "stdout")
    expected = "".join(f"n{i}\n" for i in range(1, 6))
    assert a == expected and b == expected
    with api.stream("GET", url) as late:  # after the exit: what is kept, then exit
        events = list(sse(late))
    assert "".join(d.get("data", "") for n, d, _ in events if n == "stdout") == expected
    assert events[-1][0] == "exit" and events[-1][1]["exit_code"] == 0


def test_a_stalled_follower_blocks_neither_the_process_nor_others(
    api: httpx.Client, shared_sandbox: dict
) -> None:
    size = 20 * 1000 * 1000
    process = start(api, shared_sandbox, command=f"sleep 2; head -c {size} /dev/zero | tr '\\0' y")
    url = f"{base(shared_sandbox)}/{process['pid']}/logs?follow=1"
    counted: list[int] = []

    def follow_all() -> None:
        with client() as other, other.stream("GET", url) as response:
            counted.append(sum(len(d["data"]) for n, d, _ in sse(response) if n == "stdout"))

    def client() -> httpx.Client:
        return httpx.Client(base_url=str(api.base_url), headers=dict(api.headers), timeout=120)

    fast = threading.Thread(target=follow_all)
    fast.start()  # both followers connect while the process sleeps
    with client() as slow, slow.stream("GET", url) as stalled:
        events = sse(stalled)
        name, data, _ = next(events)  # one event, then this client stops reading
        got = len(data["data"]) if name == "stdout" else 0
        done = wait_exited(api, shared_sandbox, process["pid"], timeout=60)
        assert done["status"] == "exited" and done["exit_code"] == 0
        fast.join(60)
        assert counted == [size]  # the other follower got everything meanwhile
        # the stalled one resumes where it stopped (from disk: memory kept 1 MiB)
        for name, data, _ in events:
            if name == "stdout":
                got += len(data["data"])
    assert got == size
    run(api, shared_sandbox, f"rm -f /tmp/.sandbox-processes/{process['pid']}.*")


def test_kill_with_signals(api: httpx.Client, shared_sandbox: dict) -> None:
    term = start(api, shared_sandbox, command="sleep 300")
    response = api.delete(f"{base(shared_sandbox)}/{term['pid']}")
    assert response.status_code == 204
    done = wait_exited(api, shared_sandbox, term["pid"])
    assert done["status"] == "exited" and done["exit_code"] == 128 + 15
    assert done["signal"] == "SIGTERM"

    stubborn = start(api, shared_sandbox, command=["python3", "-c", _IGNORES_TERM])
    wait_for_log = api.post(
        f"{base(shared_sandbox)}/{stubborn['pid']}/wait-for-log",
        json={"pattern": "^ready$", "timeout": 20},
    )
    assert wait_for_log.status_code == 200, wait_for_log.text
    api.delete(f"{base(shared_sandbox)}/{stubborn['pid']}", params={"signal": "TERM"})
    time.sleep(0.5)
    assert api.get(f"{base(shared_sandbox)}/{stubborn['pid']}").json()["status"] == "running"
    kill = api.delete(f"{base(shared_sandbox)}/{stubborn['pid']}", params={"signal": "KILL"})
    assert kill.status_code == 204
    done = wait_exited(api, shared_sandbox, stubborn["pid"])
    assert done["exit_code"] == 128 + 9 and done["signal"] == "SIGKILL"
    # a real-time signal (no name of its own) from elsewhere still ends it cleanly
    realtime = start(api, shared_sandbox, command=["sleep", "300"])
    run(api, shared_sandbox, f"kill -40 {realtime['pid']}")
    done = wait_exited(api, shared_sandbox, realtime["pid"])
    assert done["status"] == "exited" and done["exit_code"] == 128 + 40
    assert done["signal"] == "SIG40"
    # signalling an exited process is harmless
    assert api.delete(f"{base(shared_sandbox)}/{stubborn['pid']}").status_code == 204


_IGNORES_TERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n"
)


def test_process_outlives_client_disconnect(api: httpx.Client, shared_sandbox: dict) -> None:
    process = start(
        api, shared_sandbox, command="i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done"
    )
    pid = process["pid"]
    with api.stream("GET", f"{base(shared_sandbox)}/{pid}/logs?follow=1") as response:
        for name, data, _ in sse(response):
            if name == "stdout" and "tick1" in data["data"]:
                break  # the client goes away mid-stream
    time.sleep(1.0)
    assert api.get(f"{base(shared_sandbox)}/{pid}").json()["status"] == "running"
    # a fresh client (new connection) still sees it and its growing output
    with httpx.Client(base_url=str(api.base_url), headers=dict(api.headers)) as other:
        before = other.get(f"{base(shared_sandbox)}/{pid}/logs").json()["stdout"]
        time.sleep(0.6)
        after = other.get(f"{base(shared_sandbox)}/{pid}/logs").json()["stdout"]
        assert len(after) > len(before) and after.startswith("tick0\n")
        assert other.delete(f"{base(shared_sandbox)}/{pid}?signal=KILL").status_code == 204


def test_wait_for_port_with_http_server(api: httpx.Client, shared_sandbox: dict) -> None:
    process = start(
        api, shared_sandbox, command="sleep 1; exec python3 -m http.server 8765", cwd="/tmp"
    )
    started = time.monotonic()
    response = api.post(
        f"{base(shared_sandbox)}/{process['pid']}/wait-for-port", json={"port": 8765, "timeout": 30}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"port": 8765}
    assert time.monotonic() - started >= 0.9  # it waited for the server
    page = run(api, shared_sandbox, "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8765/")
    assert page["stdout"] == "200"
    # timeout on a port nobody opens
    late = api.post(
        f"{base(shared_sandbox)}/{process['pid']}/wait-for-port",
        json={"port": 8766, "timeout": 0.5},
    )
    assert late.status_code == 408
    assert late.json()["error"]["code"] == "timeout"
    assert "8766" in late.json()["error"]["message"]
    api.delete(f"{base(shared_sandbox)}/{process['pid']}")


def test_wait_for_port_process_exits_first(api: httpx.Client, shared_sandbox: dict) -> None:
    process = start(api, shared_sandbox, command="sleep 0.3; exit 2")
    response = api.post(
        f"{base(shared_sandbox)}/{process['pid']}/wait-for-port", json={"port": 8799, "timeout": 20}
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "process_exited" and "exited 2" in error["message"]


def test_wait_for_log(api: httpx.Client, shared_sandbox: dict) -> None:
    process = start(
        api,
        shared_sandbox,
        command="echo booting; sleep 0.8; echo 'Listening on port 4321' >&2; sleep 300",
    )
    url = f"{base(shared_sandbox)}/{process['pid']}/wait-for-log"
    started = time.monotonic()
    found = api.post(url, json={"pattern": r"port (\d+)", "timeout": 20})
    assert found.status_code == 200, found.text
    assert found.json() == {
        "match": "port 4321",
        "line": "Listening on port 4321",
        "stream": "stderr",
    }
    assert time.monotonic() - started >= 0.5
    # output already printed matches at once
    assert api.post(url, json={"pattern": "^boot", "timeout": 5}).json()["line"] == "booting"
    missing = api.post(url, json={"pattern": "never printed", "timeout": 0.5})
    assert missing.status_code == 408 and missing.json()["error"]["code"] == "timeout"
    bad = api.post(url, json={"pattern": "(unclosed", "timeout": 1})
    assert bad.status_code == 400 and "regular expression" in bad.json()["error"]["message"]
    api.delete(f"{base(shared_sandbox)}/{process['pid']}?signal=KILL")
    ended = start(api, shared_sandbox, command="echo something else")
    gone = api.post(
        f"{base(shared_sandbox)}/{ended['pid']}/wait-for-log",
        json={"pattern": "x{5}", "timeout": 10},
    )
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "process_exited"


def test_errors(api: httpx.Client, shared_sandbox: dict) -> None:
    for method, path, body in (
        ("GET", "/999999", None),
        ("GET", "/999999/logs", None),
        ("DELETE", "/999999", None),
        ("POST", "/999999/wait-for-port", {"port": 80, "timeout": 1}),
        ("POST", "/999999/wait-for-log", {"pattern": "x", "timeout": 1}),
    ):
        response = api.request(method, base(shared_sandbox) + path, json=body)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    follow = api.get(f"{base(shared_sandbox)}/999999/logs?follow=1")
    assert follow.status_code == 404 and follow.json()["error"]["code"] == "not_found"
    process = start(api, shared_sandbox, command="sleep 30")
    bad_signal = api.delete(f"{base(shared_sandbox)}/{process['pid']}?signal=NOPE")
    assert bad_signal.status_code == 400 and bad_signal.json()["error"]["code"] == "invalid_signal"
    api.delete(f"{base(shared_sandbox)}/{process['pid']}?signal=kill")  # names: any case
    assert wait_exited(api, shared_sandbox, process["pid"])["signal"] == "SIGKILL"
    for body in ({}, {"command": ""}, {"command": []}, {"command": "x", "extra": 1}):
        response = api.post(base(shared_sandbox), json=body)
        assert response.status_code == 400, body
    missing_dir = api.post(base(shared_sandbox), json={"command": "true", "cwd": "/nonexistent"})
    assert missing_dir.status_code == 404
    no_program = api.post(base(shared_sandbox), json={"command": ["no-such-program"]})
    assert no_program.status_code == 400 and "not found" in no_program.json()["error"]["message"]
    bad_port = api.post(f"{base(shared_sandbox)}/1/wait-for-port", json={"port": 70000})
    assert bad_port.status_code == 400
    assert api.get("/sandboxes/nosuchsandbox/processes").status_code == 404


def test_logs_on_disk_and_ring_buffer_tail(api: httpx.Client, shared_sandbox: dict) -> None:
    # 3 MB of numbered lines: memory keeps the last MiB per stream, disk keeps all
    process = start(api, shared_sandbox, command="seq 1 400000")
    assert wait_exited(api, shared_sandbox, process["pid"])["exit_code"] == 0
    logs = api.get(f"{base(shared_sandbox)}/{process['pid']}/logs").json()
    assert len(logs["stdout"]) <= 1024 * 1024
    assert len(logs["stdout"]) > 1000 * 1000
    assert logs["stdout"].endswith("399999\n400000\n")
    assert "\n1\n2\n3\n" not in logs["stdout"]
    on_disk = run(api, shared_sandbox, f"wc -l < /tmp/.sandbox-processes/{process['pid']}.stdout")
    assert on_disk["stdout"].strip() == "400000"


@pytest.mark.timeout(600)
def test_100mb_of_output_keeps_server_memory_flat(
    api: httpx.Client, shared_sandbox: dict, server: LiveServer
) -> None:
    assert server.process is not None
    size = 100 * 1024 * 1024
    # warm up the code paths once so that their one-time allocations are not counted
    warm = start(api, shared_sandbox, command="head -c 2000000 /dev/zero | tr '\\0' a")
    with api.stream("GET", f"{base(shared_sandbox)}/{warm['pid']}/logs?follow=1") as response:
        for _ in response.iter_bytes():
            pass
    before = rss_kib(server.process.pid)
    agent_before = agent_rss_kib(api, shared_sandbox)
    process = start(
        api, shared_sandbox, command=f"sleep 0.5; head -c {size} /dev/zero | tr '\\0' x"
    )
    received = 0
    peak = before
    with api.stream("GET", f"{base(shared_sandbox)}/{process['pid']}/logs?follow=1") as response:
        for index, (name, data, _) in enumerate(sse(response)):
            if name == "stdout":
                received += len(data["data"])
            if index % 200 == 0:
                peak = max(peak, rss_kib(server.process.pid))
    after = rss_kib(server.process.pid)
    assert received == size  # every byte went through the server
    growth_mib = (max(peak, after) - before) / 1024
    print(f"server RSS before {before} KiB, peak {peak} KiB, after {after} KiB")
    assert growth_mib < 60, f"server memory grew by {growth_mib:.0f} MiB streaming 100 MiB"
    agent_after = agent_rss_kib(api, shared_sandbox)
    print(f"agent RSS before {agent_before} KiB, after {agent_after} KiB")
    assert (agent_after - agent_before) / 1024 < 30  # the ring buffers are bounded
    # the kept logs are only the tail
    tail = api.get(f"{base(shared_sandbox)}/{process['pid']}/logs").json()["stdout"]
    assert 0 < len(tail) <= 1024 * 1024 and set(tail) == {"x"}
    run(api, shared_sandbox, f"rm -f /tmp/.sandbox-processes/{process['pid']}.*")
