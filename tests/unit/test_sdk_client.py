"""The Python SDK against a scripted server (``httpx.MockTransport``): the requests it
sends, how it reads answers and streams, and the errors it raises. The live server
tests are tests/integration/test_sdk.py."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_ide import (
    AgentError,
    AsyncCourse,
    AsyncSandbox,
    AuthenticationError,
    CommandFailed,
    CommandTimeout,
    ConnectionFailed,
    Course,
    GoneError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    Result,
    Sandbox,
    SandboxIDEError,
    SandboxUnavailableError,
    Template,
)
from sandbox_ide._async.http import AsyncHTTP
from sandbox_ide._sync.http import HTTP

URL = "http://sdk.test"
SANDBOX = {"id": "sb1", "name": "demo", "status": "running"}

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def sse(*events: tuple[str, Any]) -> httpx.Response:
    body = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


def error(status: int, code: str, message: str = "it failed") -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}})


def raw_path(request: httpx.Request) -> str:
    """The path as sent, still quoted."""
    return request.url.raw_path.decode().partition("?")[0]


class FakeAPI:
    """Answers by method and path under ``/api/v1``; records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, *answers: Answer) -> None:
        """Answer the next calls with ``answers`` in turn (the last one repeats)."""
        self.routes[(method, path)] = list(answers)

    def handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        path = raw_path(request).removeprefix("/api/v1")
        answers = self.routes.get((request.method, path))
        if not answers:
            return error(404, "not_found", f"no route {request.method} {path}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request) if callable(answer) else answer

    def last(self, method: str, path: str) -> httpx.Request:
        for request in reversed(self.requests):
            if request.method == method and raw_path(request) == "/api/v1" + path:
                return request
        raise AssertionError(f"no {method} {path} among {self.requests}")


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAPI]:
    fake = FakeAPI()
    transport = httpx.MockTransport(fake.handle)
    monkeypatch.setattr(HTTP, "transport", transport)
    monkeypatch.setattr(AsyncHTTP, "transport", transport)
    yield fake


@pytest.fixture
def sb(api: FakeAPI) -> Iterator[Sandbox]:
    api.on("GET", "/sandboxes/sb1", httpx.Response(200, json=SANDBOX))
    with Sandbox.connect("sb1", url=URL, token="tok") as sandbox:
        yield sandbox


# -- requests and errors -----------------------------------------------------------------


def test_calls_carry_the_token_and_send_only_the_arguments_given(api: FakeAPI) -> None:
    api.on("POST", "/sandboxes", httpx.Response(201, json=SANDBOX))
    with Sandbox.get_or_create(
        "demo", template="t1", keep_alive=True, url=URL, token="tok"
    ) as sandbox:
        assert (sandbox.id, sandbox.name, sandbox.status) == ("sb1", "demo", "running")
        assert repr(sandbox) == "<Sandbox demo id=sb1 status=running>"
    request = api.last("POST", "/sandboxes")
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["user-agent"].startswith("sandbox-ide-python/")
    assert json.loads(request.content) == {"name": "demo", "template": "t1", "keep_alive": True}


def test_egress_is_sent_and_read_back(sb: Sandbox, api: FakeAPI) -> None:
    allow = {"allow": ["pypi.org", "*.pythonhosted.org"]}
    api.on("PATCH", "/sandboxes/sb1", httpx.Response(200, json={**SANDBOX, "egress": allow}))
    assert sb.update(egress=allow).egress == allow
    assert json.loads(api.last("PATCH", "/sandboxes/sb1").content) == {"egress": allow}


