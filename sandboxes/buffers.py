"""Budgets for command output the server holds to answer buffered calls.

A buffered exec or code run (the JSON answer, not the event stream) keeps its output
in this server process's memory until it answers. ``EXEC_OUTPUT_LIMIT`` caps one
stream of one call; these budgets cap what all the calls of one account
(``EXEC_BUFFER_PER_USER``) and all calls together (``EXEC_BUFFER_TOTAL``) hold at
once, so many sandboxes running many execs cannot add up to gigabytes.

Output beyond a budget is dropped and the answer says ``truncated: true``, as it
does beyond EXEC_OUTPUT_LIMIT. We truncate rather than answer 429 because by then
the command has run: its exit status, the part of the answer a caller cannot get
again, is never thrown away, and a 429 before the run would have to reserve every
call's worst case (refusing most concurrent execs that print little). Streaming
(``Accept: text/event-stream``) holds nothing and is not limited.

The budgets count this process's memory, so they are per server process.
"""

from __future__ import annotations

from types import TracebackType

from django.conf import settings

# The defaults of the settings (ide/settings.py reads them from the environment).
PER_USER_DEFAULT = 64 * 1024 * 1024
TOTAL_DEFAULT = 256 * 1024 * 1024


def limits() -> tuple[int, int]:
    """(EXEC_BUFFER_PER_USER, EXEC_BUFFER_TOTAL) in bytes."""
    return (
        int(getattr(settings, "EXEC_BUFFER_PER_USER", PER_USER_DEFAULT)),
        int(getattr(settings, "EXEC_BUFFER_TOTAL", TOTAL_DEFAULT)),
    )


class OutputBudget:
    """Bytes held now, per account and in all."""

    def __init__(self) -> None:
        self.total = 0
        self.by_user: dict[int, int] = {}

    def take(self, user: int, size: int) -> int:
        """Reserve up to ``size`` bytes for ``user``; how many were granted."""
        per_user, total = limits()
        room = min(per_user - self.by_user.get(user, 0), total - self.total)
        granted = max(0, min(size, room))
        if granted:
            self.total += granted
            self.by_user[user] = self.by_user.get(user, 0) + granted
        return granted

    def give_back(self, user: int, size: int) -> None:
        self.total -= size
        left = self.by_user.get(user, 0) - size
        if left > 0:
            self.by_user[user] = left
        else:
            self.by_user.pop(user, None)


BUDGET = OutputBudget()


class Held:
    """What one buffered call holds; everything is given back when the ``with`` ends."""

    def __init__(self, user: int, budget: OutputBudget = BUDGET) -> None:
        self.user = user
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> int:
        granted = self.budget.take(self.user, size) if size > 0 else 0
        self.size += granted
        return granted

    def take_all(self, size: int) -> bool:
        """Reserve all of ``size`` bytes or nothing."""
        granted = self.take(size)
        if granted < size:
            self.budget.give_back(self.user, granted)
            self.size -= granted
            return False
        return True

    def __enter__(self) -> Held:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.budget.give_back(self.user, self.size)
        self.size = 0
