// subscribe() against a live server: iterator and callbacks, snapshot, states, fatal errors, streams, resume.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { client, RippleError, subscribe, subscribeStream } from "../ripple.js";
import { SKIP, URL_, take, unique, within } from "./helpers.js";

const api = client({ url: URL_ || "http://127.0.0.1:9" });

describe("subscribe", { skip: SKIP }, () => {
  test("the async iterator yields every matching event after `after`, in order", async () => {
    const scope = unique("iter");
    const first = await api.set(scope, "a", 1);
    await api.set(unique("other"), "x", 0);
    await api.set(scope, "b", 2);
    await api.delete(scope, "a");
    const sub = subscribe({ url: URL_, scopes: [scope], after: first.offset - 1 });
    const events = await within(take(sub, 3), 10000, "three events");
    assert.deepEqual(events.map((e) => [e.type, e.key, e.op, e.event_type]), [
      ["event", "a", "set", "created"],
      ["event", "b", "set", "created"],
      ["event", "a", "delete", "deleted"],
    ]);
    assert.equal(events[0].offset, first.offset);
    assert.ok(events[0].offset < events[1].offset && events[1].offset < events[2].offset);
    assert.equal(events[2].old_value, 1);
    assert.equal(sub.state, "closed", "breaking out of for-await closes the subscription");
  });

  test("callbacks and states: connecting, catching_up, live; live events follow", async () => {
    const scope = unique("cb");
    const states = [];
    const got = [];
    let resolveLive;
    const live = new Promise((r) => (resolveLive = r));
    let resolveTwo;
    const two = new Promise((r) => (resolveTwo = r));
    const sub = subscribe({
      url: URL_,
      scopes: [scope],
      onState: ({ state }) => states.push(state),
      onLive: () => resolveLive(),
      onEvent: (event) => {
        got.push(event.new_value);
        if (got.length === 2) resolveTwo();
      },
    });
    assert.equal(sub.state, "connecting");
    await within(live, 10000, "live");
    await api.set(scope, "k", "one");
    await api.set(scope, "k", "two");
    await within(two, 10000, "two live events");
    sub.close();
    await sub.done;
    assert.deepEqual(got, ["one", "two"]);
    assert.deepEqual(states, ["catching_up", "live", "closed"]);
  });

  test("snapshot: the current values first, then the events after them", async () => {
    const scope = unique("snap");
    await api.set(scope, "a", { n: 1 });
    await api.set(scope, "b", { n: 2 });
    const sub = subscribe({ url: URL_, scopes: [scope], snapshot: true });
    const iterator = sub[Symbol.asyncIterator]();
    const snapshot = (await within(iterator.next(), 10000, "snapshot")).value;
    assert.equal(snapshot.type, "snapshot");
    assert.deepEqual(snapshot.items.map((i) => [i.key, i.value]), [["a", { n: 1 }], ["b", { n: 2 }]]);
    const after = await api.set(scope, "a", { n: 3 });
    const event = (await within(iterator.next(), 10000, "event after the snapshot")).value;
    assert.equal(event.offset, after.offset);
    assert.ok(event.offset > snapshot.offset);
    await iterator.return();
  });

  test("a refused subscription is a fatal RippleError with the server's code", async () => {
    const sub = subscribe({ url: URL_, scopes: ["bad/scope"], after: 0 });
    await assert.rejects(within(take(sub, 1), 10000, "refusal"), (err) => {
      assert.ok(err instanceof RippleError);
      assert.equal(err.code, "bad_request");
      return true;
    });
    assert.equal(sub.state, "closed");
    const beyond = subscribe({ url: URL_, after: 2 ** 40 });
    await assert.rejects(within(beyond.done, 10000, "offset_out_of_range"), { code: "offset_out_of_range" });
  });

  test("the WebSocket implementation is the global one, or the `ws` package where there is none", () => {
    const expected = process.env.RIPPLE_EXPECT_WEBSOCKET; // set by pytest: "global" or "ws"
    if (expected === "global") assert.equal(typeof globalThis.WebSocket, "function");
    if (expected === "ws") assert.equal(typeof globalThis.WebSocket, "undefined", "Node 20 without the flag");
  });

  test("bad options are refused at once", () => {
    assert.throws(() => subscribe({ url: URL_, scopes: "todos" }), { code: "bad_request" });
    assert.throws(() => subscribe({ url: URL_, after: 3, snapshot: true }), { code: "bad_request" });
    assert.throws(() => subscribe({ url: URL_, kind: "everything" }), { code: "bad_request" });
    assert.throws(() => subscribe({ url: "ftp://x" }), { code: "bad_request" });
    assert.throws(() => subscribe({}), { code: "bad_request" }, "no url outside a browser");
  });

  test("stream groups", async () => {
    const stream = unique("chat");
    const first = await api.send(stream, "room/1", "message", { text: "hi" });
    await api.send(stream, "room/2", "message", { text: "elsewhere" });
    await api.send(stream, "room/1", "message", { text: "again" }, { id: "m2" });
    const sub = subscribeStream({ url: URL_, stream, group: "room/1", after: first.offset - 1 });
    const events = await within(take(sub, 2), 10000, "two stream events");
    assert.deepEqual(events.map((e) => e.new_value.text), ["hi", "again"]);
    assert.equal(events[1].meta.id, "m2");
  });

  test("a slow reader: the iterator drops the connection at highWater and resumes losslessly", async () => {
    const scope = unique("slow");
    const commands = Array.from({ length: 500 }, (_, i) => ({ op: "set", scope, key: `k${i}`, value: i }));
    const { offset: base } = (await api.batch(commands))[0];
    const sub = subscribe({ url: URL_, scopes: [scope], after: base - 1, highWater: 50, batch: 20 });
    const seen = [];
    for await (const event of sub) {
      seen.push(event.new_value);
      if (seen.length % 10 === 0) await new Promise((r) => setTimeout(r, 1)); // a reader slower than the socket
      if (seen.length === 500) break;
    }
    assert.deepEqual(seen, Array.from({ length: 500 }, (_, i) => i));
    assert.ok(sub.stats.connects > 1, `the reader fell behind and the subscription resumed (${sub.stats.connects})`);
  });

  test("the token, when given, is the `token` query parameter, and only then", async () => {
    const Impl = globalThis.WebSocket || (await import("ws")).WebSocket;
    const urls = [];
    class Spy extends Impl {
      constructor(url) {
        urls.push(url);
        super(url);
      }
    }
    for (const token of ["s3cret", null]) {
      const sub = subscribe({ url: URL_, WebSocket: Spy, token });
      // A server without --auth ignores the token; one with --auth may refuse it. Either way one frame comes.
      await within(new Promise((r) => sub.on("state", r)), 10000, "the server answers");
      sub.close();
    }
    assert.equal(new URL(urls[0]).searchParams.get("token"), "s3cret");
    assert.equal(new URL(urls[1]).searchParams.has("token"), false);
  });
});
