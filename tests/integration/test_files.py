"""Files (docs/api.md, Files) and file watching in a real sandbox."""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.server import LiveServer, free_port


def files_url(sandbox: dict, suffix: str = "") -> str:
    return f"/sandboxes/{sandbox['id']}/files{suffix}"


def put(api: httpx.Client, sandbox: dict, path: str, content: bytes | Iterator[bytes]) -> dict:
    response = api.put(files_url(sandbox, "/content"), params={"path": path}, content=content)
    assert response.status_code in (200, 201), response.text
    return response.json()


def get(api: httpx.Client, sandbox: dict, path: str, **headers: str) -> httpx.Response:
    return api.get(files_url(sandbox, "/content"), params={"path": path}, headers=headers)


def run(api: httpx.Client, sandbox: dict, command: str | list[str]) -> dict:
    response = api.post(f"/sandboxes/{sandbox['id']}/exec", json={"command": command})
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response, status: int, code: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    if code:
        assert body["code"] == code, body
    assert body["message"]
    return body["code"]


@pytest.fixture
def workdir(api: httpx.Client, shared_sandbox: dict, request: pytest.FixtureRequest) -> str:
    """A fresh directory in the shared sandbox's workspace for one test."""
    path = f"/workspace/t-{request.node.name[:40]}"
    run(api, shared_sandbox, ["rm", "-rf", path])
    return path


# --------------------------------------------------------------------- write and read


def test_write_read_replace(api: httpx.Client, shared_sandbox: dict, workdir: str) -> None:
    first = api.put(
        files_url(shared_sandbox, "/content"),
        params={"path": f"{workdir}/deep/er/hello.txt"},
        content=b"hello\n",
    )
    assert first.status_code == 201, first.text
    assert first.json() == {"path": f"{workdir}/deep/er/hello.txt", "size": 6, "created": True}
    second = api.put(
        files_url(shared_sandbox, "/content"),
        params={"path": f"{workdir}/deep/er/hello.txt"},
        content=b"bye",
    )
    assert second.status_code == 200 and second.json()["created"] is False
    response = get(api, shared_sandbox, f"{workdir}/deep/er/hello.txt")
    assert response.status_code == 200
    assert response.content == b"bye"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["content-length"] == "3"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["x-content-type-options"] == "nosniff"
    # what the sandbox sees is what was written, and a relative path is under /workspace
    assert run(api, shared_sandbox, ["cat", f"{workdir}/deep/er/hello.txt"])["stdout"] == "bye"
    relative = workdir.removeprefix("/workspace/") + "/deep/er/hello.txt"
    assert get(api, shared_sandbox, relative).content == b"bye"
    download = api.get(
        files_url(shared_sandbox, "/content"),
        params={"path": f"{workdir}/deep/er/hello.txt", "download": "1"},
    )
    assert download.headers["content-disposition"] == 'attachment; filename="hello.txt"'
    put(api, shared_sandbox, f"{workdir}/app.ts", b"let x: number = 1;\n")
    assert get(api, shared_sandbox, f"{workdir}/app.ts").headers["content-type"] == (
        "text/x-typescript"
    )
    assert put(api, shared_sandbox, f"{workdir}/empty", b"")["size"] == 0
    assert get(api, shared_sandbox, f"{workdir}/empty").content == b""


def test_binary_is_byte_exact(api: httpx.Client, shared_sandbox: dict, workdir: str) -> None:
    data = bytes(range(256)) * 3 + b"\r\n\x00\xff"
    put(api, shared_sandbox, f"{workdir}/blob.bin", data)
    response = get(api, shared_sandbox, f"{workdir}/blob.bin")
    assert response.content == data
    assert response.headers["content-type"] == "application/octet-stream"
    digest = run(api, shared_sandbox, ["sha256sum", f"{workdir}/blob.bin"])["stdout"].split()[0]
    assert digest == hashlib.sha256(data).hexdigest()


