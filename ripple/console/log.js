// The live log: a window of the log's events (the ones matching the filter), rendered as fixed-height rows of which
// only the visible ones exist in the DOM, with pages fetched on demand above and below (GET /v1/events) and live
// events appended from a ripple.js subscription. However large the file, the page holds at most MAX_ROWS events.
//
// The window `rows` always holds every matching event between its first and its last offset (no gaps). Live events
// land in `ring` first (every event the subscription delivered after `ringFrom`); they are appended while the window
// reaches the newest events (`atTail`) and the view is not paused, so a pause, a slow tab or a reconnect never
// leaves a hole: what is not in the ring is read from the log.
import { access, api, describeError, readableScopes, seesEverything, tokenDescription } from "./api.js";
import { clock, el, fullTime, lowerBound, showJson, splitList, summarize } from "./util.js";

const PAGE = 200; // events per REST page
const MAX_ROWS = 20_000; // events kept in the window
const RING = 5_000; // live events kept while they are not appended
const OVERSCAN = 8; // rows rendered beyond the visible ones
const EDGE = 30; // rows from an edge at which the next page is fetched

export class LogView {
  constructor(root, { onState, onHead }) {
    this.root = root;
    this.viewport = root.querySelector("#log-viewport");
    this.spacer = root.querySelector("#log-spacer");
    this.statusLine = root.querySelector("#log-status");
    this.detail = root.querySelector("#log-detail");
    this.detailBody = root.querySelector("#detail-body");
    this.pauseButton = root.querySelector("#pause-button");
    this.onState = onState;
    this.onHead = onHead;
    this.filter = { scopes: [], keys: [], kind: "all" };
    this.rows = [];
    this.startComplete = false; // no matching event before rows[0]
    this.atTail = false; // rows reach the newest matching events; live ones are appended
    this.tailThrough = 0; // every matching event <= this is in rows (when atTail)
    this.paused = false;
    this.stick = true; // keep the newest row in view while following
    this.selected = null; // offset of the selected event
    this.ring = [];
    this.ringFrom = 0; // the ring holds every event the subscription delivered after this offset
    this.sub = null;
    this.generation = 0; // bumps on every reload: answers for an older window are dropped
    this.starts = 0; // bumps on every filter change
    this.starting = Promise.resolve(); // the filter change in progress
    this.savedScrollTop = 0;
    this.errorText = null;
    this.readable = null; // the scopes this tab may read (null: all), from readableScopes()
    this.planned = null; // what the filter asks of the server, or why it asks nothing (see plan())
    this.statusQueued = false;
    this.loading = { before: false, after: false };
    this.rowHeight = 28;
    this.pool = [];
    this.renderQueued = false;
    this.flushQueued = false;
    this.note = el("div", { class: "viewport-note" });
    this.spacer.append(this.note);
    this.viewport.addEventListener("scroll", () => this.scrolled(), { passive: true });
    this.viewport.addEventListener("keydown", (e) => this.key(e));
    this.viewport.addEventListener("click", (e) => this.clicked(e));
    this.viewport.addEventListener("dblclick", () => this.openDetail());
    new ResizeObserver(() => this.measure()).observe(this.viewport);
    root.querySelector("#detail-close").addEventListener("click", () => this.closeDetail());
  }

  // -- sizes and rendering

  /** The viewport or the row height changed (resize, detail pane, phone rotation): keep the reader's place. */
  measure() {
    const value = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--row-h")) || 28;
    if (value !== this.rowHeight) {
      const first = this.firstVisible();
      this.rowHeight = value;
      this.layout();
      this.viewport.scrollTop = first * value;
    }
    if (this.stick && this.viewport.clientHeight) this.viewport.scrollTop = this.viewport.scrollHeight;
    this.requestRender();
  }

  firstVisible() {
    return Math.floor(this.viewport.scrollTop / this.rowHeight);
  }

  lastVisible() {
    return Math.floor((this.viewport.scrollTop + this.viewport.clientHeight - 1) / this.rowHeight);
  }

  layout() {
    this.spacer.style.height = `${this.rows.length * this.rowHeight}px`;
  }

