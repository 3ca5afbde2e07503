// My usage: what a user-scope key sees of itself: its limits, its budget used, its requests.
import { get } from "../lib/api.js";
import { h, meter, ms, num, replace, sparkline, usd } from "../lib/dom.js";
import { chips, header, table } from "../lib/ui.js";

export default async function mine(main, ctx) {
  const body = h("div", {});
  replace(main, header("My usage", "This key's limits, budget and requests over the last 24 hours."), body);

  async function refresh(background = false) {
    const opts = { background };
    const [me, summary, series] = await Promise.all([
      get("/console/api/me", opts), get("/console/api/usage?group_by=model", opts), get("/console/api/usage/series?last=24h&step=1h", opts)]);
    const who = me.principal;
    const limits = Object.entries(me.limits || {}).map(([k, v]) => `${k}: ${v}`);
    const budget = me.budget;
    replace(body,
      h("section", { class: "card" },
        h("h2", {}, who.name || who.key_id),
        h("p", {}, `Key gw_${who.key_id}_… · scope ${who.scope}${who.owner ? ` · owner ${who.owner}` : ""}`),
        h("p", {}, "Models: ", who.models ? chips(who.models) : "every model"),
        h("p", {}, "Limits: ", limits.length ? limits.join(" · ") : "none"),
        budget ? h("div", { class: "budget" }, meter(budget.spent, budget.max_budget, "budget used"),
          h("span", {}, `${usd(budget.spent)} of ${usd(budget.max_budget)} this ${budget.period} window`)) : h("p", {}, "No budget.")),
      h("section", { class: "card" }, h("h2", {}, "Requests per hour"), sparkline(series.data.map((p) => p.requests), "requests per hour", 600, 60)),
      table([
        { label: "Model", cell: (r) => r.model || "(none)" },
        { label: "Requests", cell: (r) => num(r.requests), class: "num" },
        { label: "Tokens", cell: (r) => num(r.total_tokens), class: "num" },
        { label: "Cost", cell: (r) => usd(r.cost_usd), class: "num" },
        { label: "p50", cell: (r) => ms(r.latency_p50_ms), class: "num" },
        { label: "Errors", cell: (r) => num(r.errors), class: "num" },
      ], summary.data, { caption: "Usage by model", empty: "No request in the last 24 hours." }));
  }
  await refresh();
  return { refresh };
}
