// Usage: charts over time grouped by provider, model, key or user; the providers side by side;
// a live tail of requests as they finish; CSV export of what is shown.
import uPlot from "../vendor/uPlot.esm.js";
import { get, query } from "../lib/api.js";
import { h, ms, num, replace, stamp, usd } from "../lib/dom.js";
import { button, field, header, table } from "../lib/ui.js";

const RANGES = ["15m", "1h", "6h", "24h", "7d", "30d"];
const GROUPS = ["provider", "model", "key", "user", "surface"];
const METRICS = {
  requests: ["Requests", (p) => p.requests, num],
  total_tokens: ["Tokens", (p) => p.total_tokens, num],
  cost_usd: ["Cost (USD)", (p) => p.cost_usd, usd],
  errors: ["Errors", (p) => p.errors, num],
  latency_p50_ms: ["Latency p50 (ms)", (p) => p.latency_p50_ms, ms],
  latency_p95_ms: ["Latency p95 (ms)", (p) => p.latency_p95_ms, ms],
};
const COLOURS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"];

function csv(rows) {
  const esc = (v) => {
    const s = v === null || v === undefined ? "" : String(v);
    return /^[=+\-@\t\r]/.test(s) ? `'${s}` : /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return rows.map((r) => r.map(esc).join(",")).join("\n") + "\n";
}

export function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export default async function usage(main) {
  const range = field("Range", { options: RANGES, value: "1h" });
  const group = field("Group by", { options: GROUPS, value: "provider" });
  const metric = field("Chart", { options: Object.keys(METRICS), value: "requests" });
  const chartBox = h("div", { class: "chart", role: "img", "aria-label": "Usage over time" });
  const compareBox = h("div", {});
  const tailBox = h("div", {});
  let series = null;
  let compare = [];
  let tail = [];
  let plot = null;

  const exportButton = button("Export CSV", () => {
    const key = group.input.value;
    const rows = [["time", key, "requests", "prompt_tokens", "completion_tokens", "cost_usd", "errors", "latency_p50_ms", "latency_p95_ms"]];
    for (const p of (series && series.data) || []) rows.push([p.t, p[key], p.requests, p.prompt_tokens, p.completion_tokens, p.cost_usd, p.errors, p.latency_p50_ms, p.latency_p95_ms]);
    download(`corral-usage-${range.input.value}-by-${key}.csv`, csv(rows));
  });
  replace(main,
    header("Usage", "Requests, tokens, cost, errors and latency over time.", exportButton),
    h("div", { class: "filters" }, range.row, group.row, metric.row),
    h("section", { class: "card" }, h("h2", {}, "Over time"), chartBox),
    h("section", {}, h("h2", {}, "Providers side by side"), compareBox),
    h("section", {}, h("h2", {}, "Live tail"), h("p", { class: "muted small" }, "Requests as they finish, newest first."), tailBox));
  for (const f of [range, group, metric]) f.input.addEventListener("change", () => refresh());

  function draw() {
    const [label, pick] = METRICS[metric.input.value];
    const key = group.input.value;
    const step = series.step;
    const since = Math.floor(Date.parse(series.since) / 1000 / step) * step;
    const untilT = Math.floor(Date.parse(series.until) / 1000 / step) * step;
    const xs = [];
    for (let t = since; t <= untilT; t += step) xs.push(t);
    const index = new Map(xs.map((t, i) => [t, i]));
    const groups = [...new Set(series.data.map((p) => p[key] ?? "(none)"))].sort();
    const ys = groups.map(() => xs.map(() => null));
    for (const p of series.data) {
      const i = index.get(Math.floor(Date.parse(p.t) / 1000));
      if (i !== undefined) ys[groups.indexOf(p[key] ?? "(none)")][i] = pick(p);
    }
    for (const row of ys) for (let i = 0; i < row.length; i++) if (row[i] === null && !metric.input.value.startsWith("latency")) row[i] = 0;
    const width = Math.max(400, chartBox.clientWidth || 900);
    const opts = {
      width, height: 280, title: label,
      scales: { x: { time: true } },
      series: [{}, ...groups.map((g, i) => ({ label: String(g), stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true }))],
      axes: [{}, { size: 70 }],
    };
    if (plot) plot.destroy();
    replace(chartBox);
    if (!groups.length) { chartBox.append(h("p", { class: "empty" }, "No request in this range yet.")); plot = null; return; }
    plot = new uPlot(opts, [xs, ...ys], chartBox);
  }

  function drawTables() {
    replace(compareBox, table([
      { label: "Provider", cell: (r) => r.provider || "(none)" },
      { label: "Requests", cell: (r) => num(r.requests), class: "num" },
      { label: "Errors", cell: (r) => num(r.errors), class: "num" },
      { label: "Tokens", cell: (r) => num(r.total_tokens), class: "num" },
      { label: "Cost", cell: (r) => usd(r.cost_usd), class: "num" },
      { label: "p50", cell: (r) => ms(r.latency_p50_ms), class: "num" },
      { label: "p95", cell: (r) => ms(r.latency_p95_ms), class: "num" },
    ], compare, { caption: "Providers side by side", empty: "No request in this range yet." }));
    replace(tailBox, table([
      { label: "Time", cell: (r) => stamp(r.at) },
      { label: "Status", cell: (r) => h("span", { class: r.status >= 400 ? "error-text" : "" }, String(r.status)) },
      { label: "Model", cell: (r) => r.requested_model },
      { label: "Provider", cell: (r) => r.provider || "–" },
      { label: "User", cell: (r) => r.user || "–" },
      { label: "Tokens", cell: (r) => num(r.total_tokens), class: "num" },
      { label: "Latency", cell: (r) => ms(r.latency_ms), class: "num" },
      { label: "Fallback", cell: (r) => (r.fallback ? "yes" : "") },
    ], tail.slice().reverse().slice(0, 50), { caption: "Live tail", empty: "No request yet." }));
  }

  async function refresh(background = false) {
    const params = { last: range.input.value };
    const opts = { background };
    const afterId = tail.length ? tail[tail.length - 1].id : null;
    const [s, c, recent] = await Promise.all([
      get(`/admin/usage/series${query({ ...params, group_by: group.input.value })}`, opts),
      get(`/admin/usage/compare${query(params)}`, opts),
      get(`/admin/usage/recent${query({ limit: 50, after: afterId })}`, opts),
    ]);
    series = s;
    compare = c.data;
    tail = [...tail, ...recent.data].slice(-200);
    draw();
    drawTables();
  }
  await refresh();
  return { refresh, stop: () => plot && plot.destroy() };
}
