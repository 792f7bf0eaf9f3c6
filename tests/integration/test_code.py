"""The code interpreter (docs/api.md, Code interpreter) in a real sandbox.

Python contexts are Jupyter kernels, JavaScript contexts Node.js REPLs; every test
speaks HTTP to the live test server, as a client would.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(api: httpx.Client, sandbox: dict, code: str, **body: object) -> dict:
    response = api.post(f"/sandboxes/{sandbox['id']}/code/run", json={"code": code, **body})
    assert response.status_code == 200, response.text
    return response.json()


def new_context(api: httpx.Client, sandbox: dict, **body: object) -> dict:
    response = api.post(f"/sandboxes/{sandbox['id']}/code/contexts", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def main_result(out: dict) -> dict:
    mains = [r for r in out["results"] if r["is_main_result"]]
    assert len(mains) == 1, out
    return mains[0]


def stream(
    api: httpx.Client, sandbox: dict, code: str, **body: object
) -> Iterator[tuple[str, dict, float]]:
    """(event, data, arrival time) for each SSE event of a streamed run."""
    with api.stream(
        "POST",
        f"/sandboxes/{sandbox['id']}/code/run",
        json={"code": code, **body},
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                yield name or "", json.loads(line[6:]), time.monotonic()


@pytest.fixture(scope="module")
def py(api: httpx.Client, shared_sandbox: dict) -> dict:
    """A Python context of this module's own."""
    return new_context(api, shared_sandbox, language="python")


@pytest.fixture(scope="module")
def js(api: httpx.Client, shared_sandbox: dict) -> dict:
    return new_context(api, shared_sandbox, language="javascript")


# ------------------------------------------------------------------------- Python


def test_python_state_stdout_stderr_and_result(
    api: httpx.Client, shared_sandbox: dict, py: dict
) -> None:
    assert py["language"] == "python" and py["cwd"] == "/workspace" and py["id"]
    first = run(api, shared_sandbox, "x = 20\nprint('hello')", context=py["id"])
    assert first["stdout"] == "hello\n" and first["results"] == [] and first["error"] is None
    out = run(
        api,
        shared_sandbox,
        "import sys\nprint('to err', file=sys.stderr)\nx + 22",
        context=py["id"],
    )
    assert out["stderr"] == "to err\n" and out["stdout"] == ""
    assert main_result(out)["text/plain"] == "42"
    assert out["error"] is None and out["context"] == py["id"]


def test_python_default_context_without_context(api: httpx.Client, shared_sandbox: dict) -> None:
    run(api, shared_sandbox, "default_value = 'kept'")
    out = run(api, shared_sandbox, "default_value")
    assert main_result(out)["text/plain"] == "'kept'"
    assert out["context"] == "default-python"
    listed = api.get(f"/sandboxes/{shared_sandbox['id']}/code/contexts").json()["contexts"]
    assert "default-python" in [c["id"] for c in listed]


def test_python_dataframe_is_html_and_text(
    api: httpx.Client, shared_sandbox: dict, py: dict
) -> None:
    out = run(
        api,
        shared_sandbox,
        "import pandas as pd\npd.DataFrame({'name': ['ada', 'bob'], 'age': [36, 41]})",
        context=py["id"],
    )
    result = main_result(out)
    assert "<table" in result["text/html"] and "<td>ada</td>" in result["text/html"]
    assert "ada" in result["text/plain"] and "age" in result["text/plain"]


def test_python_open_figure_comes_back_as_png(
    api: httpx.Client, shared_sandbox: dict, py: dict
) -> None:
    out = run(
        api,
        shared_sandbox,
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nprint('drawn')",
        context=py["id"],
    )
    assert out["error"] is None and out["stdout"] == "drawn\n"
    images = [r for r in out["results"] if "image/png" in r]
    assert len(images) == 1 and images[0]["is_main_result"] is False
    assert base64.b64decode(images[0]["image/png"]).startswith(PNG_MAGIC)
    # the figure was closed after the cell: the next cell shows nothing again
    assert run(api, shared_sandbox, "1", context=py["id"])["results"] == [
        {"text/plain": "1", "is_main_result": True}
    ]


