// ripple.js: a dependency-free client for ripple, the event-sourced reactive store.
//
// subscribe(): events of /v1/subscribe as an async iterator and as callbacks, resumed after any disconnect from the
// last offset (or the last `through` the server reported) with jittered backoff, so the events it delivers are every
// matching event after `after`, exactly once and in offset order, however often the connection drops (the contract
// of the Python client, ripple/client.py). It always asks for packed frames (`batch`).
//
// client(): a small REST helper (get/set/update/delete/list/batch/...) with `expectedOffset` (If-Match /
// If-None-Match) and idempotency keys; errors carry the server's JSON error (code, message, detail). A 401 is an
// UnauthorizedError and a 403 a ForbiddenError (both AuthError): a subscription refused for either stops for good.
//
// Works in browsers and in Node 20+: pass a WebSocket implementation, or the global one is used, or the `ws` package
// is imported on first use. JSON numbers above 2^53 lose precision in JavaScript (see the README).

export const VERSION = "0.1.0";

/** Error codes a retry can fix: the subscription reconnects instead of failing. */
const RETRYABLE_CODES = new Set(["shutting_down", "overloaded", "internal_error", "rate_limited"]);

/** Close reasons of a 1008 close that mean "this token may not": the subscription stops instead of reconnecting. */
const AUTH_CODES = new Set(["unauthorized", "forbidden"]);

export const DEFAULT_BACKOFF = Object.freeze({ initial: 50, maximum: 5000, factor: 2 });

/** An error from the server (its JSON error body) or from the client (bad options, unreachable server). */
export class RippleError extends Error {
  constructor(message, { code = "error", status = null, detail = null, cause = undefined } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RippleError";
    this.code = code;
    this.status = status;
    this.detail = detail;
  }
}

/**
 * The server refused the token (401 `unauthorized`: missing, wrong, expired or revoked) or the grant (403
 * `forbidden`). Retrying with the same token cannot help: a subscription ends with it instead of reconnecting.
 * On a WebSocket (an `error` frame, or a close with code 1008 and such a reason) `status` is the matching HTTP status.
 */
export class AuthError extends RippleError {
  constructor(message, options = {}) {
    super(message, options);
    this.name = "AuthError";
  }
}

/** 401: no token, or a wrong, expired or revoked one (the server does not say which). */
export class UnauthorizedError extends AuthError {
  constructor(message, { code = "unauthorized", status = 401, ...rest } = {}) {
    super(message, { code, status, ...rest });
    this.name = "UnauthorizedError";
  }
}

/** 403: a valid token without the grant (or a refused browser Origin, code `origin_not_allowed`). */
export class ForbiddenError extends AuthError {
  constructor(message, { code = "forbidden", status = 403, ...rest } = {}) {
    super(message, { code, status, ...rest });
    this.name = "ForbiddenError";
  }
}

/** The error class for a server's answer: 401 / `unauthorized` and 403 / `forbidden` get their own. */
function serverError(message, { code, status = null, detail = null }) {
  if (status === 401 || (status === null && code === "unauthorized")) {
    return new UnauthorizedError(message, { code, status: 401, detail });
  }
  if (status === 403 || (status === null && code === "forbidden")) {
    return new ForbiddenError(message, { code, status: 403, detail });
  }
  return new RippleError(message, { code, status, detail });
}

// ---- URLs ------------------------------------------------------------------------------------------------------

function baseUrl(url) {
  if (url == null || url === "") {
    if (typeof location !== "undefined" && location.origin && location.origin !== "null") return location.origin;
    throw new RippleError("url is required outside a browser page (e.g. http://127.0.0.1:8000)", {
      code: "bad_request",
    });
  }
  const text = String(url);
  const absolute = typeof location !== "undefined" && location.href ? new URL(text, location.href) : new URL(text);
  if (!["http:", "https:", "ws:", "wss:"].includes(absolute.protocol)) {
    throw new RippleError(`not an http(s) or ws(s) URL: ${text}`, { code: "bad_request" });
  }
  return absolute.origin + absolute.pathname.replace(/\/+$/, "");
}

function httpBase(url) {
  return baseUrl(url).replace(/^ws(s?):/, "http$1:");
}

