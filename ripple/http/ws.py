"""STUB — replaced at merge by the subscriptions issue's module (DESIGN §7).

The real module serves ``/v1/subscribe`` and ``/v1/streams/{stream}/{group}`` from ``app.state.store``.
"""

from __future__ import annotations

from typing import Any

from ripple.store.store import Store


def websocket_handlers() -> list[Any]:
    """The WebSocket route handlers to mount on the app (none in this stub)."""
    return []


async def close_subscribers(store: Store, code: int = 1001) -> None:
    """Close every WebSocket subscriber of ``store`` with ``code`` (nothing to close in this stub)."""
