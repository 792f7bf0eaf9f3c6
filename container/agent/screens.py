"""A terminal's screen, kept in the agent so a client that attaches sees it as it is.

Replaying raw output cannot bring back a full-screen program (vim, htop, less): the
bytes that drew its screen are long gone, or start in the middle of an update. So
the agent parses the output with pyte (Debian's ``python3-pyte``) into a screen of
cells and, on attach, writes that screen out again as escape sequences
(``serialize``): the scrollback, the main screen, the alternate screen when a
program is on it, the scroll region, the modes a program switched on (application
cursor keys, bracketed paste, mouse reports …), the pen and the cursor.

Parsing costs far more than forwarding, so it stays off the hot path
(``ScreenKeeper``): output is queued as bytes and parsed once the terminal has been
quiet for ``QUIET`` seconds, a slice at a time, or at once when a client attaches or
the terminal is resized. A burst longer than ``limit`` bytes (``cat`` of a big
file) is never parsed whole: its older part is dropped unparsed except for the mode
switches in it, and the screen is rebuilt from its last ``limit`` bytes, which is
all a screen can show of it anyway.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

import pyte
from pyte import modes as mo

log = logging.getLogger("sandbox_agent.screens")

# Seconds without output before queued output is parsed.
QUIET = 0.01
# Bytes parsed in one go while the terminal is quiet (then the loop may run others).
SLICE = 16 * 1024

# Sequences pyte would misread (it takes any byte after the parameters for the
# final one): CSI with a private marker other than "?" (modifyOtherKeys, the kitty
# keyboard protocol, secondary DA …), with sub-parameters or intermediates, and
# DCS / APC / PM / SOS strings. They change nothing on a screen; they are dropped.
UNPARSEABLE = re.compile(
    rb"\x1b\[[0-?]*[<=>:][0-?]*[ -/]*[@-~]"
    rb"|\x1b\[[0-?]*[ -/]+[@-~]"
    rb"|\x1b[P_^X][^\x1b\x07]*(?:\x1b\\|\x07)"
)
# Switches whose effect lasts: full reset, private modes, the scroll region. Kept
# (the last of each) from output dropped unparsed.
LASTING = re.compile(rb"\x1bc|\x1b\[\?[0-9;]*[hl]|\x1b\[[0-9;]*r")

# Private modes a client must have on to behave as the program expects.
PRIVATE_MODES = (
    1,  # application cursor keys
    9,  # X10 mouse reports
    1000,  # mouse button reports
    1002,  # ... with drags
    1003,  # ... with every motion
    1004,  # focus in / out reports
    1005,  # UTF-8 mouse coordinates
    1006,  # SGR mouse coordinates
    1015,  # urxvt mouse coordinates
    2004,  # bracketed paste
)
ANSI_MODES = (mo.IRM, mo.LNM)
ALTERNATE_MODES = {47 << 5, 1047 << 5, 1049 << 5}

# A cell's look: (fg, bg, bold, italics, underscore, strikethrough, reverse).
# Colours are "default", "c<N>" (palette entry N, 0-255) or "rrggbb".
Pen = tuple[str, str, bool, bool, bool, bool, bool]
PLAIN: Pen = ("default", "default", False, False, False, False, False)
_FLAGS = {1: "bold", 3: "italics", 4: "underscore", 7: "reverse", 9: "strikethrough"}
_UNFLAGS = {22: "bold", 23: "italics", 24: "underscore", 27: "reverse", 29: "strikethrough"}


class TerminalStream(pyte.ByteStream):  # type: ignore[misc]  # pyte ships no types
    """pyte's byte stream, without the sequences it would misread (``UNPARSEABLE``)."""

    def feed(self, data: bytes) -> None:
        super().feed(UNPARSEABLE.sub(b"", data))


