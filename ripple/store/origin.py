"""Where a write comes from: set while a reaction handles an event, read by the store when it builds ``meta``.

A contextvar (not an argument) so that a reaction's handler can write through the ordinary store API and its
writes still carry ``meta.cause`` and ``meta.depth`` (DESIGN §5).
"""

from __future__ import annotations

from contextvars import ContextVar

from ripple.core.events import Meta

current_origin: ContextVar[Meta | None] = ContextVar("ripple_origin", default=None)

DEFAULT_CASCADE_LIMIT = 16
