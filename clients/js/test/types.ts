// Compiled (not run) by `tsc -p test/tsconfig.json`: the declared types fit the documented usage.
import ripple, { AuthError, client, ForbiddenError, RippleError, subscribe, subscribeStream, UnauthorizedError } from "../ripple.js";
import type { Access, ConnectionState, Entry, RippleEvent, Snapshot, UpdateOp } from "../ripple.js";

export async function usage(): Promise<void> {
  const api = client({ url: "http://127.0.0.1:8000", token: null });
  const created = await api.set("todos", "t1", { title: "milk", done: false }, { expectedOffset: 0 });
  const offset: number = created.offset;
  const ops: UpdateOp[] = [{ type: "set", path: "done", value: true }, { type: "increment", path: ["n"], by: 1 }];
  const updated = await api.update("todos", "t1", ops, { expectedOffset: offset, idempotencyKey: "req-1" });
  const errors: number = updated.errors.length;
  const got = await api.get("todos", "t1", { at: offset });
  if (got !== null) console.log(got.value, got.offset, errors);
  const page = await api.list("todos", { limit: 10 });
  const first: Entry | undefined = page.items[0];
  console.log(first?.version, page.next_cursor);
  await api.batch([{ op: "delete", scope: "todos", key: "t1", expectedOffset: updated.offset }]);
  try {
    await api.delete("todos", "t1");
  } catch (err) {
    if (err instanceof UnauthorizedError) {
      const status: 401 = err.status;
      console.log(status, err.code, err.message);
    } else if (err instanceof ForbiddenError) {
      const status: 403 = err.status;
      console.log(status);
    } else if (err instanceof AuthError) console.log(err.status === 401 || err.status === 403);
    else if (err instanceof RippleError) console.log(err.code, err.status, err.detail);
  }
  const me: Access = await api.whoami();
  const allowed: boolean = me.auth && !me.admin && me.mayWrite("todos") && me.mayReadStream("live");
  console.log(me.name, me.scopes, me.readable, allowed);
  subscribe({ scopes: ["todos"], token: "rpl_x", onError: (err) => console.log(err instanceof AuthError) }).close();

  const sub = subscribe({ scopes: ["todos"], snapshot: true, onState: ({ state }) => console.log(state) });
  const state: ConnectionState = sub.state;
  const off = sub.on("event", (event: RippleEvent) => console.log(event.offset, event.new_value));
  off();
  for await (const item of sub) {
    if (item.type === "snapshot") {
      const snapshot: Snapshot = item;
      console.log(snapshot.items.length, state);
    } else {
      console.log(item.scope, item.key, item.old_value, item.meta.cause);
    }
  }
  sub.close();
  await sub.done;
  subscribeStream({ url: "ws://127.0.0.1:8000", stream: "chat", group: "room", after: 0 }).close();
  ripple.subscribe({ url: "http://x", kind: "all", batch: 500, after: 10 }).close();
}