def test_the_url_may_end_in_the_api_prefix_and_a_token_is_required(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.on("GET", "/sandboxes", httpx.Response(200, json={"sandboxes": [SANDBOX]}))
    assert [i.id for i in Sandbox.list(url=URL + "/api/v1/", token="tok")] == ["sb1"]
    monkeypatch.delenv("SANDBOX_IDE_TOKEN", raising=False)
    with pytest.raises(AuthenticationError) as missing:
        Sandbox.list(url=URL)
    assert missing.value.code == "missing_token" and "SANDBOX_IDE_TOKEN" in missing.value.message


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "bad_request", InvalidRequestError),
        (401, "unauthorized", AuthenticationError),
        (404, "not_found", NotFoundError),
        (410, "gone", GoneError),
        (429, "limit_reached", RateLimitError),
        (502, "agent_error", AgentError),
        (503, "sandbox_unavailable", SandboxUnavailableError),
        (418, "teapot", SandboxIDEError),
    ],
)
def test_error_answers_raise_the_matching_error(
    api: FakeAPI, status: int, code: str, kind: type[SandboxIDEError]
) -> None:
    api.on("GET", "/sandboxes/sb1", error(status, code, "Exactly why."))
    with pytest.raises(kind) as raised:
        Sandbox.connect("sb1", url=URL, token="tok")
    assert (raised.value.code, raised.value.status) == (code, status)
    assert raised.value.message.startswith("Exactly why.")