class TerminalScreen(pyte.Screen):  # type: ignore[misc]  # pyte ships no types
    """pyte's screen with what xterm (and so the browser) does besides: an alternate
    screen, a scrollback of rendered lines, 256 and true colours kept as they were
    given, and a resize that keeps the cursor's line in view."""

    # pyte's, named for the type checker (pyte ships no types)
    buffer: Any
    lines: int
    columns: int

    def __init__(self, columns: int, lines: int, scrollback: int) -> None:
        self.history: deque[str] = deque(maxlen=max(0, scrollback))
        self.alternate = False
        self.main_buffer: Any = None
        self.main_cursor: Any = None
        # Cells are immutable: one per (pen, character), shared (see ``draw``).
        self._cells: dict[Any, dict[str, Any]] = {}
        super().__init__(columns, lines)

    def reset(self) -> None:
        self.history.clear()
        self.alternate = False
        self.main_buffer = self.main_cursor = None
        super().reset()

    # ------------------------------------------------------------------ buffers

    def set_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private"):
            shifted = {m << 5 for m in modes}
            if shifted & ALTERNATE_MODES and not self.alternate:
                self._enter_alternate()
            # 132-column mode would resize the screen under the client: ignored,
            # as xterm.js does.
            modes = tuple(m for m in modes if (m << 5) not in ALTERNATE_MODES | {mo.DECCOLM})
        super().set_mode(*modes, **kwargs)

    def reset_mode(self, *modes: int, **kwargs: Any) -> None:
        if kwargs.get("private"):
            shifted = {m << 5 for m in modes}
            if shifted & ALTERNATE_MODES and self.alternate:
                self._leave_alternate()
            modes = tuple(m for m in modes if (m << 5) not in ALTERNATE_MODES | {mo.DECCOLM})
        super().reset_mode(*modes, **kwargs)

    def _enter_alternate(self) -> None:
        self.main_buffer = self.buffer
        self.main_cursor = _copy_cursor(self.cursor)
        self.buffer = type(self.buffer)(self.buffer.default_factory)
        self.alternate = True
        self.dirty.update(range(self.lines))

    def _leave_alternate(self) -> None:
        self.buffer = self.main_buffer
        cursor = self.main_cursor
        self.main_buffer = self.main_cursor = None
        self.alternate = False
        self.cursor.x = min(cursor.x, self.columns)
        self.cursor.y = min(cursor.y, self.lines - 1)
        self.cursor.attrs = cursor.attrs
        self.dirty.update(range(self.lines))

    def index(self) -> None:
        top, bottom = self.margins or (0, self.lines - 1)
        if self.cursor.y == bottom and top == 0 and not self.alternate:
            self._to_history(0)
        super().index()

    def _to_history(self, y: int) -> None:
        if self.history.maxlen:
            line = self.buffer.get(y)
            self.history.append(render_line(line, self.columns) if line else "")

    def erase_in_display(self, how: int = 0, *args: Any, **kwargs: Any) -> None:
        if how == 3:  # xterm: clear the scrollback only
            self.history.clear()
            return
        super().erase_in_display(how, *args, **kwargs)

    def resize(self, lines: int | None = None, columns: int | None = None) -> None:
        """xterm's way: when the screen gets shorter, the lines above the cursor
        move into the scrollback instead of the ones under it being lost."""
        lines = lines or self.lines
        columns = columns or self.columns
        if (lines, columns) == (self.lines, self.columns):
            return
        shift = max(0, self.cursor.y - (lines - 1))
        if shift:
            for y in range(shift):
                if not self.alternate:
                    self._to_history(y)
            moved = {y - shift: line for y, line in self.buffer.items() if y >= shift}
            self.buffer.clear()
            self.buffer.update(moved)
            self.cursor.y -= shift
        for buffer in (self.buffer, self.main_buffer):
            if buffer is None:
                continue
            for y in [y for y in buffer if y >= lines]:
                del buffer[y]
            if columns < self.columns:
                for line in buffer.values():
                    for x in [x for x in line if x >= columns]:
                        del line[x]
        if self.main_cursor is not None:
            self.main_cursor.y = min(self.main_cursor.y, lines - 1)
            self.main_cursor.x = min(self.main_cursor.x, columns)
        self.lines, self.columns = lines, columns
        self.tabstops = {x for x in range(8, columns, 8)}
        self.set_margins()
        self.cursor.x = min(self.cursor.x, columns)
        self.cursor.y = min(self.cursor.y, lines - 1)
        self.dirty.update(range(lines))

    def draw(self, data: str) -> None:
        """pyte's draw, with a fast way for the common case, printable ASCII in
        replace mode: cells are shared per pen and written a row's room at a time."""
        if (
            self.charset
            or mo.IRM in self.mode
            or mo.DECAWM not in self.mode
            or not (data.isascii() and data.isprintable())
        ):
            super().draw(data)
            return
        data = data.translate(self.g0_charset)
        attrs = self.cursor.attrs
        cells = self._cells.get(attrs)
        if cells is None:
            if len(self._cells) > 64:
                self._cells.clear()
            cells = self._cells[attrs] = {}
        cursor = self.cursor
        while data:
            if cursor.x >= self.columns:
                self.carriage_return()
                self.linefeed()
            room = self.columns - cursor.x
            run, data = data[:room], data[room:]
            line = self.buffer[cursor.y]
            for x, char in enumerate(run, cursor.x):
                cell = cells.get(char)
                if cell is None:
                    cell = cells[char] = attrs._replace(data=char)
                line[x] = cell
            cursor.x += len(run)
            self.dirty.add(cursor.y)

    # ------------------------------------------------------------------ colours

    def select_graphic_rendition(self, *attrs: int, **kwargs: Any) -> None:
        """SGR, keeping bright and palette colours as the numbers they were (pyte
        folds 90-97 into bold and palette entries into RGB)."""
        if kwargs.get("private"):
            return  # not SGR at all (xterm's CSI ? Pm m): nothing to draw
        replace: dict[str, Any] = {}
        codes = list(attrs) or [0]
        i = 0
        while i < len(codes):
            code = codes[i]
            i += 1
            if code == 0:
                replace.update(self.default_char._asdict())
                del replace["data"]
            elif code in _FLAGS:
                replace[_FLAGS[code]] = True
            elif code in _UNFLAGS:
                replace[_UNFLAGS[code]] = False
            elif 30 <= code <= 37:
                replace["fg"] = f"c{code - 30}"
            elif 40 <= code <= 47:
                replace["bg"] = f"c{code - 40}"
            elif 90 <= code <= 97:
                replace["fg"] = f"c{code - 90 + 8}"
            elif 100 <= code <= 107:
                replace["bg"] = f"c{code - 100 + 8}"
            elif code in (39, 49):
                replace["fg" if code == 39 else "bg"] = "default"
            elif code in (38, 48):
                key = "fg" if code == 38 else "bg"
                if codes[i : i + 1] == [5] and i + 1 < len(codes):
                    if codes[i + 1] <= 255:
                        replace[key] = f"c{codes[i + 1]}"
                    i += 2
                elif codes[i : i + 1] == [2] and i + 3 < len(codes):
                    r, g, b = (min(c, 255) for c in codes[i + 1 : i + 4])
                    replace[key] = f"{r:02x}{g:02x}{b:02x}"
                    i += 4
                else:
                    i = len(codes)
        self.cursor.attrs = self.cursor.attrs._replace(**replace)


