"""Queues on the log (``TriggerAction.Enqueue``, ``iii::durable::publish`` + ``durable:subscriber``) and live pub/sub
(``publish`` + ``subscribe``).

A queued message is a stream send in a reserved scope (:mod:`ripple.core.names`): ``$queue:<queue>`` keyed by the
function to call, or ``$topic:<topic>`` keyed ``messages``. Each consumer — one per (queue, function) and one per
(topic, subscriber function) — keeps its position in the ``reactions`` table (``iii-queue:<queue>:<function>`` /
``iii-durable:<topic>:<function>``), follows the log with ``store.subscribe`` (exactly once, in order, resumable) and
advances its cursor through the commit bus after each message. Delivery is therefore **at least once**: a message is
called again after a crash between the call and the cursor advance. A failing call is retried with exponential
backoff; after the last retry the message is recorded as a ``dead_letter`` send in ``$dead:queue:<queue>`` (or
``$dead:topic:<topic>``), keyed by the function, in the same transaction as the cursor advance, and the consumer
moves on.

* A function queue's consumer row is created in the transaction that appends its first message, so nothing enqueued
  is ever skipped; consumers found in the table start when the engine starts (resumable after a restart) and wait
  while their function is not registered.
* A durable subscriber's row is created when its trigger is first registered (it receives what is published from
  then on, also while its worker is away); the consumer runs while the trigger is registered.
* ``publish`` is live only, as in iii: it calls the ``subscribe`` triggers of the topic and keeps nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from ripple.core.events import Event, Send
from ripple.core.names import consumer_name, dead_letter_scope, parse_consumer_name, queue_scope, topic_scope
from ripple.core.validate import encode_data, validate_key
from ripple.errors import RippleError, StoreClosedError
from ripple.iii.protocol import (
    DurableSubscriberConfig,
    IIIError,
    SubscribeTriggerConfig,
    deserialization_error,
    parse_input,
)

if TYPE_CHECKING:
    from ripple.iii.engine import Builtin, Engine
    from ripple.iii.registry import TriggerEntry
    from ripple.store.writer import WriteTxn

log = logging.getLogger("ripple.iii.queues")

DEFAULT_QUEUE = "default"
TOPIC_KEY = "messages"
DEFAULT_MAX_RETRIES = 3  # the engine's default queue: 3 retries
DEFAULT_BACKOFF_MS = 1000  # then 1 s, 2 s, 4 s ...
MAX_BACKOFF_MS = 60_000
CURSOR_RETRY_DELAY = 1.0  # seconds before retrying a cursor commit that failed on storage


class PublishInput(msgspec.Struct, frozen=True):
    topic: str
    data: Any = None


class Policy(msgspec.Struct, frozen=True):
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_ms: int = DEFAULT_BACKOFF_MS

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt`` (1-based)."""
        return float(min(self.backoff_ms * 2 ** (attempt - 1), MAX_BACKOFF_MS)) / 1000


def subscriber_policy(config: DurableSubscriberConfig, default: Policy) -> Policy:
    """``queue_config``: ``maxRetries`` and ``backoffDelayMs`` (the engine's names), else the defaults."""
    raw = config.queue_config or {}
    retries = raw.get("maxRetries")
    backoff = raw.get("backoffDelayMs")
    return Policy(
        retries if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0 else default.max_retries,
        backoff if isinstance(backoff, int) and not isinstance(backoff, bool) and backoff >= 0 else default.backoff_ms,
    )


