// The REST helper against a live server: results, preconditions, idempotency keys, the server's errors.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { client, RippleError } from "../ripple.js";
import { SKIP, URL_, unique } from "./helpers.js";

describe("REST helper", { skip: SKIP }, () => {
  const api = client({ url: URL_ });

  test("set, get, update, delete with results and offsets", async () => {
    const scope = unique("rest");
    const created = await api.set(scope, "a/b", { title: "x", n: 1 });
    assert.equal(created.created, true);
    assert.equal(created.version, 1);
    assert.equal(created.old_value, null);
    const got = await api.get(scope, "a/b");
    assert.deepEqual(got, { value: { title: "x", n: 1 }, offset: created.offset });
    const updated = await api.update(scope, "a/b", [{ type: "increment", path: "n", by: 2 }]);
    assert.equal(updated.created, false);
    assert.deepEqual(updated.new_value, { title: "x", n: 3 });
    assert.deepEqual(updated.errors, []);
    const past = await api.get(scope, "a/b", { at: created.offset });
    assert.deepEqual(past.value, { title: "x", n: 1 });
    const deleted = await api.delete(scope, "a/b");
    assert.deepEqual(deleted.old_value, { title: "x", n: 3 });
    assert.equal(await api.get(scope, "a/b"), null);
    assert.equal(await api.delete(scope, "a/b"), null, "a missing key: null, nothing appended");
  });

  test("expectedOffset sends If-Match / If-None-Match and surfaces 412", async () => {
    const scope = unique("occ");
    const first = await api.set(scope, "k", 1, { expectedOffset: 0 });
    await assert.rejects(api.set(scope, "k", 2, { expectedOffset: 0 }), (err) => {
      assert.ok(err instanceof RippleError);
      assert.equal(err.status, 412);
      assert.equal(err.code, "precondition_failed");
      assert.ok(err.message);
      return true;
    });
    const second = await api.set(scope, "k", 2, { expectedOffset: first.offset });
    await assert.rejects(api.update(scope, "k", [{ type: "set", path: null, value: 3 }], { expectedOffset: first.offset }),
      { code: "precondition_failed", status: 412 });
    await assert.rejects(api.delete(scope, "k", { expectedOffset: first.offset }), { code: "precondition_failed" });
    assert.deepEqual(await api.delete(scope, "k", { expectedOffset: second.offset }), { old_value: 2, offset: second.offset + 1 });
  });

  test("an idempotency key returns the first result and appends nothing", async () => {
    const scope = unique("idem");
    const key = unique("request");
    const first = await api.set(scope, "k", { v: 1 }, { idempotencyKey: key });
    const again = await api.set(scope, "k", { v: 1 }, { idempotencyKey: key });
    assert.equal(again.offset, first.offset);
    const log = await api.events({ after: first.offset - 1, scopes: [scope] });
    assert.equal(log.events.length, 1);
    await assert.rejects(api.set(scope, "k", { v: 2 }, { idempotencyKey: key }), { status: 409, code: "idempotency_key_reused" });
  });

  test("list pages, entries and scopes", async () => {
    const scope = unique("list");
    await api.batch(Array.from({ length: 5 }, (_, i) => ({ op: "set", scope, key: `k${i}`, value: i })));
    const page = await api.list(scope, { limit: 2 });
    assert.deepEqual(page.items.map((e) => e.key), ["k0", "k1"]);
    assert.ok(page.next_cursor);
    const all = [];
    for await (const entry of api.entries(scope, { limit: 2 })) all.push(entry.value);
    assert.deepEqual(all, [0, 1, 2, 3, 4]);
    assert.ok((await api.scopes()).includes(scope));
  });

  test("batch is all-or-nothing and reports the failing command", async () => {
    const scope = unique("batch");
    const results = await api.batch([
      { op: "set", scope, key: "a", value: 1 },
      { op: "update", scope, key: "a", ops: [{ type: "increment", path: null, by: 1 }] },
      { op: "delete", scope, key: "missing" },
    ]);
    assert.equal(results.length, 3);
    assert.equal(results[1].new_value, 2);
    assert.equal(results[2], null);
    const head = (await api.health()).head;
    await assert.rejects(
      api.batch([{ op: "set", scope, key: "b", value: 1 }, { op: "set", scope, key: "a", value: 9, expectedOffset: 0 }]),
      (err) => err.status === 409 && err.detail && err.detail.index === 1,
    );
    assert.equal((await api.health()).head, head, "nothing appended");
    assert.equal(await api.get(scope, "b"), null);
  });

  test("the server's JSON error is surfaced: code, message, detail", async () => {
    await assert.rejects(api.set("bad/scope", "k", 1), (err) => {
      assert.equal(err.status, 422);
      assert.equal(typeof err.code, "string");
      assert.ok(err.message.length > 0);
      return true;
    });
    await assert.rejects(api.update(unique("s"), "k", [{ type: "nope" }]), { status: 422 });
    await assert.rejects(api.events({ after: 2 ** 40 }), (err) => {
      assert.equal(err.status, 400);
      assert.equal(err.code, "offset_out_of_range");
      assert.equal(typeof err.detail.head, "number");
      return true;
    });
    await assert.rejects(api.list(unique("s"), { limit: 5000 }), (err) => {
      assert.equal(err.status, 422);
      assert.deepEqual(err.detail, { limit: 5000 });
      return true;
    });
    await assert.rejects(api.set(unique("s"), "k", 1, { expectedOffset: -1 }), { code: "bad_request" });
  });

  test("an unreachable server is an `unreachable` error", async () => {
    const dead = client({ url: "http://127.0.0.1:9" });
    await assert.rejects(dead.health(), { code: "unreachable" });
  });

  test("a token, when given, goes in Authorization: Bearer", async () => {
    const seen = [];
    const spy = client({
      url: URL_,
      token: "t0ken",
      fetch: (url, init) => {
        seen.push(init.headers);
        return fetch(url, init);
      },
    });
    try {
      await spy.health();
    } catch {
      // a server with --auth may refuse this token; the header is what this test checks
    }
    assert.equal(seen[0].authorization, "Bearer t0ken");
    const plain = [];
    await client({ url: URL_, fetch: (url, init) => (plain.push(init.headers), fetch(url, init)) }).health();
    assert.equal(plain[0].authorization, undefined);
  });
});