  requestRender() {
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  render() {
    const h = this.rowHeight;
    const height = this.viewport.clientHeight;
    const first = Math.max(0, Math.floor(this.viewport.scrollTop / h) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((this.viewport.scrollTop + height) / h) + OVERSCAN);
    const needed = Math.max(0, last - first);
    while (this.pool.length < needed) this.pool.push(this.makeRow());
    for (let i = 0; i < this.pool.length; i++) {
      const row = this.pool[i];
      const index = first + i;
      if (index >= last) {
        if (!row.hidden) row.hidden = true;
        continue;
      }
      row.hidden = false;
      const event = this.rows[index];
      row.style.transform = `translateY(${index * h}px)`;
      if (row._event !== event) this.fillRow(row, event);
      const selected = event.offset === this.selected;
      row.setAttribute("aria-selected", selected ? "true" : "false");
      row.id = selected ? "log-selected" : "";
    }
    if (this.selected !== null && this.rows.length) this.viewport.setAttribute("aria-activedescendant", "log-selected");
    else this.viewport.removeAttribute("aria-activedescendant");
    this.note.hidden = this.rows.length > 0;
    this.note.textContent = this.emptyText();
    this.maybeLoad(first + OVERSCAN, last - OVERSCAN);
  }

  emptyText() {
    if (this.planned && this.planned.refusal) return "nothing to show for this filter (see above)";
    if (this.loading.before || this.loading.after) return "loading…";
    return this.atTail ? "no events match yet: new ones appear here as they are written" : "no events here";
  }

  makeRow() {
    const cells = ["c-offset", "c-time", "c-scope", "c-key", "c-op", "c-change"].map((c) => el("span", { class: c }));
    const row = el("div", { class: "row", role: "option", "aria-selected": "false" }, ...cells);
    row._cells = cells;
    this.spacer.append(row);
    return row;
  }

  fillRow(row, event) {
    row._event = event;
    row.dataset.offset = event.offset;
    const [offset, time, scope, key, op, change] = row._cells;
    offset.textContent = event.offset;
    time.textContent = clock(event.ts);
    time.title = fullTime(event.ts);
    scope.textContent = scope.title = event.scope;
    key.textContent = key.title = event.key;
    const opText = event.kind === "stream" ? event.event_type : event.event_type || event.op;
    op.textContent = opText;
    op.className = `c-op op op-${event.kind === "stream" ? "stream" : event.event_type}`;
    change.textContent = summarize(event);
    row.classList.toggle("flash", Boolean(event._fresh));
    event._fresh = false;
  }

  // -- scrolling and loading on demand

  scrolled() {
    const v = this.viewport;
    if (!v.clientHeight) return; // hidden (another tab): the browser drops the scroll position, not the reader
    this.stick = v.scrollTop + v.clientHeight >= v.scrollHeight - this.rowHeight;
    this.savedScrollTop = v.scrollTop;
    this.requestRender();
  }

  /** The log tab is shown again: back to the newest rows when following, else where the reader was. */
  shown() {
    this.measure();
    this.viewport.scrollTop = this.stick ? this.viewport.scrollHeight : this.savedScrollTop;
    this.requestRender();
  }

  maybeLoad(firstVisible, lastVisible) {
    if (!this.rows.length) return;
    if (firstVisible < EDGE && !this.startComplete && !this.loading.before) this.loadBefore();
    if (lastVisible > this.rows.length - EDGE && !this.atTail && !this.loading.after) this.loadAfter();
  }

  async loadBefore() {
    const generation = this.generation;
    this.loading.before = true;
    try {
      const { events, complete } = await readBefore(this.rows[0].offset, PAGE, this.effective());
      if (generation !== this.generation) return;
      this.clearProblem();
      this.rows = events.concat(this.rows);
      this.startComplete = complete;
      this.viewport.scrollTop += events.length * this.rowHeight; // the rows in view stay where they are
      if (this.rows.length > MAX_ROWS) this.trimEnd();
      this.layout();
    } catch (err) {
      if (generation === this.generation) this.problem(err);
    } finally {
      if (generation === this.generation) this.loading.before = false;
      this.updateStatus();
      this.requestRender();
    }
  }

  async loadAfter() {
    const generation = this.generation;
    this.loading.after = true;
    try {
      const last = this.rows.length ? this.rows[this.rows.length - 1].offset : this.tailThrough;
      const known = this.sub ? this.sub.position ?? 0 : 0; // the server's head is at least this when it reads
      const page = await api.events({ after: last, limit: PAGE, ...this.query() });
      if (generation !== this.generation) return;
      this.clearProblem();
      this.append(page.events);
      if (page.events.length < PAGE) this.reachedTail(Math.max(last, known));
    } catch (err) {
      if (generation === this.generation) this.problem(err);
    } finally {
      if (generation === this.generation) this.loading.after = false;
      this.updateStatus();
      this.requestRender();
    }
  }

  /** The window now holds every matching event up to `through`: follow live events if the ring reaches back. */
  reachedTail(through) {
    const last = this.rows.length ? this.rows[this.rows.length - 1].offset : 0;
    this.tailThrough = Math.max(through, last);
    this.atTail = this.ringFrom <= this.tailThrough;
    if (this.atTail) this.flush();
  }

  append(events) {
    if (!events.length) return;
    const last = this.rows.length ? this.rows[this.rows.length - 1].offset : 0;
    const fresh = events[0].offset > last ? events : events.filter((e) => e.offset > last);
    for (const e of fresh) this.rows.push(e);
    if (this.rows.length > MAX_ROWS) this.trimStart();
    this.layout();
  }

  trimStart() {
    const extra = this.rows.length - MAX_ROWS;
    this.rows.splice(0, extra);
    this.startComplete = false;
    this.viewport.scrollTop = Math.max(0, this.viewport.scrollTop - extra * this.rowHeight);
  }

  trimEnd() {
    this.rows.length = MAX_ROWS;
    this.atTail = false;
    this.tailThrough = this.rows[this.rows.length - 1].offset;
  }

  // -- live events

  /** (Re)start for the current filter: a subscription from the head, and the newest page of the log. */
  start() {
    this.starting = this.restart();
    return this.starting;
  }

  async restart() {
    const token = ++this.starts;
    this.clearProblem();
    if (this.sub) this.sub.close();
    this.sub = null;
    const [{ head }, readable] = await Promise.all([api.health(), readableScopes()]);
    if (token !== this.starts) return; // a newer filter was applied meanwhile
    this.readable = readable; // access control: null means every scope
    this.planned = this.plan();
    this.onHead(head);
    this.ring = [];
    this.ringFrom = head;
    if (this.planned.refusal) {
      this.generation++; // answers for the previous filter are dropped
      this.resetWindow();
      this.say(this.planned.refusal);
      this.onState({ state: "idle" }, this);
      this.requestRender();
      return;
    }
    this.sub = api.subscribe({
      ...this.filterForSubscribe(),
      after: head,
      onEvent: (event) => this.live(event),
      onState: (change) => this.onState(change, this),
      onError: (err) => this.problem(err, "the log"),
    });
    await this.showTail();
  }

  /** Stop for good (the tab signed out): no subscription, and answers still on their way are dropped. */
  stop() {
    this.starts++;
    this.generation++;
    if (this.sub) this.sub.close();
    this.sub = null;
  }

  live(event) {
    this.onHead(event.offset);
    this.ring.push(event);
    if (this.ring.length > RING * 1.5) {
      const dropped = this.ring.splice(0, this.ring.length - RING);
      this.ringFrom = dropped[dropped.length - 1].offset;
    }
    if (this.atTail && !this.paused) this.requestFlush();
    else this.requestStatus();
  }

  requestStatus() {
    if (this.statusQueued) return;
    this.statusQueued = true;
    requestAnimationFrame(() => {
      this.statusQueued = false;
      this.updateStatus();
    });
  }

  requestFlush() {
    if (this.flushQueued) return;
    this.flushQueued = true;
    requestAnimationFrame(() => {
      this.flushQueued = false;
      this.flush();
    });
  }

  /** Append the ring's events after the window's end (once per frame: a burst is one layout, not thousands). */
  flush() {
    if (!this.atTail || this.paused) return;
    if (this.ringFrom > this.tailThrough) {
      this.atTail = false; // the ring lost events the window lacks: read them from the log on demand
      this.updateStatus();
      this.requestRender();
      return;
    }
    const start = lowerBound(this.ring, this.tailThrough + 1);
    const fresh = this.ring.slice(start);
    for (const e of fresh) e._fresh = true;
    this.append(fresh);
    if (this.sub && this.sub.position !== null) this.tailThrough = Math.max(this.tailThrough, this.sub.position);
    if (this.stick) this.viewport.scrollTop = this.viewport.scrollHeight;
    this.updateStatus();
    this.requestRender();
  }

  pendingCount() {
    if (this.ringFrom > this.tailThrough) return null; // more than the ring holds
    return this.ring.length - lowerBound(this.ring, this.tailThrough + 1);
  }

  setPaused(paused) {
    this.paused = paused;
    this.pauseButton.setAttribute("aria-pressed", String(paused));
    this.pauseButton.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      if (this.atTail && this.ringFrom > this.tailThrough) this.showTail();
      else this.flush();
    }
    this.updateStatus();
  }

