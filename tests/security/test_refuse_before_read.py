"""Refuse before reading: a body nobody may send is answered from the headers.

An attacker without credentials (or a caller declaring more than a route takes)
must not make the server read, spool or store a single body byte: the 401/413
arrives while the rest of the body is still unsent, and the server holds no
temporary file for it. Spoken over a raw socket, so the test decides exactly which
bytes have been sent when it reads the answer.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.server import LiveServer

CHUNK = 64 * 1024
# Reading an answer never waits longer than this: a server that wants the whole body
# first never answers, and the test fails instead of hanging.
READ_TIMEOUT = 60


@contextmanager
def raw_request(server: LiveServer, head: list[str]) -> Iterator[socket.socket]:
    """A connection that has sent the request line and headers, nothing of the body."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT)
    try:
        lines = [*head, f"Host: 127.0.0.1:{server.port}", "", ""]
        sock.sendall("\r\n".join(lines).encode())
        yield sock
    finally:
        sock.close()


def chunk(data: bytes) -> bytes:
    """One piece of a ``Transfer-Encoding: chunked`` body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the next response (an interim 100 is one too)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"the server closed the connection without answering: {data!r}"
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        more = sock.recv(65536)
        assert more, "the server closed the connection in the middle of its answer"
        rest += more
    return status, headers, rest[:length]


def error_code(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert error["message"]
    return str(error["code"])


def open_temporary_files(server: LiveServer) -> list[str]:
    """Unlinked files the server process holds open: where a spooled body would be."""
    assert server.process is not None
    fd_dir = f"/proc/{server.process.pid}/fd"
    found = []
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.endswith("(deleted)") and not target.startswith(("memfd:", "/dev/shm")):
            found.append(target)
    return found


def content_url(sandbox: dict, path: str) -> str:
    return f"/api/v1/sandboxes/{sandbox['id']}/files/content?path={path}"


def test_unauthenticated_chunked_put_is_refused_before_its_body(
    server: LiveServer, shared_sandbox: dict
) -> None:
    """The case this guards against: an anonymous chunked PUT to a files endpoint."""
    spooled_before = open_temporary_files(server)
    head = [
        f"PUT {content_url(shared_sandbox, '/workspace/anonymous.bin')} HTTP/1.1",
        "Transfer-Encoding: chunked",
        "Content-Type: application/octet-stream",
    ]
    with raw_request(server, head) as sock:
        sock.sendall(chunk(b"x" * CHUNK))  # the first piece of a body with no end yet
        status, headers, body = read_response(sock)
        assert status == 401
        assert error_code(body) == "unauthorized"
        assert headers["connection"] == "close"
        assert headers["content-type"] == "application/json"
        # The body is not being kept anywhere while the attacker goes on sending.
        assert open_temporary_files(server) == spooled_before
        try:
            for _ in range(64):
                sock.sendall(chunk(b"x" * CHUNK))
        except OSError:
            pass  # the server may hang up: it wants nothing more from us
        assert open_temporary_files(server) == spooled_before
    listing = server.client("alice").get(
        f"/sandboxes/{shared_sandbox['id']}/files", params={"path": "/workspace"}
    )
    assert "anonymous.bin" not in [entry["name"] for entry in listing.json()["entries"]]


def test_wrong_token_gets_no_100_continue(server: LiveServer, shared_sandbox: dict) -> None:
    """A client that waits for 100-continue hears 401 instead and never sends a byte."""
    head = [
        f"PUT {content_url(shared_sandbox, '/workspace/x.bin')} HTTP/1.1",
        "Authorization: Bearer not-a-real-token",
        f"Content-Length: {100 * 1024 * 1024}",
        "Expect: 100-continue",
    ]
    with raw_request(server, head) as sock:
        status, _, body = read_response(sock)
    assert status == 401
    assert error_code(body) == "invalid_token"


def test_declared_oversize_body_is_refused_before_its_body(
    server: LiveServer, shared_sandbox: dict
) -> None:
    """Content-Length above FILES_MAX_UPLOAD (2 GiB by default): 413 from the headers."""
    head = [
        f"PUT {content_url(shared_sandbox, '/workspace/huge.bin')} HTTP/1.1",
        f"Authorization: Bearer {server.token('alice')}",
        f"Content-Length: {3 * 1024**3}",
    ]
    with raw_request(server, head) as sock:
        sock.sendall(b"x" * CHUNK)
        status, headers, body = read_response(sock)
    assert status == 413
    assert error_code(body) == "payload_too_large"
    assert "FILES_MAX_UPLOAD" in json.loads(body)["error"]["message"]


def test_chunked_body_past_the_limit_is_refused_as_it_passes(server: LiveServer) -> None:
    """A chunked JSON body declares no size: it is refused once it outgrows
    API_MAX_JSON_BODY (4 MiB), not after the client finished sending it."""
    head = [
        "POST /api/v1/sandboxes HTTP/1.1",
        f"Authorization: Bearer {server.token('alice')}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    ]
    with raw_request(server, head) as sock:
        for _ in range(5 * 1024 * 1024 // CHUNK):  # 5 MiB, and the body goes on
            sock.sendall(chunk(b" " * CHUNK))
        status, _, body = read_response(sock)
    assert status == 413
    assert error_code(body) == "payload_too_large"


def test_admitted_body_is_read_in_full(server: LiveServer, shared_sandbox: dict) -> None:
    """The owner's upload still works: 100-continue once admitted, then the body."""
    payload = os.urandom(3 * CHUNK + 123)
    head = [
        f"PUT {content_url(shared_sandbox, '/workspace/admitted.bin')} HTTP/1.1",
        f"Authorization: Bearer {server.token('alice')}",
        "Transfer-Encoding: chunked",
        "Expect: 100-continue",
    ]
    with raw_request(server, head) as sock:
        status, _, _ = read_response(sock)
        assert status == 100
        for start in range(0, len(payload), CHUNK):
            sock.sendall(chunk(payload[start : start + CHUNK]))
        sock.sendall(b"0\r\n\r\n")
        status, _, _ = read_response(sock)
    assert status in (200, 201)
    with server.client("alice") as api:
        read = api.get(
            f"/sandboxes/{shared_sandbox['id']}/files/content",
            params={"path": "/workspace/admitted.bin"},
        )
    assert read.content == payload