def test_python_figure_as_svg_when_asked(api: httpx.Client, shared_sandbox: dict, py: dict) -> None:
    out = run(
        api,
        shared_sandbox,
        "%config InlineBackend.figure_formats = ['png', 'svg']\n"
        "import matplotlib.pyplot as plt\n"
        "fig = plt.figure(); plt.bar([1, 2], [3, 4])\n"
        "None",
        context=py["id"],
    )
    assert out["error"] is None, out["error"]
    (figure,) = [r for r in out["results"] if "image/svg+xml" in r]
    assert "<svg" in figure["image/svg+xml"] and "image/png" in figure
    run(api, shared_sandbox, "%config InlineBackend.figure_formats = ['png']", context=py["id"])


def test_python_rich_display_types(api: httpx.Client, shared_sandbox: dict, py: dict) -> None:
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><circle r="4"/></svg>'
    out = run(
        api,
        shared_sandbox,
        "from IPython.display import SVG, JSON, Markdown, Latex, HTML, display\n"
        f"display(SVG({svg!r}))\n"
        "display(JSON({'a': [1, 2], 'b': None}))\n"
        "display(Markdown('# Title'))\n"
        "display(Latex(r'$\\alpha^2$'))\n"
        "display(HTML('<b>bold</b>'))\n",
        context=py["id"],
    )
    assert out["error"] is None, out["error"]
    by_type = {}
    for result in out["results"]:
        assert result["is_main_result"] is False
        for key in result:
            by_type.setdefault(key, result[key])
    assert "<circle" in by_type["image/svg+xml"]
    assert by_type["application/json"] == {"a": [1, 2], "b": None}
    assert by_type["text/markdown"] == "# Title"
    assert by_type["text/latex"] == "$\\alpha^2$"
    assert by_type["text/html"] == "<b>bold</b>"


def test_python_error_shape(api: httpx.Client, shared_sandbox: dict, py: dict) -> None:
    out = run(api, shared_sandbox, "print('before')\n1 / 0", context=py["id"])
    assert out["stdout"] == "before\n" and out["results"] == []
    error = out["error"]
    assert error["name"] == "ZeroDivisionError" and error["value"] == "division by zero"
    assert "1 / 0" in error["traceback"] and "ZeroDivisionError" in error["traceback"]
    assert "\x1b[" not in error["traceback"]  # no ANSI colour codes


def test_python_timeout_interrupts_and_keeps_state(api: httpx.Client, shared_sandbox: dict) -> None:
    ctx = new_context(api, shared_sandbox, language="python")
    run(api, shared_sandbox, "kept = [1, 2, 3]", context=ctx["id"])
    started = time.monotonic()
    out = run(api, shared_sandbox, "while True:\n    pass", context=ctx["id"], timeout=1)
    assert time.monotonic() - started < 8
    assert out["error"]["name"] == "TimeoutError"
    assert "1 s timeout" in out["error"]["value"] and "kept" in out["error"]["value"]
    assert (
        main_result(run(api, shared_sandbox, "sum(kept)", context=ctx["id"]))["text/plain"] == "6"
    )
    api.delete(f"/sandboxes/{shared_sandbox['id']}/code/contexts/{ctx['id']}")


def test_python_kernel_crash_is_reported_then_restarts(
    api: httpx.Client, shared_sandbox: dict
) -> None:
    ctx = new_context(api, shared_sandbox, language="python")
    run(api, shared_sandbox, "lost = 1", context=ctx["id"])
    out = run(api, shared_sandbox, "import os; os._exit(1)", context=ctx["id"])
    assert out["error"]["name"] == "KernelDied"
    assert "exit" in out["error"]["value"] and "state" in out["error"]["value"]
    again = run(api, shared_sandbox, "'lost' in globals(), 2 + 2", context=ctx["id"])
    assert again["error"] is None
    assert main_result(again)["text/plain"] == "(False, 4)"
    api.delete(f"/sandboxes/{shared_sandbox['id']}/code/contexts/{ctx['id']}")


