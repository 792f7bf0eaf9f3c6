"""The agent's replay buffer: bounded, and free of sequences that make a terminal
emulator answer (which would type the answers into the shell on re-attach)."""

from __future__ import annotations

import pytest

from container.agent.terminals import ReplayBuffer, strip_queries

QUERIES = [
    b"\x1b[c",  # DA1
    b"\x1b[0c",
    b"\x1b[>c",  # DA2
    b"\x1b[>0c",
    b"\x1b[=c",  # DA3
    b"\x1b[5n",  # DSR status
    b"\x1b[6n",  # cursor position report
    b"\x1b[?6n",  # DECXCPR
    b"\x1b[?2004$p",  # DECRQM
    b"\x1b[4$p",
    b"\x1b[>0q",  # XTVERSION
    b"\x1b[>q",
    b"\x1b[14t",  # window size in pixels
    b"\x1b[18t",  # text area size
    b"\x1b[21t",  # title report
    b"\x1b[x",  # DECREQTPARM
    b"\x1b[?u",  # kitty keyboard flags
    b"\x1bP$qm\x1b\\",  # DECRQSS
    b"\x1bP+q544e\x1b\\",  # XTGETTCAP
    b"\x1b]10;?\x07",  # foreground colour
    b"\x1b]11;?\x1b\\",  # background colour
    b"\x1b]12;?\x07",  # cursor colour
    b"\x1b]4;1;?\x07",  # palette entry
    b"\x1b]52;c;?\x07",  # clipboard
]

KEPT = [
    b"\x1b[31mred\x1b[0m",
    b"\x1b[2J\x1b[H",
    b"\x1b[?1049h\x1b[?25l",
    b"\x1b]0;my title\x07",
    b"\x1b]11;#000000\x07",  # setting a colour is not a query
    b"\x1b[10;20H",
    b"\x1b[22;0;0t",  # push title: not a report
    b"plain text with [c] and 6n\r\n",
]


@pytest.mark.parametrize("query", QUERIES, ids=repr)
def test_queries_are_removed(query: bytes) -> None:
    assert strip_queries(b"before" + query + b"after") == b"beforeafter"


@pytest.mark.parametrize("sequence", KEPT, ids=repr)
def test_everything_else_is_kept(sequence: bytes) -> None:
    assert strip_queries(sequence) == sequence


def test_replay_is_bounded_and_starts_at_a_line() -> None:
    buffer = ReplayBuffer(1000)
    for i in range(500):
        buffer.append(f"line {i:04d}\r\n".encode())
    assert len(buffer.data) == 1000
    replay = buffer.snapshot()
    assert replay.startswith(b"line ") and replay.endswith(b"line 0499\r\n")
    assert ReplayBuffer(0).snapshot() == b""
