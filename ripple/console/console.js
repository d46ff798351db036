// The ripple console: sign-in (ripple serve --auth), tabs (Log, State, Health), the connection badge, the health
// poll. Under --auth nothing but GET /v1/whoami is asked of the server until a token is accepted, and a token the
// server stops accepting (revoked or expired while the page is open) signs the tab out, saying so.
import { client, UnauthorizedError } from "/ripple.js";
import { access, api, describeError, onAuthLost, saveToken, setAccess } from "./api.js";
import { HealthView } from "./health.js";
import { LogView } from "./log.js";
import { StateBrowser } from "./state.js";
import { splitList } from "./util.js";

const HEALTH_EVERY_MS = 2000;

const $ = (id) => document.getElementById(id);

const badgeText = {
  connecting: "connecting…",
  catching_up: "catching up…",
  live: "live · caught up",
  reconnecting: "reconnecting…",
  closed: "disconnected",
  idle: "not following",
  signed_out: "signed out",
};

let head = 0;
let lastContact = Date.now();

function showHead(offset) {
  if (offset > head) {
    head = offset;
    $("head").textContent = `head ${head.toLocaleString()}`;
    state.setHead(head);
  }
}

function banner(text, kind = "error") {
  const box = $("banner");
  box.hidden = !text;
  box.textContent = text || "";
  box.dataset.kind = kind;
}

function connectionChanged({ state: s, error }) {
  if (signedOut) return;
  const badge = $("conn");
  badge.dataset.state = s;
  badge.textContent = badgeText[s] || s;
  if (s === "live" || s === "catching_up") {
    lastContact = Date.now();
    banner(null);
  } else if (s === "reconnecting") {
    const since = new Date(lastContact).toLocaleTimeString();
    banner(`The server is not answering. Reconnecting… What you see is as of ${since}; ` +
      "the log resumes where it stopped, with nothing missing and nothing twice.");
    diagnose();
  } else if (s === "closed" && error && !(error instanceof UnauthorizedError)) {
    banner(`The live log stopped: ${describeError(error, "the log")}`);
  }
}

/** While the subscription cannot connect, ask REST why: a 401 (token revoked meanwhile) signs the tab out. */
async function diagnose() {
  try {
    await api.health();
  } catch (err) {
    if (err.status === 403) banner(describeError(err, "the log"));
  }
}

// -- views

const log = new LogView($("panel-log"), { onState: connectionChanged, onHead: showHead });
const state = new StateBrowser($("panel-state"));
const health = new HealthView($("panel-health"));

// -- tabs (arrow keys move between them, as in the ARIA tabs pattern)

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab, focus = true) {
  for (const t of tabs) {
    const selected = t === tab;
    t.setAttribute("aria-selected", String(selected));
    t.tabIndex = selected ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !selected;
  }
  if (focus) tab.focus();
  if (tab.id === "tab-state") state.show();
  if (tab.id === "tab-health") {
    if (health.health) health.update(health.health);
    health.refreshProjections();
  }
  if (tab.id === "tab-log") log.shown();
  history.replaceState(null, "", `#${tab.id.slice(4)}`);
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const i = tabs.indexOf(tab);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    selectTab(tabs[(to + tabs.length) % tabs.length]);
  });
}

// -- log toolbar

$("log-filter").addEventListener("submit", (e) => {
  e.preventDefault();
  log.setFilter({ scopes: splitList($("f-scope").value), keys: splitList($("f-key").value), kind: $("f-kind").value });
});
function jump() {
  const offset = Number($("f-jump").value);
  if (!Number.isSafeInteger(offset) || offset < 1) {
    $("f-jump").setAttribute("aria-invalid", "true");
    return;
  }
  $("f-jump").removeAttribute("aria-invalid");
  log.setPaused(true);
  log.jumpTo(Math.min(offset, Math.max(head, 1))); // beyond the head: the newest events
  log.viewport.focus({ preventScroll: true });
}
$("jump-button").addEventListener("click", jump);
$("f-jump").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    e.preventDefault();
    jump();
  }
});
$("pause-button").addEventListener("click", () => log.setPaused(!log.paused));
$("tail-button").addEventListener("click", () => {
  log.setPaused(false);
  log.selected = null;
  log.showTail();
});

// Shortcuts that do not steal typing: "/" filters, "p" pauses, "g" jumps (only outside text fields).
document.addEventListener("keydown", (e) => {
  const typing = e.target.closest("input, textarea, select, [contenteditable]");
  if (typing || e.altKey || e.ctrlKey || e.metaKey || $("panel-log").hidden) return;
  if (e.key === "/") $("f-scope").focus();
  else if (e.key === "p") log.setPaused(!log.paused);
  else if (e.key === "g") $("f-jump").focus();
  else return;
  e.preventDefault();
});

