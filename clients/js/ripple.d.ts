// Types of ripple.js: a client for ripple, the event-sourced reactive store.

export declare const VERSION: string;

/** Any JSON value. Integers above 2^53 lose precision once parsed in JavaScript. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export type Kind = "state" | "stream";
export type KindFilter = Kind | "all";
export type ConnectionState = "connecting" | "catching_up" | "live" | "reconnecting" | "closed";

export interface Meta {
  cause?: number;
  depth?: number;
  idempotency_key?: string;
  actor?: string;
  id?: string;
}

/** One entry of the log. */
export interface RippleEvent {
  type: "event";
  offset: number;
  /** Commit time, unix epoch milliseconds. */
  ts: number;
  kind: Kind;
  scope: string;
  key: string;
  op: "set" | "update" | "delete" | "send";
  event_type: string;
  version: number;
  old_value: Json;
  new_value: Json;
  meta: Meta;
}

export interface SnapshotItem {
  scope: string;
  key: string;
  value: Json;
  version: number;
  offset: number;
}

/** The current values of the matching keys as of `offset` (`snapshot: true`); events after it follow. */
export interface Snapshot {
  type: "snapshot";
  offset: number;
  items: SnapshotItem[];
}

export interface Backoff {
  /** First reconnect delay in milliseconds (default 50). */
  initial?: number;
  /** Longest delay in milliseconds (default 5000). */
  maximum?: number;
  /** Growth per failed attempt (default 2). Each delay is scaled by a random 50-100 %. */
  factor?: number;
}

export declare const DEFAULT_BACKOFF: Readonly<Required<Backoff>>;

export interface StateChange {
  state: ConnectionState;
  reason?: string;
  head?: number;
  through?: number;
  error?: RippleError | null;
}

/** A WebSocket constructor with the browser's interface (the global one, or the `ws` package's). */
export type WebSocketLike = new (url: string) => {
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code?: number }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  close(code?: number): void;
};

interface SubscriptionOptionsBase {
  /** The server, `http://host:port` or `ws://host:port`; in a browser page it defaults to the page's origin. */
  url?: string;
  /** Exclusive: the first event delivered has an offset above it. Omitted: live events from the head at first connect. */
  after?: number | null;
  /** Events per packed frame (1-1000, default 100). */
  batch?: number;
  /** An access token, sent as the `token` query parameter (only when given). */
  token?: string | null;
  /** A WebSocket implementation; default: the global one, else the `ws` package. */
  WebSocket?: WebSocketLike | null;
  backoff?: Backoff;
  /** Reconnect when no frame came for this many milliseconds (default 45000; 0 = never). */
  idleTimeout?: number;
  /** Items the async iterator may hold before the connection is dropped and resumed later (default 10000). */
  highWater?: number;
  /** Closes the subscription when aborted. */
  signal?: AbortSignal | null;
  onEvent?: (event: RippleEvent, sub: Subscription) => void;
  onSnapshot?: (snapshot: Snapshot, sub: Subscription) => void;
  onState?: (change: StateChange, sub: Subscription) => void;
  onLive?: (info: { through: number }, sub: Subscription) => void;
  /**
   * A fatal error: the subscription is closed and does not reconnect. `bad_request`, `offset_out_of_range`, ... are
   * RippleErrors; a refused token (`unauthorized`: missing, wrong, expired, or revoked while the subscription is open)
   * is an UnauthorizedError and a refused grant (`forbidden`) a ForbiddenError, from the server's `error` frame or
   * from a close with code 1008 and that reason.
   */
  onError?: (error: RippleError, sub: Subscription) => void;
}

export interface SubscribeOptions extends SubscriptionOptionsBase {
  scopes?: string[];
  keys?: string[];
  /** "state" (default), "stream" or "all". */
  kind?: KindFilter;
  /** Start with the current values of the matching keys (not with `after`). */
  snapshot?: boolean;
}

export interface SubscribeStreamOptions extends SubscriptionOptionsBase {
  stream: string;
  group: string;
}

export interface SubscriptionStats {
  connects: number;
  disconnects: number;
  events: number;
  duplicatesDropped: number;
}

