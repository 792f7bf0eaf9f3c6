"""Who may do what to a sandbox: one seam, like jupyter_server's Authorizer.

The core asks ``may(user, action, sandbox)`` before acting on someone's behalf. The
owner may do everything; anyone else only what a registered rule allows. Apps built
on the core (the classroom) add rules at ``AppConfig.ready()``, so the core never
imports them.

Actions:

- ``"use"``: act as the owner (exec, write files, type in a terminal, processes).
- ``"view"``: a read-only look (read files, watch a terminal, its status, open a
  shared or private preview).
- ``"manage"``: lifecycle (change settings, sleep, delete).

The same registration answers two more questions: which users belong with a
sandbox in a group (``member``: the classroom's courses; a preview shared at the
``course`` level asks it), and, with SIGNUP=invite, which sign-ups an app's
invitation allows (``invited``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser, User

    from sandboxes.models import Sandbox

Action = Literal["use", "view", "manage"]
# A rule answers True (allow), False (deny) or None (no opinion: ask the next one).
Rule = Callable[["User | AnonymousUser", Action, "Sandbox"], Awaitable[bool | None]]

_rules: list[Rule] = []


def register(rule: Rule) -> None:
    """Add a rule; rules are asked in the order they were registered."""
    if rule not in _rules:
        _rules.append(rule)


async def may(user: User | AnonymousUser, action: Action, sandbox: Sandbox) -> bool:
    """Whether ``user`` may do ``action`` to ``sandbox``; nobody may by default."""
    if not user.is_authenticated:
        return False
    if user.pk == sandbox.owner_id:
        return True
    for rule in _rules:
        answer = await rule(user, action, sandbox)
        if answer is not None:
            return answer
    return False


# Whether a user belongs with a sandbox in a group (a course it is enrolled in).
Membership = Callable[["User", "Sandbox"], Awaitable[bool]]
_memberships: list[Membership] = []


def register_membership(check: Membership) -> None:
    """Add what knows a sandbox's groups (the classroom: the course it is enrolled in,
    its teacher and students)."""
    if check not in _memberships:
        _memberships.append(check)


async def member(user: User | AnonymousUser, sandbox: Sandbox) -> bool:
    """Whether an active, logged-in ``user`` shares a group with ``sandbox`` (its
    owner always does); nobody does by default."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.pk == sandbox.owner_id:
        return True
    for check in _memberships:
        if await check(user, sandbox):
            return True
    return False


# Whether a sign-up on the way to ``next_url`` is invited (SIGNUP=invite).
Invitation = Callable[[str], Awaitable[bool]]
_invitations: list[Invitation] = []


def register_invitation(check: Invitation) -> None:
    """Add what recognises an invitation (the classroom: a usable invite link)."""
    if check not in _invitations:
        _invitations.append(check)


async def invited(next_url: str) -> bool:
    """Whether some app recognises ``next_url`` as an invitation to sign up."""
    for check in _invitations:
        if await check(next_url):
            return True
    return False


# A non-owner's open streams (terminal output, file watch) notice a withdrawn right
# within this many seconds and end.
RECHECK_SECONDS = 5.0


async def until_denied(
    user: User | AnonymousUser,
    action: Action,
    sandbox: Sandbox,
    interval: float = RECHECK_SECONDS,
) -> None:
    """Return once ``user`` may no longer do ``action`` (run it as a task)."""
    while True:
        await asyncio.sleep(interval)
        if not await may(user, action, sandbox):
            return


async def while_allowed(
    events: AsyncGenerator[bytes, None],
    user: User | AnonymousUser,
    action: Action,
    sandbox: Sandbox,
    interval: float = RECHECK_SECONDS,
) -> AsyncGenerator[bytes, None]:
    """Pass a stream through, ending it once ``user`` may no longer do ``action``
    (checked between chunks, which the stream's keep-alives make periodic)."""
    checked = time.monotonic()
    try:
        async for chunk in events:
            if time.monotonic() - checked >= interval:
                checked = time.monotonic()
                if not await may(user, action, sandbox):
                    return
            yield chunk
    finally:
        await events.aclose()
