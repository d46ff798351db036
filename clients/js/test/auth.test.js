// Auth errors against a live `ripple serve --auth` (pytest starts it and makes the tokens): 401 and 403 are
// UnauthorizedError and ForbiddenError with status, code and message; whoami() says what a token may do; a
// subscription refused for its token, or whose token is revoked while it is open, stops instead of reconnecting.
// The last tests use a tiny local WebSocket server (the `ws` package) for what ripple's own server never does on
// demand: a 1008 close without its error frame, and a `rate_limited` refusal followed by a good connection.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { once } from "node:events";
import { describe, test } from "node:test";

import { AuthError, client, ForbiddenError, RippleError, subscribe, UnauthorizedError } from "../ripple.js";
import { unique, within } from "./helpers.js";

const URL_ = process.env.RIPPLE_AUTH_URL || null;
const TOKENS = JSON.parse(process.env.RIPPLE_AUTH_TOKENS || "{}"); // {reader, writer, admin, revocable: [name, token]}
const REVOKE = JSON.parse(process.env.RIPPLE_REVOKE || "null"); // argv of `ripple token revoke --db DB` (+ name)
const SKIP = URL_ ? false : "run by pytest (tests/browser/test_ripple_js_auth.py) against ripple serve --auth";

/** A WebSocket class that counts the connections it opens. */
async function countingWebSocket() {
  const Impl = globalThis.WebSocket || (await import("ws")).WebSocket;
  const opened = [];
  class Counting extends Impl {
    constructor(url) {
      opened.push(url);
      super(url);
    }
  }
  return { Counting, opened };
}

/** Wait for a subscription's end; returns its error (the rejection of `sub.done`). */
async function ending(sub, what) {
  const timedOut = new Error(`timed out: ${what}`);
  try {
    await within(sub.done, 10000, what).catch((err) => {
      if (err.message.startsWith("timed out")) {
        sub.close(); // still reconnecting: stop it, so that the test fails rather than hangs
        throw timedOut;
      }
      throw err;
    });
  } catch (err) {
    if (err === timedOut) throw err;
    return err;
  }
  assert.fail(`${what}: the subscription ended without an error`);
}

describe("auth errors (REST)", { skip: SKIP }, () => {
  test("no token or a wrong one: UnauthorizedError, 401, code unauthorized, the server's message", async () => {
    for (const token of [null, "rpl_not-a-token"]) {
      await assert.rejects(client({ url: URL_, token }).get("notes", "a"), (err) => {
        assert.ok(err instanceof UnauthorizedError && err instanceof AuthError && err instanceof RippleError);
        assert.equal(err.name, "UnauthorizedError");
        assert.equal(err.status, 401);
        assert.equal(err.code, "unauthorized");
        assert.ok(err.message.length > 0);
        return true;
      });
    }
  });

  test("a token without the grant: ForbiddenError, 403, naming what it may not do", async () => {
    const reader = client({ url: URL_, token: TOKENS.reader });
    await assert.rejects(reader.set("notes", unique("k"), { n: 1 }), (err) => {
      assert.ok(err instanceof ForbiddenError && err instanceof AuthError);
      assert.equal(err.status, 403);
      assert.equal(err.code, "forbidden");
      assert.match(err.message, /may not write scope 'notes'/);
      return true;
    });
    await assert.rejects(reader.get("secret", "k"), ForbiddenError);
    await assert.rejects(reader.events({ after: 0 }), ForbiddenError, "the whole log is an admin's");
  });

  test("other errors stay plain RippleErrors", async () => {
    const writer = client({ url: URL_, token: TOKENS.writer });
    await assert.rejects(writer.set("notes", unique("k"), 1, { expectedOffset: 2 ** 40 }), (err) => {
      assert.ok(err instanceof RippleError && !(err instanceof AuthError));
      assert.equal(err.status, 412);
      return true;
    });
  });

  test("whoami(): what a token may do, checked like the server checks it", async () => {
    const reader = await client({ url: URL_, token: TOKENS.reader }).whoami();
    assert.equal(reader.auth, true);
    assert.equal(reader.admin, false);
    assert.equal(reader.name, "reader");
    assert.deepEqual(reader.scopes, ["notes:r", "todo*:r"]);
    assert.ok(reader.mayRead("notes") && !reader.mayWrite("notes"));
    assert.ok(reader.mayRead("todos") && reader.mayRead("todo-metrics") && !reader.mayRead("secret"));
    assert.ok(!reader.mayReadStream("notes"));
    const admin = await client({ url: URL_, token: TOKENS.admin }).whoami();
    assert.ok(admin.admin && admin.mayWrite("secret") && admin.mayWriteStream("anything"));
    const nobody = await client({ url: URL_ }).whoami();
    assert.deepEqual([nobody.auth, nobody.name, nobody.admin, nobody.mayRead("notes")], [true, null, false, false]);
    await assert.rejects(client({ url: URL_, token: "rpl_wrong" }).whoami(), UnauthorizedError);
  });
});

