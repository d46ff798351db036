// Projections and health: the server's status and counters (GET /v1/health), events per second over the last
// minutes as a small chart (from the head's growth between polls), and each projection's status, checkpoint, lag and
// data.
import { api, describeError, listProjections, seesEverything, tokenDescription, watchProjection } from "./api.js";
import { el, showJson } from "./util.js";

const WINDOW_MS = 5 * 60 * 1000; // the chart's span

const COUNTER_LABELS = {
  subscriber_overflows: "subscriber overflows (caught up from the log)",
  reaction_failures: "reaction failures",
  reaction_overflows: "reaction overflows (read from the log)",
  refused_cascades: "refused cascades (depth limit)",
  queue_depth: "writer queue depth",
  commits: "commits (group commits)",
};

export class HealthView {
  constructor(root) {
    this.root = root;
    this.samples = []; // [{t, head}]
    this.canvas = root.querySelector("#rate-chart");
    this.caption = root.querySelector("#rate-caption");
    this.projectionsBox = root.querySelector("#projections");
    this.refreshing = false;
    root.querySelector("#projection-add").addEventListener("submit", (e) => {
      e.preventDefault();
      const input = root.querySelector("#projection-name");
      const name = input.value.trim();
      if (!name) return;
      watchProjection(name);
      input.value = "";
      this.refreshProjections();
    });
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  /** One health answer (every poll, visible or not, so the chart has no holes). */
  update(health) {
    const now = performance.now();
    this.samples.push({ t: now, head: health.head });
    while (this.samples.length > 2 && now - this.samples[0].t > WINDOW_MS) this.samples.shift();
    this.health = health;
    if (!this.root.hidden) {
      this.renderCards(health);
      this.renderReasons(health.reasons || []);
      this.renderCounters(health.counters || {});
      this.draw();
    }
  }

  /** Why the server is degraded (an admin's token sees the whole reason, another token only its code). */
  renderReasons(reasons) {
    const box = this.root.querySelector("#health-reasons");
    box.hidden = !reasons.length;
    box.textContent = reasons.length ? `Degraded: ${reasons.join("; ")}` : "";
  }

  renderCards(h) {
    const card = (label, value, cls = "") =>
      el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: `value ${cls}` }, value));
    this.root.querySelector("#health-cards").replaceChildren(
      card("status", h.status, h.status === "ok" ? "ok" : "bad"),
      card("head", h.head.toLocaleString()),
      card("earliest", h.earliest.toLocaleString()),
      card("events/s now", this.rates().at(-1)?.rate.toFixed(1) ?? "–"),
      card("schema", h.schema_version),
      card("server", h.version),
    );
  }

  renderCounters(counters) {
    const note = this.root.querySelector("#counters-note");
    note.hidden = seesEverything();
    if (!seesEverything()) {
      note.textContent = `Only an admin's token sees the server's counters (subscribers, reactions, the writer's ` +
        `queue); this tab's ${tokenDescription()} is not one.`;
    }
    const rows = Object.keys(counters)
      .sort()
      .map((name) =>
        el("tr", {}, el("td", {}, COUNTER_LABELS[name] || name.replaceAll("_", " ")),
          el("td", { class: "num" }, counters[name].toLocaleString())),
      );
    this.root.querySelector("#counters tbody").replaceChildren(...rows);
  }

  rates() {
    const out = [];
    for (let i = 1; i < this.samples.length; i++) {
      const a = this.samples[i - 1];
      const b = this.samples[i];
      const seconds = (b.t - a.t) / 1000;
      if (seconds > 0) out.push({ t: b.t, rate: Math.max(0, b.head - a.head) / seconds });
    }
    return out;
  }

  draw() {
    const canvas = this.canvas;
    if (this.root.hidden || !canvas.clientWidth) return;
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    const rates = this.rates();
    const peak = Math.max(1, ...rates.map((r) => r.rate));
    const now = performance.now();
    const x = (t) => width - ((now - t) / WINDOW_MS) * width;
    const y = (rate) => height - 14 - (rate / peak) * (height - 24);
    g.strokeStyle = style.getPropertyValue("--line");
    g.beginPath();
    g.moveTo(0, height - 14);
    g.lineTo(width, height - 14);
    g.stroke();
    g.fillStyle = style.getPropertyValue("--muted");
    g.font = "11px system-ui, sans-serif";
    g.fillText(`${Math.round(peak).toLocaleString()}/s`, 4, 11);
    g.fillText("5 min ago", 4, height - 2);
    g.fillText("now", width - 24, height - 2);
    if (rates.length) {
      g.strokeStyle = style.getPropertyValue("--accent");
      g.lineWidth = 1.5;
      g.beginPath();
      rates.forEach((r, i) => (i ? g.lineTo(x(r.t), y(r.rate)) : g.moveTo(x(r.t), y(r.rate))));
      g.stroke();
    }
    const current = rates.at(-1)?.rate ?? 0;
    this.caption.textContent = rates.length
      ? `now ${current.toFixed(1)} events/s · peak ${peak.toFixed(1)}/s since this page opened (last 5 minutes)`
      : "measuring…";
  }

  async refreshProjections() {
    const note = this.root.querySelector("#projections-note");
    note.hidden = seesEverything();
    if (!seesEverything()) {
      // GET /v1/projections is an admin's: say so instead of asking for a 403.
      note.textContent = `Projections (status, checkpoint, lag and data) are shown to an admin's token only; this ` +
        `tab's ${tokenDescription()} is not one. Its scopes are in the State tab.`;
      this.root.querySelector("#projection-add").hidden = true;
      this.projectionsBox.replaceChildren();
      return;
    }
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const { listed, names, items } = await listProjections();
      const listing = new Map(items.map((item) => [item.name, item]));
      const states = await Promise.all(
        names.map((name) => api.projection(name).then((p) => ({ name, p }), (err) => ({ name, err }))),
      );
      const head = this.health ? this.health.head : null;
      const cards = states.map(({ name, p, err }) => this.projectionCard(name, p, err, head, listing.get(name)));
      if (!listed) {
        cards.push(el("p", { class: "muted" },
          "This server does not list its projections: the built-in ones and the names you add are shown."));
      }
      this.root.querySelector("#projection-add").hidden = listed;
      this.projectionsBox.replaceChildren(...cards);
    } catch (err) {
      this.projectionsBox.replaceChildren(el("p", { class: "message" }, describeError(err, "the projections")));
    } finally {
      this.refreshing = false;
    }
  }

  projectionCard(name, p, err, head, listed) {
    if (err) {
      const text = err.status === 404 ? "no projection of this name" : describeError(err, `projection “${name}”`);
      const status = listed ? listed.status : err.code === "projection_rebuilding" ? "rebuilding" : "unavailable";
      const facts = listed
        ? el("dl", { class: "kv" },
          el("dt", {}, "version"), el("dd", {}, String(listed.version)),
          el("dt", {}, "checkpoint"), el("dd", {}, String(listed.checkpoint)),
          el("dt", {}, "lag"), el("dd", {}, `${listed.lag} events`))
        : null;
      return el("div", { class: "projection", dataset: { name } }, el("strong", {}, name), " ",
        el("span", { class: `status-${status}` }, status), facts, el("div", { class: "muted" }, text));
    }
    const lag = listed?.lag ?? p.lag ?? (head !== null ? Math.max(0, head - p.checkpoint) : null);
    const data = el("pre", { class: "json" });
    const whole = el("button", { type: "button" });
    showJson(data, whole, p.data ?? null);
    return el("div", { class: "projection", dataset: { name } },
      el("strong", {}, name), " ", el("span", { class: `status-${p.status}` }, p.status),
      el("dl", { class: "kv" },
        el("dt", {}, "version"), el("dd", {}, String(p.version)),
        el("dt", {}, "checkpoint"), el("dd", {}, String(p.checkpoint)),
        el("dt", {}, "lag"), el("dd", {}, lag === null ? "–" : `${lag} events`),
        p.error ? el("dt", {}, "error") : null, p.error ? el("dd", {}, `${p.error} (at offset ${p.failed_at})`) : null),
      data, whole);
  }
}
