"""Round 2: worker-provided trigger types, queues on the log (``TriggerAction.Enqueue``, ``durable:subscriber`` +
``iii::durable::publish``), pub/sub, cron and the engine's own functions and trigger types — through the SDKs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from iii import TriggerAction  # type: ignore[import-untyped]

from ripple import Store
from ripple.core.names import consumer_name
from ripple.iii.queues import Policy
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.iii.conftest import LogWatch, RawWorker
from tests.iii.sdk import Inbox, node_script, py_worker, registered

FAST = Policy(max_retries=2, backoff_ms=5)
# PyPI iii-sdk 0.25 deprecates register_trigger for observe(), which needs engine features ripple does not offer.
pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")

PROVIDER = """
import { registerWorker } from 'iii-sdk'
const iii = registerWorker(process.env.III_URL)
const bound = new Map()
iii.registerTriggerType({ id: 'test.tick', description: 'ticks on demand' }, {
  registerTrigger: async (cfg) => { bound.set(cfg.id, cfg); console.log(JSON.stringify({ bound: cfg })) },
  unregisterTrigger: async (cfg) => { bound.delete(cfg.id); console.log(JSON.stringify({ unbound: cfg })) },
})
iii.registerFunction('tick::fire', async (payload) => {
  for (const cfg of bound.values()) await iii.trigger({ function_id: cfg.function_id, payload })
  return { fired: bound.size }
})
console.log(JSON.stringify({ ready: true }))
"""


async def test_worker_provided_trigger_type_lifecycle(iii: IIIServer, worker: RawWorker, tmp_path: Path) -> None:
    # A trigger of a type nobody provides yet waits (no error), as in the current engine.
    await worker.register("consumer::on-tick")
    await worker.trigger("tick-1", "test.tick", "consumer::on-tick", {"every": "call"})
    await registered(iii.engine, lambda: "tick-1" in iii.engine.registry.pending)
    async with node_script(PROVIDER, iii.worker_port, tmp_path) as provider:
        assert (await provider.line())["ready"]
        bound = (await provider.line())["bound"]  # the waiting trigger is handed to the provider
        assert (bound["id"], bound["function_id"]) == ("tick-1", "consumer::on-tick")
        assert bound["config"] == {"every": "call"}
        await worker.send(type="invokefunction", invocation_id="fire", function_id="tick::fire", data={"n": 1})
        invoke = await worker.expect(lambda f: f.get("type") == "invokefunction")
        assert invoke["function_id"] == "consumer::on-tick" and invoke["data"]["n"] == 1
        await worker.answer(invoke, {})
        fired = await worker.expect(lambda f: f.get("invocation_id") == "fire")
        assert fired["result"] == {"fired": 1}
        types = (await worker.result("engine::triggers::list", {}))["triggers"]
        assert {"id": "test.tick", "description": "ticks on demand"}.items() <= next(
            t for t in types if t["id"] == "test.tick"
        ).items()
    # The provider went away: the trigger waits again, and a new provider gets it back with the same id.
    await registered(iii.engine, lambda: "tick-1" in iii.engine.registry.pending)
    async with node_script(PROVIDER, iii.worker_port, tmp_path) as provider:
        assert (await provider.line())["ready"]
        assert (await provider.line())["bound"]["id"] == "tick-1"
        await worker.close()  # the consumer disconnects: its provider is told to unbind
        unbound = (await provider.line())["unbound"]
        assert unbound["id"] == "tick-1"


ENQUEUE = """
import { registerWorker, TriggerAction } from 'iii-sdk'
const iii = registerWorker(process.env.III_URL)
process.on('unhandledRejection', (e) => { console.log(JSON.stringify({ unhandled: String(e) })); process.exit(3) })
const action = TriggerAction.Enqueue({ queue: 'jobs' })
const receipt = await iii.trigger({ function_id: 'jobs::work', payload: { job: 7 }, action })
console.log(JSON.stringify({ receipt }))
"""


async def test_enqueue_retries_then_delivers_and_dead_letters(store: Store, tmp_path: Path) -> None:
    async with IIIServer(store, worker_port=0, http_port=0, stream_port=0, queue_policy=FAST) as iii:
        attempts = Inbox()
        failures = {"left": 2}

        async def work(data: dict[str, Any]) -> dict[str, Any]:
            attempts.put(data)
            if failures["left"] > 0:
                failures["left"] -= 1
                raise RuntimeError("not yet")
            return {"done": True}

        async with py_worker(iii.worker_port) as py:
            py.client.register_function("jobs::work", work)
            await registered(iii.engine, lambda: "jobs::work" in iii.engine.registry.functions)
            async with node_script(ENQUEUE, iii.worker_port, tmp_path) as node:
                receipt = (await node.line())["receipt"]["messageReceiptId"]
            # Two failures, then success: delivered at least once, with retries.
            seen = [await attempts.get() for _ in range(3)]
            assert all(s["job"] == 7 for s in seen)
            queued = await store.read_events(0, 100, kind="stream", scopes=["$queue:jobs"])
            assert [(e.key, e.event_type, e.meta.id, e.new_value) for e in queued] == [
                ("jobs::work", "enqueue", receipt, {"job": 7})
            ]
            # A call that keeps failing is retried max_retries times, then recorded as a dead letter.
            failures["left"] = 99
            watch = LogWatch(store)
            try:
                reply = await py.call("jobs::work", {"job": 8}, action=TriggerAction.Enqueue(queue="jobs"))
                dead = await watch.wait_for(lambda e: e.scope == "$dead:queue:jobs")
            finally:
                watch.close()
            assert dead.key == "jobs::work" and dead.event_type == "dead_letter"
            assert dead.meta.id == reply["messageReceiptId"] and dead.new_value["attempts"] == 3
            assert dead.new_value["data"] == {"job": 8} and dead.new_value["error"]["code"] == "invocation_failed"


async def test_a_queue_resumes_after_a_restart(db_path: Path) -> None:
    # Enqueued while the function's worker is away, and ripple restarts before it comes: nothing is lost.
    async with Store.open(db_path) as store:
        async with IIIServer(store, worker_port=0, http_port=0, stream_port=0, queue_policy=FAST) as iii:
            raw = await RawWorker.connect(iii.worker_port)
            for n in range(3):  # TriggerAction.Enqueue() with no queue name: the "default" queue
                await raw.send(
                    type="invokefunction", invocation_id=f"e{n}", function_id="later::fn", data={"n": n},
                    action={"type": "enqueue"},
                )  # fmt: skip
                reply = await raw.expect(lambda f, n=n: f.get("invocation_id") == f"e{n}")  # type: ignore[misc]
                assert "messageReceiptId" in reply["result"]
            await raw.close()
    async with Store.open(db_path) as store:
        async with IIIServer(store, worker_port=0, http_port=0, stream_port=0, queue_policy=FAST) as iii:
            got = Inbox()
            async with py_worker(iii.worker_port) as py:
                py.client.register_function("later::fn", lambda data: got.put(data["n"]))
                assert [await got.get() for _ in range(3)] == [0, 1, 2]  # in order
                consumer = iii.engine.queues.consumers[consumer_name("queue", "default", "later::fn")]
                assert consumer.row == "iii-queue:default:later%3A%3Afn"  # one reactions row per consumer
                await iii.engine.wait_until(lambda: consumer.delivered == 3, 5 * SECOND)
            cursor = await store.commits.run_in_txn(
                lambda txn: txn.conn.execute("SELECT cursor FROM reactions WHERE name = ?", (consumer.row,)).fetchone()
            )
            assert cursor[0] == consumer.position > 0


async def test_durable_subscriber_gets_what_was_published_while_it_was_away(store: Store, iii: IIIServer) -> None:
    got = Inbox()
    subscription = {"type": "durable:subscriber", "function_id": "orders::on-created", "config": {"topic": "orders"}}
    async with py_worker(iii.worker_port) as py:
        py.client.register_function("orders::on-created", lambda data: got.put(data))
        py.client.register_trigger(subscription)
        await registered(iii.engine, lambda: any(True for _ in iii.engine.registry.of_type("durable:subscriber")))
        assert await py.call("iii::durable::publish", {"topic": "orders", "data": {"id": 1}}) is None
        assert await got.get() == {"id": 1}
    await registered(iii.engine, lambda: not iii.engine.queues.consumers)
    async with py_worker(iii.worker_port, "publisher") as publisher:  # nobody is subscribed now
        await publisher.call("iii::durable::publish", {"topic": "orders", "data": {"id": 2}})
        await publisher.call("publish", {"topic": "orders", "data": {"live": "only"}})  # pub/sub: not durable
    async with py_worker(iii.worker_port) as py:
        py.client.register_function("orders::on-created", lambda data: got.put(data))
        py.client.register_trigger(subscription)
        assert await got.get() == {"id": 2}
    assert got.empty()


async def test_publish_and_subscribe_are_live_and_by_topic(iii: IIIServer) -> None:
    got = Inbox()
    async with py_worker(iii.worker_port) as py:
        py.client.register_function("sub::a", lambda data: got.put(("a", data)))
        py.client.register_function("sub::b", lambda data: got.put(("b", data)))
        py.client.register_trigger({"type": "subscribe", "function_id": "sub::a", "config": {"topic": "t.a"}})
        py.client.register_trigger({"type": "subscribe", "function_id": "sub::b", "config": {"topic": "t.b"}})
        await registered(iii.engine, lambda: sum(1 for _ in iii.engine.registry.of_type("subscribe")) == 2)
        assert await py.call("publish", {"topic": "t.a", "data": {"x": 1}}) is None
        assert await got.get() == ("a", {"x": 1})
        await py.call("publish", {"topic": "t.b", "data": 2})
        assert await got.get() == ("b", 2)
        assert got.empty()


async def test_cron_trigger_fires_with_the_engines_payload(iii: IIIServer) -> None:
    got = Inbox()
    async with py_worker(iii.worker_port) as py:
        py.client.register_function("cron::tick", lambda data: got.put(data))
        every_second = {"expression": "* * * * * *"}
        py.client.register_trigger({"type": "cron", "function_id": "cron::tick", "config": every_second})
        tick = await got.get(within=5)
    assert tick["trigger"] == "cron" and isinstance(tick["job_id"], str)
    assert tick["scheduled_time"].endswith("+00:00") and tick["actual_time"] >= tick["scheduled_time"]


async def test_engine_functions_and_trigger_types(iii: IIIServer) -> None:
    available = Inbox()
    async with py_worker(iii.worker_port, "introspected") as py:
        py.client.register_function("me::listen", lambda data: available.put(data))
        py.client.register_trigger({"type": "engine::functions-available", "function_id": "me::listen", "config": {}})
        py.client.register_function("me::other", lambda data: None, description="another function")
        event = await available.get()
        assert event["event"] == "functions_changed"
        assert {"function_id": "me::other", "worker_name": "introspected", "description": "another function"} in event[
            "functions"
        ]
        types = {t["id"] for t in (await py.call("engine::triggers::list", {}))["triggers"]}
        assert {"http", "state", "stream", "cron", "subscribe", "durable:subscriber"} <= types
        assert "engine::functions-available" not in types  # internal unless asked for
        internal = await py.call("engine::triggers::list", {"include_internal": True})
        assert "engine::functions-available" in {t["id"] for t in internal["triggers"]}
        rows = (await py.call("engine::registered-triggers::list", {"trigger_type": "engine::functions-available"}))[
            "registered_triggers"
        ]
        assert [(r["function_id"], r["worker_name"]) for r in rows] == [("me::listen", "introspected")]
        workers = (await py.call("engine::workers::list", {}))["workers"]
        assert {"introspected"} <= {w["name"] for w in workers}
        functions = {f["function_id"] for f in (await py.call("engine::functions::list", {}))["functions"]}
        assert {"me::other", "stream::set", "publish"} <= functions and "engine::functions::list" not in functions
        # A trigger registered through a function call belongs to no connection; it goes by id.
        spec = {"trigger_type": "subscribe", "function_id": "me::other", "config": {"topic": "x"}}
        made = await py.call("engine::register_trigger", spec)
        assert made["id"] in iii.engine.registry.triggers and iii.engine.registry.triggers[made["id"]].worker_id is None
        assert await py.call("engine::unregister_trigger", {"id": made["id"]}) == {"removed": True}
        assert await py.call("engine::unregister_trigger", {"id": made["id"]}) == {"removed": False}
