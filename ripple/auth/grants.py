"""Grants and identities (DESIGN §15). Pure: no I/O; raises :class:`~ripple.errors.ForbiddenError`.

A grant is ``PATTERN:ACCESS``: ``PATTERN`` is a scope (or stream) name or an ``fnmatch`` glob (``*``, ``?``,
``[seq]``; match a literal ``[`` with ``[[]``), ``ACCESS`` is ``r`` (read) or ``rw`` (read and write). Scope grants
and stream grants are separate lists: ``todos:rw`` lets a token read and write the state scope ``todos`` and nothing
else; ``live:r`` in the stream list lets it read the stream ``live``. ``admin`` reaches everything, including the
whole log across scopes, projections, rebuilds and health details.

A stream's stored items live in scopes of their own, one per group (``$stream:<stream>:<group>``,
:func:`ripple.core.names.item_scope`). Those scopes answer to the stream's grants too: ``live:r`` reads the items of
every group of stream ``live`` and ``live:rw`` writes them, whichever way they are reached (REST, subscriptions, iii's
``stream::*``); a scope grant that names the item scope (``$stream:live:alice:r``) reaches one group. One rule,
:meth:`Identity.may_read` / :meth:`Identity.may_write`, decides for every caller.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

import msgspec

from ripple.core.filter import Filter
from ripple.core.names import parse_item_scope
from ripple.core.validate import validate_name
from ripple.errors import ForbiddenError, InvalidNameError, ValidationError

Access = Literal["r", "rw"]
MAX_NAME_CHARS = 256


class Grant(msgspec.Struct, frozen=True):
    """One ``PATTERN:ACCESS`` grant."""

    pattern: str
    access: Access

    def matches(self, name: str) -> bool:
        return fnmatchcase(name, self.pattern)

    def __str__(self) -> str:
        return f"{self.pattern}:{self.access}"


def parse_grant(text: str) -> Grant:
    """``"todos*:rw"`` → ``Grant("todos*", "rw")``; a bad grant is a :class:`ValidationError` naming it."""
    pattern, colon, access = text.rpartition(":")
    if not colon or access not in ("r", "rw"):
        raise ValidationError(f"a grant is PATTERN:r or PATTERN:rw, not {text!r}", detail={"grant": text})
    try:
        validate_name("grant pattern", pattern, MAX_NAME_CHARS, allow_slash=True)
    except InvalidNameError as exc:
        raise ValidationError(f"grant {text!r}: {exc.message}", detail={"grant": text}) from None
    return Grant(pattern, "rw" if access == "rw" else "r")


class Identity(msgspec.Struct, frozen=True):
    """Who a request acts as: a token's name and grants. ``meta.actor`` of every write it makes is ``name``.

    ``token_id`` (the SHA-256 of the token) and ``expires_ts`` let the server end the sessions of a token that was
    revoked or expired; an identity made in code (``Identity("import-job", admin=True)``) has neither.
    """

    name: str
    scopes: tuple[Grant, ...] = ()
    streams: tuple[Grant, ...] = ()
    admin: bool = False
    worker: bool = False
    token_id: str | None = None
    expires_ts: int | None = None

    # -- what it may do

    def may_read(self, scope: str) -> bool:
        return self._may(scope, write=False)

    def may_write(self, scope: str) -> bool:
        return self._may(scope, write=True)

    def _may(self, scope: str, *, write: bool) -> bool:
        """The rule for a scope: a scope grant, or — for the scope of a stream's stored items — a stream grant."""
        if self.admin:
            return True
        item = parse_item_scope(scope)
        if item is not None and _granted(self.streams, item[0], write):
            return True
        return _granted(self.scopes, scope, write)

    def may_read_stream(self, stream: str) -> bool:
        return self.admin or _granted(self.streams, stream, False)

    def may_write_stream(self, stream: str) -> bool:
        return self.admin or _granted(self.streams, stream, True)

    def may_follow(self, f: Filter) -> bool:
        """May this identity read every event ``f`` matches? Without admin, ``f`` must name its scopes."""
        if self.admin:
            return True
        if not f.scopes:
            return False
        if f.kind in ("state", "all") and not all(self.may_read(s) for s in f.scopes):
            return False
        return not (f.kind in ("stream", "all") and not all(self.may_read_stream(s) for s in f.scopes))

    # -- the same, raising

    def require_read(self, scope: str) -> None:
        if not self.may_read(scope):
            raise _forbidden(self, f"read scope {_scope_words(scope)}")

    def require_write(self, scope: str) -> None:
        if not self.may_write(scope):
            raise _forbidden(self, f"write scope {_scope_words(scope)}")

    def require_read_stream(self, stream: str) -> None:
        if not self.may_read_stream(stream):
            raise _forbidden(self, f"read stream {stream!r}")

    def require_write_stream(self, stream: str) -> None:
        if not self.may_write_stream(stream):
            raise _forbidden(self, f"send to stream {stream!r}")

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise _forbidden(self, what + " (admin only)")

    def require_follow(self, f: Filter) -> None:
        if self.may_follow(f):
            return
        if not f.scopes:
            raise _forbidden(self, "read events of every scope (admin only; name the scopes with scope=...)")
        what = {"state": "state events", "stream": "stream events", "all": "state and stream events (kind=all)"}
        hint = ""
        if f.kind == "all":  # the default of /v1/events and /v1/subscribe: say which narrower kind would do
            for kind in ("state", "stream"):
                if self.may_follow(msgspec.structs.replace(f, kind=kind)):
                    hint = f"; kind={kind} would be allowed"
                    break
        raise _forbidden(self, f"read {what[f.kind]} of {', '.join(sorted(map(repr, f.scopes)))}{hint}")


ANONYMOUS = Identity("anonymous")
"""A request without a token on a public route of a server that runs ``--auth``: it may read and write nothing."""


def _granted(grants: tuple[Grant, ...], name: str, write: bool) -> bool:
    return any(g.matches(name) and (g.access == "rw" or not write) for g in grants)


def _scope_words(scope: str) -> str:
    item = parse_item_scope(scope)
    return repr(scope) if item is None else f"{scope!r} (the items of stream {item[0]!r})"


def _forbidden(identity: Identity, what: str) -> ForbiddenError:
    # Names only what the caller asked for: never whether a scope or key exists.
    return ForbiddenError(f"token {identity.name!r} may not {what}", detail={"token": identity.name})