export declare class Subscription implements AsyncIterable<RippleEvent | Snapshot> {
  readonly state: ConnectionState;
  /** The resume point: the last offset delivered, or a later `through` the server reported. */
  readonly position: number | null;
  /** The server's head, from hello and heartbeat frames. */
  readonly head: number | null;
  /** The fatal error that ended the subscription, if any. */
  readonly error: RippleError | null;
  readonly stats: SubscriptionStats;
  /** Resolves after close(); rejects with the fatal error. */
  readonly done: Promise<void>;
  on(name: "event", fn: (event: RippleEvent, sub: Subscription) => void): () => void;
  on(name: "snapshot", fn: (snapshot: Snapshot, sub: Subscription) => void): () => void;
  on(name: "state", fn: (change: StateChange, sub: Subscription) => void): () => void;
  on(name: "live", fn: (info: { through: number }, sub: Subscription) => void): () => void;
  on(name: "error", fn: (error: RippleError, sub: Subscription) => void): () => void;
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<RippleEvent | Snapshot>;
}

export declare function subscribe(options?: SubscribeOptions): Subscription;
export declare function subscribeStream(options: SubscribeStreamOptions): Subscription;

export interface RippleErrorOptions {
  code?: string;
  status?: number | null;
  detail?: unknown;
  cause?: unknown;
}

export declare class RippleError extends Error {
  constructor(message: string, options?: RippleErrorOptions);
  /** The server's error code (`precondition_failed`, `forbidden`, ...) or the client's (`unreachable`, ...). */
  readonly code: string;
  /** The HTTP status, for REST errors (and 401/403 for a subscription's auth errors). */
  readonly status: number | null;
  readonly detail: unknown;
}

/**
 * The server refused the token (401) or the grant (403). Retrying with the same token cannot help: a subscription
 * that gets one ends (state `closed`) instead of reconnecting.
 */
export declare class AuthError extends RippleError {
  readonly status: 401 | 403;
}

/** 401 `unauthorized`: no token, or a wrong, expired or revoked one (the server does not say which). */
export declare class UnauthorizedError extends AuthError {
  readonly status: 401;
}

/** 403 `forbidden`: a valid token without the grant (or `origin_not_allowed`: a browser origin the server refuses). */
export declare class ForbiddenError extends AuthError {
  readonly status: 403;
}

/** What a token may do, from `GET /v1/whoami`; its checks match the server's (grant patterns are fnmatch globs). */
export declare class Access {
  constructor(body?: Partial<WhoAmI>);
  /** false: the server runs without tokens, and every check below is true. */
  readonly auth: boolean;
  /** The token's name; null without a token. */
  readonly name: string | null;
  readonly admin: boolean;
  /** Grants on state scopes: `"PATTERN:r"` or `"PATTERN:rw"`. */
  readonly scopes: string[];
  /** Grants on streams. */
  readonly streams: string[];
  /** The scopes that hold keys and that this token may read (as `GET /v1/scopes`). */
  readonly readable: string[];
  mayRead(scope: string): boolean;
  mayWrite(scope: string): boolean;
  mayReadStream(stream: string): boolean;
  mayWriteStream(stream: string): boolean;
}

/** The body of `GET /v1/whoami`. */
export interface WhoAmI {
  auth: boolean;
  name: string | null;
  admin: boolean;
  scopes: string[];
  streams: string[];
  readable: string[];
}

/** An update op in iii's form. */
export type UpdateOp =
  | { type: "set"; path?: string | string[] | null; value: Json }
  | { type: "merge"; path?: string | string[] | null; value: { [key: string]: Json } }
  | { type: "increment" | "decrement"; path?: string | string[] | null; by: number }
  | { type: "append"; path?: string | string[] | null; value: Json }
  | { type: "remove"; path?: string | string[] | null };

export interface WriteOptions {
  /** The key's last offset must be this (0: the key must not exist); otherwise a `precondition_failed` error (412). */
  expectedOffset?: number | null;
  /** A repeat with the same key returns the first result and appends nothing. */
  idempotencyKey?: string | null;
}

