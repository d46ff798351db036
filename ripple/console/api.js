// The console's one connection to the server: a ripple.js client with the tab's token, what that token may do
// (GET /v1/whoami), and the one place that notices when the server stops accepting the token.
import { Access, Client, ForbiddenError, UnauthorizedError } from "/ripple.js";

const TOKEN_KEY = "ripple.console.token";
const WATCHED_KEY = "ripple.console.projections";

/** The token of this tab, kept in sessionStorage only (never in the URL, never logged). */
export function currentToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null;
  }
}

export function saveToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts until the page is reloaded
  }
}

/**
 * What this tab's token may do (ripple.js's Access, from GET /v1/whoami). Until the server has answered it is an
 * Access of a server without tokens; console.js sets it before any view starts.
 */
export let access = new Access();

export function setAccess(me) {
  access = me;
}

let authLostListener = null;

/** `fn(error)` runs once when the server refuses the token while the console runs (401, or 1008 `unauthorized`). */
export function onAuthLost(fn) {
  authLostListener = fn;
}

function authLost(err) {
  const listener = authLostListener;
  authLostListener = null; // once: the console signs out, later refusals of the same token add nothing
  if (listener) listener(err);
}

/**
 * ripple.js's client, reporting a refused token to onAuthLost: a REST 401, or a subscription ended by `unauthorized`
 * (a token revoked or expired while the page is open: the server closes its WebSocket with 1008).
 */
class ConsoleClient extends Client {
  async request(...args) {
    try {
      return await super.request(...args);
    } catch (err) {
      if (err instanceof UnauthorizedError) authLost(err);
      throw err;
    }
  }

  subscribe(options = {}) {
    const { onError } = options;
    return super.subscribe({
      ...options,
      onError: (err, sub) => {
        if (err instanceof UnauthorizedError) authLost(err);
        if (onError) onError(err, sub);
      },
    });
  }
}

/** The REST client (and subscriptions through api.subscribe) of this page, with the token when one is set. */
export const api = new ConsoleClient({ token: currentToken() });

/**
 * A sentence for an error, naming what was being read. 401 says the token is no longer accepted, 403 repeats the
 * server's words (which say what the token may not do); a server that went away says so. `what` is e.g.
 * `scope "todos"` or `the log`.
 */
export function describeError(err, what = "this") {
  const code = err && err.code;
  const status = err && err.status;
  if (err instanceof UnauthorizedError || status === 401 || code === "unauthorized") {
    return "The server refused this tab's token: it is wrong, expired or revoked. Sign in again.";
  }
  if (err instanceof ForbiddenError || status === 403 || code === "forbidden") {
    return err && err.message ? `Refused (403): ${err.message}.` : `This token may not read ${what}.`;
  }
  if (code === "unreachable") return "The server is not answering.";
  const message = (err && err.message) || String(err);
  return code && code !== "error" ? `${message} (${code})` : message;
}

/** Does this tab see everything (a server without tokens, or an admin's token)? */
export function seesEverything() {
  return !access.auth || access.admin;
}

/** The token's name and grants, for messages: `token “viewer” (notes:r, todo*:r)`. */
export function tokenDescription() {
  const grants = [...access.scopes, ...access.streams.map((g) => `stream ${g}`)];
  return `token “${access.name}” (${grants.length ? grants.join(", ") : "no grants"})`;
}

/**
 * The scopes this tab may read, or null for "all of them", from GET /v1/whoami (asked again each time, so a scope
 * created since is included): null when the server runs without tokens or the token is an admin's, else the scopes
 * holding keys that the token may read.
 */
export async function readableScopes() {
  const me = await api.whoami();
  setAccess(me);
  return seesEverything() ? null : me.readable;
}

/** Projection names the user asked to watch (until the server lists them all). */
export function watchedProjections() {
  try {
    return JSON.parse(sessionStorage.getItem(WATCHED_KEY) || "[]");
  } catch {
    return [];
  }
}

export function watchProjection(name) {
  const names = new Set(watchedProjections());
  names.add(name);
  try {
    sessionStorage.setItem(WATCHED_KEY, JSON.stringify([...names]));
  } catch {
    // storage disabled
  }
}

/** Built-in projections every server has. */
const BUILT_IN_PROJECTIONS = ["metrics"];

/**
 * The projections to show: `{listed, names, items}`. `GET /v1/projections` lists every registered projection with
 * its status, checkpoint and lag; a server without that route (404/405) gets the built-in ones and the names the user
 * added instead. Each one's data is then read with `GET /v1/projections/{name}`.
 */
let projectionListMissing = false; // the server answered 404/405 once: do not ask again

export async function listProjections() {
  try {
    if (projectionListMissing) throw Object.assign(new Error("no list route"), { status: 404 });
    const body = await api.projections();
    const list = Array.isArray(body) ? body : body.projections || body.items || [];
    return { listed: true, names: list.map((p) => p.name), items: list };
  } catch (err) {
    if (err.status !== 404 && err.status !== 405) throw err;
    projectionListMissing = true;
    return { listed: false, names: [...new Set([...BUILT_IN_PROJECTIONS, ...watchedProjections()])], items: [] };
  }
}