def _copy_cursor(cursor: Any) -> Any:
    copied = pyte.screens.Cursor(cursor.x, cursor.y, cursor.attrs)
    copied.hidden = cursor.hidden
    return copied


# ---------------------------------------------------------------------- output


def pen(char: Any) -> Pen:
    """A cell's look: its fields after ``data``, in ``Pen``'s order."""
    look: Pen = char[1:8]
    return look


def _colour(value: str, base: int) -> str:
    """SGR parameters for a colour; ``base`` is 30 (foreground) or 40 (background)."""
    if value == "default":
        return str(base + 9)
    if value.startswith("c"):
        n = int(value[1:])
        if n < 8:
            return str(base + n)
        if n < 16:
            return str(base + 60 + n - 8)
        return f"{base + 8};5;{n}"
    try:
        r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    except ValueError:  # a colour name from an older screen: leave the default
        return str(base + 9)
    return f"{base + 8};2;{r};{g};{b}"


def sgr(look: Pen) -> str:
    """The SGR sequence that sets exactly ``look`` from any pen."""
    fg, bg, bold, italics, underscore, strikethrough, reverse = look
    params = ["0"]
    for flag, code in ((bold, "1"), (italics, "3"), (underscore, "4"), (reverse, "7")):
        if flag:
            params.append(code)
    if strikethrough:
        params.append("9")
    if fg != "default":
        params.append(_colour(fg, 30))
    if bg != "default":
        params.append(_colour(bg, 40))
    return "\x1b[" + ";".join(params) + "m"