  // -- jumps

  /** The newest page of matching events, then follow. */
  async showTail() {
    const generation = ++this.generation;
    this.loading = { before: true, after: false };
    this.resetWindow();
    try {
      const through = this.sub && this.sub.position !== null ? this.sub.position : (await api.health()).head;
      const { events, complete } = await readBefore(through + 1, PAGE, this.effective());
      if (generation !== this.generation) return;
      this.clearProblem();
      this.rows = events;
      this.startComplete = complete;
      this.layout();
      this.stick = true;
      this.reachedTail(through);
      this.viewport.scrollTop = this.viewport.scrollHeight;
    } catch (err) {
      if (generation === this.generation) this.problem(err);
    } finally {
      if (generation === this.generation) this.loading = { before: false, after: false };
      this.updateStatus();
      this.requestRender();
    }
  }

  /** A window around `offset` (the first matching event at or after it is selected and centred). */
  async jumpTo(offset) {
    await this.starting.catch(() => {}); // a filter applied just before: jump within it
    const generation = ++this.generation;
    this.loading = { before: true, after: true };
    this.resetWindow();
    try {
      const known = this.sub ? this.sub.position ?? 0 : 0;
      const [before, page] = await Promise.all([
        readBefore(offset, 50, this.effective()),
        api.events({ after: Math.max(0, offset - 1), limit: PAGE, ...this.query() }),
      ]);
      if (generation !== this.generation) return;
      this.clearProblem();
      this.rows = before.events.concat(page.events);
      this.startComplete = before.complete;
      this.layout();
      if (page.events.length < PAGE) this.reachedTail(Math.max(offset - 1, known));
      const index = Math.min(lowerBound(this.rows, offset), this.rows.length - 1);
      if (index >= 0) {
        this.selected = this.rows[index].offset;
        this.stick = false;
        this.viewport.scrollTop = Math.max(0, index * this.rowHeight - this.viewport.clientHeight / 2);
      }
    } catch (err) {
      if (generation === this.generation) this.problem(err);
    } finally {
      if (generation === this.generation) this.loading = { before: false, after: false };
      this.updateStatus();
      this.requestRender();
    }
  }

