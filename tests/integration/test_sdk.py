"""The Python SDK (sdk/python, package sandbox_ide) against the live test server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sandbox_ide import (
    AsyncSandbox,
    AuthenticationError,
    CommandFailed,
    CommandTimeout,
    ConflictError,
    ConnectionFailed,
    Execution,
    InvalidRequestError,
    NotFoundError,
    Sandbox,
    SandboxIDEError,
)

from tests.server import LiveServer, free_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def conn(server: LiveServer) -> dict[str, str]:
    return {"url": server.url, "token": server.token("sdk-user")}


@pytest.fixture(scope="module")
def sb(conn: dict[str, str]) -> Iterator[Sandbox]:
    with Sandbox.get_or_create("sdk", keep_alive=True, **conn) as sandbox:
        yield sandbox


# -- configuration and errors ---------------------------------------------------------------


def test_configuration_from_the_environment(
    conn: dict[str, str], sb: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_IDE_URL", conn["url"])
    monkeypatch.setenv("SANDBOX_IDE_TOKEN", conn["token"])
    with Sandbox.connect(sb.id) as again:
        assert again.name == "sdk" and again.id == sb.id
    monkeypatch.delenv("SANDBOX_IDE_TOKEN")
    with pytest.raises(AuthenticationError) as missing:
        Sandbox.list()
    assert "SANDBOX_IDE_TOKEN" in missing.value.message


def test_typed_errors_say_what_to_do(conn: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError) as bad_token:
        Sandbox.list(url=conn["url"], token="sbx_not-a-token")
    assert bad_token.value.status == 401 and bad_token.value.code == "invalid_token"
    assert "SANDBOX_IDE_TOKEN" in bad_token.value.message

    with pytest.raises(NotFoundError) as missing:
        Sandbox.connect("nosuchsandbox", **conn)
    assert missing.value.status == 404 and missing.value.code == "not_found"

    with pytest.raises(NotFoundError) as by_name:
        Sandbox.from_name("no-such-name", **conn)
    assert "get_or_create('no-such-name')" in by_name.value.message

    with pytest.raises(InvalidRequestError) as bad_name:
        Sandbox.get_or_create("Not A Name!", **conn)
    assert bad_name.value.status == 400 and "name" in bad_name.value.message

    with pytest.raises(ConnectionFailed) as down:
        Sandbox.list(url=f"http://127.0.0.1:{free_port()}", token="x")
    assert "SANDBOX_IDE_URL" in down.value.message
    assert isinstance(down.value, SandboxIDEError)


# -- sandboxes ---------------------------------------------------------------------------------


def test_get_or_create_list_connect_refresh(conn: dict[str, str], sb: Sandbox) -> None:
    assert sb.status == "running" and len(sb.id) == 12
    with Sandbox.get_or_create("sdk", **conn) as same:
        assert same.id == sb.id
    listed = {info.name: info for info in Sandbox.list(**conn)}
    assert listed["sdk"].id == sb.id and listed["sdk"].keep_alive is True
    with Sandbox.from_name("sdk", **conn) as by_name:
        assert by_name.id == sb.id
    info = sb.refresh()
    assert info.status == "running" and info.created_at is not None
    assert sb.update(sleep_after=1234).sleep_after == 1234


def test_sleep_wake_destroy(conn: dict[str, str]) -> None:
    sandbox = Sandbox.get_or_create("sdk-life", env={"GREETING": "hi"}, **conn)
    assert sandbox.exec("echo $GREETING > kept.txt").success
    assert sandbox.sleep().status == "sleeping"
    # any call wakes it; the workspace was kept
    assert sandbox.exec("cat kept.txt").stdout == "hi\n"
    assert sandbox.sleep().status == "sleeping"
    assert sandbox.wake().status == "running"
    sandbox_id = sandbox.id
    sandbox.destroy()
    with pytest.raises(NotFoundError):
        Sandbox.connect(sandbox_id, **conn)


# -- exec --------------------------------------------------------------------------------------


def test_exec_collects(sb: Sandbox) -> None:
    result = sb.exec("echo out; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.exit_code) == ("out\n", "err\n", 3)
    assert result.success is False and result.timed_out is False
    argv = sb.exec(["printf", "%s|", "a b", "$HOME"])
    assert argv.stdout == "a b|$HOME|" and argv.success
    assert sb.exec("pwd", cwd="/tmp").stdout == "/tmp\n"
    assert sb.exec("echo $A", env={"A": "1 2"}).stdout == "1 2\n"
    assert sb.exec(["cat"], stdin="piped").stdout == "piped"


def test_exec_streams_to_callbacks(sb: Sandbox) -> None:
    chunks: list[tuple[float, str]] = []
    errors: list[str] = []
    result = sb.exec(
        "for i in 1 2 3; do echo line$i; sleep 0.4; done; echo bad >&2; exit 4",
        on_stdout=lambda text: chunks.append((time.monotonic(), text)),
        on_stderr=errors.append,
    )
    assert "".join(text for _, text in chunks) == "line1\nline2\nline3\n"
    assert chunks[-1][0] - chunks[0][0] > 0.6  # live, not buffered
    assert errors == ["bad\n"]
    assert result.exit_code == 4 and result.stdout == "line1\nline2\nline3\n"
    assert result.stderr == "bad\n" and not result.success


def test_exec_timeout_and_check(sb: Sandbox) -> None:
    started = time.monotonic()
    result = sb.exec("sleep 30", timeout=0.5)
    assert result.timed_out and result.exit_code is None and not result.success
    assert time.monotonic() - started < 10
    streamed = sb.exec("echo a; sleep 30", timeout=0.5, on_stdout=lambda _: None)
    assert streamed.timed_out and streamed.stdout == "a\n"
    with pytest.raises(CommandTimeout):
        sb.exec("sleep 30", timeout=0.3, check=True)
    with pytest.raises(CommandFailed) as failed:
        sb.exec("echo nope >&2; exit 3", check=True)
    assert failed.value.result.exit_code == 3 and "nope" in failed.value.message
    assert isinstance(CommandTimeout("x"), TimeoutError)


# -- async client ------------------------------------------------------------------------------


def test_async_client_has_the_same_surface(conn: dict[str, str], sb: Sandbox) -> None:
    public = {n for n in dir(Sandbox) if not n.startswith("_")}
    assert public == {n for n in dir(AsyncSandbox) if not n.startswith("_")}

    async def scenario() -> None:
        async with await AsyncSandbox.get_or_create("sdk", **conn) as asb:
            assert asb.id == sb.id
            seen: list[str] = []

            async def on_out(text: str) -> None:
                seen.append(text)

            result = await asb.exec("echo one; echo two", on_stdout=on_out)
            assert "".join(seen) == "one\ntwo\n" and result.success
            assert (await asb.exec(["echo", "plain"])).stdout == "plain\n"
            await asb.files.write("async/a.txt", "from async")
            assert await asb.files.read_text("async/a.txt") == "from async"
            names = [e.name for e in await asb.files.list("async")]
            assert names == ["a.txt"]
            infos = await AsyncSandbox.list(**conn)
            assert sb.id in {i.id for i in infos}
            with pytest.raises(NotFoundError):
                await asb.files.read("async/missing.txt")
            async with asb.terminal("async-term") as term:
                await term.send("echo $((7*6))\n")
                assert b"42" in await term.expect(re.compile(rb"\b42\b"), timeout=20)
                await term.resize(90, 20)
                await term.send("stty size\n")
                await term.expect("20 90", timeout=20)
            await asb.terminals.kill("async-term")
            proc = await asb.processes.start("sleep 0.3; echo async-ready; sleep 60")
            assert await asb.processes.wait_for_log(proc.pid, "async-r") == "async-ready"
            await asb.processes.kill(proc.pid)
            await asb.files.mkdir("async/watched")

            async def touch() -> None:
                await asyncio.sleep(1)
                await asb.exec("touch async/watched/x")

            task = asyncio.create_task(touch())
            watch = asb.files.watch("async/watched", timeout=10)
            async with contextlib.aclosing(watch) as events:  # closes the stream on break
                async for event in events:
                    if event.path.endswith("/x"):
                        break
            await task

    asyncio.run(scenario())


# -- files -------------------------------------------------------------------------------------


def test_files_read_write_list_move_remove(sb: Sandbox) -> None:
    created = sb.files.write("ft/hello.txt", "héllo\n")
    assert created.created is True and created.path == "/workspace/ft/hello.txt"
    assert sb.files.write("ft/hello.txt", b"bytes\x00\xff").created is False
    assert sb.files.read("ft/hello.txt") == b"bytes\x00\xff"
    sb.files.write("/workspace/ft/text.txt", "héllo")
    assert sb.files.read_text("ft/text.txt") == "héllo"
    sb.files.write("ft/from-file.bin", io.BytesIO(b"x" * 1000))
    assert len(sb.files.read("ft/from-file.bin")) == 1000
    sb.files.mkdir("ft/sub/deeper")
    sb.files.mkdir("ft/sub/deeper")  # exists: fine
    entries = {e.name: e for e in sb.files.list("ft")}
    assert set(entries) == {"hello.txt", "text.txt", "from-file.bin", "sub"}
    assert entries["sub"].is_dir and entries["hello.txt"].size == 7
    assert entries["hello.txt"].modified is not None
    walked = {e.path for e in sb.files.list("ft", recursive=True)}
    assert "/workspace/ft/sub/deeper" in walked
    assert sb.files.exists("ft/text.txt") and not sb.files.exists("ft/nope")
    assert sb.files.is_dir("ft/sub") and not sb.files.is_dir("ft/text.txt")
    sb.files.move("ft/text.txt", "ft/sub/moved.txt")
    assert sb.files.read_text("ft/sub/moved.txt") == "héllo"
    with pytest.raises(NotFoundError):
        sb.files.read("ft/text.txt")
    with pytest.raises(ConflictError) as not_empty:
        sb.files.remove("ft/sub")
    assert not_empty.value.status == 409
    with pytest.raises(InvalidRequestError):
        sb.files.read("ft/sub")  # a directory where a file is expected
    sb.files.remove("ft/hello.txt")
    sb.files.remove("ft/sub", recursive=True)
    assert {e.name for e in sb.files.list("ft")} == {"from-file.bin"}


def test_files_large_write_and_download_with_progress(sb: Sandbox, tmp_path: Path) -> None:
    payload = bytes(range(256)) * (12 * 1024)  # 3 MiB
    sent: list[tuple[int, int | None]] = []
    sb.files.write("big/blob.bin", payload, progress=lambda d, t: sent.append((d, t)))
    assert sent[-1] == (len(payload), len(payload)) and len(sent) > 3
    got: list[tuple[int, int | None]] = []
    target = sb.files.download(
        "big/blob.bin", tmp_path / "blob.bin", progress=lambda d, t: got.append((d, t))
    )
    assert target.read_bytes() == payload
    assert got[-1][0] == len(payload)


def test_files_upload_and_download_folders(sb: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "project"
    (tree / "src" / "pkg").mkdir(parents=True)
    (tree / "empty").mkdir()
    (tree / "README.md").write_text("# project\n")
    (tree / "src" / "main.py").write_text("print('main')\n")
    (tree / "src" / "pkg" / "data.bin").write_bytes(b"\x00\x01" * 5000)
    big = bytes(range(256)) * (8 * 1024 + 1)  # over 1 MiB: streamed on its own
    (tree / "src" / "big.bin").write_bytes(big)
    done: list[tuple[int, int | None]] = []
    written = sb.files.upload(tree, "up", progress=lambda d, t: done.append((d, t)))
    assert "up/project/src/pkg/data.bin" in written and "up/project/src/big.bin" in written
    total = 10 + 14 + 10000 + len(big)
    assert done[-1] == (total, total)
    assert [d for d, _ in done] == sorted(d for d, _ in done)  # only forward
    assert sb.files.read("up/project/src/big.bin") == big
    assert sb.files.read_text("up/project/src/main.py") == "print('main')\n"
    assert sb.files.is_dir("up/project/empty")
    single = tmp_path / "one.txt"
    single.write_text("one")
    assert sb.files.upload(single, "up") == ["up/one.txt"]
    assert sb.files.read_text("up/one.txt") == "one"

    back = sb.files.download("up/project", tmp_path / "back")
    assert (back / "project" / "src" / "pkg" / "data.bin").read_bytes() == b"\x00\x01" * 5000
    assert (back / "project" / "README.md").read_text() == "# project\n"
    with pytest.raises(FileNotFoundError):
        sb.files.upload(tmp_path / "nope", "up")


def test_files_watch_yields_events(sb: Sandbox) -> None:
    sb.files.mkdir("watched")
    import threading

    def later() -> None:
        time.sleep(1.0)
        sb.exec("echo 1 > watched/new.txt; rm watched/new.txt")

    threading.Thread(target=later).start()
    events = []
    for event in sb.files.watch("watched", timeout=10):
        events.append(event)
        if event.type in ("delete", "deleted"):
            break
    assert any(e.path.endswith("new.txt") and e.type.startswith("create") for e in events)
    assert events[-1].path.endswith("new.txt")


# -- git ---------------------------------------------------------------------------------------


def test_git_clone_status_commit_log(sb: Sandbox) -> None:
    sb.exec(
        "rm -rf /tmp/origin.git /tmp/seed && git init -q --bare -b main /tmp/origin.git && "
        "git init -q -b main /tmp/seed && cd /tmp/seed && echo v1 > app.txt && "
        "git add . && git -c user.email=t@t -c user.name=t commit -qm first && "
        "git push -q /tmp/origin.git main",
        check=True,
    )
    clone = sb.git.clone("/tmp/origin.git", "gitrepo")
    assert clone.path.endswith("gitrepo") and clone.branch == "main"
    assert clone.commit and re.fullmatch(r"[0-9a-f]{7,40}", clone.commit)
    status = sb.git.status("gitrepo")
    assert status.branch == "main" and status.clean and status.commit
    sb.files.write("gitrepo/new.txt", "n")
    sb.files.write("gitrepo/app.txt", "v2")
    status = sb.git.status("gitrepo")
    changed = {f.path: f.status for f in status.files}
    assert set(changed) == {"new.txt", "app.txt"} and not status.clean
    assert "+v2" in sb.git.diff("gitrepo")
    assert sb.git.checkout("feature", "gitrepo", create=True).branch == "feature"
    staged = sb.git.add(["new.txt"], "gitrepo")
    assert {f.path for f in staged.files if f.staged} == {"new.txt"}
    head = sb.git.commit("add new.txt", "gitrepo", author_name="A", author_email="a@x")
    assert head.branch == "feature" and head.summary == "add new.txt"
    log = sb.git.log("gitrepo", limit=5)
    assert [c.summary for c in log] == ["add new.txt", "first"]
    assert log[0].author_name == "A"
    branches = sb.git.branches("gitrepo")
    assert branches.current == "feature" and set(branches.branches) == {"main", "feature"}
    with pytest.raises(SandboxIDEError) as bad:
        sb.git.clone("/tmp/does-not-exist.git", "nothing")
    assert bad.value.status == 400


def test_sessions_keep_cwd_and_env(sb: Sandbox) -> None:
    session = sb.sessions.create(cwd="/tmp")
    sb.exec("mkdir -p inner && cd inner && export FOO=bar", session=session)
    assert sb.exec("pwd; echo $FOO", session=session).stdout == "/tmp/inner\nbar\n"
    assert session.id in {s.id for s in sb.sessions.list()}
    assert sb.sessions.get(session.id).id == session.id
    sb.sessions.delete(session)
    assert session.id not in {s.id for s in sb.sessions.list()}


# -- processes ---------------------------------------------------------------------------------


def test_processes_start_logs_wait_kill(sb: Sandbox) -> None:
    proc = sb.processes.start("echo starting; sleep 0.5; echo ready now; sleep 600")
    assert proc.pid > 0 and proc.status == "running"
    assert sb.processes.wait_for_log(proc.pid, "re+ady", timeout=20) == "ready now"
    assert proc.pid in {p.pid for p in sb.processes.list()}
    assert sb.processes.get(proc.pid).running
    assert sb.processes.logs(proc.pid).stdout == "starting\nready now\n"
    sb.processes.kill(proc.pid)
    ended = sb.processes.wait(proc.pid, timeout=20)
    assert ended.status == "exited"
    slow = sb.processes.start(["sleep", "600"])
    with pytest.raises(CommandTimeout):
        sb.processes.wait_for_log(slow.pid, re.compile(r"never"), timeout=1)
    sb.processes.kill(slow.pid, signal="KILL")

    quick = sb.processes.start("echo out; echo err >&2; exit 5")
    assert sb.processes.wait(quick.pid, timeout=20).exit_code == 5
    with pytest.raises(ConflictError) as exited:
        sb.processes.wait_for_log(quick.pid, "never printed", timeout=10)
    assert exited.value.code == "process_exited"
    with pytest.raises(NotFoundError):
        sb.processes.get(999999)


def test_process_logs_follow(sb: Sandbox) -> None:
    proc = sb.processes.start("for i in 1 2 3; do echo n$i; sleep 0.3; done; echo e >&2")
    lines: list[str] = []
    logs = sb.processes.logs(proc.pid, follow=True, on_stdout=lines.append)
    assert "".join(lines) == "n1\nn2\nn3\n" and logs.stdout == "n1\nn2\nn3\n"
    assert logs.stderr == "e\n"


def test_wait_for_port_and_expose(sb: Sandbox, server: LiveServer) -> None:
    sb.files.write("site/index.html", "<h1>from the sandbox</h1>")
    web = sb.processes.start(["python3", "-m", "http.server", "8765"], cwd="site")
    sb.processes.wait_for_port(8765, pid=web.pid, timeout=30)
    assert 8765 in sb.ports.list().listening
    exposed = sb.ports.expose(8765, name="site")
    assert exposed.port == 8765 and exposed.token and str(exposed.port) in exposed.url
    assert [p.port for p in sb.ports.list().exposed] == [8765]
    host = httpx.URL(exposed.url).host
    page = httpx.get(server.url + "/", headers={"Host": f"{host}:{server.port}"}, timeout=30)
    assert page.status_code == 200 and "from the sandbox" in page.text
    assert exposed.visibility == "public" and not exposed.private  # as it always was
    # Sharing: private sends a browser to sign in; a timed public share lets it in.
    closed = sb.ports.revoke(8765)
    assert closed.visibility == "private" and closed.ended == "revoked" and closed.audience
    shut = httpx.get(server.url + "/", headers={"Host": f"{host}:{server.port}"}, timeout=30)
    assert shut.status_code == 410 and "revoked" in shut.text
    timed = sb.ports.share(8765, "public", expires_in=3600)
    assert timed.visibility == "public" and timed.expires_at and "/p/" in timed.share_url
    assert [p.visibility for p in sb.ports.list().exposed] == ["public"]
    with pytest.raises(InvalidRequestError) as bad:
        sb.ports.share(8765, "private", expires_in=60)
    assert bad.value.code == "invalid_expiry"
    sb.ports.unexpose(8765)
    assert sb.ports.list().exposed == []
    gone = httpx.get(server.url + "/", headers={"Host": f"{host}:{server.port}"}, timeout=30)
    assert gone.status_code == 404
    sb.processes.kill(web.pid)
    with pytest.raises(CommandTimeout) as nothing:
        sb.processes.wait_for_port(8799, timeout=1)  # polled from here
    assert "8799" in nothing.value.message
    idle = sb.processes.start(["sleep", "600"])
    with pytest.raises(CommandTimeout):
        sb.processes.wait_for_port(8799, pid=idle.pid, timeout=1)  # waited in the sandbox
    sb.processes.kill(idle.pid, signal="KILL")


# -- code interpreter --------------------------------------------------------------------------


def test_run_code_rich_results(sb: Sandbox) -> None:
    execution = sb.run_code(
        "import matplotlib.pyplot as plt\n"
        "print('drawing')\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\n"
        "plt.show()\n"
        "6 * 7"
    )
    assert isinstance(execution, Execution) and execution.error is None
    assert execution.stdout == "drawing\n"
    pngs = [r.png for r in execution.results if r.png]
    assert pngs and pngs[0].startswith(PNG_MAGIC)
    main = [r for r in execution.results if r.is_main_result]
    assert main and main[0].text == "42" and execution.text == "42"

    frame = sb.run_code("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': [3, 4]})")
    assert frame.results[0].html and "<table" in frame.results[0].html
    assert frame.results[0].text and "a" in frame.results[0].text

    failed = sb.run_code("1 / 0")
    assert failed.error is not None and failed.error.name == "ZeroDivisionError"
    assert "division by zero" in failed.error.value


def test_code_contexts_keep_state_and_stream(sb: Sandbox) -> None:
    ctx = sb.create_code_context("python")
    assert ctx.language == "python" and ctx.id
    sb.run_code("x = 20", context=ctx)
    assert sb.run_code("x + 1", context=ctx).text == "21"
    assert sb.run_code("x + 1", context=ctx.id).text == "21"
    assert ctx.id in {c.id for c in sb.list_code_contexts()}
    out: list[str] = []
    results = []
    execution = sb.run_code(
        "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)\nx * 2",
        context=ctx,
        on_stdout=out.append,
        on_result=results.append,
    )
    assert "".join(out) == "0\n1\n2\n" and execution.stdout == "0\n1\n2\n"
    assert execution.text == "40" and results and results[-1].text == "40"
    js = sb.run_code("[1, 2, 3].map(x => x * 2).join(',')", language="javascript")
    assert js.error is None and "2,4,6" in (js.text or "")
    sb.remove_code_context(ctx)
    assert ctx.id not in {c.id for c in sb.list_code_contexts()}


# -- terminals ---------------------------------------------------------------------------------


def test_terminal_interactive(sb: Sandbox) -> None:
    with sb.terminal("sdk-term", cols=100, rows=30) as term:
        term.send(b"echo $((6*7))\n")
        assert b"42" in term.expect(re.compile(rb"\b42\b"), timeout=20)
        term.resize(120, 40)
        term.send("stty size\n")
        term.expect("40 120", timeout=20)
    assert "sdk-term" in {t.name for t in sb.terminals.list()}
    # re-attach: the same shell, its scrollback replayed first
    with sb.terminal("sdk-term") as again:
        again.expect("40 120", timeout=20)
        again.send("exit 7\n")
        while again.recv(timeout=20):
            pass
        assert again.exit_code == 7
    with sb.terminal("sdk-term2") as other:
        other.send("echo hi\n")
        other.expect("hi", timeout=20)
    sb.terminals.kill("sdk-term2")
    assert "sdk-term2" not in {t.name for t in sb.terminals.list()}


# -- examples ----------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "sdk" / "python" / "examples"


def run_example(conn: dict[str, str], name: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SANDBOX_IDE_URL": conn["url"], "SANDBOX_IDE_TOKEN": conn["token"]}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout, done.stderr


def test_example_ci_job(conn: dict[str, str], tmp_path: Path) -> None:
    code, out, err = run_example(conn, "ci_job.py", "--sandbox", "ci-ok", cwd=tmp_path)
    assert code == 0, err
    assert "cloned /tmp/ci-origin.git at main" in out and "PASSED" in out
    assert "Ran 2 tests" in err
    code, out, err = run_example(
        conn, "ci_job.py", "--sandbox", "ci-bad", "--test", "python3 -c 'exit(3)'", cwd=tmp_path
    )
    assert code == 3 and "FAILED" in out
    assert {"ci-ok", "ci-bad"}.isdisjoint(s.name for s in Sandbox.list(**conn))  # cleaned up


def test_example_data_analysis(conn: dict[str, str], tmp_path: Path) -> None:
    code, out, err = run_example(conn, "data_analysis.py", "--out", "chart.png", cwd=tmp_path)
    assert code == 0, err
    assert "rows: 400" in out and "north" in out
    assert (tmp_path / "chart.png").read_bytes().startswith(PNG_MAGIC)


def test_example_agent_tool(conn: dict[str, str], tmp_path: Path) -> None:
    code, out, err = run_example(conn, "agent_tool.py", "--out", "charts", cwd=tmp_path)
    assert code == 0, err
    assert "(17, 440)" in out  # the text of a result
    assert "[error] IndexError" in out  # the model sees its mistake
    assert (tmp_path / "charts" / "call2-0.png").read_bytes().startswith(PNG_MAGIC)


# -- classroom: templates, courses, invites, the teacher's view ----------------------------------

STARTER_MAIN = b"def add(a, b):\n    return 0  # TODO\n"
STARTER_TESTS = (
    b"import unittest\nfrom main import add\n\n\n"
    b"class AddTest(unittest.TestCase):\n"
    b"    def test_small(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
    b"    def test_zero(self):\n        self.assertEqual(add(0, 0), 0)\n"
)


def tar_members(path: Path) -> dict[str, bytes]:
    import tarfile

    with tarfile.open(path, "r:gz") as tar:
        return {
            m.name.removeprefix("./"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_classroom_teacher_and_students(server: LiveServer, tmp_path: Path) -> None:
    from sandbox_ide import (
        Course,
        GoneError,
        PermissionDeniedError,
        Template,
    )

    teacher = {"url": server.url, "token": server.token("sdk-teacher")}
    alice = {"url": server.url, "token": server.token("sdk-stu-a")}
    bob = {"url": server.url, "token": server.token("sdk-stu-b")}

    # A template from files given as bytes, then more from a local folder.
    template = Template.create(
        "sdk-py101",
        files={"main.py": STARTER_MAIN, "test_main.py": STARTER_TESTS},
        open_files=["main.py"],
        warm_pool=0,
        **teacher,
    )
    first_head = template.info.starter_head
    assert len(first_head) == 40 and template.info.open_files == ["main.py"]
    (tmp_path / "starter" / "docs").mkdir(parents=True)
    (tmp_path / "starter" / "docs" / "notes.md").write_text("# Notes\n")
    info = template.upload(tmp_path / "starter", message="notes")
    assert info.starter_head not in ("", first_head)
    assert "sdk-py101" in {t.name for t in Template.list(**teacher)}
    with pytest.raises(NotFoundError):  # someone else's template is invisible
        Template.get(template.id, **alice)
    assert template.update(description="Week 1").description == "Week 1"
    assert Template.from_name("sdk-py101", **teacher).info.description == "Week 1"
    with Sandbox.get_or_create("sdk-own", template=template, **teacher) as own:
        assert own.info.template == template.id
        assert own.files.read_text("docs/notes.md") == "# Notes\n"
        own.destroy()

    # The course and an invite link.
    course = Course.create("SDK 101", template, **teacher)
    assert course.info.role == "teacher" and course.info.template_id == template.id
    [listed] = Course.list(**teacher)  # (a teacher's list was a server error once)
    assert (listed.id, listed.role, listed.teacher) == (course.id, "teacher", "sdk-teacher")
    invite = course.invite(days=2)
    assert invite.active and invite.url == f"{server.url}/join/{invite.token}/"
    assert invite.expires_at is not None
    details = Course.invite_details(invite.url, **alice)
    assert (details.course, details.course_name, details.teacher) == (
        course.id,
        "SDK 101",
        "sdk-teacher",
    )

    # Students join with the token (or the link): their own sandbox with the starter.
    mine = Course.join(invite.token, **alice)
    assert mine.joined is not None and mine.joined.created and mine.joined.course == course.id
    assert mine.status == "running" and mine.info.template == template.id
    assert mine.files.read("main.py") == STARTER_MAIN
    assert mine.files.read_text("docs/notes.md") == "# Notes\n"
    with Course.join(invite.url, **alice) as again:  # the same sandbox, not a second one
        assert again.id == mine.id and again.joined is not None and not again.joined.created
    bobs = Course.join(invite.token, **bob)
    mine.files.write("main.py", "def add(a, b):\n    return a + b\n")
    assert Course.get(course.id, **alice).info.role == "student"

    # The roster; students may not see it.
    roster = {s.username: s for s in course.roster()}
    assert set(roster) == {"sdk-stu-a", "sdk-stu-b"}
    assert roster["sdk-stu-a"].sandbox_id == mine.id and roster["sdk-stu-a"].status == "running"
    with Course.get(course.id, **alice) as as_student, pytest.raises(PermissionDeniedError) as no:
        as_student.roster()
    assert no.value.status == 403 and no.value.code == "teacher_only"

    # The teacher reads a student's files through the ordinary Sandbox; writes are refused.
    with Sandbox.connect(mine.id, **teacher) as theirs:
        assert theirs.files.read_text("main.py") == "def add(a, b):\n    return a + b\n"
        assert "main.py" in {e.name for e in theirs.files.list(".")}
        with pytest.raises(PermissionDeniedError) as read_only:
            theirs.files.write("main.py", "hacked")
        assert read_only.value.status == 403 and read_only.value.code == "read_only"
        with pytest.raises(PermissionDeniedError) as no_exec:
            theirs.exec("true")
        assert no_exec.value.code == "read_only"
    assert mine.files.read_text("main.py").endswith("a + b\n")  # unchanged
    with course.student_sandbox("sdk-stu-b") as theirs:
        assert theirs.id == bobs.id and theirs.files.read("main.py") == STARTER_MAIN

    # A starter update: a new file everywhere; alice's edited main.py is kept, the
    # starter's version lands beside it.
    template.upload({"main.py": STARTER_MAIN + b"# hint: use +\n", "hints.txt": b"use +\n"})
    update = course.push_update()
    assert update.starter_head == template.info.starter_head
    reports = {r.student: r for r in update.students}
    assert set(reports) == {"sdk-stu-a", "sdk-stu-b"} and all(r.ok for r in reports.values())
    assert [c.path for c in reports["sdk-stu-a"].conflicts] == ["main.py"]
    kept_as = reports["sdk-stu-a"].conflicts[0].kept_as
    assert kept_as and mine.files.read_text(kept_as).endswith("# hint: use +\n")
    assert mine.files.read_text("main.py").endswith("a + b\n")
    assert mine.files.read_text("hints.txt") == "use +\n"
    assert bobs.files.read("main.py").endswith(b"# hint: use +\n")  # no edits: updated
    assert mine.update_starter().status == "up_to_date"
    with pytest.raises(InvalidRequestError) as no_template:
        Sandbox.get_or_create("sdk-plain", **alice).update_starter()
    assert no_template.value.code == "no_template"

    # Reset: the workspace is archived (the teacher downloads it), then the starter is back.
    archive = course.reset("sdk-stu-a")
    assert archive.size > 0
    assert [a.id for a in course.archives("sdk-stu-a")] == [archive.id]
    saved = course.download_archive(archive, tmp_path)
    assert saved.parent == tmp_path and saved.name.endswith(".tar.gz")
    members = tar_members(saved)
    assert members["workspace/main.py"] == b"def add(a, b):\n    return a + b\n"
    extracted = course.download_archive(archive, tmp_path / "unpacked", extract=True)
    assert (extracted / "workspace" / "hints.txt").read_text() == "use +\n"
    assert mine.files.read("main.py").endswith(b"# hint: use +\n")  # the starter again
    assert not mine.files.exists(kept_as)

    # Sharing with the class.
    with Course.get(course.id, **alice) as as_student:
        shared = as_student.share(mine, "view")
        assert shared.owner == "sdk-stu-a" and shared.sandbox == mine.id
    assert [s.id for s in course.shares()] == [shared.id]
    course.unshare(shared)
    assert course.shares() == []

    # A revoked invite: joining is 410, raised as GoneError (a NotFoundError).
    assert course.revoke_invite(invite).state == "revoked"
    with pytest.raises(GoneError) as gone:
        Course.join(invite.token, url=server.url, token=server.token("sdk-stu-late"))
    assert gone.value.status == 410 and gone.value.code == "invite_expired"
    assert isinstance(gone.value, NotFoundError)
    with pytest.raises(NotFoundError):
        Course.join("no-such-token", **bob)

    # The example grader: the teacher's tests against each student's main.py.
    bobs.files.write("main.py", "def add(a, b):\n    return a - b\n")
    tests = tmp_path / "test_main.py"
    tests.write_bytes(STARTER_TESTS)
    code, out, err = run_example(
        teacher, "classroom_grader.py", "--course", "SDK 101", "--tests", str(tests), cwd=tmp_path
    )
    lines = out.splitlines()
    assert lines and lines[0].split() == ["STUDENT", "SANDBOX", "TESTS", "RESULT"], out + err
    rows = {line.split()[0]: line.split() for line in lines}
    assert rows["sdk-stu-a"][1:4] == [mine.id, "1/2", "FAILED"]  # reset: the TODO starter
    assert rows["sdk-stu-b"][1:4] == [bobs.id, "1/2", "FAILED"]
    assert code == 1
    mine.files.write("main.py", "def add(a, b):\n    return a + b\n")
    bobs.files.write("main.py", "def add(a, b):\n    return b + a\n")
    code, out, err = run_example(
        teacher, "classroom_grader.py", "--course", course.id, "--tests", str(tests), cwd=tmp_path
    )
    assert code == 0, out + err
    assert [line.split()[2:] for line in out.splitlines()[1:]] == [["2/2", "passed"]] * 2
    # Students' sandboxes were only read: the grading ran in the teacher's own.
    assert not mine.files.exists("grading")
    with Sandbox.from_name("grader", **teacher) as grader:
        assert grader.files.read("grading/sdk-stu-b/main.py").endswith(b"b + a\n")

    # Cleaning up: a template in use cannot go; the course first.
    with pytest.raises(ConflictError) as in_use:
        Template.get(template.id, **teacher).delete()
    assert in_use.value.code == "template_in_use"
    course.delete()
    template.delete()
    with pytest.raises(NotFoundError):
        Template.get(template.id, **teacher)
    for box in (mine, bobs):
        box.close()


def test_async_classroom(server: LiveServer, tmp_path: Path) -> None:
    from sandbox_ide import (
        AsyncCourse,
        AsyncTemplate,
        Course,
        GoneError,
        PermissionDeniedError,
        Template,
    )

    for sync_cls, async_cls in ((Course, AsyncCourse), (Template, AsyncTemplate)):
        public = {n for n in dir(sync_cls) if not n.startswith("_")}
        assert public == {n for n in dir(async_cls) if not n.startswith("_")}
    teacher = {"url": server.url, "token": server.token("sdk-async-teacher")}
    student = {"url": server.url, "token": server.token("sdk-async-stu")}
    starter = tmp_path / "starter"
    (starter / "pkg").mkdir(parents=True)
    (starter / "main.py").write_bytes(STARTER_MAIN)
    (starter / "pkg" / "util.py").write_text("X = 1\n")
    (starter / "pkg" / "naïve name.py").write_text("Y = 2\n")
    (starter / ".git").mkdir()
    (starter / ".git" / "HEAD").write_text("ref: refs/heads/main\n")

    async def scenario() -> None:
        async with await AsyncTemplate.create(
            "async-101", files=starter, warm_pool=0, **teacher
        ) as t:
            async with await AsyncCourse.create("Async 101", t, **teacher) as course:
                invite = await course.invite()
                assert [i.token for i in await course.invites()] == [invite.token]
                async with await AsyncCourse.join(invite.url, **student) as mine:
                    assert mine.joined is not None and mine.joined.created
                    assert await mine.files.read("pkg/util.py") == b"X = 1\n"
                    # The local .git was left out; a path's folders and letters are kept.
                    tracked = await mine.exec("git -c core.quotePath=false ls-files")
                    assert tracked.stdout.splitlines() == [
                        "main.py",
                        "pkg/naïve name.py",
                        "pkg/util.py",
                    ]
                    await mine.files.write("main.py", "# mine\n")
                    [row] = await course.roster()
                    assert row.username == "sdk-async-stu" and row.sandbox_id == mine.id
                    async with await AsyncSandbox.connect(row.sandbox_id, **teacher) as theirs:
                        assert await theirs.files.read_text("main.py") == "# mine\n"
                        with pytest.raises(PermissionDeniedError) as denied:
                            await theirs.files.write("main.py", "not yours")
                        assert denied.value.code == "read_only"
                    archive = await course.reset(row)
                    saved = await course.download_archive(archive, tmp_path / "a.tar.gz")
                    assert tar_members(saved)["workspace/main.py"] == b"# mine\n"
                    assert await mine.files.read("main.py") == STARTER_MAIN
                    assert (await mine.update_starter()).status == "up_to_date"
                await course.revoke_invite(invite.id)
                with pytest.raises(GoneError):
                    await AsyncCourse.join(invite.token, **student)
                await course.delete()
            await t.delete()

    asyncio.run(scenario())