def test_unicode_and_spaces_in_names(api: httpx.Client, shared_sandbox: dict, workdir: str) -> None:
    path = f"{workdir}/dossier été/naïve ✓ file.md"
    put(api, shared_sandbox, path, "héllo ✓".encode())
    assert get(api, shared_sandbox, path).content.decode() == "héllo ✓"
    listing = api.get(files_url(shared_sandbox), params={"path": f"{workdir}/dossier été"})
    assert listing.status_code == 200
    assert [e["name"] for e in listing.json()["entries"]] == ["naïve ✓ file.md"]
    out = run(api, shared_sandbox, ["ls", f"{workdir}/dossier été"])["stdout"]
    assert out == "naïve ✓ file.md\n"


def test_range_requests(api: httpx.Client, shared_sandbox: dict, workdir: str) -> None:
    put(api, shared_sandbox, f"{workdir}/digits", b"0123456789")
    cases = {
        "bytes=2-5": (b"2345", "bytes 2-5/10"),
        "bytes=7-": (b"789", "bytes 7-9/10"),
        "bytes=-3": (b"789", "bytes 7-9/10"),
        "bytes=8-100": (b"89", "bytes 8-9/10"),
        "bytes=-50": (b"0123456789", "bytes 0-9/10"),
    }
    for header, (content, content_range) in cases.items():
        response = get(api, shared_sandbox, f"{workdir}/digits", Range=header)
        assert response.status_code == 206, header
        assert response.content == content, header
        assert response.headers["content-range"] == content_range, header
        assert response.headers["content-length"] == str(len(content))
    for header in ("bytes=10-", "bytes=50-60", "bytes=-0"):
        response = get(api, shared_sandbox, f"{workdir}/digits", Range=header)
        error(response, 416, "range_not_satisfiable")
        assert response.headers["content-range"] == "bytes */10"
    # not a single byte range: ignored, the whole file
    for header in ("bytes=0-1,4-5", "lines=1-2", "bytes=5-2"):
        response = get(api, shared_sandbox, f"{workdir}/digits", Range=header)
        assert response.status_code == 200 and response.content == b"0123456789"


def test_errors_have_the_api_shape(api: httpx.Client, shared_sandbox: dict, workdir: str) -> None:
    put(api, shared_sandbox, f"{workdir}/file", b"x")
    error(get(api, shared_sandbox, f"{workdir}/missing"), 404, "not_found")
    error(get(api, shared_sandbox, workdir), 400, "is_a_directory")
    listing = api.get(files_url(shared_sandbox), params={"path": f"{workdir}/file"})
    error(listing, 400, "not_a_directory")
    error(api.get(files_url(shared_sandbox), params={"path": f"{workdir}/nope"}), 404, "not_found")
    error(
        api.put(files_url(shared_sandbox, "/content"), params={"path": workdir}, content=b"x"),
        400,
        "is_a_directory",
    )
    error(
        api.put(
            files_url(shared_sandbox, "/content"),
            params={"path": f"{workdir}/file/below"},
            content=b"x",
        ),
        400,
        "not_a_directory",
    )
    error(api.get(files_url(shared_sandbox, "/content")), 400)  # path is required
    error(get(api, shared_sandbox, "bad\0path"), 400)
    error(api.get("/sandboxes/nosuchsandbox/files"), 404, "not_found")
    error(api.post(files_url(shared_sandbox, "/mkdir"), json={"path": 3}), 400)
    error(api.post(files_url(shared_sandbox, "/mkdir"), json={"path": "a", "x": 1}), 400)
    error(get(api, shared_sandbox, "/dev/zero"), 400, "bad_request")  # not a regular file


def test_other_users_cannot_reach_files(
    server: LiveServer, shared_sandbox: dict, api: httpx.Client
) -> None:
    with server.client("mallory") as mallory:
        error(mallory.get(files_url(shared_sandbox)), 404, "not_found")
        error(
            mallory.put(files_url(shared_sandbox, "/content"), params={"path": "x"}, content=b"x"),
            404,
            "not_found",
        )
    anonymous = httpx.get(server.url + "/api/v1" + files_url(shared_sandbox))
    error(anonymous, 401)


