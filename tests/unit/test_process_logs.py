"""The agent's process log: a bounded ring buffer in memory over a complete file."""

from __future__ import annotations

from pathlib import Path

from container.agent.processes import LogStream


def test_ring_keeps_the_tail_and_disk_keeps_everything(tmp_path: Path) -> None:
    stream = LogStream(str(tmp_path / "1.stdout"), limit=10)
    for chunk in (b"0123456789", b"abcdef", b"XYZ"):
        stream.append(chunk)
    assert stream.end == 19 and stream.start == 9
    assert stream.tail() == b"9abcdefXYZ"
    assert (tmp_path / "1.stdout").read_bytes() == b"0123456789abcdefXYZ"
    # a reader behind the ring reads on from disk, then from memory
    assert stream.read(0, 4) == (0, b"0123")
    assert stream.read(4) == (4, b"45678")  # up to where memory begins
    assert stream.read(9) == (9, b"9abcdefXYZ")
    assert stream.read(19) == (19, b"")
    stream.close()


def test_without_the_file_a_late_reader_skips_to_memory(tmp_path: Path) -> None:
    stream = LogStream(str(tmp_path / "2.stdout"), limit=4)
    stream.disk_ok = False
    stream.append(b"abcdefgh")
    assert stream.read(0) == (4, b"efgh")
    stream.close()


def test_a_reused_pid_starts_a_new_file(tmp_path: Path) -> None:
    path = str(tmp_path / "3.stdout")
    old = LogStream(path, limit=100)
    old.append(b"old output")
    new = LogStream(path, limit=100)
    new.append(b"new")
    assert Path(path).read_bytes() == b"new"
    assert old.read(0, 3) == (0, b"old")  # the old reader's memory is its own
    old.close()
    new.close()


def test_forgetting_removes_only_its_own_file(tmp_path: Path) -> None:
    path = tmp_path / "4.stdout"
    old = LogStream(str(path), limit=100)
    new = LogStream(str(path), limit=100)  # the pid was reused
    old.close(remove=True)
    assert path.exists()  # the newer process's file stays
    new.close(remove=True)
    assert not path.exists()


def test_no_disk_means_memory_only(tmp_path: Path) -> None:
    stream = LogStream(str(tmp_path / "missing-dir" / "5.stdout"), limit=4)
    assert stream.disk_ok is False
    stream.append(b"abcdef")
    assert stream.tail() == b"cdef" and stream.read(0) == (2, b"cdef")
    stream.close(remove=True)
