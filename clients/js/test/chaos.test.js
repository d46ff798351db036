// Resume under forced disconnects: pytest runs this with RIPPLE_CHAOS_URL pointing at a TCP proxy that cuts the
// connection again and again (tests/fault/proxy.py) while it writes to RIPPLE_CHAOS_SCOPE; it ends by writing one
// key in RIPPLE_CHAOS_SCOPE-end. The events received must be exactly the log's, in order, each once.
import assert from "node:assert/strict";
import { test } from "node:test";

import { client, subscribe } from "../ripple.js";
import { URL_ } from "./helpers.js";

const CHAOS_URL = process.env.RIPPLE_CHAOS_URL;
const SCOPE = process.env.RIPPLE_CHAOS_SCOPE;
const MIN_DISCONNECTS = Number(process.env.RIPPLE_CHAOS_MIN_DISCONNECTS || "1");
const skip = CHAOS_URL && SCOPE && URL_ ? false : "run by pytest (tests/browser/test_ripple_js_node.py)";

/** Every event of `scopes` in the log, read over REST from the server itself (no proxy). */
async function readLog(scopes) {
  const api = client({ url: URL_ });
  const out = [];
  let after = 0;
  for (;;) {
    const page = await api.events({ after, scopes, kind: "state", limit: 1000 });
    if (page.events.length === 0) return out;
    out.push(...page.events);
    after = page.next_after;
  }
}

test("exactly once and in order across forced disconnects", { skip }, async () => {
  const scopes = [SCOPE, `${SCOPE}-end`];
  const sub = subscribe({ url: CHAOS_URL, scopes, after: 0, backoff: { initial: 20, maximum: 200 } });
  const received = [];
  for await (const event of sub) {
    received.push([event.offset, event.key, event.new_value]);
    if (event.scope === `${SCOPE}-end`) break;
  }
  const log = (await readLog(scopes)).map((e) => [e.offset, e.key, e.new_value]);
  assert.equal(received.length, log.length, "as many events as the log holds");
  assert.deepEqual(received, log);
  assert.equal(sub.stats.duplicatesDropped, 0, "the server never sent an offset twice");
  assert.ok(sub.stats.disconnects >= MIN_DISCONNECTS, `${sub.stats.disconnects} disconnects < ${MIN_DISCONNECTS}`);
  console.log(JSON.stringify({ events: received.length, disconnects: sub.stats.disconnects, connects: sub.stats.connects }));
});