def render_line(line: Any, columns: int, keep: int = 0) -> str:
    """One line's cells as text and SGR, ending with the pen back to plain; plain
    blanks at its end are left out, but for those before column ``keep`` (a prompt's
    space before the cursor). (It runs for every line scrolled into the scrollback:
    kept lean.)"""
    out: list[str] = []
    current = PLAIN
    column = 0  # the next column to write
    blanks = 0  # plain blanks not written yet (none are at the end of a line)
    for x in sorted(line):
        if x >= columns:
            break
        char = line[x]
        data = char[0]
        blanks += x - column
        column = x + 1
        if not data:  # the second half of a wide character
            continue
        look = char[1:8]
        if look == PLAIN and data == " ":
            blanks += 1
            continue
        if blanks:
            if current != PLAIN:
                out.append("\x1b[0m")
                current = PLAIN
            out.append(" " * blanks)
            blanks = 0
        if look != current:
            out.append(sgr(look))
            current = look
        out.append(data)
    if current != PLAIN:
        out.append("\x1b[0m")
    written = column - blanks
    if keep > written:
        out.append(" " * (min(keep, columns) - written))
    return "".join(out)


def _draw_buffer(buffer: Any, lines: int, columns: int, cursor: Any) -> Iterable[str]:
    for y in range(lines):
        line = buffer.get(y)
        if line:
            text = render_line(line, columns, cursor.x if y == cursor.y else 0)
            if text:
                yield f"\x1b[{y + 1}H{text}"


def serialize(screen: TerminalScreen) -> bytes:
    """Escape sequences that take a freshly reset terminal of the screen's size to
    what ``screen`` shows, scrollback included. Nothing in it asks the terminal a
    question (which it would answer into the shell)."""
    rows, columns = screen.lines, screen.columns
    out: list[str] = []
    if screen.history:
        # Written at the bottom and scrolled up until all of it is in the scrollback.
        out.extend(line + "\r\n" for line in screen.history)
        out.append("\n" * (rows - 1))
    if screen.alternate:
        out.extend(_draw_buffer(screen.main_buffer, rows, columns, screen.main_cursor))
        saved = screen.main_cursor
        out.append(f"\x1b[{saved.y + 1};{min(saved.x, columns - 1) + 1}H")
        # (The alternate screen starts blank; the erase is for emulators without one.)
        out.append(f"\x1b[?1049h{sgr(PLAIN)}\x1b[H\x1b[2J")
    out.extend(_draw_buffer(screen.buffer, rows, columns, screen.cursor))
    if screen.margins is not None:
        out.append(f"\x1b[{screen.margins.top + 1};{screen.margins.bottom + 1}r")
    out.extend(f"\x1b[?{mode}h" for mode in PRIVATE_MODES if (mode << 5) in screen.mode)
    out.extend(f"\x1b[{mode}h" for mode in ANSI_MODES if mode in screen.mode)
    cursor = screen.cursor
    y = min(cursor.y, rows - 1)
    if cursor.x >= columns:
        # Past the last column, waiting to wrap: write that column's cell again
        # to leave the cursor in the same state.
        last = screen.buffer.get(y, {}).get(columns - 1)
        char = last if last is not None and last.data else screen.default_char
        out.append(f"\x1b[{y + 1};{columns}H{sgr(pen(char))}{char.data}")
    else:
        out.append(f"\x1b[{y + 1};{cursor.x + 1}H")
    if mo.DECOM in screen.mode:  # set last: setting it moves the cursor home
        top = screen.margins.top if screen.margins else 0
        out.append(f"\x1b[?6h\x1b[{y - top + 1};{min(cursor.x, columns - 1) + 1}H")
    out.append(sgr(pen(cursor.attrs)))
    if mo.DECAWM not in screen.mode:
        out.append("\x1b[?7l")
    if cursor.hidden:
        out.append("\x1b[?25l")
    return "".join(out).encode()


