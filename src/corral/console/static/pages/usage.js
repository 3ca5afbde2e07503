// Usage: charts over time grouped by provider, model, key or user; the providers side by side;
// a live tail of requests as they finish; CSV export of what is shown. A chart draws the TOP
// groups with the highest cost over the range; the API folds the rest into one "other" line.
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
const TOP = 10;
const OTHER_COLOUR = "#6b7280";
const COLOURS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626", "#92400e", "#0f172a"]; // TOP lines, each its own

function csv(rows) {
  const esc = (v) => {
    const s = v === null || v === undefined ? "" : String(v);
    return /^[=+\-@\t\r]/.test(s) ? `'${s}` : /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return rows.map((r) => r.map(esc).join(",")).join("\n") + "\n";
}

// A point's group as drawn: its value, "(none)" for no value, or the "other" line.
function labelOf(p, key) {
  return p.other ? `other (${num(p.other)} more)` : (p[key] ?? "(none)");
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
  const topNote = h("p", { class: "muted small", "data-testid": "usage-top-note" });
  const compareBox = h("div", {});
  const tailBox = h("div", {});
  let series = null;
  let compare = [];
  let tail = [];
  let plot = null;

  const exportButton = button("Export CSV", () => {
    const key = group.input.value;
    const rows = [["time", key, "requests", "prompt_tokens", "completion_tokens", "cost_usd", "errors", "latency_p50_ms", "latency_p95_ms"]];
    for (const p of (series && series.data) || []) rows.push([p.t, labelOf(p, key), p.requests, p.prompt_tokens, p.completion_tokens, p.cost_usd, p.errors, p.latency_p50_ms, p.latency_p95_ms]);
    download(`corral-usage-${range.input.value}-by-${key}.csv`, csv(rows));
  });
  replace(main,
    header("Usage", "Requests, tokens, cost, errors and latency over time.", exportButton),
    h("div", { class: "filters" }, range.row, group.row, metric.row),
    h("section", { class: "card" }, h("h2", {}, "Over time"), chartBox, topNote),
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
    const other = series.data.find((p) => p.other);
    const named = [...new Set(series.data.filter((p) => !p.other).map((p) => labelOf(p, key)))].sort();
    const groups = other ? [...named, labelOf(other, key)] : named;
    const ys = groups.map(() => xs.map(() => null));
    for (const p of series.data) {
      const i = index.get(Math.floor(Date.parse(p.t) / 1000));
      if (i !== undefined) ys[groups.indexOf(labelOf(p, key))][i] = pick(p);
    }
    topNote.textContent = other
      ? `The ${num(series.top)} ${key}s with the highest ${series.top_by === "requests" ? "request count" : "cost"} over this range; the other ${num(other.other)} are added up in “other”, so the lines sum to the totals.`
      : "";
    for (const row of ys) for (let i = 0; i < row.length; i++) if (row[i] === null && !metric.input.value.startsWith("latency")) row[i] = 0;
    const width = Math.max(400, chartBox.clientWidth || 900);
    const opts = {
      width, height: 280, title: label,
      scales: { x: { time: true } },
      series: [{}, ...groups.map((g, i) => ({
        label: String(g), width: 2, spanGaps: true,
        stroke: other && i === groups.length - 1 ? OTHER_COLOUR : COLOURS[i % COLOURS.length],
        dash: other && i === groups.length - 1 ? [6, 4] : undefined,
      }))],
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
      get(`/admin/usage/series${query({ ...params, group_by: group.input.value, top: TOP })}`, opts),
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