function wsBase(url) {
  return baseUrl(url).replace(/^http(s?):/, "ws$1:");
}

function names(value, what) {
  if (value == null) return [];
  if (typeof value === "string") {
    throw new RippleError(`${what} takes a list of names, not a single string`, { code: "bad_request" });
  }
  return Array.from(value, String);
}

function query(pairs) {
  const params = new URLSearchParams();
  for (const [name, value] of pairs) if (value !== undefined && value !== null) params.append(name, String(value));
  const text = params.toString();
  return text ? `?${text}` : "";
}

// ---- subscriptions -----------------------------------------------------------------------------------------------

let wsModule = null;

async function webSocketClass(given) {
  if (given) return given;
  if (typeof globalThis.WebSocket === "function") return globalThis.WebSocket;
  if (!wsModule) {
    const name = "ws"; // a variable, so bundlers leave this Node-only fallback alone
    wsModule = import(/* webpackIgnore: true */ /* @vite-ignore */ name).catch((err) => {
      wsModule = null;
      throw new RippleError(
        "no WebSocket implementation: pass { WebSocket } or install the `ws` package (Node 20 has no global WebSocket)",
        { code: "no_websocket", cause: err },
      );
    });
  }
  const mod = await wsModule;
  return mod.WebSocket || mod.default;
}

function backoffDelays({ initial, maximum, factor } = DEFAULT_BACKOFF) {
  let delay = initial;
  return () => {
    const jittered = delay * (0.5 + Math.random() / 2);
    delay = Math.min(maximum, delay * factor);
    return jittered;
  };
}

const textDecoder = typeof TextDecoder === "function" ? new TextDecoder() : null;

function frameText(data) {
  if (typeof data === "string") return data;
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return textDecoder.decode(data);
  return String(data);
}

/**
 * A resumable subscription. Create it with subscribe(); read it with `for await (const item of sub)` (items are
 * events, `{type: "event", ...}`, and with `snapshot: true` first one `{type: "snapshot", offset, items}`) or with
 * callbacks (`onEvent`, `onSnapshot`, `onState`, `onError`, or `sub.on(name, fn)`).
 */
export class Subscription {
  constructor(path, filterParams, options) {
    const {
      url,
      after = null,
      snapshot = false,
      token = null,
      WebSocket: givenWebSocket = null,
      backoff = DEFAULT_BACKOFF,
      idleTimeout = 45000,
      highWater = 10000,
      signal = null,
    } = options;
    if (after !== null && (!Number.isSafeInteger(after) || after < 0)) {
      throw new RippleError(`after must be an integer >= 0, not ${after}`, { code: "bad_request" });
    }
    if (snapshot && after !== null) {
      throw new RippleError("after and snapshot are mutually exclusive", { code: "bad_request" });
    }
    this.endpoint = wsBase(url) + path;
    this.filterParams = filterParams;
    this.token = token || null;
    this.position = after; // the resume point: the last offset delivered, or a later `through`
    this.wantSnapshot = Boolean(snapshot);
    this.state = "connecting";
    this.head = null; // the server's head, from hello and heartbeats
    this.error = null; // the fatal error that ended the subscription, if any
    this.stats = { connects: 0, disconnects: 0, events: 0, duplicatesDropped: 0 };
    this._givenWebSocket = givenWebSocket;
    this._backoff = { ...DEFAULT_BACKOFF, ...backoff };
    this._nextDelay = backoffDelays(this._backoff);
    this._idleTimeout = idleTimeout;
    this._highWater = highWater;
    this._listeners = { event: [], snapshot: [], state: [], error: [], live: [] };
    for (const [name, key] of [
      ["event", "onEvent"],
      ["snapshot", "onSnapshot"],
      ["state", "onState"],
      ["error", "onError"],
      ["live", "onLive"],
    ]) {
      if (typeof options[key] === "function") this._listeners[name].push(options[key]);
    }
    this._socket = null;
    this._generation = 0;
    this._timer = null;
    this._idleTimer = null;
    this._snapshotItems = null;
    this._queue = null; // the async iterator's buffer (only once someone iterates)
    this._waiter = null;
    this._throttled = false;
    this._closed = false;
    this._done = new Promise((resolve) => (this._resolveDone = resolve));
    if (signal) {
      if (signal.aborted) queueMicrotask(() => this.close());
      else signal.addEventListener("abort", () => this.close(), { once: true });
    }
    queueMicrotask(() => this._connect());
  }

