"""The SDK's I/O-free helpers that both clients share: paths, Server-Sent Events,
terminal messages, starter files, upload batches and downloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from sandbox_ide import RateLimitError, SandboxIDEError
from sandbox_ide._api import drop_none, invite_token, path, ref, terminal_url
from sandbox_ide._sse import SSEDecoder
from sandbox_ide._transfer import (
    SMALL_FILE,
    Download,
    batches,
    starter_parts,
    upload_groups,
    write_source,
)
from sandbox_ide._wire import TerminalExit, terminal_message
from sandbox_ide.models import TemplateInfo


def test_paths_quote_each_part_and_bodies_drop_none() -> None:
    assert path("sandboxes", "a/b", "terminals", "x y", 3) == "/sandboxes/a%2Fb/terminals/x%20y/3"
    assert drop_none(a=1, b=None, c=False) == {"a": 1, "c": False}
    assert ref("t1") == "t1" and ref(TemplateInfo(id="t2", name="n")) == "t2"


@pytest.mark.parametrize(
    "invite", ["TOK", " TOK\n", "http://h/join/TOK/", "https://h/join/TOK?x=1", "/join/TOK#a"]
)
def test_an_invite_is_its_token_or_its_link(invite: str) -> None:
    assert invite_token(invite) == "TOK"


def test_terminal_urls_use_the_websocket_scheme() -> None:
    assert terminal_url("https://h:8", "sb1", "a b", 80, 24) == (
        "wss://h:8/ws/sandboxes/sb1/terminals/a%20b?cols=80&rows=24"
    )
    assert terminal_url("http://h", "sb1", "main", 1, 2).startswith("ws://h/ws/")


def test_sse_events_are_decoded_line_by_line() -> None:
    decoder = SSEDecoder()
    lines = [": comment", "event: stdout", 'data: {"data": "x"}', "", "data: a", "data: b", ""]
    events = [item for line in lines if (item := decoder.feed(line)) is not None]
    assert events == [("stdout", {"data": "x"}), ("message", "a\nb")]
    assert decoder.feed("data: tail") is None and decoder.flush() == ("message", "tail")


def test_terminal_messages() -> None:
    assert terminal_message(b"out") == b"out"
    assert terminal_message('{"type": "exit", "exit_code": 2}') == TerminalExit(2)
    assert terminal_message("not json") is None and terminal_message('{"type": "x"}') is None
    with pytest.raises(RateLimitError):
        terminal_message('{"type": "error", "code": "limit_reached", "message": "m"}')


def test_starter_parts_from_a_mapping_a_folder_or_files(tmp_path: Path) -> None:
    (tmp_path / "src" / ".git").mkdir(parents=True)
    (tmp_path / "src" / ".git" / "HEAD").write_text("ref")
    (tmp_path / "src" / "b.py").write_text("b")
    (tmp_path / "a.txt").write_bytes(b"a")
    assert starter_parts({"x/y.py": "t", "z": b"b", "f": tmp_path / "a.txt"}) == [
        ("x/y.py", b"t"),
        ("z", b"b"),
        ("f", b"a"),
    ]
    assert starter_parts(tmp_path / "src") == [("b.py", b"b")]
    assert starter_parts([tmp_path / "a.txt"]) == [("a.txt", b"a")]
    with pytest.raises(TypeError):
        starter_parts({"bad": 3})
    with pytest.raises(FileNotFoundError):
        starter_parts(tmp_path / "missing")


def test_uploads_are_grouped_by_folder_and_batched_by_size(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "empty").mkdir(parents=True)
    (root / "big.bin").write_bytes(b"0" * (SMALL_FILE + 1))
    (root / "a.txt").write_text("a")
    (root / "b.txt").write_text("b")
    groups = upload_groups(root)
    assert list(groups) == ["proj", "proj/empty"] and groups["proj/empty"] == []
    assert [[f.name for f in batch] for batch in batches(groups["proj"])] == [
        ["big.bin"],
        ["a.txt", "b.txt"],
    ]
    assert upload_groups(root / "a.txt") == {".": [root / "a.txt"]}


def test_write_source_streams_only_when_it_must() -> None:
    assert write_source("é", None) == (b"\xc3\xa9", 2)
    reader, size = write_source(b"abc", lambda done, total: None)
    assert not isinstance(reader, bytes) and reader.read(2) == b"ab" and size == 3


def test_a_failed_download_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    seen: list[tuple[int, int | None]] = []
    with Download(target, {"content-length": "4"}, lambda d, t: seen.append((d, t))) as download:
        download.write(b"ab")
        download.write(b"cd")
    assert target.read_bytes() == b"abcd" and seen == [(2, 4), (4, 4)]
    with pytest.raises(SandboxIDEError), Download(tmp_path / "half.bin", {}, None) as download:
        download.write(b"ab")
        raise SandboxIDEError("the connection broke")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