  resetWindow() {
    this.rows = [];
    this.atTail = false;
    this.startComplete = false;
    for (const row of this.pool) row._event = null;
    this.layout();
  }

  async setFilter(filter) {
    this.filter = filter;
    this.selected = null;
    this.closeDetail();
    await this.start();
  }

  /** The filter as sent (see plan()). */
  effective() {
    if (this.planned && this.planned.filter) return this.planned.filter;
    return { scopes: this.filter.scopes, keys: this.filter.keys, kind: this.filter.kind };
  }

  /**
   * What to ask the server for the current filter, `{filter, note}`, or `{refusal}`: why nothing is asked, when the
   * token may not read what the filter names (said here, before anything is sent; the server would refuse it with
   * 403 or `forbidden`). A token that is not an admin's may not follow the whole log: with no scope in the filter it
   * follows the state events of the scopes it may read.
   */
  plan() {
    const { scopes, keys, kind } = this.filter;
    if (seesEverything()) return { filter: { scopes, keys, kind } };
    if (scopes.length) {
      const refused = scopes.filter((scope) => !mayFollow(scope, kind));
      return refused.length ? { refusal: refusalText(refused, kind) } : { filter: { scopes, keys, kind } };
    }
    if (kind === "stream") {
      return { refusal: `Name the streams to follow in Scope: only an admin's token may follow every stream, and ` +
        `${tokenDescription()} is not one.` };
    }
    const readable = this.readable || [];
    if (!readable.length) {
      return { refusal: `${capitalized(tokenDescription())} may read no scope that holds data yet: nothing to follow.` };
    }
    const n = readable.length;
    return {
      filter: { scopes: readable, keys, kind: "state" },
      note: `state events of the ${n === 1 ? "scope" : `${n} scopes`} this token may read`,
    };
  }

