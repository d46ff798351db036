// The todo app as a page: one ripple.js subscription (a snapshot of the todos and their counters, then every change)
// keeps the list and the counters current in every open tab; writes go through ripple.js's REST helper with the
// todo's last offset as If-Match, so a change made meanwhile in another tab is never overwritten unseen.
//
// Under `ripple serve --auth` the page asks for a token first (kept in this tab's sessionStorage, shared with the
// console), shows only what the token may read, disables what it may not change, and signs out, saying why, when
// the server stops accepting the token (revoked or expired while the page is open).
import { client, ForbiddenError, UnauthorizedError } from "/ripple.js";

const SCOPE = "todos";
const COUNTERS = ["todo-metrics", "global"];
const MAX_TITLE = 500;
const TOKEN_KEY = "ripple.console.token"; // the console's: one sign-in per tab for both pages
const WRONG_TOKEN = "it is wrong, expired or revoked";

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

function keepToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts until the page is reloaded
  }
}

const api = client({ token: storedToken() });
const todos = new Map(); // id -> {value, offset}
let counters = { total: 0, completed: 0, active: 0 };
let editing = null; // id of the todo being edited
let access = null; // what the token may do (ripple.js Access, from GET /v1/whoami)
let sub = null;

const $ = (id) => document.getElementById(id);

function say(text) {
  $("message").textContent = text || "";
}

function explain(err) {
  if (err instanceof UnauthorizedError) return `The server refused this tab's token: ${WRONG_TOKEN}.`;
  if (err instanceof ForbiddenError) return `Refused (403): ${err.message}.`;
  if (err.code === "unreachable") return "The server is not answering; try again in a moment.";
  return err.message;
}

/** May this tab change the todos? If not, say so (nothing is sent). */
function mayChange() {
  if (access.mayWrite(SCOPE)) return true;
  say(`Read-only: token “${access.name}” may see the todos but not change them. Nothing was sent.`);
  return false;
}

/** A write failed: a refused token signs the tab out; anything else is said. */
function failed(err, text = explain(err)) {
  if (err instanceof UnauthorizedError) signOut(err);
  else say(text);
}

/** A new id like the example's API makes (hex), from crypto.getRandomValues (available without HTTPS too). */
function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- live state

const latest = new Map(); // "scope/key" -> the newest offset applied (write results can run ahead of the events)

function apply(scope, key, value, offset) {
  const id = `${scope}/${key}`;
  if ((latest.get(id) ?? -1) >= offset) return;
  latest.set(id, offset);
  if (scope === COUNTERS[0] && key === COUNTERS[1]) {
    counters = { total: 0, completed: 0, active: 0, ...(value || {}) };
    return;
  }
  if (scope !== SCOPE) return;
  if (value === null) todos.delete(key);
  else todos.set(key, { value, offset });
}

function showState(state) {
  const conn = $("conn");
  conn.dataset.state = state;
  conn.textContent = {
    live: "live",
    catching_up: "catching up…",
    reconnecting: "reconnecting…",
    signed_out: "signed out",
  }[state] || state;
}

/** Follow the todos (and the counters, where the token may read them): a snapshot, then every change. */
function follow() {
  const scopes = [SCOPE, COUNTERS[0]].filter((scope) => access.mayRead(scope));
  if (!scopes.includes(SCOPE)) {
    say(`Token “${access.name}” may not read the todos.`);
    return;
  }
  if (!scopes.includes(COUNTERS[0])) $("counters").hidden = true; // its grants do not reach the counters
  sub = api.subscribe({
    scopes,
    snapshot: true,
    onSnapshot: (snapshot) => {
      todos.clear();
      latest.clear();
      for (const item of snapshot.items) apply(item.scope, item.key, item.value, item.offset);
      render();
    },
    onEvent: (event) => {
      apply(event.scope, event.key, event.op === "delete" ? null : event.new_value, event.offset);
      render();
    },
    onState: ({ state }) => showState(state),
    onError: (err) => failed(err),
  });
  window.todoApp.sub = sub;
}