def test_session_caller_without_csrf_is_refused_before_its_body(
    server: LiveServer, shared_sandbox: dict
) -> None:
    """A browser tricked into a cross-site upload carries the session cookie but not
    the CSRF header: refused from the headers too."""
    server.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        "u, _ = User.objects.get_or_create(username='erin'); "
        "u.set_password('pw-erin-123'); u.save()",
    )
    with httpx.Client(base_url=server.url, timeout=60) as browser:
        browser.get("/accounts/login/")
        login = browser.post(
            "/accounts/login/",
            data={
                "username": "erin",
                "password": "pw-erin-123",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
            },
        )
        assert login.status_code == 302, login.text
        session = browser.cookies["sessionid"]
    head = [
        f"PUT {content_url(shared_sandbox, '/workspace/forged.bin')} HTTP/1.1",
        f"Cookie: sessionid={session}",
        "Transfer-Encoding: chunked",
    ]
    with raw_request(server, head) as sock:
        sock.sendall(chunk(b"x" * CHUNK))
        status, _, body = read_response(sock)
    assert status == 403
    assert error_code(body) == "csrf_failed"


def test_oversize_form_post_to_a_page_is_refused_before_its_body(server: LiveServer) -> None:
    """Pages take anyone's form posts (the login form), but only form-sized ones:
    a gigabyte declared to the login page is refused before it is sent."""
    spooled_before = open_temporary_files(server)
    head = [
        "POST /accounts/login/ HTTP/1.1",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {1024**3}",
    ]
    with raw_request(server, head) as sock:
        sock.sendall(b"username=" + b"a" * CHUNK)
        status, _, body = read_response(sock)
        assert open_temporary_files(server) == spooled_before
    assert status == 413
    assert error_code(body) == "payload_too_large"