export interface SetResult {
  old_value: Json;
  new_value: Json;
  version: number;
  offset: number;
  /** true when the key did not exist (HTTP 201). */
  created: boolean;
}

export interface OpError {
  op_index: number;
  code: string;
  message: string;
}

export interface UpdateResult extends SetResult {
  errors: OpError[];
}

export interface DeleteResult {
  old_value: Json;
  offset: number;
}

export interface Entry {
  key: string;
  value: Json;
  version: number;
  offset: number;
}

export interface Page {
  items: Entry[];
  next_cursor: string | null;
}

export type Command =
  | { op: "set"; scope: string; key: string; value: Json; expectedOffset?: number | null }
  | { op: "update"; scope: string; key: string; ops: UpdateOp[]; expectedOffset?: number | null }
  | { op: "delete"; scope: string; key: string; expectedOffset?: number | null };

export interface CommandResult {
  old_value: Json;
  offset: number;
  new_value?: Json;
  version?: number;
  errors?: OpError[];
}

export interface EventsPage {
  events: RippleEvent[];
  next_after: number;
  head: number;
}

export interface Health {
  status: "ok" | "degraded";
  head: number;
  earliest: number;
  schema_version: number;
  version: string;
  counters: { [name: string]: number };
}

export interface ProjectionState {
  name: string;
  version: number;
  checkpoint: number;
  status: "ok" | "catching_up" | "rebuilding" | "failed" | string;
  lag?: number;
  data?: Json;
}

export interface ClientOptions {
  /** The server, `http://host:port`; in a browser page it defaults to the page's origin. */
  url?: string;
  /** An access token, sent as `Authorization: Bearer` (only when given). */
  token?: string | null;
  fetch?: typeof fetch | null;
  WebSocket?: WebSocketLike | null;
}

export declare class Client {
  constructor(options?: ClientOptions);
  readonly url: string;
  readonly token: string | null;
  request(
    method: string,
    path: string,
    options?: { body?: unknown; headers?: Record<string, string>; notFound?: boolean },
  ): Promise<{ status: number; body: any; headers: Headers } | null>;
  get(scope: string, key: string, options?: { at?: number }): Promise<{ value: Json; offset: number | null } | null>;
  set(scope: string, key: string, value: Json, options?: WriteOptions): Promise<SetResult>;
  update(scope: string, key: string, ops: UpdateOp[], options?: WriteOptions): Promise<UpdateResult>;
  delete(scope: string, key: string, options?: WriteOptions): Promise<DeleteResult | null>;
  list(scope: string, options?: { limit?: number; cursor?: string | null; at?: number }): Promise<Page>;
  entries(scope: string, options?: { limit?: number; at?: number }): AsyncIterable<Entry>;
  scopes(): Promise<string[]>;
  batch(commands: Command[], options?: { idempotencyKey?: string | null }): Promise<(CommandResult | null)[]>;
  send(stream: string, group: string, type: string, data: Json, options?: { id?: string }): Promise<{ offset: number }>;
  events(options?: {
    after?: number;
    limit?: number;
    scopes?: string[];
    keys?: string[];
    kind?: KindFilter;
    wait?: number;
  }): Promise<EventsPage>;
  health(): Promise<Health>;
  projection(name: string): Promise<ProjectionState>;
  projections(): Promise<ProjectionState[] | { projections: ProjectionState[] }>;
  /** What this client's token may do (`GET /v1/whoami`); a wrong, expired or revoked token: UnauthorizedError. */
  whoami(): Promise<Access>;
  subscribe(options?: SubscribeOptions): Subscription;
}

export declare function client(options?: ClientOptions): Client;

declare const ripple: {
  subscribe: typeof subscribe;
  subscribeStream: typeof subscribeStream;
  client: typeof client;
  Client: typeof Client;
  Subscription: typeof Subscription;
  RippleError: typeof RippleError;
  AuthError: typeof AuthError;
  UnauthorizedError: typeof UnauthorizedError;
  ForbiddenError: typeof ForbiddenError;
  Access: typeof Access;
  VERSION: string;
};
export default ripple;
