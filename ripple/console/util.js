// Small helpers shared by the console's views. Values from the server are always shown as text, never as markup.

/** Create an element: el("span", {class: "x", title: "y"}, "text", child...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** HH:MM:SS.mmm in local time. */
export function clock(ts) {
  const d = new Date(ts);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** The full local date and time with the zone offset. */
export function fullTime(ts) {
  const d = new Date(ts);
  return `${d.toLocaleDateString()} ${clock(ts)} (${d.toISOString()})`;
}

/**
 * A one-line preview of a JSON value, at most `max` characters, built without stringifying the whole value (a row
 * of the log may hold a 1 MiB value).
 */
export function preview(value, max = 80) {
  let text = "";
  let cut = false;
  const put = (s) => {
    if (text.length + s.length > max) {
      text += s.slice(0, max - text.length);
      cut = true;
      return false;
    }
    text += s;
    return true;
  };
  const walk = (v) => {
    if (typeof v === "string") return put(JSON.stringify(v.length > max ? v.slice(0, max) : v));
    if (v === null || typeof v !== "object") return put(String(JSON.stringify(v) ?? v));
    if (Array.isArray(v)) {
      if (!put("[")) return false;
      for (let i = 0; i < v.length; i++) if ((i && !put(",")) || !walk(v[i])) return false;
      return put("]");
    }
    if (!put("{")) return false;
    let first = true;
    for (const k in v) {
      if ((!first && !put(",")) || !put(JSON.stringify(k) + ":") || !walk(v[k])) return false;
      first = false;
    }
    return put("}");
  };
  walk(value);
  return cut ? text.slice(0, max - 1) + "…" : text;
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function sameJson(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** What an event changed, on one line: `title: "a" → "b"  +done: true  -tags` for objects, `old → new` otherwise. */
export function summarize(event, max = 160) {
  if (event._summary !== undefined) return event._summary;
  let text;
  const o = event.old_value;
  const n = event.new_value;
  if (event.kind === "stream") text = `${event.event_type}: ${preview(n, max)}`;
  else if (event.op === "delete") text = `${preview(o, 60)} → ∅`;
  else if (o === null || o === undefined) text = preview(n, max);
  else if (isObject(o) && isObject(n)) {
    const parts = [];
    let room = max;
    for (const k of new Set([...Object.keys(o), ...Object.keys(n)])) {
      if (room <= 0) break;
      let part = null;
      if (!(k in o)) part = `+${k}: ${preview(n[k], 40)}`;
      else if (!(k in n)) part = `-${k}`;
      else if (!sameJson(o[k], n[k])) part = `${k}: ${preview(o[k], 30)} → ${preview(n[k], 30)}`;
      if (part) {
        parts.push(part);
        room -= part.length + 2;
      }
    }
    text = parts.length ? parts.join("  ") : "(same value)";
  } else text = `${preview(o, 50)} → ${preview(n, 80)}`;
  event._summary = text.length > max ? text.slice(0, max - 1) + "…" : text;
  return event._summary;
}

export const SHOW_LIMIT = 100_000; // characters of JSON shown before "show the whole value"

/** Pretty JSON for a <pre>; cut at `limit` characters. Returns {text, whole, truncated, size}. */
export function prettyJson(value, limit = SHOW_LIMIT) {
  const whole = JSON.stringify(value, null, 2) ?? "undefined";
  if (whole.length <= limit) return { text: whole, whole, truncated: false, size: whole.length };
  return { text: whole.slice(0, limit) + "\n…", whole, truncated: true, size: whole.length };
}

export function formatSize(chars) {
  if (chars < 1024) return `${chars} characters`;
  if (chars < 1024 * 1024) return `${(chars / 1024).toFixed(1)} KB`;
  return `${(chars / 1024 / 1024).toFixed(1)} MB`;
}

/**
 * Show a value in a <pre>, truncated when too large, with `button` ("show the whole value") revealing all of it.
 */
export function showJson(pre, button, value) {
  const shown = prettyJson(value);
  pre.textContent = shown.text;
  if (!button) return shown;
  button.hidden = !shown.truncated;
  if (shown.truncated) {
    button.textContent = `Show the whole value (${formatSize(shown.size)})`;
    button.onclick = () => {
      pre.textContent = shown.whole;
      button.hidden = true;
    };
  }
  return shown;
}

/** Index of the first row whose offset is >= `offset` (rows sorted by offset). */
export function lowerBound(rows, offset) {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rows[mid].offset < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Parse "a, b ,c" into ["a", "b", "c"]. */
export function splitList(text) {
  return text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}