def test_context_cwd_and_env(api: httpx.Client, shared_sandbox: dict) -> None:
    api.post(f"/sandboxes/{shared_sandbox['id']}/exec", json={"command": "mkdir -p /tmp/ctxdir"})
    py_ctx = new_context(
        api, shared_sandbox, language="python", cwd="/tmp/ctxdir", env={"GREETING": "hi there"}
    )
    assert py_ctx["cwd"] == "/tmp/ctxdir"
    out = run(
        api,
        shared_sandbox,
        "import os\nos.getcwd(), os.environ['GREETING']",
        context=py_ctx["id"],
    )
    assert main_result(out)["text/plain"] == "('/tmp/ctxdir', 'hi there')"
    js_ctx = new_context(
        api, shared_sandbox, language="javascript", cwd="/tmp/ctxdir", env={"GREETING": "hello"}
    )
    out = run(api, shared_sandbox, "[process.cwd(), process.env.GREETING]", context=js_ctx["id"])
    assert main_result(out)["application/json"] == ["/tmp/ctxdir", "hello"]
    for ctx in (py_ctx, js_ctx):
        api.delete(f"/sandboxes/{shared_sandbox['id']}/code/contexts/{ctx['id']}")


# --------------------------------------------------------------------- JavaScript


def test_javascript_state_console_and_result(
    api: httpx.Client, shared_sandbox: dict, js: dict
) -> None:
    assert js["language"] == "javascript"
    assert run(api, shared_sandbox, "let x = 1", context=js["id"])["results"] == []
    out = run(api, shared_sandbox, "x + 1", context=js["id"])
    assert main_result(out)["text/plain"] == "2"
    out = run(
        api,
        shared_sandbox,
        "function double(n) { return n * 2 }\n"
        "console.log('log', double(x)); console.error('warned');\n"
        "({list: [double(2), 'a'], ok: true})",
        context=js["id"],
    )
    assert out["stdout"] == "log 2\n" and out["stderr"] == "warned\n"
    result = main_result(out)
    assert result["application/json"] == {"list": [4, "a"], "ok": True}
    assert "list" in result["text/plain"]


def test_javascript_cells_run_again(api: httpx.Client, shared_sandbox: dict, js: dict) -> None:
    """Declaring again what an earlier cell declared (a cell run twice) assigns."""
    for value in (1, 2):
        out = run(
            api,
            shared_sandbox,
            f"const again = {value}; let {{ twice }} = {{ twice: again * 2 }}\n"
            f"class Shape {{ sides() {{ return {value} }} }}\n"
            "[again, twice, new Shape().sides()]",
            context=js["id"],
        )
        assert out["error"] is None, out["error"]
        assert main_result(out)["application/json"] == [value, value * 2, value]


def test_javascript_top_level_await(api: httpx.Client, shared_sandbox: dict, js: dict) -> None:
    out = run(
        api,
        shared_sandbox,
        "const waited = await new Promise(r => setTimeout(() => r(41), 50)); waited + 1",
        context=js["id"],
    )
    assert main_result(out)["text/plain"] == "42"
    assert main_result(run(api, shared_sandbox, "waited", context=js["id"]))["text/plain"] == "41"


def test_javascript_error_shape(api: httpx.Client, shared_sandbox: dict, js: dict) -> None:
    out = run(api, shared_sandbox, "throw new TypeError('bad input')", context=js["id"])
    assert out["error"]["name"] == "TypeError" and out["error"]["value"] == "bad input"
    assert "TypeError: bad input" in out["error"]["traceback"]
    out = run(api, shared_sandbox, "notDefinedAnywhere + 1", context=js["id"])
    assert out["error"]["name"] == "ReferenceError"
    assert "notDefinedAnywhere" in out["error"]["value"]


def test_javascript_timeout_keeps_state(api: httpx.Client, shared_sandbox: dict) -> None:
    ctx = new_context(api, shared_sandbox, language="javascript")
    run(api, shared_sandbox, "let survivor = 'still here'", context=ctx["id"])
    out = run(api, shared_sandbox, "while (true) {}", context=ctx["id"], timeout=1)
    assert out["error"]["name"] == "TimeoutError"
    out = run(api, shared_sandbox, "await new Promise(() => {})", context=ctx["id"], timeout=1)
    assert out["error"]["name"] == "TimeoutError"
    out = run(api, shared_sandbox, "survivor", context=ctx["id"])
    assert main_result(out)["text/plain"] == "'still here'"
    api.delete(f"/sandboxes/{shared_sandbox['id']}/code/contexts/{ctx['id']}")


