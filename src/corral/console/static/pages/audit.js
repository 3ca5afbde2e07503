// Audit: every change made through the API: who, what, when, before and after (secrets redacted).
import { get, query } from "../lib/api.js";
import { h, replace, stamp } from "../lib/dom.js";
import { button, field, header, table } from "../lib/ui.js";

function diff(before, after) {
  const empty = (v) => v === null || v === undefined || (typeof v === "object" && Object.keys(v).length === 0);
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])].sort();
  const changed = keys.filter((k) => JSON.stringify((before || {})[k]) !== JSON.stringify((after || {})[k]))
    .filter((k) => before || !empty(after[k])); // a creation: the fields it set, not every empty one
  if (!changed.length) return h("span", { class: "muted" }, "no field changed");
  return h("dl", { class: "diff" }, changed.map((k) => [
    h("dt", {}, k),
    h("dd", {}, before ? h("del", {}, JSON.stringify(before[k] ?? null)) : null, after ? h("ins", {}, JSON.stringify(after[k] ?? null)) : null),
  ]));
}

export default async function audit(main) {
  const action = field("Action", { placeholder: "provider.create" });
  const target = field("Target", { placeholder: "a provider, alias or key id" });
  const body = h("div", {});
  replace(main, header("Audit", "Every change made through the admin API or this console, newest first."),
    h("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); refresh(); } }, action.row, target.row, button("Filter", () => refresh())), body);

  async function refresh(background = false) {
    const rows = await get(`/admin/audit${query({ limit: 200, action: action.input.value.trim(), target: target.input.value.trim() })}`, { background });
    replace(body, table([
      { label: "When", cell: (e) => stamp(e.at) },
      { label: "Who", cell: (e) => h("code", {}, e.actor) },
      { label: "Action", cell: (e) => e.action },
      { label: "Target", cell: (e) => {
        // a key is named by its id; its name says more to a reader
        const name = (e.after || e.before || {}).name;
        return typeof name === "string" && name !== e.target
          ? h("div", {}, name, h("div", { class: "muted small" }, e.target)) : e.target;
      } },
      { label: "Change", cell: (e) => diff(e.before, e.after) },
    ], rows.data, { caption: "Audit log", empty: "No change matches." }));
  }
  await refresh();
  return { refresh };
}
