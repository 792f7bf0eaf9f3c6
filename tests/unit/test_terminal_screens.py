"""The screen the agent keeps for each terminal, and its serialisation: what a
fresh terminal shows after the serialised screen must be what the kept one shows
(cells, colours, cursor, modes, scrollback, the alternate screen)."""

from __future__ import annotations

import asyncio
from typing import Any

import pyte
import pytest

from container.agent.screens import ScreenKeeper, TerminalScreen, TerminalStream, serialize

COLS, ROWS = 40, 10


def screen_of(data: bytes, cols: int = COLS, rows: int = ROWS) -> TerminalScreen:
    screen = TerminalScreen(cols, rows, scrollback=100)
    TerminalStream(screen).feed(data)
    return screen


def cells(buffer: Any, cols: int, rows: int) -> list[list[tuple[Any, ...]]]:
    return [[tuple(buffer[y][x]) for x in range(cols)] for y in range(rows)]


def state(screen: TerminalScreen) -> dict[str, Any]:
    """Everything a user (or the program) can tell apart on a terminal."""
    rows, cols = screen.lines, screen.columns
    return {
        "cells": cells(screen.buffer, cols, rows),
        "main": cells(screen.main_buffer, cols, rows) if screen.alternate else None,
        "alternate": screen.alternate,
        "cursor": (screen.cursor.x, screen.cursor.y, screen.cursor.hidden),
        "pen": tuple(screen.cursor.attrs[1:]),
        "modes": sorted(screen.mode),
        "margins": screen.margins,
        "history": list(screen.history),
    }


def round_trip(screen: TerminalScreen) -> TerminalScreen:
    """A fresh terminal of the same size fed the serialised screen."""
    return screen_of(serialize(screen), screen.columns, screen.lines)


SCENES = {
    "plain text and a prompt": b"hello\r\nworld\r\n$ ",
    "16 colours and bright ones": b"\x1b[31mred \x1b[1;32mbold green \x1b[91;44mbright\x1b[0m x",
    "256 and true colours": b"\x1b[38;5;208morange\x1b[48;5;22m on green\x1b[38;2;1;2;3m rgb",
    "flags on and off": b"\x1b[3;4;7;9mall\x1b[23mnoitalic\x1b[24;27;29m plain?\x1b[22m",
    "blank cells in the middle, coloured ones at the end": b"a\x1b[10Gb\x1b[44m   \x1b[0m",
    "wide characters": "漢字 and ok\r\n日本".encode(),
    "cursor moved and hidden": b"abc\x1b[5;7H\x1b[?25l",
    "cursor waiting to wrap": b"x" * COLS,
    "scroll region": b"top\x1b[2;8r\x1b[5;1Hinside",
    "modes: cursor keys, paste, mouse": b"\x1b[?1h\x1b[?2004h\x1b[?1000h\x1b[?1006h\x1b[4h",
    "no autowrap": b"\x1b[?7lwide",
    "scrollback": b"".join(b"line %d\r\n" % i for i in range(30)) + b"$ ",
    "alternate screen over a main one": (
        b"".join(b"shell %d\r\n" % i for i in range(15))
        + b"$ vim\x1b[?1049h\x1b[H\x1b[2J~\r\n~\r\n\x1b[7m file \x1b[0m\x1b[3;2H"
    ),
    "full-screen program that left": b"$ less\x1b[?1049hpage\x1b[?1049l\r\n$ ",
}


@pytest.mark.parametrize("scene", SCENES.values(), ids=list(SCENES))
def test_a_fresh_terminal_fed_the_serialisation_shows_the_same(scene: bytes) -> None:
    kept = screen_of(scene)
    assert state(round_trip(kept)) == state(kept)


def test_alternate_screen_round_trip_keeps_both_screens() -> None:
    kept = screen_of(SCENES["alternate screen over a main one"])
    copy = round_trip(kept)
    assert copy.alternate and copy.display[2].startswith(" file ")
    pyte.ByteStream(copy).feed(b"\x1b[?1049l")  # the program exits
    assert copy.display[-1].startswith("$ vim")
    assert copy.history[0] == "shell 0"


def test_what_a_plain_pyte_terminal_reads_is_the_same_text() -> None:
    """A client that is not our screen class (xterm.js, plain pyte) sees the same."""
    scene = b"\x1b[1;31mred\x1b[0m \x1b[38;5;99mx\x1b[48;2;9;9;9my\x1b[0m\r\n\xe6\xbc\xa2!"
    kept = screen_of(scene)
    plain = pyte.Screen(COLS, ROWS)
    pyte.ByteStream(plain).feed(serialize(kept))
    assert plain.display == kept.display
    assert plain.buffer[0][0].bold and plain.buffer[0][0].fg == "red"


def test_the_serialisation_asks_the_terminal_nothing() -> None:
    kept = screen_of(b"\x1b[c\x1b[>c\x1b[6n\x1b[5n\x1b]11;?\x07\x1bP$qm\x1b\\text")
    data = serialize(kept)
    for query in (b"\x1b[c", b"\x1b[>c", b"n", b"\x1b]", b"\x1bP"):
        assert query not in data
    assert kept.display[0].startswith("text")