// A tab in the background gets no animation frames; back in view, it catches up without a hole.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && log.atTail && !log.paused && log.ringFrom > log.tailThrough) log.showTail();
});

// -- health poll

let pollTimer = null;

async function poll() {
  try {
    const h = await api.health();
    showHead(h.head);
    state.setHead(h.head, h.earliest);
    health.update(h);
    if (!$("panel-health").hidden) health.refreshProjections();
  } catch (err) {
    if (err.status === 403) banner(describeError(err, "the server's health"));
  } finally {
    if (!signedOut) pollTimer = setTimeout(poll, HEALTH_EVERY_MS);
  }
}

// -- signing in and out (ripple serve --auth)

let signedOut = false;

const WRONG_TOKEN = "it is wrong, expired or revoked";

/** Show the sign-in form instead of the views, with `reason` (why the tab is signed out) when there is one. */
function showLogin(reason = "") {
  signedOut = true;
  $("login").hidden = false;
  document.querySelector(".tabs").hidden = true;
  for (const t of tabs) $(t.getAttribute("aria-controls")).hidden = true;
  $("account").hidden = true;
  $("head").hidden = true;
  const badge = $("conn");
  badge.dataset.state = "signed_out";
  badge.textContent = badgeText.signed_out;
  banner(null);
  $("login-message").textContent = reason;
  $("login-token").focus();
}

/** The server refused the token while the console ran: stop every view and poll, forget the token, say why. */
function authLost(err) {
  clearTimeout(pollTimer);
  log.stop();
  state.stop();
  saveToken(null);
  const revoked = /revoked or expired/.test(err.message || "");
  showLogin(revoked
    ? "Signed out: the server ended this session because the token was revoked or has expired (it closed the live " +
      "log with code 1008). Sign in with another token."
    : `Signed out: the server no longer accepts this tab's token (${WRONG_TOKEN}). Sign in with another token.`);
}

function showAccount(me) {
  if (!me.auth) return;
  $("account").hidden = false;
  const who = $("who");
  who.textContent = me.admin ? `${me.name} · admin` : me.name;
  who.title = me.admin ? "an admin token: it may read and write everything"
    : `grants: ${[...me.scopes, ...me.streams.map((g) => `stream ${g}`)].join(", ") || "none"}`;
}

$("sign-out").addEventListener("click", () => {
  saveToken(null);
  location.reload(); // every view stops; the page asks for a token again
});

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("login-token");
  const token = input.value.trim();
  const message = $("login-message");
  if (!token) {
    message.textContent = "Paste a token made with “ripple token create”.";
    return;
  }
  $("login-submit").disabled = true;
  message.textContent = "Checking the token…";
  try {
    const me = await client({ token }).whoami();
    input.value = ""; // not left in the page
    if (me.auth) saveToken(token);
    location.reload(); // every view starts with the token (kept in sessionStorage, not in the URL)
  } catch (err) {
    message.textContent = err instanceof UnauthorizedError
      ? `The server refused this token: ${WRONG_TOKEN}. Nothing was kept.`
      : describeError(err, "the server");
  } finally {
    $("login-submit").disabled = false;
  }
});

// -- start

async function startLog() {
  try {
    await log.start();
  } catch (err) {
    if (signedOut) return;
    banner(`${describeError(err, "the log")} Trying again…`);
    setTimeout(startLog, 2000);
  }
}

/** Ask the server what this tab's token may do; sign in first where it requires a token; then start the views. */
async function main() {
  let me;
  try {
    me = await api.whoami();
  } catch (err) {
    if (err instanceof UnauthorizedError) {
      saveToken(null);
      showLogin(`The server refused the token this tab had kept: ${WRONG_TOKEN}. Sign in again.`);
    } else {
      banner(`${describeError(err, "the server")} Trying again…`);
      setTimeout(main, 2000);
    }
    return;
  }
  banner(null);
  if (me.auth && me.name === null) {
    showLogin();
    return;
  }
  setAccess(me);
  onAuthLost(authLost);
  showAccount(me);
  document.querySelector(".tabs").hidden = false;
  const initial = tabs.find((t) => `#${t.id.slice(4)}` === location.hash) || tabs[0];
  selectTab(initial, false);
  poll();
  startLog();
}

// For tests and the curious: the views and what the token may do, read-only.
window.rippleConsole = {
  log,
  state,
  health,
  get access() {
    return access;
  },
};

main();