class Consumer:
    """Delivers one consumer's messages in offset order, one at a time, at least once."""

    def __init__(
        self,
        queues: Queues,
        kind: str,
        name: str,
        function_id: str,
        policy: Policy,
        entry: TriggerEntry | None = None,
    ) -> None:
        self.queues = queues
        self.kind = kind  # "queue" | "topic"
        self.name = name
        self.function_id = function_id
        self.policy = policy
        self.entry = entry  # the durable:subscriber trigger (its condition and metadata); None for a function queue
        self.row = consumer_name(kind, name, function_id)
        self.scope = queue_scope(name) if kind == "queue" else topic_scope(name)
        self.key = function_id if kind == "queue" else TOPIC_KEY
        self.position = 0
        self.delivered = 0
        self.dead = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"iii-{self.row}")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        store = self.queues.store
        try:
            self.position = await self.queues.cursor(self.row)
            async with store.subscribe(scopes=[self.scope], keys=[self.key], kind="stream", after=self.position) as sub:
                async for event in sub:
                    await self._handle(event)
        except (asyncio.CancelledError, StoreClosedError):
            return
        except Exception:
            log.exception("queue consumer %s stopped", self.row)

    async def _handle(self, event: Event) -> None:
        error: IIIError | None = None
        for attempt in range(self.policy.max_retries + 1):
            if attempt:
                await asyncio.sleep(self.policy.delay(attempt))  # the retry backoff
            await self.queues.available(self.function_id)
            error = await self._call(event)
            if error is None:
                break
            self.queues.engine.counters["queue_failures"] += 1
            log.warning(
                "%s: %s failed on message %s (attempt %d of %d): %s %s",
                self.row, self.function_id, event.meta.id, attempt + 1, self.policy.max_retries + 1,
                error.code, error.message,
            )  # fmt: skip
        dead = None if error is None else self._dead_letter(event, error)
        await self.queues.advance(self.row, event.offset, dead)
        self.position = event.offset
        if error is None:
            self.delivered += 1
        else:
            self.dead += 1
        self.queues.engine.changed()  # wakes engine.wait_until callers (tests, tools)

    async def _call(self, event: Event) -> IIIError | None:
        engine = self.queues.engine
        try:
            if self.entry is not None:
                condition = self.entry.config.condition_function_id
                if condition is not None and await engine.invoke(condition, event.new_value) is False:
                    return None  # only an exact `false` skips the message
                await engine.invoke(self.function_id, event.new_value, metadata=self.entry.metadata)
            else:
                await engine.invoke(self.function_id, event.new_value)
        except IIIError as exc:
            return exc
        return None

    def _dead_letter(self, event: Event, error: IIIError) -> tuple[Send, bytes]:
        body = {
            "offset": event.offset,
            "message_id": event.meta.id,
            "data": event.new_value,
            "error": {"code": error.code, "message": error.message},
            "attempts": self.policy.max_retries + 1,
        }
        log.error("%s: message %s dead-lettered after %d attempts", self.row, event.meta.id, body["attempts"])
        send = Send(dead_letter_scope(self.kind, self.name), self.function_id, "dead_letter", body, event.meta.id)
        return send, encode_data(body, self.queues.store.max_value_bytes)