def test_sequences_pyte_would_misread_change_nothing() -> None:
    keeper_screen = screen_of(b"\x1b[>4;2m\x1b[?2004$p\x1b[2 q\x1b[>1u\x1bP+q544e\x1b\\ok")
    assert keeper_screen.display[0] == "ok".ljust(COLS)  # nothing stray drawn
    assert keeper_screen.buffer[0][0].underscore is False


def test_fast_drawing_matches_pyte() -> None:
    text = b"".join(b"%05d " % i + b"abcdefghij" * (i % 7) + b"\r\n" for i in range(60))
    ours, theirs = TerminalScreen(COLS, ROWS, 0), pyte.Screen(COLS, ROWS)
    for screen in (ours, theirs):
        pyte.ByteStream(screen).feed(text + b"\x1b[4h\x1b[3Dins" + b"y" * 50)
    assert ours.display == theirs.display
    assert (ours.cursor.x, ours.cursor.y) == (theirs.cursor.x, theirs.cursor.y)


def test_shrinking_keeps_the_cursor_line_and_moves_the_top_to_scrollback() -> None:
    screen = screen_of(b"".join(b"row %d\r\n" % i for i in range(ROWS - 1)) + b"$ ")
    screen.resize(ROWS - 3, COLS)
    assert screen.display[-1].startswith("$ ")
    assert screen.history[-1] == "row 2"
    assert state(round_trip(screen)) == state(screen)


def test_a_prompt_keeps_its_space_before_the_cursor() -> None:
    """Blanks at the end of a line are left out, but not those the cursor sits after
    (a client waiting for "$ " sees it)."""
    data = serialize(screen_of(b"\x1b[1;32msandbox\x1b[0m:~$ "))
    assert b"\x1b[0m:~$ \x1b[" in data and b"$  " not in data
    assert b"   " not in serialize(screen_of(b"echo   \r\n"))


def test_clearing_the_scrollback_clears_it() -> None:
    screen = screen_of(b"".join(b"%d\r\n" % i for i in range(20)) + b"\x1b[3J")
    assert not screen.history


# ----------------------------------------------------------------- the keeper


def keeper_with(limit: int, *chunks: bytes) -> ScreenKeeper:
    keeper = ScreenKeeper(COLS, ROWS, limit, scrollback=100)
    for chunk in chunks:
        keeper.append(chunk)
    return keeper


async def test_output_is_parsed_once_the_terminal_is_quiet() -> None:
    keeper = keeper_with(64 * 1024, b"echo hi\r\nhi\r\n$ ")
    assert keeper.pending  # nothing parsed on the way
    await asyncio.sleep(0.1)
    assert not keeper.pending and keeper.screen.display[1].startswith("hi")


async def test_a_burst_longer_than_the_limit_keeps_its_mode_switches_and_its_end() -> None:
    burst = b"".join(b"%06d\r\n" % i for i in range(20_000))
    keeper = keeper_with(
        4096, b"\x1b[?1049h\x1b[?1h", burst, b"\x1b[?1l\x1b[?2004h", burst, b"last line"
    )
    screen = screen_of(keeper.snapshot())
    assert screen.alternate
    assert (1 << 5) not in screen.mode and (2004 << 5) in screen.mode
    assert screen.display[-1].startswith("last line")
    assert screen.display[-2].startswith("019999")


async def test_every_attach_gets_the_same_screen() -> None:
    keeper = keeper_with(64 * 1024, SCENES["alternate screen over a main one"])
    assert keeper.snapshot() == keeper.snapshot()


async def test_resizing_parses_what_came_before_at_the_old_size() -> None:
    keeper = keeper_with(64 * 1024, b"y" * (COLS + 5))
    keeper.resize(COLS * 2, ROWS)
    assert keeper.screen.display[0] == "y" * COLS + " " * COLS
    assert keeper.screen.display[1].startswith("yyyyy ")


async def test_no_limit_keeps_no_screen() -> None:
    keeper = keeper_with(0, b"secret")
    assert keeper.snapshot() == b"" and not keeper.pending


async def test_after_a_burst_the_screen_starts_at_a_sequence_not_inside_one() -> None:
    """A program rewriting one field in place, far past the limit, with no line
    feed to start again at: no piece of a cut-off field is drawn anywhere."""
    ticks = b"".join(b"\x1b[5;1Htick %06d" % i for i in range(3000))
    for limit in range(1000, 1040):  # the cut falls at every place of a field
        keeper = keeper_with(limit, b"\x1b[2;1Hboard")
        keeper.parse()  # a quiet moment
        keeper.append(ticks)
        screen = screen_of(keeper.snapshot())
        assert [line.rstrip() for line in screen.display[:5]] == [
            "",
            "board",
            "",
            "",
            "tick 002999",
        ], limit