window.todoApp = { todos, sub: null, get access() { return access; } }; // for tests

// -- signing in and out (ripple serve --auth)

function showLogin(reason = "") {
  $("todo-app").hidden = true;
  $("account").hidden = true;
  $("login").hidden = false;
  $("login-message").textContent = reason;
  showState("signed_out");
  $("login-token").focus();
}

/** The server stopped accepting the token (revoked or expired while the page is open): stop, forget it, say why. */
function signOut(err) {
  if (sub) sub.close();
  sub = null;
  keepToken(null);
  showLogin(/revoked or expired/.test(err.message)
    ? "Signed out: the token was revoked or has expired (the server closed the live list). Sign in with another token."
    : `Signed out: the server no longer accepts this tab's token (${WRONG_TOKEN}).`);
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("login-token");
  const token = input.value.trim();
  $("login-submit").disabled = true;
  try {
    const me = await client({ token }).whoami();
    input.value = "";
    if (me.auth) keepToken(token);
    location.reload(); // start again with the token
  } catch (err) {
    $("login-message").textContent = err instanceof UnauthorizedError
      ? `The server refused this token: ${WRONG_TOKEN}. Nothing was kept.`
      : explain(err);
  } finally {
    $("login-submit").disabled = false;
  }
});

$("sign-out").addEventListener("click", () => {
  keepToken(null);
  location.reload();
});

/** A token that may read but not write the todos sees them with every control disabled, and is told why. */
function applyAccess() {
  if (access.auth) {
    $("account").hidden = false;
    $("who").textContent = access.name;
  }
  const readOnly = !access.mayWrite(SCOPE);
  $("new-title").disabled = readOnly;
  $("add-button").disabled = readOnly;
  $("mode").hidden = !readOnly;
  $("mode").textContent = readOnly ? `Read-only: token “${access.name}” may see the todos but not change them.` : "";
}

async function main() {
  try {
    access = await api.whoami();
  } catch (err) {
    if (err instanceof UnauthorizedError) {
      keepToken(null);
      showLogin(`The server refused the token this tab had kept: ${WRONG_TOKEN}.`);
    } else {
      say(explain(err));
      setTimeout(main, 2000);
    }
    return;
  }
  if (access.auth && access.name === null) {
    showLogin();
    return;
  }
  $("todo-app").hidden = false;
  applyAccess();
  follow();
}

// -- rendering (keyed by id: a row being edited is left alone)

function sorted() {
  return [...todos.entries()].sort(([a, x], [b, y]) =>
    String(x.value.created_at).localeCompare(String(y.value.created_at)) || a.localeCompare(b));
}

function render() {
  const list = $("list");
  const rows = new Map([...list.children].map((li) => [li.dataset.id, li]));
  let previous = null;
  for (const [id, todo] of sorted()) {
    let li = rows.get(id);
    rows.delete(id);
    if (!li) li = makeRow(id);
    if (id !== editing) fillRow(li, todo);
    const expected = previous ? previous.nextSibling : list.firstChild;
    if (li !== expected) list.insertBefore(li, expected);
    previous = li;
  }
  for (const li of rows.values()) li.remove();
  $("c-total").textContent = counters.total;
  $("c-active").textContent = counters.active;
  $("c-completed").textContent = counters.completed;
}

function makeRow(id) {
  const li = document.createElement("li");
  li.className = "todo";
  li.dataset.id = id;
  const box = document.createElement("input");
  box.type = "checkbox";
  box.addEventListener("change", () => toggle(id, box));
  const title = document.createElement("span");
  title.className = "title";
  title.addEventListener("dblclick", () => startEdit(id, li));
  const edit = document.createElement("button");
  edit.type = "button";
  edit.textContent = "Edit";
  edit.className = "edit-button";
  edit.addEventListener("click", () => startEdit(id, li));
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Delete";
  remove.className = "delete-button";
  remove.addEventListener("click", () => removeTodo(id));
  li.append(box, title, edit, remove);
  return li;
}

