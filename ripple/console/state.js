// The state browser: scopes → keys → value with version and offset; a time slider over offsets (`?at=`); editing a
// value as JSON, sent with If-Match (a 412 shows the newer value). While it shows "now", the selected scope is
// followed live through a ripple.js subscription.
import { access, api, describeError, seesEverything, tokenDescription } from "./api.js";
import { el, fullTime, showJson } from "./util.js";

const KEYS_PAGE = 100;

export class StateBrowser {
  constructor(root) {
    this.root = root;
    this.$ = (id) => root.querySelector(`#${id}`);
    this.at = null; // null: now; a number: the state as of that offset
    this.head = 0;
    this.earliest = 0;
    this.scopes = [];
    this.scope = null;
    this.keys = []; // [{key, value, version, offset}] of the selected scope, first-insertion order
    this.nextCursor = null;
    this.key = null;
    this.editing = false;
    this.baseOffset = null; // the offset the edit is based on: sent as If-Match
    this.sub = null;
    this.reads = 0; // bumps on every read: older answers are dropped
    this.sliderTimer = null;

    this.$("scope-filter").addEventListener("input", () => this.renderScopes());
    this.$("key-filter").addEventListener("input", () => this.renderKeys());
    this.$("keys-more").addEventListener("click", () => this.loadKeys(false));
    this.$("edit-button").addEventListener("click", () => this.startEdit());
    this.$("edit-cancel").addEventListener("click", () => this.stopEdit());
    this.$("edit-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
    const range = this.$("at-range");
    range.addEventListener("input", () => this.slid(Number(range.value), true));
    range.addEventListener("change", () => this.slid(Number(range.value), false));
    this.$("at-number").addEventListener("change", (e) => this.slid(Number(e.target.value), false));
    this.$("at-now").addEventListener("click", () => this.setAt(null));
    for (const id of ["scope-list", "key-list"]) {
      this.$(id).addEventListener("keydown", (e) => this.listKey(e, id));
    }
  }

  // -- time

  /** Called with each health poll and live event: the slider's range follows the log. */
  setHead(head, earliest) {
    if (head > this.head) this.head = head;
    if (earliest !== undefined) this.earliest = earliest;
    const range = this.$("at-range");
    range.min = "0";
    range.max = String(this.head);
    this.$("at-number").max = String(this.head);
    if (this.at === null) {
      range.value = String(this.head);
      this.$("at-number").value = String(this.head);
    }
  }

  slid(offset, live) {
    clearTimeout(this.sliderTimer);
    if (!Number.isSafeInteger(offset) || offset < 0) return;
    const apply = () => this.setAt(offset >= this.head ? null : offset);
    if (live) this.sliderTimer = setTimeout(apply, 120);
    else apply();
  }

  async setAt(at) {
    if (at === this.at) return;
    this.at = at;
    if (this.editing) this.stopEdit();
    this.root.classList.toggle("past", at !== null);
    this.$("at-range").value = String(at ?? this.head);
    this.$("at-number").value = String(at ?? this.head);
    const label = this.$("at-label");
    if (at === null) label.textContent = "now (following new writes)";
    else {
      label.textContent = `as of offset ${at} (read-only)`;
      this.timeOf(at).then((ts) => {
        if (this.at === at && ts) label.textContent = `as of offset ${at}, ${fullTime(ts)} (read-only)`;
      });
    }
    if (this.scope !== null) await this.selectScope(this.scope, { keepKey: true });
  }

  async timeOf(offset) {
    if (offset < 1) return null;
    // The whole log is an admin's: another token asks among the scopes it may read (the time shows when it can).
    const among = seesEverything() ? {} : { scopes: access.readable, kind: "state" };
    if (among.scopes && !among.scopes.length) return null;
    try {
      const page = await api.events({ after: offset - 1, limit: 1, ...among });
      return page.events.length && page.events[0].offset === offset ? page.events[0].ts : null;
    } catch {
      return null;
    }
  }

  // -- scopes

  async show() {
    try {
      this.scopes = await api.scopes(); // under --auth: only the scopes this tab's token may read
      this.renderScopes();
      this.$("value-notice").hidden = true;
    } catch (err) {
      this.notice(describeError(err, "the list of scopes"));
    }
  }

  /** Replace a list's items, keeping keyboard focus on the item of the same name. */
  fill(list, items) {
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.name : undefined;
    list.replaceChildren(...items);
    if (focused !== undefined) {
      const again = items.find((li) => li.dataset.name === focused);
      if (again) again.focus();
    }
  }

  renderScopes() {
    const filter = this.$("scope-filter").value.trim().toLowerCase();
    const list = this.$("scope-list");
    const shown = this.scopes.filter((s) => s.toLowerCase().includes(filter));
    this.fill(list,
      shown.map((scope) =>
        el("li", {
          role: "option",
          tabindex: "-1",
          "aria-selected": String(scope === this.scope),
          dataset: { name: scope },
          title: access.mayWrite(scope) ? null : `${scope} · read-only for this token`,
          onclick: () => this.selectScope(scope),
        }, access.mayWrite(scope) ? null : el("span", { class: "meta" }, "read-only"), scope),
      ),
    );
    if (!shown.length) {
      const none = seesEverything() ? "no scopes yet" : "no scope this token may read holds keys yet";
      list.append(el("li", { class: "empty" }, this.scopes.length ? "no match" : none));
    }
  }

  async selectScope(scope, { keepKey = false } = {}) {
    const changed = scope !== this.scope;
    this.scope = scope;
    if (!keepKey || changed) this.key = null;
    this.$("keys-title").textContent = `Keys of ${scope}`;
    this.renderScopes();
    this.follow();
    await this.loadKeys(true);
  }

  /** Stop for good (the tab signed out). */
  stop() {
    this.reads++;
    if (this.sub) this.sub.close();
    this.sub = null;
  }

  /** While showing "now", a subscription on the selected scope keeps keys and value current. */
  follow() {
    if (this.sub) this.sub.close();
    this.sub = null;
    if (this.at !== null || this.scope === null) return;
    this.sub = api.subscribe({
      scopes: [this.scope],
      kind: "state",
      after: this.head,
      onEvent: (event) => this.changed(event),
      onError: (err) => this.notice(describeError(err, `scope “${this.scope}”`)),
    });
  }

  async loadKeys(fresh) {
    const read = ++this.reads;
    const scope = this.scope;
    try {
      const page = await api.list(scope, {
        limit: KEYS_PAGE,
        cursor: fresh ? undefined : this.nextCursor,
        at: this.at ?? undefined,
      });
      if (read !== this.reads) return;
      this.keys = fresh ? page.items : this.keys.concat(page.items);
      this.nextCursor = page.next_cursor;
      this.$("keys-more").hidden = !page.next_cursor;
      this.renderKeys();
      this.renderValue();
    } catch (err) {
      if (read === this.reads) this.notice(describeError(err, `scope “${scope}”`));
    }
  }

  renderKeys() {
    const filter = this.$("key-filter").value.trim().toLowerCase();
    const list = this.$("key-list");
    const shown = this.keys.filter((e) => e.key.toLowerCase().includes(filter));
    this.fill(list,
      shown.map((entry) =>
        el("li", {
          role: "option",
          tabindex: "-1",
          "aria-selected": String(entry.key === this.key),
          dataset: { name: entry.key },
          title: `${entry.key} · version ${entry.version} · offset ${entry.offset}`,
          onclick: () => this.selectKey(entry.key),
        }, el("span", { class: "meta" }, `v${entry.version}`), entry.key),
      ),
    );
    if (!shown.length) {
      const empty = this.at === null ? "no keys" : `no keys as of offset ${this.at}`;
      list.append(el("li", { class: "empty" }, this.keys.length ? "no match" : empty));
    }
  }

  selectKey(key) {
    if (this.editing) this.stopEdit();
    this.key = key;
    this.renderKeys();
    this.renderValue();
  }

  entry() {
    return this.keys.find((e) => e.key === this.key) || null;
  }

  renderValue() {
    const entry = this.entry();
    const view = this.$("value-view");
    const whole = this.$("value-whole");
    this.$("edit-button").disabled = !entry || this.at !== null;
    if (!entry) {
      this.$("value-title").textContent = "Value";
      this.$("value-meta").textContent = this.key ? `${this.key} does not exist${this.at === null ? "" : ` as of offset ${this.at}`}` : "";
      view.textContent = "";
      whole.hidden = true;
      return;
    }
    this.$("value-title").textContent = `${this.scope} / ${entry.key}`;
    this.$("value-meta").textContent = `version ${entry.version} · offset ${entry.offset}` +
      (this.at === null ? "" : ` · as of offset ${this.at}`) +
      (access.mayWrite(this.scope) ? "" : " · read-only for this token");
    view.dataset.offset = entry.offset;
    showJson(view, whole, entry.value);
  }

  /** A live event of the selected scope (only while showing "now"). */
  changed(event) {
    this.setHead(event.offset);
    const index = this.keys.findIndex((e) => e.key === event.key);
    if (index >= 0 && this.keys[index].offset >= event.offset) return; // the list was read after this event
    if (event.op === "delete") {
      if (index >= 0) this.keys.splice(index, 1);
    } else {
      const entry = { key: event.key, value: event.new_value, version: event.version, offset: event.offset };
      if (index >= 0) this.keys[index] = entry;
      else if (!this.nextCursor) this.keys.push(entry); // a new key goes last (first-insertion order)
    }
    this.renderKeys();
    if (event.key !== this.key) return;
    if (this.editing) {
      this.notice(`This key changed on the server (now offset ${event.offset}${event.op === "delete" ? ", deleted" : ""}). ` +
        "Saving will be refused and show you the newer value.");
    } else this.renderValue();
  }

  // -- editing

  /** Why this tab may not change the selected scope, or null: said before anything is sent. */
  writeRefusal() {
    if (access.mayWrite(this.scope)) return null;
    const who = tokenDescription();
    return `Editing is refused: ${who.charAt(0).toUpperCase()}${who.slice(1)} may read scope “${this.scope}” but ` +
      "not write it. Nothing was sent.";
  }

  startEdit() {
    const entry = this.entry();
    if (!entry || this.at !== null) return;
    const refusal = this.writeRefusal();
    if (refusal) {
      this.notice(refusal);
      return;
    }
    this.editing = true;
    this.baseOffset = entry.offset;
    this.$("edit-text").value = JSON.stringify(entry.value, null, 2);
    this.$("edit-message").textContent = "";
    this.$("edit-message").className = "message";
    this.$("edit-newer").hidden = true;
    this.$("edit-form").hidden = false;
    this.$("edit-form").parentElement.classList.add("editing");
    this.$("edit-button").disabled = true;
    this.$("edit-text").focus();
  }

  stopEdit() {
    this.editing = false;
    this.$("edit-form").hidden = true;
    this.$("edit-form").parentElement.classList.remove("editing");
    this.$("value-notice").hidden = true;
    this.renderValue();
  }

  async save() {
    const message = this.$("edit-message");
    message.className = "message";
    let value;
    try {
      value = JSON.parse(this.$("edit-text").value);
    } catch (err) {
      message.textContent = `Not valid JSON, nothing was sent: ${err.message}`;
      return;
    }
    if (value === null) {
      message.textContent = "A value cannot be null (delete the key instead); nothing was sent.";
      return;
    }
    const refusal = this.writeRefusal();
    if (refusal) {
      message.textContent = refusal;
      return;
    }
    const { scope, key } = this;
    try {
      const result = await api.set(scope, key, value, { expectedOffset: this.baseOffset });
      const index = this.keys.findIndex((e) => e.key === key);
      const entry = { key, value: result.new_value, version: result.version, offset: result.offset };
      if (index >= 0) this.keys[index] = entry;
      else this.keys.push(entry);
      this.stopEdit();
      this.renderKeys();
      this.notice(`Saved: version ${result.version}, offset ${result.offset}.`, "ok");
    } catch (err) {
      if (err.code === "precondition_failed") await this.showNewer(scope, key);
      else message.textContent = describeError(err, `scope “${scope}”`);
    }
  }

  /** After a 412: show the value that is there now, and base the next save on it (a second Save overwrites). */
  async showNewer(scope, key) {
    const current = await api.get(scope, key);
    const box = this.$("edit-newer");
    box.hidden = false;
    if (current === null) {
      this.baseOffset = 0;
      this.$("edit-newer-text").textContent =
        "Not saved: this key was deleted since you started editing. Save again to create it with your text.";
      this.$("edit-newer-value").textContent = "";
    } else {
      this.baseOffset = current.offset;
      this.$("edit-newer-text").textContent =
        `Not saved: someone changed this key since you started editing (it is now at offset ${current.offset}). ` +
        "The newer value is below; your text is still in the editor. Save again to replace the newer value.";
      showJson(this.$("edit-newer-value"), null, current.value);
    }
    this.$("edit-message").textContent = "Not saved (412: the value changed).";
  }

  notice(text, kind = "warn") {
    const box = this.$("value-notice");
    box.hidden = false;
    box.textContent = text;
    box.dataset.kind = kind;
  }

  // -- keyboard: arrows move through a list, Enter or Space picks

  listKey(e, id) {
    const list = this.$(id);
    const items = [...list.querySelectorAll("li[data-name]")];
    if (!items.length) return;
    const current = items.findIndex((li) => li === document.activeElement);
    let next = null;
    if (e.key === "ArrowDown") next = Math.min(items.length - 1, current + 1);
    else if (e.key === "ArrowUp") next = Math.max(0, current - 1);
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = items.length - 1;
    else if ((e.key === "Enter" || e.key === " ") && current >= 0) {
      e.preventDefault();
      const name = items[current].dataset.name;
      if (id === "scope-list") this.selectScope(name).then(() => this.$("key-list").focus());
      else this.selectKey(name);
      return;
    } else return;
    e.preventDefault();
    items[next].focus();
  }
}