def test_an_error_answer_without_json_still_has_a_status(api: FakeAPI) -> None:
    api.on("GET", "/sandboxes/sb1", httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(AgentError) as raised:
        Sandbox.connect("sb1", url=URL, token="tok")
    assert raised.value.status == 502 and "HTTP 502" in raised.value.message


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (httpx.ConnectError("refused"), ConnectionFailed),
        (httpx.ReadTimeout("slow"), CommandTimeout),
    ],
)
def test_no_answer_is_connection_failed_or_a_timeout(
    api: FakeAPI, failure: Exception, kind: type[SandboxIDEError]
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure

    api.on("GET", "/sandboxes/sb1", fail)
    with pytest.raises(kind) as raised:
        Sandbox.connect("sb1", url=URL, token="tok")
    assert URL in raised.value.message


def test_ids_and_names_are_quoted_into_one_path_level(sb: Sandbox, api: FakeAPI) -> None:
    api.on("DELETE", "/sandboxes/sb1/terminals/a%2Fb%20c", httpx.Response(204))
    api.on("DELETE", "/sandboxes/sb1/sessions/s%3F1", httpx.Response(204))
    sb.terminals.kill("a/b c")
    sb.sessions.delete("s?1")


# -- finding resources ---------------------------------------------------------------------


def test_from_name_finds_by_name_and_says_what_to_do_otherwise(api: FakeAPI) -> None:
    other = {"id": "sb2", "name": "other", "status": "sleeping"}
    api.on("GET", "/sandboxes", httpx.Response(200, json={"sandboxes": [other, SANDBOX]}))
    with Sandbox.from_name("demo", url=URL, token="tok") as sandbox:
        assert sandbox.id == "sb1"
    with pytest.raises(NotFoundError) as missing:
        Sandbox.from_name("sb2", url=URL, token="tok")  # sandboxes are found by name only
    assert "Sandbox.get_or_create('sb2')" in missing.value.message
    api.on(
        "GET", "/templates", httpx.Response(200, json={"templates": [{"id": "t1", "name": "py"}]})
    )
    with Template.from_name("t1", url=URL, token="tok") as template:
        assert template.name == "py" and repr(template) == "<Template py id=t1>"


def test_courses_taught_come_before_courses_joined(api: FakeAPI) -> None:
    taught = {"id": "c1", "name": "intro", "role": "teacher"}
    joined = {"id": "c2", "name": "intro", "role": "student"}
    api.on(
        "GET", "/courses", httpx.Response(200, json={"teaching": [taught], "enrolled": [joined]})
    )
    assert [c.role for c in Course.list(url=URL, token="tok")] == ["teacher", "student"]
    with Course.from_name("intro", url=URL, token="tok") as course:
        assert course.info.is_teacher and repr(course) == "<Course intro id=c1 role=teacher>"
    with Course.from_name("c2", url=URL, token="tok") as course:
        assert course.info.role == "student"


def test_refresh_reloads_and_destroy_closes(sb: Sandbox, api: FakeAPI) -> None:
    api.on("GET", "/sandboxes/sb1", httpx.Response(200, json={**SANDBOX, "status": "sleeping"}))
    assert sb.refresh().status == "sleeping" and sb.status == "sleeping"
    api.on("DELETE", "/sandboxes/sb1", httpx.Response(204))
    sb.destroy()
    assert sb._http.client.is_closed


def test_joining_a_course_returns_the_sandbox_and_how_it_went(api: FakeAPI) -> None:
    api.on(
        "POST",
        "/invites/TOKEN/join",
        httpx.Response(200, json={"course": "c1", "sandbox": "sb1", "created": True}),
    )
    api.on("GET", "/sandboxes/sb1", httpx.Response(200, json=SANDBOX))
    with Course.join("http://x/join/TOKEN/", url=URL, token="tok") as sandbox:
        assert sandbox.id == "sb1"
        assert sandbox.joined is not None and sandbox.joined.created


def test_a_template_whose_files_fail_to_upload_is_deleted(api: FakeAPI, tmp_path: Path) -> None:
    api.on("POST", "/templates", httpx.Response(201, json={"id": "t1", "name": "py"}))
    api.on("PUT", "/templates/t1/files", error(413, "payload_too_large"))
    api.on("DELETE", "/templates/t1", httpx.Response(204))
    (tmp_path / "main.py").write_text("print(1)\n")
    with pytest.raises(InvalidRequestError):
        Template.create("py", files=tmp_path, url=URL, token="tok")
    upload = api.last("PUT", "/templates/t1/files")
    assert b'name="main.py"' in upload.content and b"print(1)" in upload.content
    api.last("DELETE", "/templates/t1")


# -- streams -----------------------------------------------------------------------------------


def test_exec_streams_output_to_the_callbacks(sb: Sandbox, api: FakeAPI) -> None:
    api.on(
        "POST",
        "/sandboxes/sb1/exec",
        sse(
            ("stdout", {"data": "one\n"}),
            ("stderr", {"data": "warn\n"}),
            ("stdout", {"data": "two\n"}),
            ("exit", {"exit_code": 0, "success": True}),
        ),
    )
    out: list[str] = []
    result = sb.exec(["echo", "one"], on_stdout=out.append, on_stderr=lambda _: None)
    assert out == ["one\n", "two\n"]
    assert (result.stdout, result.stderr, result.success) == ("one\ntwo\n", "warn\n", True)
    request = api.last("POST", "/sandboxes/sb1/exec")
    assert request.headers["accept"] == "text/event-stream"
    assert json.loads(request.content) == {"command": ["echo", "one"]}


def test_a_stream_that_ends_early_or_fails_raises(sb: Sandbox, api: FakeAPI) -> None:
    api.on("POST", "/sandboxes/sb1/exec", sse(("stdout", {"data": "x"})))
    with pytest.raises(AgentError, match="before its exit status"):
        sb.exec("true", on_stdout=print)
    api.on(
        "POST",
        "/sandboxes/sb1/exec",
        sse(("error", {"code": "limit_reached", "message": "Too much output."})),
    )
    with pytest.raises(RateLimitError, match="Too much output"):
        sb.exec("yes", on_stdout=lambda _: None)


def test_exec_check_raises_on_failure(sb: Sandbox, api: FakeAPI) -> None:
    failed = {"stdout": "", "stderr": "boom", "exit_code": 3, "success": False}
    api.on("POST", "/sandboxes/sb1/exec", httpx.Response(200, json=failed))
    assert sb.exec("false").exit_code == 3
    with pytest.raises(CommandFailed) as raised:
        sb.exec("false", check=True)
    assert raised.value.result.exit_code == 3 and "boom" in raised.value.message


def test_run_code_collects_results_and_the_error(sb: Sandbox, api: FakeAPI) -> None:
    api.on(
        "POST",
        "/sandboxes/sb1/code/run",
        sse(
            ("stdout", "hi\n"),
            ("result", {"text/plain": "42", "is_main_result": True}),
            ("end", {"error": {"name": "ValueError", "value": "bad", "traceback": ["l1", "l2"]}}),
        ),
    )
    seen: list[Result] = []
    execution = sb.run_code("print('hi'); 42", context="ctx", on_result=seen.append)
    assert execution.stdout == "hi\n" and execution.text == "42" and seen == execution.results
    assert execution.error is not None and str(execution.error) == "ValueError: bad"
    assert execution.error.traceback == "l1\nl2"
    body = json.loads(api.last("POST", "/sandboxes/sb1/code/run").content)
    assert body == {"code": "print('hi'); 42", "context": "ctx"}


def test_following_process_logs(sb: Sandbox, api: FakeAPI) -> None:
    api.on(
        "GET",
        "/sandboxes/sb1/processes/7/logs",
        sse(("stdout", {"data": "a"}), ("stderr", {"data": "b"}), ("exit", {"exit_code": 1})),
    )
    logs = sb.processes.logs(7, follow=True)
    assert (logs.stdout, logs.stderr, logs.exit_code) == ("a", "b", 1)
    assert api.last("GET", "/sandboxes/sb1/processes/7/logs").url.params["follow"] == "1"


async def test_the_async_client_awaits_async_callbacks(api: FakeAPI) -> None:
    api.on("GET", "/sandboxes/sb1", httpx.Response(200, json=SANDBOX))
    api.on(
        "POST",
        "/sandboxes/sb1/exec",
        sse(("stdout", {"data": "one\n"}), ("exit", {"exit_code": 0, "success": True})),
    )
    seen: list[str] = []

    async def on_stdout(text: str) -> None:
        seen.append(text)

    async with await AsyncSandbox.connect("sb1", url=URL, token="tok") as asb:
        result = await asb.exec("echo one", on_stdout=on_stdout)
    assert seen == ["one\n"] and result.stdout == "one\n"
    assert asb._http.client.is_closed


async def test_the_async_client_finds_courses_and_maps_errors(api: FakeAPI) -> None:
    api.on("GET", "/courses", httpx.Response(200, json={"teaching": [], "enrolled": []}))
    with pytest.raises(NotFoundError, match="course list"):
        await AsyncCourse.from_name("nope", url=URL, token="tok")
    api.on("GET", "/invites/T", error(410, "gone", "The invite has expired."))
    with pytest.raises(GoneError):
        await AsyncCourse.invite_details("T", url=URL, token="tok")


# -- files ---------------------------------------------------------------------------------------


def test_write_streams_with_a_length_and_reports_progress(sb: Sandbox, api: FakeAPI) -> None:
    api.on(
        "PUT", "/sandboxes/sb1/files/content", httpx.Response(201, json={"path": "/workspace/a"})
    )
    reports: list[tuple[int, int | None]] = []
    data = b"x" * 600_000
    written = sb.files.write("a", data, progress=lambda done, total: reports.append((done, total)))
    assert (written.path, written.created, written.size) == ("/workspace/a", True, 600_000)
    request = api.last("PUT", "/sandboxes/sb1/files/content")
    assert request.content == data and request.headers["content-length"] == "600000"
    assert reports[-1] == (600_000, 600_000) and len(reports) == 3
    sb.files.write("b", io.BytesIO(b"from a file"))
    assert api.last("PUT", "/sandboxes/sb1/files/content").content == b"from a file"


def test_download_saves_a_file_or_unpacks_a_folder(
    sb: Sandbox, api: FakeAPI, tmp_path: Path
) -> None:
    api.on("GET", "/sandboxes/sb1/files/content", httpx.Response(200, content=b"hello"))
    assert sb.files.download("a.txt", tmp_path / "sub" / "a.txt").read_bytes() == b"hello"
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        info = tarfile.TarInfo("dir/inner.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"inner"))
    api.on("GET", "/sandboxes/sb1/files/content", error(400, "is_a_directory"))
    api.on("GET", "/sandboxes/sb1/files/archive", httpx.Response(200, content=packed.getvalue()))
    target = sb.files.download("dir", tmp_path / "out")
    assert (target / "dir" / "inner.txt").read_bytes() == b"inner"
    assert not list(tmp_path.rglob("*.part"))


def test_exists_asks_the_parent_listing(sb: Sandbox, api: FakeAPI) -> None:
    entries = [{"name": "src", "path": "/workspace/src", "type": "directory"}]
    api.on("GET", "/sandboxes/sb1/files", httpx.Response(200, json={"entries": entries}))
    assert sb.files.is_dir("src") and sb.files.exists("src") and not sb.files.exists("nope")
    assert sb.files.is_dir(".")
    assert api.last("GET", "/sandboxes/sb1/files").url.params["path"] == "."
