"""Reserved scope names (the `$` prefixes): where stream items and iii queue messages live in the log. Pure.

* A **stored stream item** (``stream::set`` and friends) is a *state* key: the item id is the key, and the stream
  group is the scope ``$stream:<stream>:<group>``. Every change is an ordinary ``created``/``updated``/``deleted``
  event, so ``verify``, ``export``/``import``, ``replay``, time travel and projections treat items like any other key,
  and a group is readable and subscribable like any scope.
* A **queue message** (``TriggerAction.Enqueue``, ``iii::durable::publish``) is a *stream* send: the scope is
  ``$queue:<queue>`` (key: the function to call) or ``$topic:<topic>`` (key: the topic), so it changes no state and
  is read back in offset order by the queue's consumers.

Names are escaped so the mapping is reversible even when a name holds the separator: ``%``, ``:`` and ``/`` become
``%25``, ``%3A`` and ``%2F`` (a scope may not contain ``/``; ``:`` separates stream from group). A user scope that
happens to start with ``$stream:`` *is* a stream group — the ``$`` prefixes are ripple's, documented as reserved.
"""

from __future__ import annotations

import re

from ripple.core.validate import MAX_SCOPE_CHARS

ITEMS_PREFIX = "$stream:"
QUEUE_PREFIX = "$queue:"
TOPIC_PREFIX = "$topic:"
DEAD_LETTER_PREFIX = "$dead:"

_ESCAPES = {"%": "%25", ":": "%3A", "/": "%2F"}
_ESCAPED = re.compile("%(25|3A|2F)")
_UNESCAPES = {"25": "%", "3A": ":", "2F": "/"}


def escape(name: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in name)


def unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: _UNESCAPES[m.group(1)], text)


def _scope(prefix: str, *parts: str, what: str) -> str:
    for part in parts:
        if not part:
            raise ValueError(f"{what} must not be empty")
    scope = prefix + ":".join(escape(p) for p in parts)
    if len(scope) > MAX_SCOPE_CHARS:
        room = MAX_SCOPE_CHARS - len(prefix)
        raise ValueError(f"{what} too long: {len(scope) - len(prefix)} characters escaped, at most {room} fit")
    return scope


def item_scope(stream: str, group: str) -> str:
    """The scope that holds a stream group's stored items. Raises ``ValueError`` for an empty or too long name."""
    return _scope(ITEMS_PREFIX, stream, group, what="stream name and group id")


def parse_item_scope(scope: str) -> tuple[str, str] | None:
    """``(stream, group)`` when ``scope`` holds stored stream items, else ``None``."""
    if not scope.startswith(ITEMS_PREFIX):
        return None
    stream, sep, group = scope[len(ITEMS_PREFIX) :].partition(":")
    if not sep or not stream or not group or ":" in group:
        return None
    return unescape(stream), unescape(group)


def is_item_scope(scope: str) -> bool:
    return parse_item_scope(scope) is not None


def items_prefix(stream: str) -> str:
    """Every group scope of ``stream`` starts with this."""
    return f"{ITEMS_PREFIX}{escape(stream)}:"


def queue_scope(queue: str) -> str:
    """The stream scope of a function queue's messages (``TriggerAction.Enqueue({queue})``)."""
    return _scope(QUEUE_PREFIX, queue, what="queue name")


def topic_scope(topic: str) -> str:
    """The stream scope of a durable topic's messages (``iii::durable::publish``)."""
    return _scope(TOPIC_PREFIX, topic, what="topic")


def dead_letter_scope(kind: str, name: str) -> str:
    """Where messages that exhausted their retries are recorded: ``$dead:queue:<queue>`` or ``$dead:topic:<topic>``
    (key: the consumer's function)."""
    return _scope(DEAD_LETTER_PREFIX, kind, name, what=f"{kind} name")


def consumer_name(kind: str, name: str, function_id: str) -> str:
    """A queue consumer's row in the ``reactions`` table: ``iii-queue:<queue>:<function>`` or
    ``iii-durable:<topic>:<function>`` (escaped, so it parses back with :func:`parse_consumer_name`)."""
    return f"{CONSUMER_PREFIXES[kind]}{escape(name)}:{escape(function_id)}"


def parse_consumer_name(row: str) -> tuple[str, str, str] | None:
    """``(kind, name, function_id)`` for a queue consumer's row name, else ``None``."""
    for kind, prefix in CONSUMER_PREFIXES.items():
        if row.startswith(prefix):
            name, sep, function_id = row[len(prefix) :].partition(":")
            if sep and name and function_id and ":" not in function_id:
                return kind, unescape(name), unescape(function_id)
    return None


CONSUMER_PREFIXES = {"queue": "iii-queue:", "topic": "iii-durable:"}
