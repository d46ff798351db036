// The ripple console: tabs (Log, State, Health), the connection badge, the token dialog, the health poll.
import { api, currentToken, describeError, saveToken } from "./api.js";
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
  } else if (s === "closed" && error) {
    banner(`The live log stopped: ${describeError(error, "the log")}`);
  }
}

/** While the subscription cannot connect, ask REST why: a 401/403 deserves a clearer word than "reconnecting". */
async function diagnose() {
  try {
    await api.health();
  } catch (err) {
    if (err.status === 401 || err.status === 403) banner(describeError(err, "the log"));
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

// -- token

$("token-button").addEventListener("click", () => {
  $("token-input").value = currentToken() || "";
  $("token-dialog").showModal();
});
$("token-dialog").addEventListener("close", () => {
  const choice = $("token-dialog").returnValue;
  if (choice === "save") saveToken($("token-input").value.trim());
  else if (choice === "clear") saveToken(null);
  else return;
  $("token-input").value = "";
  location.reload(); // every view starts again with the new token (kept in sessionStorage, not in the URL)
});
$("token-button").textContent = currentToken() ? "Token ✓" : "Token";

// -- health poll

async function poll() {
  try {
    const h = await api.health();
    showHead(h.head);
    state.setHead(h.head, h.earliest);
    health.update(h);
    if (!$("panel-health").hidden) health.refreshProjections();
  } catch (err) {
    if (err.status === 401 || err.status === 403) banner(describeError(err, "the server's health"));
  } finally {
    setTimeout(poll, HEALTH_EVERY_MS);
  }
}

// -- start

async function startLog() {
  try {
    await log.start();
  } catch (err) {
    banner(`${describeError(err, "the log")} Trying again…`);
    setTimeout(startLog, 2000);
  }
}

function main() {
  const initial = tabs.find((t) => `#${t.id.slice(4)}` === location.hash) || tabs[0];
  selectTab(initial, false);
  poll();
  startLog();
}

// For tests and the curious: the views, read-only.
window.rippleConsole = { log, state, health };

main();