  filterForSubscribe() {
    return this.effective();
  }

  query() {
    const { scopes, keys, kind } = this.effective();
    const q = { kind };
    if (scopes.length) q.scopes = scopes;
    if (keys.length) q.keys = keys;
    return q;
  }

  // -- selection, keyboard, detail

  clicked(e) {
    const row = e.target.closest(".row");
    if (!row || !row._event) return;
    this.select(row._event.offset);
    this.viewport.focus({ preventScroll: true });
  }

  select(offset, { reveal = false } = {}) {
    this.selected = offset;
    if (reveal) {
      const index = lowerBound(this.rows, offset);
      const top = index * this.rowHeight;
      const v = this.viewport;
      if (top < v.scrollTop) v.scrollTop = top;
      else if (top + this.rowHeight > v.scrollTop + v.clientHeight) v.scrollTop = top + this.rowHeight - v.clientHeight;
    }
    if (!this.detail.hidden) this.openDetail();
    this.requestRender();
  }

  key(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const page = Math.max(1, Math.floor(this.viewport.clientHeight / this.rowHeight) - 1);
    const index = this.selected === null ? -1 : lowerBound(this.rows, this.selected);
    const move = (to) => {
      if (!this.rows.length) return;
      const i = Math.max(0, Math.min(this.rows.length - 1, to));
      this.select(this.rows[i].offset, { reveal: true });
    };
    switch (e.key) {
      case "ArrowDown":
        move(index < 0 ? this.firstVisible() : index + 1);
        break;
      case "ArrowUp":
        move(index < 0 ? this.lastVisible() : index - 1);
        break;
      case "PageDown":
        move(index < 0 ? this.firstVisible() + page : index + page);
        break;
      case "PageUp":
        move(index < 0 ? this.firstVisible() : index - page);
        break;
      case "Home":
        this.jumpTo(1);
        break;
      case "End":
        this.selected = null;
        this.showTail();
        break;
      case "Enter":
        this.openDetail();
        break;
      case "Escape":
        this.closeDetail();
        break;
      default:
        return;
    }
    e.preventDefault();
  }

  openDetail() {
    const index = this.selected === null ? -1 : lowerBound(this.rows, this.selected);
    const event = this.rows[index];
    if (!event || event.offset !== this.selected) return;
    this.detail.hidden = false;
    this.root.querySelector("#detail-title").textContent = `event ${event.offset}`;
    const facts = [
      ["offset", event.offset],
      ["time", fullTime(event.ts)],
      ["kind", event.kind],
      ["scope", event.scope],
      ["key", event.key],
      ["op", event.op],
      ["event type", event.event_type],
      ["version", event.version],
    ];
    for (const [name, value] of Object.entries(event.meta || {})) facts.push([`meta.${name}`, value]);
    const list = el("dl", { class: "kv" });
    for (const [name, value] of facts) list.append(el("dt", {}, name), el("dd", {}, String(value)));
    const blocks = [list];
    for (const [title, value] of [
      ["old value", event.old_value],
      ["new value", event.new_value],
    ]) {
      const pre = el("pre", { class: "json", tabindex: "0" });
      const whole = el("button", { type: "button" });
      showJson(pre, whole, value);
      blocks.push(el("h3", {}, title), pre, whole);
    }
    this.detailBody.replaceChildren(...blocks);
    this.requestRender();
  }