def test_javascript_crash_restarts(api: httpx.Client, shared_sandbox: dict) -> None:
    ctx = new_context(api, shared_sandbox, language="javascript")
    run(api, shared_sandbox, "var gone = 1", context=ctx["id"])
    out = run(api, shared_sandbox, "process.exit(3)", context=ctx["id"])
    assert out["error"]["name"] == "KernelDied" and "code 3" in out["error"]["value"]
    out = run(api, shared_sandbox, "typeof gone", context=ctx["id"])
    assert main_result(out)["text/plain"] == "'undefined'"
    api.delete(f"/sandboxes/{shared_sandbox['id']}/code/contexts/{ctx['id']}")


def test_javascript_default_context(api: httpx.Client, shared_sandbox: dict) -> None:
    run(api, shared_sandbox, "globalThis.marker = 7", language="javascript")
    out = run(api, shared_sandbox, "marker * 6", language="javascript")
    assert main_result(out)["text/plain"] == "42" and out["context"] == "default-javascript"


# ---------------------------------------------------------------------- streaming


def test_stream_python_lines_arrive_live_in_order(
    api: httpx.Client, shared_sandbox: dict, py: dict
) -> None:
    code = (
        "import time, sys\n"
        "for i in range(3):\n"
        "    print(f'tick {i}', flush=True)\n"
        "    time.sleep(1)\n"
        "print('oops', file=sys.stderr)\n"
        "'done'"
    )
    events = list(stream(api, shared_sandbox, code, context=py["id"]))
    names = [name for name, _, _ in events]
    assert names[-1] == "end" and names.count("end") == 1
    ticks = [(d["data"], t) for n, d, t in events if n == "stdout"]
    assert "".join(text for text, _ in ticks) == "tick 0\ntick 1\ntick 2\n"
    assert len(ticks) == 3 and ticks[2][1] - ticks[0][1] > 1.5  # live, not buffered
    assert [d["data"] for n, d, _ in events if n == "stderr"] == ["oops\n"]
    result_at = names.index("result")
    assert result_at > max(i for i, n in enumerate(names) if n in ("stdout", "stderr"))
    assert events[result_at][1]["text/plain"] == "'done'"
    assert events[result_at][1]["is_main_result"] is True


def test_stream_error_then_end(api: httpx.Client, shared_sandbox: dict, js: dict) -> None:
    events = list(stream(api, shared_sandbox, "console.log('a'); null.b", context=js["id"]))
    assert [n for n, _, _ in events] == ["stdout", "error", "end"]
    assert events[1][1]["name"] == "TypeError"


def test_stream_javascript_live(api: httpx.Client, shared_sandbox: dict, js: dict) -> None:
    code = (
        "for (let i = 0; i < 3; i++) {\n"
        "  console.log('js', i); await new Promise(r => setTimeout(r, 600))\n"
        "}"
    )
    events = list(stream(api, shared_sandbox, code, context=js["id"]))
    lines = [(d["data"], t) for n, d, t in events if n == "stdout"]
    assert [text for text, _ in lines] == ["js 0\n", "js 1\n", "js 2\n"]
    assert lines[2][1] - lines[0][1] > 0.9
    assert events[-1][0] == "end"


def test_disconnect_interrupts_the_run(api: httpx.Client, shared_sandbox: dict) -> None:
    ctx = new_context(api, shared_sandbox, language="python")
    run(api, shared_sandbox, "state = 'alive'", context=ctx["id"])
    code = "import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)"
    for name, _, _ in stream(api, shared_sandbox, code, context=ctx["id"]):
        if name == "stdout":
            break  # hang up after the first line
    started = time.monotonic()
    out = run(api, shared_sandbox, "state", context=ctx["id"], timeout=30)
    assert main_result(out)["text/plain"] == "'alive'"
    assert time.monotonic() - started < 15  # the abandoned loop (60 s) did not hold it
    api.delete(f"/sandboxes/{shared_sandbox['id']}/code/contexts/{ctx['id']}")