# ---------------------------------------------------------------------- keeper


class ScreenKeeper:
    """One terminal's screen, fed lazily (see the module docstring).

    ``limit`` is the most output parsed at once; 0 keeps no screen at all (an
    attaching client then starts from a blank one).
    """

    def __init__(self, columns: int, lines: int, limit: int, scrollback: int) -> None:
        self.limit = max(0, limit)
        self.screen = TerminalScreen(columns, lines, scrollback)
        self.stream = TerminalStream(self.screen)
        self.pending = bytearray()
        # From output dropped unparsed: the last switch of each kind, in order.
        self.lasting: dict[bytes, bytes] = {}
        self.gap = False
        self._loop = asyncio.get_running_loop()
        self._last_output = 0.0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None

    def append(self, data: bytes) -> None:
        """Queue output (cheap: this is on the way of every byte a program writes)."""
        if not self.limit:
            return
        self.pending += data
        excess = len(self.pending) - self.limit
        if excess > 0:
            self._keep_lasting(LASTING.finditer(self.pending, 0, excess))
            del self.pending[:excess]
            self.gap = True
        self._last_output = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_later(QUIET, self._when_quiet)

    def _keep_lasting(self, matches: Iterable[re.Match[bytes]]) -> None:
        for match in matches:
            sequence = match.group()
            if sequence == b"\x1bc":
                self.lasting.clear()
                key = sequence
            elif sequence.endswith(b"r"):
                key = b"r"
            else:
                key = sequence[:-1]
            self.lasting.pop(key, None)
            self.lasting[key] = sequence

    def _when_quiet(self) -> None:
        self._timer = None
        if not self.pending:
            return
        idle = self._loop.time() - self._last_output
        if idle < QUIET:
            self._timer = self._loop.call_later(QUIET - idle, self._when_quiet)
            return
        self.parse(SLICE)
        if self.pending:
            self._timer = self._loop.call_soon(self._when_quiet)

    def parse(self, most: int | None = None) -> None:
        """Parse queued output: all of it, or about ``most`` bytes (cut after a
        line feed when there is one in the second half)."""
        if self.gap:
            self.gap = False
            # The cut may fall inside a sequence or a character: start at the
            # next line or escape sequence, whichever comes first.
            starts = [self.pending.find(b"\n", 0, 8192) + 1, self.pending.find(b"\x1b", 0, 8192)]
            del self.pending[: min((i for i in starts if i > 0), default=0)]
            self._feed(b"".join(self.lasting.values()))
            self.lasting.clear()
        size = len(self.pending)
        if most is not None and size > most:
            newline = self.pending.rfind(b"\n", most // 2, most)
            size = newline + 1 if newline >= 0 else most
        data = bytes(self.pending[:size])
        del self.pending[:size]
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.stream.feed(data)
        except Exception:  # a parser bug must not end the terminal
            log.exception("terminal screen: output could not be parsed")
            self.stream = TerminalStream(self.screen)

    def resize(self, columns: int, lines: int) -> None:
        if self.limit:
            self.parse()  # what came before was drawn at the old size
            self.screen.resize(lines, columns)

    def snapshot(self) -> bytes:
        if not self.limit:
            return b""
        self.parse()
        return serialize(self.screen)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