def test_session_callers_need_csrf_for_raw_bodies(server: LiveServer, shared_sandbox: dict) -> None:
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "u, _ = User.objects.get_or_create(username='dave', defaults={'is_staff': True}); "
        "u.is_staff = True; u.set_password('pw-dave-123'); u.save()",
    )
    with httpx.Client(base_url=server.url, follow_redirects=False, timeout=60) as browser:
        browser.get("/admin/login/")
        browser.post(
            "/admin/login/",
            data={
                "username": "dave",
                "password": "pw-dave-123",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
            headers={"Referer": server.url + "/admin/login/"},
        )
        url = "/api/v1" + files_url(shared_sandbox, "/content")
        error(browser.put(url, params={"path": "x"}, content=b"x"), 403, "csrf_failed")
        upload = "/api/v1" + files_url(shared_sandbox, "/upload")
        forged = browser.post(upload, files={"f": ("a.txt", b"a")})
        error(forged, 403, "csrf_failed")
        # with the token the caller is authenticated - and this sandbox is not theirs
        headers = {"X-CSRFToken": browser.cookies["csrftoken"], "Referer": server.url + "/"}
        error(browser.put(url, params={"path": "x"}, content=b"x", headers=headers), 404)
        error(browser.post(upload, files={"f": ("a.txt", b"a")}, headers=headers), 404)


# --------------------------------------------------------------------- the tree


def test_list_flat_and_recursive(api: httpx.Client, shared_sandbox: dict, workdir: str) -> None:
    put(api, shared_sandbox, f"{workdir}/a.txt", b"aaa")
    put(api, shared_sandbox, f"{workdir}/sub/b.txt", b"bb")
    put(api, shared_sandbox, f"{workdir}/sub/inner/c.txt", b"c")
    run(api, shared_sandbox, ["ln", "-s", "a.txt", f"{workdir}/link"])
    flat = api.get(files_url(shared_sandbox), params={"path": workdir})
    assert flat.status_code == 200
    body = flat.json()
    assert body["path"] == workdir
    by_name = {e["name"]: e for e in body["entries"]}
    assert set(by_name) == {"a.txt", "sub", "link"}
    assert by_name["a.txt"]["type"] == "file" and by_name["a.txt"]["size"] == 3
    assert by_name["a.txt"]["path"] == f"{workdir}/a.txt"
    assert by_name["sub"]["type"] == "directory"
    assert by_name["link"]["type"] == "symlink" and by_name["link"]["target"] == "a.txt"
    assert by_name["a.txt"]["modified"].startswith(time.strftime("%Y-", time.gmtime()))
    assert "T" in by_name["a.txt"]["modified"]
    recursive = api.get(files_url(shared_sandbox), params={"path": workdir, "recursive": "1"})
    paths = {e["path"]: e["type"] for e in recursive.json()["entries"]}
    assert paths == {
        f"{workdir}/a.txt": "file",
        f"{workdir}/link": "symlink",
        f"{workdir}/sub": "directory",
        f"{workdir}/sub/b.txt": "file",
        f"{workdir}/sub/inner": "directory",
        f"{workdir}/sub/inner/c.txt": "file",
    }


def test_mkdir_move_delete(api: httpx.Client, shared_sandbox: dict, workdir: str) -> None:
    made = api.post(files_url(shared_sandbox, "/mkdir"), json={"path": f"{workdir}/x/y/z"})
    assert made.status_code == 201 and made.json()["path"] == f"{workdir}/x/y/z"
    again = api.post(files_url(shared_sandbox, "/mkdir"), json={"path": f"{workdir}/x/y/z"})
    assert again.status_code == 200 and again.json()["created"] is False
    assert run(api, shared_sandbox, ["test", "-d", f"{workdir}/x/y/z"])["exit_code"] == 0

    put(api, shared_sandbox, f"{workdir}/x/f.txt", b"content")
    moved = api.post(
        files_url(shared_sandbox, "/move"),
        json={"source": f"{workdir}/x/f.txt", "destination": f"{workdir}/new dir/g.txt"},
    )
    assert moved.status_code == 200 and moved.json()["path"] == f"{workdir}/new dir/g.txt"
    assert get(api, shared_sandbox, f"{workdir}/new dir/g.txt").content == b"content"
    error(get(api, shared_sandbox, f"{workdir}/x/f.txt"), 404, "not_found")
    # a directory moves with its contents
    api.post(
        files_url(shared_sandbox, "/move"),
        json={"source": f"{workdir}/x", "destination": f"{workdir}/renamed"},
    ).raise_for_status()
    assert run(api, shared_sandbox, ["test", "-d", f"{workdir}/renamed/y/z"])["exit_code"] == 0
    # conflicts and missing sources
    put(api, shared_sandbox, f"{workdir}/other.txt", b"other")
    clash = {"source": f"{workdir}/other.txt", "destination": f"{workdir}/new dir/g.txt"}
    error(api.post(files_url(shared_sandbox, "/move"), json=clash), 409, "already_exists")
    ok = api.post(files_url(shared_sandbox, "/move"), json={**clash, "overwrite": True})
    assert ok.status_code == 200
    assert get(api, shared_sandbox, f"{workdir}/new dir/g.txt").content == b"other"
    missing = {"source": f"{workdir}/nothing", "destination": f"{workdir}/n2"}
    error(api.post(files_url(shared_sandbox, "/move"), json=missing), 404, "not_found")
    into_itself = {"source": f"{workdir}/renamed", "destination": f"{workdir}/renamed/y/in"}
    error(api.post(files_url(shared_sandbox, "/move"), json=into_itself), 400)

    # delete: a file, an empty directory, a tree only when asked
    deleted = api.delete(files_url(shared_sandbox), params={"path": f"{workdir}/new dir/g.txt"})
    assert deleted.status_code == 204
    assert api.delete(files_url(shared_sandbox), params={"path": f"{workdir}/new dir"}).is_success
    tree = api.delete(files_url(shared_sandbox), params={"path": f"{workdir}/renamed"})
    error(tree, 409, "directory_not_empty")
    assert run(api, shared_sandbox, ["test", "-d", f"{workdir}/renamed/y/z"])["exit_code"] == 0
    tree = api.delete(
        files_url(shared_sandbox), params={"path": f"{workdir}/renamed", "recursive": "1"}
    )
    assert tree.status_code == 204
    assert run(api, shared_sandbox, ["test", "-e", f"{workdir}/renamed"])["exit_code"] == 1
    gone = api.delete(files_url(shared_sandbox), params={"path": f"{workdir}/renamed"})
    error(gone, 404, "not_found")
    error(api.delete(files_url(shared_sandbox), params={"path": "/workspace"}), 400)


# --------------------------------------------------------------------- isolation


def test_symlinks_stay_inside_the_container(
    api: httpx.Client, shared_sandbox: dict, workdir: str
) -> None:
    run(api, shared_sandbox, ["mkdir", "-p", workdir])
    run(api, shared_sandbox, ["ln", "-s", "/etc/shadow", f"{workdir}/shadow"])
    run(api, shared_sandbox, ["ln", "-s", "/etc/hostname", f"{workdir}/hostname"])
    shadow = get(api, shared_sandbox, f"{workdir}/shadow")
    assert shadow.status_code == 403, shadow.text
    assert shadow.json()["error"]["code"] == "permission_denied"
    with open("/etc/shadow", "rb") if os.access("/etc/shadow", os.R_OK) else io.BytesIO() as f:
        host_shadow = f.read()
    assert not host_shadow or host_shadow not in shadow.content
    # a readable target is the container's own file, not the host's
    hostname = get(api, shared_sandbox, f"{workdir}/hostname")
    assert hostname.status_code == 200
    container_hostname = run(api, shared_sandbox, ["cat", "/etc/hostname"])["stdout"]
    assert hostname.text == container_hostname
    with open("/etc/hostname") as f:
        assert hostname.text != f.read()


def test_files_belong_to_the_sandbox_user(
    api: httpx.Client, shared_sandbox: dict, workdir: str
) -> None:
    put(api, shared_sandbox, f"{workdir}/owned/file.txt", b"mine")
    api.post(files_url(shared_sandbox, "/mkdir"), json={"path": f"{workdir}/owned/dir"})
    out = run(
        api,
        shared_sandbox,
        [
            "stat",
            "-c",
            "%u:%g %a %n",
            f"{workdir}/owned",
            f"{workdir}/owned/file.txt",
            f"{workdir}/owned/dir",
        ],
    )["stdout"].splitlines()
    assert [line.split()[0] for line in out] == ["1000:1000"] * 3
    assert out[1].split()[1] == "644"  # a normal file mode, not the temp file's 600


def test_concurrent_writers_never_interleave(
    api: httpx.Client, shared_sandbox: dict, workdir: str
) -> None:
    path = f"{workdir}/contended.bin"
    size = 2 * 1024 * 1024
    contents = [bytes([65 + i]) * size for i in range(6)]

    def body(data: bytes) -> Iterator[bytes]:
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    results: list[int] = []

    def writer(data: bytes) -> None:
        response = api.put(
            files_url(shared_sandbox, "/content"), params={"path": path}, content=body(data)
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=writer, args=(c,)) for c in contents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == sorted(results) and all(s in (200, 201) for s in results)
    assert results.count(201) <= len(contents)
    final = get(api, shared_sandbox, path).content
    assert final in contents  # one writer's complete content, never a mix
    leftovers = run(api, shared_sandbox, f"ls -A {workdir} | grep -c sbx-write || true")
    assert leftovers["stdout"].strip() == "0"


def test_twenty_megabyte_round_trip(api: httpx.Client, shared_sandbox: dict, workdir: str) -> None:
    data = os.urandom(20 * 1024 * 1024)
    written = put(api, shared_sandbox, f"{workdir}/big.bin", data)
    assert written["size"] == len(data)
    response = get(api, shared_sandbox, f"{workdir}/big.bin")
    assert response.headers["content-length"] == str(len(data))
    assert response.content == data


def test_upload_too_large_is_413(server: LiveServer, shared_sandbox: dict) -> None:
    env = {**server.env, "FILES_MAX_UPLOAD": "1m", "ALLOW_UNCOORDINATED_SERVERS": "1"}
    port = free_port()
    # the same database, engine and prefix as the main server: the same sandbox
    small = LiveServer(
        url=f"http://127.0.0.1:{port}",
        port=port,
        env=env,
        var_dir=server.var_dir,
        prefix=server.prefix,
        tokens=server.tokens,
    )
    small.start()
    try:
        with small.client("alice") as client:
            big = client.put(
                files_url(shared_sandbox, "/content"),
                params={"path": "too-big.bin"},
                content=b"x" * (1024 * 1024 + 1),
            )
            error(big, 413, "payload_too_large")

            def chunked() -> Iterator[bytes]:  # no Content-Length: counted while streaming
                for _ in range(20):
                    yield b"y" * 100_000

            streamed = client.put(
                files_url(shared_sandbox, "/content"),
                params={"path": "too-big.bin"},
                content=chunked(),
            )
            error(streamed, 413, "payload_too_large")
            fits = client.put(
                files_url(shared_sandbox, "/content"), params={"path": "fits.bin"}, content=b"z"
            )
            assert fits.status_code in (200, 201)
        check = httpx.post(
            server.url + f"/api/v1/sandboxes/{shared_sandbox['id']}/exec",
            headers={"Authorization": f"Bearer {server.token('alice')}"},
            json={"command": "test -e too-big.bin; echo $?"},
            timeout=60,
        )
        assert check.json()["stdout"] == "1\n"  # nothing was left behind
    finally:
        small.stop()


# --------------------------------------------------------------------- upload and archive


def test_multipart_upload_of_two_files(
    api: httpx.Client, shared_sandbox: dict, workdir: str
) -> None:
    payload = bytes(range(256)) * 100
    response = api.post(
        files_url(shared_sandbox, "/upload"),
        params={"path": f"{workdir}/up"},
        files=[
            ("files", ("notes ✓.txt", b"some notes\n", "text/plain")),
            ("files", ("data.bin", payload, "application/octet-stream")),
        ],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["path"] == f"{workdir}/up"
    assert [(f["path"], f["size"]) for f in body["files"]] == [
        (f"{workdir}/up/notes ✓.txt", 11),
        (f"{workdir}/up/data.bin", len(payload)),
    ]
    assert get(api, shared_sandbox, f"{workdir}/up/notes ✓.txt").content == b"some notes\n"
    assert get(api, shared_sandbox, f"{workdir}/up/data.bin").content == payload
    empty = api.post(files_url(shared_sandbox, "/upload"), params={"path": workdir}, data={"a": 1})
    error(empty, 400)
    raw = api.post(files_url(shared_sandbox, "/upload"), params={"path": workdir}, content=b"x")
    error(raw, 400)


def test_archive_is_a_tar_gz_of_the_directory(
    api: httpx.Client, shared_sandbox: dict, workdir: str
) -> None:
    put(api, shared_sandbox, f"{workdir}/proj/README.md", b"# hi\n")
    put(api, shared_sandbox, f"{workdir}/proj/src/main.py", b"print('x')\n")
    put(api, shared_sandbox, f"{workdir}/proj/blob.bin", bytes(range(256)))
    run(api, shared_sandbox, ["ln", "-s", "README.md", f"{workdir}/proj/link"])
    response = api.get(files_url(shared_sandbox, "/archive"), params={"path": f"{workdir}/proj"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/gzip"
    assert 'filename="proj.tar.gz"' in response.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        names = set(tar.getnames())
        assert names == {
            "proj",
            "proj/README.md",
            "proj/src",
            "proj/src/main.py",
            "proj/blob.bin",
            "proj/link",
        }
        assert tar.extractfile("proj/src/main.py").read() == b"print('x')\n"  # type: ignore[union-attr]
        assert tar.extractfile("proj/blob.bin").read() == bytes(range(256))  # type: ignore[union-attr]
        assert tar.getmember("proj/link").issym()
    missing = api.get(files_url(shared_sandbox, "/archive"), params={"path": f"{workdir}/none"})
    error(missing, 404, "not_found")
    not_dir = api.get(
        files_url(shared_sandbox, "/archive"), params={"path": f"{workdir}/proj/README.md"}
    )
    error(not_dir, 400, "not_a_directory")


# --------------------------------------------------------------------- watching


class EventReader:
    """Reads a watch stream on a thread (with its own client); events land on a queue."""

    def __init__(self, server: LiveServer, sandbox: dict, **params: str) -> None:
        self.events: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.ready = threading.Event()
        self.client = server.client("alice")
        self._thread = threading.Thread(target=self._run, args=(sandbox, params), daemon=True)
        self._thread.start()
        assert self.ready.wait(30), "the watch did not start"

    def _run(self, sandbox: dict, params: dict) -> None:
        try:
            with self.client.stream("GET", files_url(sandbox, "/watch"), params=params) as response:
                self.response = response
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                buffer = b""
                for chunk in response.iter_raw():  # (iter_lines may hold a line back)
                    buffer += chunk
                    while b"\n\n" in buffer:
                        block, buffer = buffer.split(b"\n\n", 1)
                        self._event(block.decode())
        except httpx.HTTPError:
            pass  # closed by close()

    def _event(self, block: str) -> None:
        name, data = "", None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if name == "ready":
            self.ready.set()
        elif data is not None:
            self.events.put((name, data))

    def collect(self, until: Callable[[list[dict]], bool], timeout: float = 10) -> list[dict]:
        seen: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                name, data = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            assert name == "change"
            seen.append(data)
            if until(seen):
                break
        return seen

    def close(self) -> None:
        """Hang up (as a browser tab closing would) and wait for the reader to end."""
        stream = self.response.extensions["network_stream"]
        stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        assert not self._thread.is_alive()
        self.client.close()


def has(events: list[dict], kind: str, path: str, **extra: object) -> bool:
    return any(
        e["type"] == kind and e["path"] == path and all(e.get(k) == v for k, v in extra.items())
        for e in events
    )


def test_watch_sees_changes_from_commands(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict, workdir: str
) -> None:
    run(api, shared_sandbox, ["mkdir", "-p", f"{workdir}/sub", f"{workdir}/node_modules"])
    watch = EventReader(server, shared_sandbox, path=workdir, recursive="1")
    try:
        run(
            api,
            shared_sandbox,
            f"cd {workdir} && echo one > a.txt && sleep 0.2 && echo two >> a.txt && sleep 0.2"
            " && mv a.txt b.txt && echo x > sub/inner.txt && echo y > node_modules/ignored"
            " && mkdir -p new/deeper && echo z > new/deeper/f && sleep 0.2 && rm b.txt",
        )
        events = watch.collect(lambda seen: has(seen, "delete", f"{workdir}/b.txt"))
    finally:
        watch.close()
    assert has(events, "create", f"{workdir}/a.txt", is_dir=False)
    assert has(events, "modify", f"{workdir}/a.txt")
    assert has(events, "move", f"{workdir}/b.txt", **{"from": f"{workdir}/a.txt"})
    assert has(events, "create", f"{workdir}/sub/inner.txt")
    assert has(events, "create", f"{workdir}/new", is_dir=True)
    assert has(events, "create", f"{workdir}/new/deeper/f")
    assert has(events, "delete", f"{workdir}/b.txt", is_dir=False)
    assert not any("node_modules" in e["path"] for e in events)


def test_watch_options_and_errors(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict, workdir: str
) -> None:
    run(api, shared_sandbox, ["mkdir", "-p", f"{workdir}/sub", f"{workdir}/node_modules"])
    flat = EventReader(server, shared_sandbox, path=workdir)  # not recursive
    everything = EventReader(server, shared_sandbox, path=workdir, recursive="1", exclude="")
    try:
        run(
            api,
            shared_sandbox,
            f"echo 1 > {workdir}/sub/deep.txt; echo 2 > {workdir}/node_modules/m.js;"
            f" echo 3 > {workdir}/top.txt",
        )
        flat_events = flat.collect(lambda seen: has(seen, "create", f"{workdir}/top.txt"))
        all_events = everything.collect(lambda seen: has(seen, "create", f"{workdir}/top.txt"))
    finally:
        flat.close()
        everything.close()
    assert not has(flat_events, "create", f"{workdir}/sub/deep.txt")
    assert has(all_events, "create", f"{workdir}/node_modules/m.js")
    missing = api.get(files_url(shared_sandbox, "/watch"), params={"path": f"{workdir}/none"})
    error(missing, 404, "not_found")
    # the clients hung up: the agent lets go of its inotify instances
    count = "find /proc/[0-9]*/fd -lname 'anon_inode:inotify' 2>/dev/null | wc -l"
    deadline = time.monotonic() + 10
    while run(api, shared_sandbox, count)["stdout"].strip() != "0":
        assert time.monotonic() < deadline, "the watches outlived their clients"
        time.sleep(0.2)


# --------------------------------------------------------------------- memory


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def test_server_memory_stays_flat_for_large_transfers(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict, workdir: str
) -> None:
    assert server.process is not None
    pid = server.process.pid
    size = 200 * 1024 * 1024
    block = os.urandom(1024 * 1024)

    sent = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for _ in range(size // len(block)):
            sent.update(block)
            yield block

    before = _rss_kb(pid)
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak (VmHWM) to the current RSS
    written = put(api, shared_sandbox, f"{workdir}/huge.bin", body())
    assert written["size"] == size
    received = hashlib.sha256()
    with api.stream(
        "GET", files_url(shared_sandbox, "/content"), params={"path": f"{workdir}/huge.bin"}
    ) as response:
        assert response.headers["content-length"] == str(size)
        for chunk in response.iter_bytes():
            received.update(chunk)
    assert received.hexdigest() == sent.hexdigest()
    # and a multipart upload of 100 MB (Twisted would parse it into memory)
    with tempfile.TemporaryFile() as spool:
        for _ in range(100):
            spool.write(block)
        spool.seek(0)
        uploaded = api.post(
            files_url(shared_sandbox, "/upload"),
            params={"path": workdir},
            files={"file": ("multipart.bin", spool, "application/octet-stream")},
        )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["files"][0]["size"] == 100 * len(block)
    peak = _rss_kb(pid, "VmHWM")
    assert peak - before < 60 * 1024, f"server RSS grew from {before} kB to a peak of {peak} kB"


def test_files_wake_a_sleeping_sandbox(api: httpx.Client) -> None:
    made = api.post("/sandboxes", json={"name": "files-sleepy"})
    assert made.status_code in (200, 201), made.text
    sandbox = made.json()
    try:
        put(api, sandbox, "kept.txt", b"kept across sleep")
        slept = api.post(f"/sandboxes/{sandbox['id']}/sleep")
        assert slept.status_code == 200 and slept.json()["status"] == "sleeping"
        assert get(api, sandbox, "kept.txt").content == b"kept across sleep"
        assert api.get(f"/sandboxes/{sandbox['id']}").json()["status"] == "running"
    finally:
        api.delete(f"/sandboxes/{sandbox['id']}")
