"""An upload the client gives up on (the IDE's Cancel, a closed tab, a dropped
connection) leaves no partial file: not under the target's name, not as a temporary
file beside it. Spoken over a raw socket, so the test decides exactly how much of
the body was sent before it hangs up."""

from __future__ import annotations

import hashlib
import socket
import time

import httpx

from tests.server import LiveServer

CHUNK = 1024 * 1024


def put_then_hang_up(
    server: LiveServer, sandbox_id: str, path: str, declared: int, sent: int
) -> None:
    """A PUT declaring ``declared`` body bytes, of which ``sent`` are sent (0x5a each)
    before the connection is closed without reading the answer."""
    head = [
        f"PUT /api/v1/sandboxes/{sandbox_id}/files/content?path={path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        f"Authorization: Bearer {server.token('alice')}",
        "Content-Type: application/octet-stream",
        f"Content-Length: {declared}",
        "",
        "",
    ]
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall("\r\n".join(head).encode())
        left = sent
        while left:
            piece = min(CHUNK, left)
            sock.sendall(b"Z" * piece)
            left -= piece
        sock.shutdown(socket.SHUT_RDWR)


def run(api: httpx.Client, sandbox: dict, command: list[str]) -> str:
    response = api.post(f"/sandboxes/{sandbox['id']}/exec", json={"command": command})
    assert response.status_code == 200, response.text
    return str(response.json()["stdout"])


def settled(api: httpx.Client, sandbox: dict, directory: str) -> list[str]:
    """The directory's names once no write is in progress in it (``ls -A`` shows the
    temporary files the API's listing leaves out)."""
    deadline = time.monotonic() + 90
    while True:
        names = run(api, sandbox, ["ls", "-A", directory]).split()
        if not any(n.startswith(".sbx-write-") for n in names) or time.monotonic() > deadline:
            return names
        time.sleep(0.5)


def content(api: httpx.Client, sandbox: dict, path: str) -> bytes | None:
    response = api.get(f"/sandboxes/{sandbox['id']}/files/content", params={"path": path})
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.content


def test_a_body_cut_short_writes_nothing(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    directory = "/workspace/aborted-cut"
    run(api, shared_sandbox, ["rm", "-rf", directory])
    run(api, shared_sandbox, ["mkdir", directory])
    old = b"the version before the upload\n"
    api.put(
        f"/sandboxes/{shared_sandbox['id']}/files/content",
        params={"path": f"{directory}/kept.bin"},
        content=old,
    ).raise_for_status()

    put_then_hang_up(server, shared_sandbox["id"], f"{directory}/new.bin", 64 * CHUNK, 8 * CHUNK)
    put_then_hang_up(server, shared_sandbox["id"], f"{directory}/kept.bin", 64 * CHUNK, 8 * CHUNK)

    assert settled(api, shared_sandbox, directory) == ["kept.bin"]
    assert content(api, shared_sandbox, f"{directory}/new.bin") is None
    assert content(api, shared_sandbox, f"{directory}/kept.bin") == old


def test_a_hang_up_after_the_last_byte_leaves_all_or_nothing(
    server: LiveServer, api: httpx.Client, shared_sandbox: dict
) -> None:
    """The whole body arrived, then the client went away while the server was still
    writing it into the sandbox: the file is the whole upload or is absent."""
    directory = "/workspace/aborted-late"
    run(api, shared_sandbox, ["rm", "-rf", directory])
    size = 48 * CHUNK
    whole = hashlib.sha256(b"Z" * size).digest()
    for attempt in range(3):
        put_then_hang_up(server, shared_sandbox["id"], f"{directory}/f{attempt}.bin", size, size)
    names = [n for n in settled(api, shared_sandbox, directory) if n]
    assert all(not n.startswith(".sbx-write-") for n in names), names
    for name in names:
        got = content(api, shared_sandbox, f"{directory}/{name}")
        assert got is not None and hashlib.sha256(got).digest() == whole, (name, len(got or b""))


def test_listings_leave_out_writes_in_progress(api: httpx.Client, shared_sandbox: dict) -> None:
    directory = "/workspace/aborted-listing"
    run(api, shared_sandbox, ["rm", "-rf", directory])
    run(api, shared_sandbox, ["mkdir", directory])
    run(api, shared_sandbox, ["touch", f"{directory}/.sbx-write-abc-x.bin", f"{directory}/x.bin"])
    listing = api.get(f"/sandboxes/{shared_sandbox['id']}/files", params={"path": directory})
    assert [e["name"] for e in listing.json()["entries"]] == ["x.bin"]