def test_runs_in_one_context_queue_up(api: httpx.Client, shared_sandbox: dict, js: dict) -> None:
    import concurrent.futures

    run(api, shared_sandbox, "var order = []", context=js["id"])
    code = "order.push('{0}'); await new Promise(r => setTimeout(r, 200)); order.push('{0}')"

    def one(tag: str) -> dict:
        return run(api, shared_sandbox, code.format(tag), context=js["id"])

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(one, "abc"))
    assert all(out["error"] is None for out in outs)
    order = main_result(run(api, shared_sandbox, "order.join('')", context=js["id"]))
    pairs = order["text/plain"].strip("'")
    assert sorted(pairs) == sorted("aabbcc")
    assert all(pairs[i] == pairs[i + 1] for i in range(0, 6, 2))  # never interleaved


# ---------------------------------------------------------------- contexts and input


def test_contexts_list_and_delete(api: httpx.Client, shared_sandbox: dict) -> None:
    base = f"/sandboxes/{shared_sandbox['id']}/code/contexts"
    ctx = new_context(api, shared_sandbox, language="javascript")
    listed = api.get(base)
    assert listed.status_code == 200
    found = [c for c in listed.json()["contexts"] if c["id"] == ctx["id"]]
    assert found and found[0]["language"] == "javascript"
    assert api.delete(f"{base}/{ctx['id']}").status_code == 204
    assert ctx["id"] not in [c["id"] for c in api.get(base).json()["contexts"]]
    again = api.delete(f"{base}/{ctx['id']}")
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    gone = api.post(
        f"/sandboxes/{shared_sandbox['id']}/code/run", json={"code": "1", "context": ctx["id"]}
    )
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


def test_context_limit(api: httpx.Client, shared_sandbox: dict) -> None:
    base = f"/sandboxes/{shared_sandbox['id']}/code/contexts"
    made = []
    try:
        for _ in range(17):  # the agent allows 16 besides the default contexts
            response = api.post(base, json={"language": "javascript"})
            if response.status_code != 201:
                break
            made.append(response.json()["id"])
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "limit_reached"
        assert "delete" in response.json()["error"]["message"]
        assert run(api, shared_sandbox, "'default still runs'")["error"] is None
    finally:
        for context in made:
            api.delete(f"{base}/{context}")
    again = api.post(base, json={"language": "javascript"})
    assert again.status_code == 201
    api.delete(f"{base}/{again.json()['id']}")


def test_bad_requests(api: httpx.Client, shared_sandbox: dict, py: dict) -> None:
    url = f"/sandboxes/{shared_sandbox['id']}/code"
    bad_language = api.post(f"{url}/run", json={"code": "1", "language": "ruby"})
    assert bad_language.status_code == 400 and "language" in bad_language.json()["error"]["message"]
    assert api.post(f"{url}/contexts", json={"language": "cobol"}).status_code == 400
    mismatch = api.post(
        f"{url}/run", json={"code": "1", "context": py["id"], "language": "javascript"}
    )
    assert mismatch.status_code == 400
    assert "python" in mismatch.json()["error"]["message"]
    unknown = api.post(
        f"{url}/run", json={"code": "1", "context": "nope"}, headers={"Accept": "text/event-stream"}
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert api.post(f"{url}/run", json={"code": "1", "timeout": -1}).status_code == 400
    assert api.post(f"{url}/run", json={"language": "python"}).status_code == 400
    missing_dir = api.post(f"{url}/contexts", json={"language": "python", "cwd": "/nope/x"})
    assert missing_dir.status_code == 404
    # 3.8 MB of body, but more than the agent's 4 MB frame once JSON-escaped
    body = json.dumps({"code": "#" + "é" * 1_900_000}, ensure_ascii=False).encode()
    huge = api.post(f"{url}/run", content=body, headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "file" in huge.json()["error"]["message"]
    other = api.post("/sandboxes/doesnotexist/code/run", json={"code": "1"})
    assert other.status_code == 404
