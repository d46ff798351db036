"""The server's logs: one line per record on stderr, as text or as JSON (``ripple serve --log-format json``).

Every ``logging.getLogger("ripple....")`` call goes through here. A JSON line holds ``ts`` (UTC, ISO 8601 with
milliseconds), ``level``, ``logger``, ``message`` (the formatted text), ``request_id`` while a request is served, the
record's ``extra`` fields as they are (``event``, ``reaction``, ``offset``, ``status``, ...) and ``exception`` (the
traceback) when there is one. Notable events carry ``event``: ``startup``, ``shutdown``, ``request``, ``websocket``,
``overload``, ``overload_end``, ``overflow``, ``reaction_failure``, ``projection_failure``, ``refused_cascade``.

Secrets are never written (DESIGN §15): the access log redacts the query's ``token`` and logs no header
(:mod:`ripple.http.requests`), and :class:`RedactSecrets`, on the handler :func:`configure` installs, keeps them out of
every other library's lines — the one place where log lines are redacted.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal, TextIO

import msgspec
import websockets

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]

REDACTED = "<redacted>"  # what a secret's value is replaced by

#: The id of the request being served (``None`` outside a request); set by :mod:`ripple.http.requests`.
request_id: ContextVar[str | None] = ContextVar("ripple_request_id", default=None)

# The attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_encode = msgspec.json.Encoder(enc_hook=repr).encode


_TOKEN_IN_QUERY = re.compile(r"(?<=[?&])token=[^&\s\"]*")
_WEBSOCKETS_CODE = os.path.dirname(websockets.__file__) + os.sep


class RedactSecrets(logging.Filter):
    """Tokens and credentials never reach the log, at any level:

    - the websockets library's DEBUG trace is dropped, whichever logger carries it (its own on the iii ports,
      uvicorn's on the main port): it holds every handshake's request line and headers (``Authorization: Bearer``,
      ``?token=``, an app's API keys and cookies) and the start of every frame;
    - a ``token=`` query value in any other line (uvicorn's WebSocket lines) is replaced by ``<redacted>``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO and record.pathname.startswith(_WEBSOCKETS_CODE):
            return False
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "token=" in a for a in record.args):
            record.args = tuple(_TOKEN_IN_QUERY.sub(f"token={REDACTED}", a) if isinstance(a, str) else a
                                for a in record.args)
        if isinstance(record.msg, str) and "token=" in record.msg:
            record.msg = _TOKEN_IN_QUERY.sub(f"token={REDACTED}", record.msg)
        return True


def timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's ``extra`` fields, with the current request id unless the record names one."""
    out = {k: v for k, v in vars(record).items() if k not in _STANDARD}
    if "request_id" not in out:
        rid = request_id.get()
        if rid is not None:
            out["request_id"] = rid
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return _encode(line).decode()


class TextFormatter(logging.Formatter):
    """``2025-01-01T12:00:00.000Z INFO ripple.reactions: message key=value ...``, then the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in fields(record).items() if k != "event")
        line = f"{timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if extra:
            line = f"{line}  [{extra}]"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure(fmt: LogFormat = "text", level: LogLevel = "info", stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``fmt``: ripple's at ``level`` and above, other libraries'
    (uvicorn, websockets) at WARNING and above unless ``level`` is ``debug``; secrets redacted (:class:`RedactSecrets`).
    Replaces the root logger's handlers; returns the new handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    logging.getLogger("ripple").setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    return handler
