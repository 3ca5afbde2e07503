// Building the page: every element is made with createElement and every piece of text is set
// with textContent, so text from an upstream, a client or the store is never parsed as HTML.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "value") el.value = value;
    else if (name === "checked" || name === "disabled" || name === "selected" || name === "open") el[name] = Boolean(value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  return append(el, children);
}

const SVG = "http://www.w3.org/2000/svg";

// A small line of the last values, with a title for screen readers.
export function sparkline(values, label, width = 120, height = 28) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("class", "spark");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const nums = values.map((v) => (Number.isFinite(v) ? v : 0));
  const max = Math.max(1e-9, ...nums);
  if (nums.length > 1) {
    const step = width / (nums.length - 1);
    const points = nums.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  return svg;
}

export function meter(value, max, label) {
  const m = h("meter", { min: 0, max: max || 1, value: Math.min(value, max || 1), "aria-label": label, title: label });
  if (max && value / max > 0.9) m.setAttribute("class", "hot");
  return m;
}

// numbers and times -------------------------------------------------------------------------
export const num = (v, digits = 0) =>
  v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: digits });
export const usd = (v) => (v === null || v === undefined ? "–" : v === 0 ? "$0" : v < 0.01 ? `$${Number(v).toPrecision(2)}` : `$${Number(v).toFixed(2)}`);
export const ms = (v) => (v === null || v === undefined ? "–" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${Math.round(v)} ms`);
export const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);

export function bytes(v) {
  if (!v) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${v.toFixed(v >= 10 || i === 0 ? 0 : 1)} ${units[i]}`;
}

export function ago(iso) {
  if (!iso) return "never";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(s)) return String(iso);
  if (s < 0) return `in ${Math.round(-s / 60)} min`;
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function until(iso) {
  if (!iso) return "";
  const s = (Date.parse(iso) - Date.now()) / 1000;
  if (!Number.isFinite(s)) return "";
  return s <= 0 ? "expiring" : s < 3600 ? `for ${Math.round(s / 60)} min` : `for ${Math.round(s / 3600)} h`;
}

// local time as 2026-12-01 21:19:31: no day/month order to guess (the charts' axes differ by locale)
export const stamp = (iso) => (iso ? new Date(iso).toLocaleString("sv-SE", { hour12: false }) : "–");
