// The console's one connection to the server: a ripple.js client with the tab's token, and the seams that change
// when access control (tokens, grants) and the projection list land on the server.
import { client } from "/ripple.js";

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

/** The REST client (and subscriptions through api.subscribe) of this page, with the token when one is set. */
export const api = client({ token: currentToken() });

/**
 * A sentence for an error, naming what was being read. 401 and 403 say what to do about the token; a server that
 * went away says so. `what` is e.g. `scope "todos"` or `the log`.
 */
export function describeError(err, what = "this") {
  const code = err && err.code;
  const status = err && err.status;
  if (status === 401 || code === "unauthorized") {
    return currentToken()
      ? "The server refused this token (unknown, expired or revoked). Set another one with “Token”."
      : "This server needs an access token: set one with “Token”.";
  }
  if (status === 403 || code === "forbidden") {
    return currentToken() ? `This token may not read ${what}.` : `Reading ${what} needs a token that allows it.`;
  }
  if (code === "unreachable") return "The server is not answering.";
  const message = (err && err.message) || String(err);
  return code && code !== "error" ? `${message} (${code})` : message;
}

/**
 * The scopes this tab may read, or null for "all of them", from GET /v1/whoami: null when the server runs without
 * tokens or the token is an admin's, else the scopes holding keys that the token may read. The state browser lists
 * only these scopes and the log, when its filter names no scope, subscribes to these. (A token that may read nothing
 * gets an empty list: "no scope filter" to the server, which refuses it for such a token with "forbidden".)
 */
export async function readableScopes() {
  let me;
  try {
    me = (await api.request("GET", "/v1/whoami")).body;
  } catch {
    return null; // a server without access control
  }
  return !me.auth || me.admin ? null : me.readable;
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