describe("auth errors (subscriptions)", { skip: SKIP }, () => {
  test("a wrong token: the subscription ends with UnauthorizedError after one connection", async () => {
    const { Counting, opened } = await countingWebSocket();
    const states = [];
    const sub = subscribe({ url: URL_, token: "rpl_wrong", scopes: ["notes"], WebSocket: Counting,
      backoff: { initial: 1 }, onState: ({ state }) => states.push(state) });
    const err = await ending(sub, "a refused token");
    assert.ok(err instanceof UnauthorizedError);
    assert.deepEqual([err.status, err.code], [401, "unauthorized"]);
    assert.equal(sub.state, "closed");
    assert.equal(sub.error, err);
    assert.deepEqual(states, ["closed"], "never reconnecting");
    assert.equal(opened.length, 1);
  });

  test("a forbidden scope, or no scope for a non-admin: ForbiddenError, no reconnect", async () => {
    const { Counting, opened } = await countingWebSocket();
    for (const scopes of [["secret"], undefined]) {
      const sub = subscribe({ url: URL_, token: TOKENS.reader, scopes, WebSocket: Counting, backoff: { initial: 1 } });
      const err = await ending(sub, "a forbidden subscription");
      assert.ok(err instanceof ForbiddenError, String(err));
      assert.equal(err.status, 403);
      assert.ok(err.message.includes("may not read"), err.message);
      assert.equal(sub.state, "closed");
    }
    assert.equal(opened.length, 2);
  });

  test("an iterator throws the AuthError", async () => {
    const sub = subscribe({ url: URL_, scopes: ["notes"] }); // no token at all
    await assert.rejects(async () => {
      for await (const event of sub) assert.fail(`no event expected: ${event.offset}`);
    }, UnauthorizedError);
  });

  test("a token revoked while the subscription is open: it ends with UnauthorizedError, no reconnect", async () => {
    const [name, token] = TOKENS.revocable;
    const { Counting, opened } = await countingWebSocket();
    let resolveLive;
    const live = new Promise((r) => (resolveLive = r));
    const sub = subscribe({ url: URL_, token, scopes: ["notes"], WebSocket: Counting, onLive: () => resolveLive() });
    await within(live, 10000, "live");
    const revoked = execFile(REVOKE[0], [...REVOKE.slice(1), name]);
    const [code] = await once(revoked, "exit");
    assert.equal(code, 0, "ripple token revoke");
    const err = await ending(sub, "the revoked token's subscription ends");
    assert.ok(err instanceof UnauthorizedError);
    assert.match(err.message, /revoked or expired/);
    assert.equal(sub.state, "closed");
    assert.equal(opened.length, 1);
    assert.equal(sub.stats.disconnects, 0, "ended, not dropped");
  });
});

describe("auth closes without an error frame, and rate_limited (a local WebSocket server)", () => {
  /** A WebSocket server on a free port; `onConnection(socket, index)` plays the server's part. */
  async function fakeServer(onConnection) {
    let ws;
    try {
      ws = await import("ws");
    } catch {
      return null;
    }
    const server = new ws.WebSocketServer({ host: "127.0.0.1", port: 0 });
    await once(server, "listening");
    let count = 0;
    server.on("connection", (socket) => onConnection(socket, count++));
    return { server, url: `http://127.0.0.1:${server.address().port}`, connections: () => count };
  }

  test("a 1008 close with reason unauthorized (no error frame) ends the subscription", async (t) => {
    const fake = await fakeServer((socket) => socket.close(1008, "unauthorized"));
    if (!fake) return t.skip("the ws package is not installed (npm ci in clients/js)");
    try {
      const sub = subscribe({ url: fake.url, scopes: ["notes"], backoff: { initial: 1 } });
      const err = await ending(sub, "a 1008 close");
      assert.ok(err instanceof UnauthorizedError);
      assert.equal(err.status, 401);
      assert.equal(fake.connections(), 1);
    } finally {
      fake.server.close();
    }
  });

  test("a 1008 close with reason forbidden: ForbiddenError; other closes reconnect", async (t) => {
    const hello = JSON.stringify({ type: "hello", version: 1, head: 0, after: 0, earliest: 0 });
    const fake = await fakeServer((socket, index) => {
      if (index === 0) socket.close(1011, "internal_error"); // a server crash: retried
      else if (index === 1) {
        socket.send(JSON.stringify({ type: "error", code: "rate_limited", message: "too many failed attempts" }));
        socket.close(1008, "rate_limited"); // transient: retried
      } else if (index === 2) {
        socket.send(hello);
        socket.send(JSON.stringify({ type: "live", through: 0 }));
        socket.close(1008, "forbidden");
      }
    });
    if (!fake) return t.skip("the ws package is not installed (npm ci in clients/js)");
    try {
      const states = [];
      const sub = subscribe({ url: fake.url, scopes: ["notes"], backoff: { initial: 1 },
        onState: ({ state }) => states.push(state) });
      const err = await ending(sub, "the third connection's 1008 forbidden");
      assert.ok(err instanceof ForbiddenError);
      assert.equal(err.code, "forbidden");
      assert.equal(fake.connections(), 3);
      assert.deepEqual(states, ["reconnecting", "catching_up", "live", "closed"]);
    } finally {
      fake.server.close();
    }
  });
});
