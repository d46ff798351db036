"""The identity the current task acts as: set by the server for each request, read by the store on every call.

A contextvar, like :mod:`ripple.store.origin`, so that the store checks grants on every path — REST handlers,
``--app`` routes, WebSocket subscriptions, iii workers — with one rule in one place, and a write made anywhere under a
token carries that token's name as ``meta.actor``. ``None`` (the default: the embedded API, the server without
``--auth``) means no check and no actor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from ripple.auth.grants import Identity

current_identity: ContextVar[Identity | None] = ContextVar("ripple_identity", default=None)


@contextmanager
def acting_as(identity: Identity | None) -> Iterator[Identity | None]:
    """Run a block as ``identity``: its grants are checked and its name is the ``meta.actor`` of its writes.

    ``with acting_as(Identity("nightly-import", admin=True)): await store.set(...)``
    """
    token = current_identity.set(identity)
    try:
        yield identity
    finally:
        current_identity.reset(token)


def require_admin(what: str) -> None:
    """Raise :class:`~ripple.errors.ForbiddenError` unless the current identity (if any) is an admin."""
    identity = current_identity.get()
    if identity is not None:
        identity.require_admin(what)