function fillRow(li, { value }) {
  const [box, title, edit, remove] = li.children;
  const readOnly = !access.mayWrite(SCOPE);
  box.disabled = edit.disabled = remove.disabled = readOnly;
  li.classList.toggle("completed", value.completed === true);
  box.checked = value.completed === true;
  box.setAttribute("aria-label", `Done: ${value.title}`);
  title.textContent = value.title;
  edit.setAttribute("aria-label", `Edit ${value.title}`);
  remove.setAttribute("aria-label", `Delete ${value.title}`);
}

// -- writes

function checkTitle(text) {
  const title = text.trim();
  if (!title || title.length > MAX_TITLE) {
    say(`A title has 1 to ${MAX_TITLE} characters.`);
    return null;
  }
  return title;
}

$("new-todo").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!mayChange()) return;
  const title = checkTitle($("new-title").value);
  if (title === null) return;
  const id = newId();
  const todo = { id, title, completed: false, created_at: new Date().toISOString() };
  $("new-title").value = ""; // at once: what is typed next is the next todo
  try {
    await api.set(SCOPE, id, todo, { expectedOffset: 0 });
    say("");
  } catch (err) {
    if (!$("new-title").value) $("new-title").value = title; // not added: give the text back
    failed(err);
  }
});

/** Flip `completed` from the latest known state; a concurrent change elsewhere (412) is read again and retried. */
async function toggle(id, box) {
  if (!mayChange()) {
    box.checked = Boolean(todos.get(id)?.value.completed);
    return;
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    const todo = todos.get(id);
    if (!todo) return;
    try {
      const ops = [{ type: "set", path: "completed", value: !todo.value.completed }];
      const result = await api.update(SCOPE, id, ops, { expectedOffset: todo.offset });
      apply(SCOPE, id, result.new_value, result.offset);
      render();
      say("");
      return;
    } catch (err) {
      if (err.code !== "precondition_failed") {
        failed(err);
        break;
      }
      const now = await api.get(SCOPE, id);
      if (now === null) break; // deleted meanwhile: its delete event removes it
      apply(SCOPE, id, now.value, now.offset);
    }
  }
  render();
  box.checked = Boolean(todos.get(id)?.value.completed);
}

function startEdit(id, li) {
  const todo = todos.get(id);
  if (!todo || editing === id || !mayChange()) return;
  editing = id;
  const title = li.querySelector(".title");
  const input = document.createElement("input");
  input.className = "edit";
  input.value = todo.value.title;
  input.maxLength = MAX_TITLE;
  input.setAttribute("aria-label", "Edit title");
  const base = todo.offset;
  const finish = async (save) => {
    if (editing !== id) return;
    if (save) {
      const text = checkTitle(input.value);
      if (text === null) return;
      if (text !== todo.value.title) {
        try {
          const result = await api.update(SCOPE, id, [{ type: "set", path: "title", value: text }], {
            expectedOffset: base,
          });
          apply(SCOPE, id, result.new_value, result.offset);
          say("");
        } catch (err) {
          failed(err, err.code === "precondition_failed"
            ? "This todo was changed in another tab meanwhile: its newer title is shown; edit again if you wish."
            : explain(err));
        }
      }
    }
    editing = null;
    input.replaceWith(title);
    render();
    li.querySelector(".edit-button").focus();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    else if (e.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  title.replaceWith(input);
  input.focus();
  input.select();
}

async function removeTodo(id) {
  const todo = todos.get(id);
  if (!todo || !mayChange()) return;
  try {
    await api.delete(SCOPE, id, { expectedOffset: todo.offset });
    say("");
  } catch (err) {
    failed(err, err.code === "precondition_failed"
      ? "This todo was changed in another tab meanwhile; look again before deleting it."
      : explain(err));
  }
}

main();
