"""Route ``opt`` markers read by :mod:`ripple.http.access` (DESIGN §15). Mark a Litestar handler with them:
``@post("/upload", opt={ANY_BODY: True})``.
"""

PUBLIC = "ripple_public"
"""Reachable without a token under ``--auth``, as an identity with no grants (``/v1/health``, the API docs)."""
ANY_BODY = "ripple_any_body"
"""The route accepts bodies that are not JSON: it opts out of the JSON-only rule (and its CSRF protection)."""
REFUSES_IN_FRAMES = "ripple_refuses_in_frames"
"""ripple's own WebSocket endpoints: they accept first and refuse an unauthenticated client with an ``error`` frame;
any other WebSocket route is refused before the upgrade."""