class Queues:
    """Queue consumers, durable topics and pub/sub for one engine."""

    def __init__(self, engine: Engine, policy: Policy | None = None) -> None:
        self.engine = engine
        self.store = engine.store
        self.policy = policy or Policy()
        self.consumers: dict[str, Consumer] = {}
        self._loader: asyncio.Task[None] | None = None

    def builtins(self) -> dict[str, Builtin]:
        return {"iii::durable::publish": self.durable_publish, "publish": self.publish}

    def start(self) -> None:
        """Resume every function queue's consumer found in the ``reactions`` table."""
        self._loader = asyncio.create_task(self._resume(), name="iii-queues-resume")

    async def close(self) -> None:
        tasks = [c.task for c in self.consumers.values() if c.task is not None]
        if self._loader is not None:
            tasks.append(self._loader)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.consumers.clear()

    async def _resume(self) -> None:
        try:
            rows = await self.store.commits.run_in_txn(
                lambda txn: [r[0] for r in txn.conn.execute("SELECT name FROM reactions WHERE name LIKE 'iii-queue:%'")]
            )
        except (RippleError, asyncio.CancelledError):
            return
        for row in rows:
            parsed = parse_consumer_name(row)
            if parsed is not None and row not in self.consumers:
                _, queue, function_id = parsed
                self._start(Consumer(self, "queue", queue, function_id, self.policy))

    def _start(self, consumer: Consumer) -> None:
        self.consumers[consumer.row] = consumer
        consumer.start()

    # -- cursors (the reactions table, through the commit bus)

    async def cursor(self, row: str) -> int:
        """A consumer's position; a consumer seen for the first time starts at the head."""

        def init(txn: WriteTxn) -> int:
            found = txn.conn.execute("SELECT cursor FROM reactions WHERE name = ?", (row,)).fetchone()
            if found is not None:
                return int(found[0])
            txn.conn.execute("INSERT INTO reactions (name, cursor) VALUES (?, ?)", (row, txn.head))
            return txn.head

        result: int = await self.store.commits.run_in_txn(init)
        return result

    async def advance(self, row: str, offset: int, dead: tuple[Send, bytes] | None = None) -> None:
        """Move a consumer past ``offset`` (with its dead letter, if any, in the same transaction)."""

        def commit(txn: WriteTxn) -> None:
            if dead is not None:
                txn.send(*dead)
            txn.conn.execute("UPDATE reactions SET cursor = ? WHERE name = ? AND cursor < ?", (offset, row, offset))

        while True:
            try:
                await self.store.commits.run_in_txn(commit)
                return
            except StoreClosedError:
                raise
            except RippleError as exc:
                log.error("%s: could not commit its cursor %d (%s); retrying", row, offset, exc)
                await asyncio.sleep(CURSOR_RETRY_DELAY)  # storage trouble: wait, then retry the same advance

    async def available(self, function_id: str) -> None:
        """Return once ``function_id`` can be called (a queue waits for its worker instead of burning retries)."""
        engine = self.engine
        while engine.registry.owner(function_id) is None and function_id not in engine.builtins:
            try:
                await engine.wait_until(lambda: engine.registry.owner(function_id) is not None, 3600)
            except TimeoutError:
                continue

    # -- function queues (TriggerAction.Enqueue)

    async def enqueue(self, queue: str | None, function_id: str, data: Any) -> dict[str, str]:
        """Append a call of ``function_id`` to ``queue``; returns the engine's receipt ``{messageReceiptId}``."""
        name = queue or DEFAULT_QUEUE
        receipt = str(uuid.uuid4())
        try:
            scope = queue_scope(name)
            validate_key(function_id)
            raw = encode_data(data, self.store.max_value_bytes)
        except (ValueError, RippleError) as exc:
            raise IIIError("enqueue_error", str(exc)) from None
        row = consumer_name("queue", name, function_id)

        def append(txn: WriteTxn) -> None:
            # The consumer's row is created before its first message, in the same transaction: nothing is skipped.
            txn.conn.execute("INSERT OR IGNORE INTO reactions (name, cursor) VALUES (?, ?)", (row, txn.head))
            txn.send(Send(scope, function_id, "enqueue", data, receipt), raw)

        try:
            await self.store.commits.run_in_txn(append)
        except RippleError as exc:
            raise IIIError("enqueue_error", exc.message) from None
        if row not in self.consumers:
            self._start(Consumer(self, "queue", name, function_id, self.policy))
        return {"messageReceiptId": receipt}

    # -- durable topics

    async def durable_publish(self, data: Any) -> Any:
        inp: PublishInput = parse_input("iii::durable::publish", data, PublishInput)
        if not inp.topic:
            raise IIIError("topic_not_set", "Topic is not set")
        try:
            await self.store.send(topic_scope(inp.topic), TOPIC_KEY, "publish", inp.data, id=str(uuid.uuid4()))
        except ValueError as exc:
            raise deserialization_error("iii::durable::publish", str(exc)) from None
        except RippleError as exc:
            raise self.engine.store_error("publish_error", exc) from None
        return msgspec.UNSET

    async def subscribe(self, entry: TriggerEntry) -> None:
        """A ``durable:subscriber`` trigger went live: run its consumer (created at the head the first time)."""
        config = entry.config
        assert isinstance(config, DurableSubscriberConfig)
        consumer = Consumer(
            self, "topic", config.topic, entry.function_id, subscriber_policy(config, self.policy), entry
        )
        old = self.consumers.pop(consumer.row, None)
        if old is not None:
            old.stop()
        await self.cursor(consumer.row)  # before the registration counts: a publish from now on is delivered
        self._start(consumer)

    def unsubscribe(self, entry: TriggerEntry) -> None:
        config = entry.config
        if not isinstance(config, DurableSubscriberConfig):
            return
        row = consumer_name("topic", config.topic, entry.function_id)
        consumer = self.consumers.get(row)
        if consumer is not None and consumer.entry is not None and consumer.entry.id == entry.id:
            del self.consumers[row]
            consumer.stop()

    # -- pub/sub (live)

    async def publish(self, data: Any) -> Any:
        inp: PublishInput = parse_input("publish", data, PublishInput)
        if not inp.topic:
            raise IIIError("topic_not_set", "Topic is not set")
        for entry in list(self.engine.registry.of_type("subscribe")):
            config = entry.config
            if isinstance(config, SubscribeTriggerConfig) and config.topic == inp.topic:
                self.engine.spawn(self.engine.call_trigger(entry, inp.data), name=f"iii-publish-{inp.topic}")
        return msgspec.UNSET
