"""Access control (DESIGN §15): tokens, grants, the identity a request acts as.

- :mod:`ripple.auth.grants` — pure: ``todos*:rw`` grants, :class:`Identity` and what it may read and write.
- :mod:`ripple.auth.context` — the identity the current task acts as (a contextvar the store checks on every call).
- :mod:`ripple.auth.tokens` — token text, hashing and the ``tokens`` table (used by the CLI and the server).
- :mod:`ripple.auth.book` — the server's view of the table: cached lookups, revocation, failed-attempt limits.
"""

from ripple.auth.context import acting_as, current_identity
from ripple.auth.grants import Grant, Identity, parse_grant

__all__ = ["Grant", "Identity", "acting_as", "current_identity", "parse_grant"]
