"""Which handler answers which request: each module lists its handlers with ``on``,
and the connection handler (``server``) merges the lists and calls the one for the
type of the request it read.

A handler takes the request (its own message type) and the connection's channel;
it answers on the channel, and fails by raising (see ``failures``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from .protocol import Channel, Message

M = TypeVar("M", bound=Message)

Handler = Callable[[Message, Channel], Awaitable[None]]
Handlers = dict[type[Message], Handler]


def on(message_type: type[M], handler: Callable[[M, Channel], Awaitable[None]]) -> Handlers:
    """``handler`` answers requests of ``message_type`` (and only those: the server
    looks handlers up by the exact type, so the cast holds)."""
    return {message_type: cast(Handler, handler)}


def table(*entries: Handlers) -> Handlers:
    """Several ``on`` entries as one table; a type listed twice is a mistake."""
    merged: Handlers = {}
    for entry in entries:
        for message_type, handler in entry.items():
            if message_type in merged:
                raise ValueError(f"two handlers for {message_type.__name__}")
            merged[message_type] = handler
    return merged
