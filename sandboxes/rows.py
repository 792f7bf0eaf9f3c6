"""Sandbox rows as the hot path reads them: from memory while nothing changed.

Every exec, file operation and process call starts by finding its sandbox. The query
for it (and the hop to the database thread it needs) was a third of the server's CPU
for an exec. So a row read here is kept for ``TTL`` seconds, trusted only under the
shared generation ``ROWS`` it was read under (``sandboxes.coordination``): any change
to any sandbox row, in any server process, bumps that generation once it commits, and
every process drops what it read before. While the generation cannot be read (Redis
lost), nothing is trusted and every lookup asks the database.

What counts as a change: a save or a delete (Django's signals) and a bulk update
(``models.sandboxes_updated``), whatever their fields, except the activity mark
alone (``last_active_at``), which ``lifecycle.touch`` writes every few seconds per
busy sandbox. That field is kept current in this process by ``note_activity``; another
process's copy may be up to ``TTL`` older, which at worst makes it write the mark
again a little early. Each caller gets its own instance, never the cached one.
"""

from __future__ import annotations

import copy
import time
from datetime import datetime
from typing import Any, Final

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from sandboxes.coordination import coordinator
from sandboxes.models import Sandbox, sandboxes_updated

TTL: Final = 2.0
ROWS: Final = "sandbox-rows"
ACTIVITY_ONLY: Final = frozenset({"last_active_at"})
_MAX: Final = 10_000

_FIELDS: Final = tuple(field.attname for field in Sandbox._meta.concrete_fields)
_ACTIVITY: Final = _FIELDS.index("last_active_at")
# sandbox id -> (trusted until, generation, database alias, values in ``_FIELDS`` order)
_rows: dict[str, tuple[float, int, str | None, list[Any]]] = {}


async def find(sandbox_id: str) -> Sandbox | None:
    """The sandbox with this id, or None: from memory if it was read since the last
    change anywhere (and less than ``TTL`` ago), else from the database."""
    # The generation is read before the row: a change that commits after the query
    # bumps it past the one the row is kept under.
    generation = await coordinator().generation(ROWS)
    hit = _rows.get(sandbox_id)
    if hit is not None and hit[1] == generation and hit[0] > time.monotonic():
        cached: Sandbox = Sandbox.from_db(hit[2], _FIELDS, _own(hit[3]))
        return cached
    sandbox = await Sandbox.objects.filter(pk=sandbox_id).afirst()
    if sandbox is None or generation is None:
        _rows.pop(sandbox_id, None)
        return sandbox
    if len(_rows) >= _MAX:
        _rows.clear()
    values = _own([getattr(sandbox, name) for name in _FIELDS])
    _rows[sandbox_id] = (time.monotonic() + TTL, generation, sandbox._state.db, values)
    return sandbox


def _own(values: list[Any]) -> list[Any]:
    """Copies of the JSON fields (env, limits, backend_state), which their holder may
    change: the cache and each caller hold their own."""
    return [copy.deepcopy(v) if isinstance(v, dict | list) else v for v in values]


def note_activity(sandbox_id: str, when: datetime) -> None:
    """``lifecycle.touch`` wrote the activity mark: the copy here follows."""
    hit = _rows.get(sandbox_id)
    if hit is not None:
        hit[3][_ACTIVITY] = when


def changed(using: str | None = None) -> None:
    """Sandbox rows changed: once the change commits, every process (this one too)
    finds its copies under an older generation and reads them afresh."""
    transaction.on_commit(lambda: coordinator().bump(ROWS), using=using)


@receiver(post_save, sender=Sandbox)
def _saved(sender: type[Sandbox], instance: Sandbox, **kwargs: Any) -> None:
    fields = kwargs.get("update_fields")
    if not (fields and frozenset(fields) <= ACTIVITY_ONLY):
        changed(kwargs.get("using"))


@receiver(post_delete, sender=Sandbox)
def _deleted(sender: type[Sandbox], instance: Sandbox, **kwargs: Any) -> None:
    changed(kwargs.get("using"))


@receiver(sandboxes_updated, sender=Sandbox)
def _updated(sender: type[Sandbox], fields: frozenset[str], using: str, **kwargs: Any) -> None:
    if not fields <= ACTIVITY_ONLY:
        changed(using)