  /** Add a listener: "event", "snapshot", "state", "live" or "error". Returns a function that removes it. */
  on(name, fn) {
    const list = this._listeners[name];
    if (!list) throw new RippleError(`unknown subscription event ${JSON.stringify(name)}`, { code: "bad_request" });
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** Resolves when the subscription ended: after close(), or with the fatal error's rejection. */
  get done() {
    return this._done;
  }

  /** Stop: close the connection; an iterator ends, no more callbacks. */
  close() {
    if (this._closed) return;
    this._finish(null);
  }

  // -- connecting

  _url() {
    const pairs = [...this.filterParams];
    if (this.position !== null) pairs.push(["after", this.position]);
    else if (this.wantSnapshot) pairs.push(["snapshot", "true"]);
    if (this.token) pairs.push(["token", this.token]);
    return this.endpoint + query(pairs);
  }

  async _connect() {
    if (this._closed || this._throttled) return;
    let Impl;
    try {
      Impl = await webSocketClass(this._givenWebSocket);
    } catch (err) {
      this._finish(err);
      return;
    }
    if (this._closed || this._throttled) return;
    const generation = ++this._generation;
    let socket;
    try {
      socket = new Impl(this._url());
    } catch (err) {
      this._finish(new RippleError(`cannot open a WebSocket: ${err.message}`, { code: "bad_request", cause: err }));
      return;
    }
    this._socket = socket;
    this._snapshotItems = null;
    this._touch(generation);
    const current = () => generation === this._generation && !this._closed;
    socket.onmessage = (message) => {
      if (!current()) return;
      this._touch(generation);
      let frame;
      try {
        frame = JSON.parse(frameText(message.data));
      } catch (err) {
        this._finish(new RippleError(`the server sent a frame this client cannot read: ${err.message}`));
        return;
      }
      this._frame(frame);
    };
    socket.onclose = (event) => {
      if (!current()) return;
      const reason = event && event.reason;
      if (event && event.code === 1008 && AUTH_CODES.has(reason)) {
        // Refused for the token, its error frame lost or never read: reconnecting would be refused again.
        this._finish(serverError(`the server closed the subscription: ${reason}`, { code: reason }));
      } else this._dropped(`closed (${event && event.code})`);
    };
    socket.onerror = () => {
      if (current()) this._dropped("connection error");
    };
  }

  _touch(generation) {
    if (!this._idleTimeout) return;
    clearTimeout(this._idleTimer);
    this._idleTimer = setTimeout(() => {
      if (generation === this._generation && !this._closed) this._dropped("no frame within idleTimeout");
    }, this._idleTimeout);
  }

  _abandon() {
    this._generation++; // frames of the old socket are ignored from now on
    clearTimeout(this._idleTimer);
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      socket.onmessage = socket.onclose = null;
      // Not null: closing a socket still connecting makes the `ws` package emit an error, which must have a listener.
      socket.onerror = () => {};
      try {
        socket.close(1000);
      } catch {
        // already closed
      }
    }
  }

