// Overview: every instance as a tile coloured by its state, and the last hour in figures.
import { get } from "../lib/api.js";
import { ago, h, meter, ms, num, pct, replace, sparkline, usd } from "../lib/dom.js";
import { chips, header } from "../lib/ui.js";

function totals(points) {
  const t = { requests: 0, errors: 0, tokens: 0, cost: 0, ttftSum: 0, ttftN: 0 };
  for (const p of points) {
    t.requests += p.requests; t.errors += p.errors; t.tokens += p.total_tokens; t.cost += p.cost_usd;
    if (p.ttft_avg_ms !== null) { t.ttftSum += p.ttft_avg_ms * p.requests; t.ttftN += p.requests; }
  }
  return t;
}

function byMinute(points, key) {
  const step = 60_000;
  const end = Math.floor(Date.now() / step) * step;
  const slots = new Map(points.map((p) => [Date.parse(p.t), p]));
  const out = [];
  for (let t = end - 59 * step; t <= end; t += step) out.push(slots.has(t) ? key(slots.get(t)) : 0);
  return out;
}

function stat(label, value, spark) {
  return h("div", { class: "stat" }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value), spark);
}

// Models marked failed on this instance (the model level of health; the instance serves the rest).
function failedModels(d) {
  return Object.entries(d.models || {}).filter(([, m]) => m.state === "ejected").map(([name]) => name).sort();
}

function tile(d) {
  const cap = d.max_parallel;
  return h("article", { class: `tile ${d.state}`, "aria-label": `${d.name}: ${d.state}` },
    h("header", {}, h("h3", {}, d.name), h("span", { class: `badge ${d.state}` }, d.state)),
    h("p", { class: "muted" }, d.type, d.base_url ? ` · ${d.base_url}` : ""),
    h("div", { class: "tile-row" },
      h("span", {}, `in flight ${d.in_flight}${cap ? ` / ${cap}` : ""}`),
      cap ? meter(d.in_flight, cap, `${d.name} in flight`) : null),
    h("p", { class: "muted" }, `checked ${ago(d.last_check)}`, d.check_latency_ms !== null ? ` · ${ms(d.check_latency_ms)}` : ""),
    d.loaded_models.length ? h("div", { class: "tile-row" }, h("span", { class: "muted" }, "loaded:"), chips(d.loaded_models)) : h("p", { class: "muted" }, "no model loaded"),
    failedModels(d).length ? h("p", { class: "error-text", "data-testid": "tile-model-health" }, `model failed here: ${failedModels(d).join(", ")}`) : null,
    d.last_error && d.state !== "healthy" ? h("p", { class: "error-text" }, d.last_error) : null);
}

export default async function overview(main) {
  const stats = h("section", { class: "stats", "aria-label": "The last hour" });
  const tiles = h("section", { class: "tiles", "aria-label": "Instances" });
  replace(main,
    header("Overview", "The fleet at a glance. Figures cover the last hour; they refresh every few seconds."),
    h("h2", {}, "Last hour"), stats, h("h2", {}, "Instances"), tiles);

  async function refresh(background = false) {
    const opts = { background };
    const [health, series, summary] = await Promise.all([
      get("/admin/health", opts),
      get("/admin/usage/series?last=1h&step=1m", opts).catch(() => ({ data: [] })),
      get("/admin/usage?last=1h", opts).catch(() => ({ data: [] })),
    ]);
    const points = series.data;
    const t = totals(points);
    const whole = summary.data[0] || {};
    replace(stats,
      stat("Requests / s", num(t.requests / 3600, 3), sparkline(byMinute(points, (p) => p.requests), "requests per minute")),
      stat("Error rate", t.requests ? pct(t.errors / t.requests) : "–", sparkline(byMinute(points, (p) => p.errors), "errors per minute")),
      stat("Latency p50 / p95", `${ms(whole.latency_p50_ms)} / ${ms(whole.latency_p95_ms)}`, sparkline(byMinute(points, (p) => p.latency_p95_ms || 0), "p95 latency per minute")),
      stat("Time to first token", t.ttftN ? ms(t.ttftSum / t.ttftN) : "–", sparkline(byMinute(points, (p) => p.ttft_avg_ms || 0), "time to first token per minute")),
      stat("Tokens", num(t.tokens), sparkline(byMinute(points, (p) => p.total_tokens), "tokens per minute")),
      stat("Cost", usd(t.cost), sparkline(byMinute(points, (p) => p.cost_usd), "cost per minute")));
    const rows = health.deployments.slice().sort((a, b) => a.name.localeCompare(b.name));
    replace(tiles, rows.length ? rows.map(tile) : h("p", { class: "empty" }, "No instance yet. Add one on the Instances page."));
  }
  await refresh();
  return { refresh };
}