  closeDetail() {
    this.detail.hidden = true;
  }

  // -- status

  clearProblem() {
    this.errorText = null;
    this.statusLine.classList.remove("error");
  }

  updateStatus() {
    if (this.errorText) return; // the problem stays visible
    const parts = [];
    if (this.rows.length) {
      parts.push(`${this.rows.length.toLocaleString()} events loaded, offsets ${this.rows[0].offset}–${this.rows[this.rows.length - 1].offset}`);
    }
    if (this.paused) {
      const n = this.pendingCount();
      parts.push(n === null ? "paused · many new events" : `paused · ${n} new`);
    } else if (this.atTail) parts.push("following new events");
    else parts.push("browsing: press Latest (End) to follow");
    if (this.startComplete && this.rows.length) parts.push("start of the log");
    if (this.planned && this.planned.note) parts.push(this.planned.note);
    this.statusLine.textContent = parts.join(" · ");
    this.root.dataset.atTail = String(this.atTail);
  }

  /** Say what went wrong in the status line (kept there until the next successful start or page). */
  problem(err, what = "the log") {
    this.say(describeError(err, what));
  }

  say(text) {
    this.errorText = text;
    this.statusLine.textContent = text;
    this.statusLine.classList.add("error");
  }
}

/** May this tab read the events of `name` of this kind (`all`: both the state scope and the stream of that name)? */
function mayFollow(name, kind) {
  if (kind === "state") return access.mayRead(name);
  if (kind === "stream") return access.mayReadStream(name);
  return access.mayRead(name) && access.mayReadStream(name);
}

function quoted(names) {
  return names.map((n) => `“${n}”`).join(", ");
}

function capitalized(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Why a filter naming `refused` (scopes or streams this token may not read) asks nothing of the server. */
function refusalText(refused, kind) {
  const who = capitalized(tokenDescription());
  let what;
  if (kind === "state") what = `may not read scope${refused.length > 1 ? "s" : ""} ${quoted(refused)}`;
  else if (kind === "stream") what = `may not read stream${refused.length > 1 ? "s" : ""} ${quoted(refused)}`;
  else if (refused.every((name) => access.mayRead(name))) {
    what = `may not read the stream events of ${quoted(refused)}, which kind “all” includes: choose kind “state”`;
  } else what = `may not read ${quoted(refused)}`;
  return `${who} ${what}. Nothing was asked of the server.`;
}

/**
 * The (up to) `n` matching events just before offset `before`, oldest first, and whether they reach the log's start.
 * Without a filter the log is gapless, so one page does; with one, windows of the log below `before` are searched,
 * widened while they hold too few matches and narrowed when one page cannot reach `before`.
 */
export async function readBefore(before, n, filter) {
  const query = { kind: filter.kind };
  if (filter.scopes.length) query.scopes = filter.scopes;
  if (filter.keys.length) query.keys = filter.keys;
  if (before <= 1) return { events: [], complete: true };
  if (filter.kind === "all" && !filter.scopes.length && !filter.keys.length) {
    const after = Math.max(0, before - 1 - n);
    const page = await api.events({ after, limit: before - 1 - after, ...query });
    return { events: page.events.filter((e) => e.offset < before), complete: after === 0 };
  }
  let hi = before; // searching offsets below hi
  let span = n * 4;
  let found = [];
  for (let requests = 0; requests < 24 && hi > 1 && found.length < n; requests++) {
    const lo = Math.max(0, hi - 1 - span);
    const page = await api.events({ after: lo, limit: 1000, ...query });
    const below = page.events.filter((e) => e.offset < hi);
    if (below.length === page.events.length && page.events.length === 1000) {
      // dense: this page did not reach hi; narrow the window to about 2n matches' worth of offsets
      const covered = page.events[page.events.length - 1].offset - lo;
      span = Math.max(n, Math.floor((covered / 1000) * n * 2));
      continue;
    }
    found = below.concat(found);
    hi = lo + 1;
    span *= 4;
  }
  return { events: found.slice(-n), complete: hi <= 1 && found.length <= n };
}