  _dropped(reason) {
    this._abandon();
    this.stats.disconnects++;
    this._snapshotItems = null; // an unfinished snapshot is read again whole
    this._setState("reconnecting", { reason });
    const delay = this._nextDelay();
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), delay);
  }

  // -- frames

  _frame(frame) {
    switch (frame.type) {
      case "hello":
        this.stats.connects++;
        this.head = frame.head;
        this._nextDelay = backoffDelays(this._backoff); // connected: the next failure starts the backoff afresh
        if (this.position === null && !this.wantSnapshot) this.position = frame.after;
        this._setState("catching_up", { head: frame.head });
        return;
      case "snapshot":
        (this._snapshotItems ||= []).push(...frame.items);
        return;
      case "snapshot_end": {
        const items = this._snapshotItems || [];
        this._snapshotItems = null;
        this.wantSnapshot = false;
        this.position = frame.offset;
        this._deliver({ type: "snapshot", offset: frame.offset, items }, "snapshot");
        return;
      }
      case "event":
        this._event(frame);
        return;
      case "events":
        for (const event of frame.events) this._event(event);
        return;
      case "live":
        this._through(frame.through);
        this._setState("live", { through: frame.through });
        this._emit("live", { through: frame.through });
        return;
      case "heartbeat":
        this.head = frame.head;
        this._through(frame.through);
        return;
      case "error":
        if (RETRYABLE_CODES.has(frame.code)) this._dropped(frame.code);
        else this._finish(serverError(frame.message, { code: frame.code, detail: frameDetail(frame) }));
        return;
      default:
        return; // frames of a newer protocol version are ignored
    }
  }

  _through(through) {
    if (this.wantSnapshot) return;
    if (this.position === null || through > this.position) this.position = through;
  }

  _event(event) {
    if (this.position !== null && event.offset <= this.position) {
      this.stats.duplicatesDropped++; // never expected: the server sends each offset once per connection
      return;
    }
    this.position = event.offset;
    if (event.type !== "event") event.type = "event";
    this.stats.events++;
    this._deliver(event, "event");
  }

  _deliver(item, name) {
    if (this._closed) return;
    this._emit(name, item);
    if (this._queue === null) return;
    this._queue.push(item);
    this._wake();
    if (this._queue.length >= this._highWater && !this._throttled) {
      // The iterator's reader is slower than the server: stop reading the socket (drop the connection) and
      // resume from the log once the reader has caught up. Nothing is lost: `position` is the last queued event.
      this._throttled = true;
      this._abandon();
      clearTimeout(this._timer);
      this._setState("catching_up", { reason: "reader behind" });
    }
  }

  _emit(name, value) {
    for (const fn of this._listeners[name].slice()) {
      try {
        fn(value, this);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }); // a failing listener is reported, and breaks nothing else
      }
    }
  }

  _setState(state, info = {}) {
    if (this.state === state || this.state === "closed") return;
    this.state = state;
    this._emit("state", { state, ...info });
  }

  _finish(error) {
    if (this._closed) return;
    this._abandon();
    clearTimeout(this._timer);
    this._closed = true;
    this.error = error;
    this.state = "closed";
    this._emit("state", { state: "closed", error });
    if (error) {
      if (this._listeners.error.length) this._emit("error", error);
      this._resolveDone(Promise.reject(error));
      this._done.catch(() => {}); // a rejection nobody awaits is not an unhandled error
    } else {
      this._resolveDone();
    }
    this._wake();
  }

  _wake() {
    const waiter = this._waiter;
    if (waiter) {
      this._waiter = null;
      waiter();
    }
  }

  // -- async iteration

  [Symbol.asyncIterator]() {
    if (this._queue !== null) throw new RippleError("a subscription has one iterator", { code: "bad_request" });
    this._queue = [];
    let head = 0;
    const next = async () => {
      for (;;) {
        if (head < this._queue.length) {
          const value = this._queue[head++];
          if (head > 1024 && head * 2 > this._queue.length) {
            this._queue = this._queue.slice(head);
            head = 0;
          }
          if (this._throttled && this._queue.length - head <= this._highWater / 2) {
            this._throttled = false;
            this._connect();
          }
          return { value, done: false };
        }
        if (this._closed) {
          if (this.error) throw this.error;
          return { value: undefined, done: true };
        }
        await new Promise((resolve) => (this._waiter = resolve));
      }
    };
    return {
      next,
      return: async () => {
        this.close();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}

function frameDetail(frame) {
  return frame.earliest === undefined ? null : { earliest: frame.earliest };
}

/**
 * Subscribe to state (or stream) events: `subscribe({url, scopes, keys, kind, after, snapshot, batch, token})`.
 * `after` omitted: live events only, from the head at first connect; `snapshot: true`: the current values first.
 */
export function subscribe(options = {}) {
  const { scopes, keys, kind = "state", batch = 100 } = options;
  if (!["state", "stream", "all"].includes(kind)) {
    throw new RippleError(`kind must be "state", "stream" or "all", not ${JSON.stringify(kind)}`, {
      code: "bad_request",
    });
  }
  const pairs = [["kind", kind], ["batch", batch]];
  for (const scope of names(scopes, "scopes")) pairs.push(["scope", scope]);
  for (const key of names(keys, "keys")) pairs.push(["key", key]);
  return new Subscription("/v1/subscribe", pairs, options);
}

/** The events of one stream group (`/v1/streams/{stream}/{group}`), resumed like subscribe(). */
export function subscribeStream(options = {}) {
  const { stream, group, batch = 100 } = options;
  if (!stream || group == null) throw new RippleError("stream and group are required", { code: "bad_request" });
  const path = `/v1/streams/${encodeURIComponent(stream)}/${String(group).split("/").map(encodeURIComponent).join("/")}`;
  return new Subscription(path, [["batch", batch]], options);
}

// ---- REST ------------------------------------------------------------------------------------------------------

function statePath(scope, key) {
  const base = `/v1/state/${encodeURIComponent(scope)}`;
  return key === undefined ? base : `${base}/${encodeURIComponent(key)}`;
}

function preconditions(expectedOffset) {
  if (expectedOffset === undefined || expectedOffset === null) return {};
  if (!Number.isSafeInteger(expectedOffset) || expectedOffset < 0) {
    throw new RippleError(`expectedOffset must be an integer >= 0, not ${expectedOffset}`, { code: "bad_request" });
  }
  return expectedOffset === 0 ? { "if-none-match": "*" } : { "if-match": `"${expectedOffset}"` };
}

function commandBody(command) {
  const { expectedOffset, expected_offset: given, ...rest } = command;
  const expected = expectedOffset ?? given;
  return expected === undefined || expected === null ? rest : { ...rest, expected_offset: expected };
}

/** A REST client for one server: `client({url, token})`. */
export class Client {
  constructor({ url, token = null, fetch: givenFetch = null, WebSocket = null } = {}) {
    this.url = httpBase(url);
    this.token = token || null;
    this._fetch = givenFetch || globalThis.fetch.bind(globalThis);
    this._WebSocket = WebSocket;
  }

  /** One request; resolves to `{status, body, headers}` for 2xx and 304, throws a RippleError otherwise. */
  async request(method, path, { body, headers = {}, notFound = false } = {}) {
    const sent = { accept: "application/json", ...headers };
    if (this.token) sent.authorization = `Bearer ${this.token}`;
    if (body !== undefined) sent["content-type"] = "application/json";
    let response;
    try {
      response = await this._fetch(this.url + path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new RippleError(`cannot reach ${this.url}: ${err.message}`, { code: "unreachable", cause: err });
    }
    const text = await response.text();
    let parsed = null;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = undefined;
      }
    }
    if (response.ok || response.status === 304) return { status: response.status, body: parsed, headers: response.headers };
    const error = parsed && parsed.error;
    if (notFound && response.status === 404 && error && error.code === "not_found") return null;
    if (error && typeof error.code === "string") {
      throw serverError(error.message, { code: error.code, status: response.status, detail: error.detail ?? null });
    }
    throw serverError(`HTTP ${response.status} from ${method} ${path}`, {
      code: `http_${response.status}`,
      status: response.status,
      detail: text.slice(0, 500) || null,
    });
  }

  /**
   * What this client's token may do (`GET /v1/whoami`, which needs no token): an Access with `auth`, `name`, `admin`,
   * `scopes` and `streams` (the grants), `readable` (the scopes holding keys it may read) and `mayRead(scope)`,
   * `mayWrite(scope)`, `mayReadStream(stream)`, `mayWriteStream(stream)`. A wrong, expired or revoked token throws an
   * UnauthorizedError; without a token under `--auth` it may do nothing.
   */
  async whoami() {
    return new Access((await this.request("GET", "/v1/whoami")).body);
  }

  /** `{value, offset}` of a key (as of offset `at`), or null when it is missing. */
  async get(scope, key, { at } = {}) {
    const answer = await this.request("GET", statePath(scope, key) + query([["at", at]]), { notFound: true });
    if (answer === null) return null;
    return { value: answer.body, offset: etagOffset(answer.headers.get("etag")) };
  }

  /** Set a key. `expectedOffset`: the key's last offset must be this (0: it must not exist), or 412. */
  async set(scope, key, value, { expectedOffset, idempotencyKey } = {}) {
    const headers = { ...preconditions(expectedOffset), ...idempotency(idempotencyKey) };
    const answer = await this.request("PUT", statePath(scope, key), { body: value, headers });
    return { ...answer.body, created: answer.status === 201 };
  }

  /** Apply update ops (iii form: `{type: "set" | "merge" | "increment" | ..., path, value | by}`). */
  async update(scope, key, ops, { expectedOffset, idempotencyKey } = {}) {
    const headers = { ...preconditions(expectedOffset), ...idempotency(idempotencyKey) };
    const answer = await this.request("PATCH", statePath(scope, key), { body: { ops }, headers });
    return { ...answer.body, created: answer.status === 201 };
  }

  /** Delete a key: `{old_value, offset}`, or null when it was missing (nothing is appended). */
  async delete(scope, key, { expectedOffset, idempotencyKey } = {}) {
    const headers = { ...preconditions(expectedOffset), ...idempotency(idempotencyKey) };
    const answer = await this.request("DELETE", statePath(scope, key), { headers, notFound: true });
    return answer === null ? null : answer.body;
  }

  /** One page of a scope: `{items: [{key, value, version, offset}], next_cursor}`. */
  async list(scope, { limit, cursor, at } = {}) {
    const q = query([["limit", limit], ["cursor", cursor], ["at", at]]);
    return (await this.request("GET", statePath(scope) + q)).body;
  }

  /** Every entry of a scope, page after page. */
  async *entries(scope, { limit = 1000, at } = {}) {
    let cursor;
    do {
      const page = await this.list(scope, { limit, cursor, at });
      yield* page.items;
      cursor = page.next_cursor;
    } while (cursor);
  }

  /** The scopes that hold at least one key, sorted. */
  async scopes() {
    return (await this.request("GET", "/v1/scopes")).body.groups;
  }

  /** Commands `{op: "set" | "update" | "delete", scope, key, value?, ops?, expectedOffset?}`, all or nothing. */
  async batch(commands, { idempotencyKey } = {}) {
    const body = { commands: commands.map(commandBody) };
    return (await this.request("POST", "/v1/batch", { body, headers: idempotency(idempotencyKey) })).body.results;
  }

  /** Send a stream message: `{offset}`. */
  async send(stream, group, type, data, { id } = {}) {
    const path = `/v1/streams/${encodeURIComponent(stream)}/${encodeURIComponent(group)}`;
    const body = id === undefined ? { type, data } : { type, data, id };
    return (await this.request("POST", path, { body })).body;
  }

  /** One page of the log: `{events, next_after, head}`; `wait` (seconds) long-polls for the next event. */
  async events({ after = 0, limit, scopes, keys, kind, wait } = {}) {
    const pairs = [["after", after], ["limit", limit], ["kind", kind], ["wait", wait]];
    for (const scope of names(scopes, "scopes")) pairs.push(["scope", scope]);
    for (const key of names(keys, "keys")) pairs.push(["key", key]);
    return (await this.request("GET", "/v1/events" + query(pairs))).body;
  }

  async health() {
    return (await this.request("GET", "/v1/health")).body;
  }

  async projection(name) {
    return (await this.request("GET", `/v1/projections/${encodeURIComponent(name)}`)).body;
  }

  async projections() {
    return (await this.request("GET", "/v1/projections")).body;
  }

  /** subscribe() on this client's server, with its token. */
  subscribe(options = {}) {
    return subscribe({ url: this.url, token: this.token, WebSocket: this._WebSocket, ...options });
  }
}

function idempotency(key) {
  return key === undefined || key === null ? {} : { "idempotency-key": String(key) };
}

/** What a token may do, from `GET /v1/whoami`: its grants, checked here exactly as the server checks them. */
export class Access {
  constructor({ auth = false, name = null, admin = false, scopes = [], streams = [], readable = [] } = {}) {
    this.auth = Boolean(auth); // false: the server runs without tokens and everything is open
    this.name = name; // the token's name (null: no token)
    this.admin = Boolean(admin);
    this.scopes = scopes; // grants on state scopes, "PATTERN:r" or "PATTERN:rw"
    this.streams = streams; // grants on streams
    this.readable = readable; // the scopes that hold keys and that this token may read
  }

  mayRead(scope) {
    return !this.auth || this.admin || this.scopes.some((g) => grantAllows(g, scope, "r"));
  }

  mayWrite(scope) {
    return !this.auth || this.admin || this.scopes.some((g) => grantAllows(g, scope, "rw"));
  }

  mayReadStream(stream) {
    return !this.auth || this.admin || this.streams.some((g) => grantAllows(g, stream, "r"));
  }

  mayWriteStream(stream) {
    return !this.auth || this.admin || this.streams.some((g) => grantAllows(g, stream, "rw"));
  }
}

/** Does the grant `"PATTERN:r|rw"` allow `access` ("r" or "rw") on `name`? */
function grantAllows(grant, name, access) {
  const colon = grant.lastIndexOf(":");
  if (colon < 0) return false;
  const given = grant.slice(colon + 1);
  if (access === "rw" && given !== "rw") return false;
  return globRegExp(grant.slice(0, colon)).test(name);
}

const globCache = new Map();

/**
 * A RegExp matching what Python's `fnmatch.fnmatchcase(name, pattern)` matches (the server's rule): `*` any text,
 * `?` one character, `[seq]` and `[!seq]` sets with ranges; a `[` without its `]` is itself. Ported from CPython's
 * `fnmatch.translate`, including its handling of `-` and of empty ranges.
 */
function globRegExp(pattern) {
  let re = globCache.get(pattern);
  if (re) return re;
  const chars = Array.from(pattern); // code points: `?` matches one, as in Python
  const n = chars.length;
  let out = "";
  let i = 0;
  while (i < n) {
    const c = chars[i++];
    if (c === "*") {
      if (!out.endsWith("[^]*")) out += "[^]*";
    } else if (c === "?") {
      out += "[^]";
    } else if (c === "[") {
      let j = i;
      if (j < n && chars[j] === "!") j++;
      if (j < n && chars[j] === "]") j++;
      while (j < n && chars[j] !== "]") j++;
      if (j >= n) {
        out += "\\[";
        continue;
      }
      out += globSet(chars, i, j);
      i = j + 1;
    } else {
      out += c.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
    }
  }
  re = new RegExp(`^(?:${out})$`, "u");
  if (globCache.size > 1000) globCache.clear();
  globCache.set(pattern, re);
  return re;
}

/** The character class for `pattern[start:end]` (the text between `[` and `]`), as CPython builds it. */
function globSet(chars, start, end) {
  const escape = (s) => s.replace(/[\\\]\[^-]/g, "\\$&");
  let i = start;
  let stuff;
  const text = chars.slice(start, end).join("");
  if (!text.includes("-")) {
    stuff = escape(text);
  } else {
    const chunks = [];
    let k = chars[i] === "!" ? i + 2 : i + 1;
    for (;;) {
      k = chars.indexOf("-", k);
      if (k < 0 || k >= end) break;
      chunks.push(chars.slice(i, k).join(""));
      i = k + 1;
      k = k + 3;
    }
    const last = chars.slice(i, end).join("");
    if (last) chunks.push(last);
    else chunks[chunks.length - 1] += "-";
    for (let m = chunks.length - 1; m > 0; m--) {
      const before = Array.from(chunks[m - 1]);
      const after = Array.from(chunks[m]);
      if (before[before.length - 1].codePointAt(0) > after[0].codePointAt(0)) {
        chunks[m - 1] = before.slice(0, -1).join("") + after.slice(1).join("");
        chunks.splice(m, 1);
      }
    }
    stuff = chunks.map(escape).join("-");
  }
  if (!stuff) return "(?!)"; // an empty set never matches
  if (stuff === "!") return "[^]"; // a negated empty set matches any character
  if (stuff[0] === "!") return `[^${stuff.slice(1)}]`;
  return `[${stuff}]`;
}

function etagOffset(etag) {
  const match = /^(?:W\/)?"(\d+)"$/.exec((etag || "").trim());
  return match ? Number(match[1]) : null;
}

/** A REST client: `client({url, token})` (url defaults to the page's origin in a browser). */
export function client(options = {}) {
  return new Client(options);
}

export default {
  subscribe,
  subscribeStream,
  client,
  Client,
  Subscription,
  RippleError,
  AuthError,
  UnauthorizedError,
  ForbiddenError,
  Access,
  VERSION,
};
