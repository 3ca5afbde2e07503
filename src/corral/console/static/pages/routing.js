// Routing: aliases and pools with their targets, strategy and fallback chains, power levels,
// drawn as the chain a request follows; edit the API-managed aliases; "where would this go?".
import { del, get, patch, post } from "../lib/api.js";
import { h, ms, replace } from "../lib/dom.js";
import { badge, button, confirmDialog, field, formDialog, header, notice } from "../lib/ui.js";

const STRATEGIES = ["(router default)", "warm", "priority", "round_robin", "weighted", "least_busy", "latency"];
const LEVELS = ["eco", "balanced", "precision"];

// An alias as the API lists it: the config file's have "targets"; the API's keep the spec as
// written ("target", or "targets" of strings or objects).
function normal(alias) {
  const raw = alias.targets || (alias.target ? [alias.target] : []);
  const targets = raw.map((t) => (typeof t === "string" ? { target: t, weight: 1, priority: null } : { weight: 1, priority: null, ...t }));
  return { ...alias, targets, fallbacks: alias.fallbacks || [] };
}

function targetText(t) {
  return `${t.target}${t.weight !== 1 ? ` ×${t.weight}` : ""}${t.priority !== null && t.priority !== undefined ? ` p${t.priority}` : ""}`;
}

function aliasForm(existing, onSaved) {
  const a = existing || { targets: [], fallbacks: [], explicit_only: false };
  const f = {};
  formDialog(existing ? `Edit alias ${a.name}` : "Add an alias", (form) => {
    f.name = field("Name", { value: a.name || "", required: true, help: "What clients send as the model." });
    if (existing) f.name.input.disabled = true;
    f.targets = field("Targets", { type: "textarea", value: a.targets.map((t) => [t.target, t.weight ?? 1, t.priority ?? ""].join(" ").trim()).join("\n"),
      placeholder: "gpu-a/llama3.2\ngpu-b/llama3.2 1 0", help: "One per line: provider/model, then optionally a weight and a priority." });
    f.fallbacks = field("Fallbacks", { value: (a.fallbacks || []).join(", "), placeholder: "openai/gpt-4o-mini", help: "Models or aliases to try, in order, when every target fails." });
    f.strategy = field("Strategy", { options: STRATEGIES, value: a.strategy || STRATEGIES[0] });
    f.num_ctx = field("Pinned num_ctx", { type: "number", value: a.num_ctx ?? "", min: 1, step: 1 });
    f.explicit = field("Explicit only (no default fallbacks)", { type: "checkbox", value: a.explicit_only });
    form.append(h("div", { class: "grid2" }, Object.values(f).map((x) => x.row)));
  }, existing ? "Save" : "Add", async () => {
    const targets = f.targets.input.value.split("\n").map((l) => l.trim()).filter(Boolean).map((line) => {
      const [target, weight, priority] = line.split(/\s+/);
      const t = { target };
      if (weight !== undefined) t.weight = Number(weight);
      if (priority !== undefined && priority !== "") t.priority = Number(priority);
      return t;
    });
    const body = {
      targets, fallbacks: f.fallbacks.input.value.split(",").map((s) => s.trim()).filter(Boolean),
      explicit_only: f.explicit.input.checked,
      strategy: f.strategy.input.value === STRATEGIES[0] ? null : f.strategy.input.value,
      num_ctx: f.num_ctx.input.value ? Number(f.num_ctx.input.value) : null,
    };
    if (existing) await patch(`/admin/aliases/${encodeURIComponent(a.name)}`, body);
    else await post("/admin/aliases", { name: f.name.input.value.trim(), ...Object.fromEntries(Object.entries(body).filter(([, v]) => v !== null)) });
    notice(existing ? `Saved ${a.name}.` : "Alias added.");
    onSaved();
    return true;
  });
}

function chain(alias) {
  return h("div", { class: "chain" },
    h("span", { class: "node alias" }, alias.name),
    h("span", { class: "arrow", "aria-hidden": "true" }, "→"),
    h("span", { class: "pool" }, alias.targets.map((t) => h("span", { class: "node" }, targetText(t)))),
    (alias.fallbacks || []).map((f) => [h("span", { class: "arrow", "aria-hidden": "true" }, "then"), h("span", { class: "node fallback" }, f)]));
}

function planView(plan) {
  return h("ol", { class: "plan" }, plan.pools.map((pool, i) => h("li", {},
    h("div", {}, h("strong", {}, pool.name), ` · ${pool.strategy}`, i ? h("span", { class: "muted" }, " (fallback)") : null, pool.explicit_only ? " · explicit only" : ""),
    h("ul", {}, pool.targets.map((t) => h("li", {},
      t.rank ? h("span", { class: "rank" }, `#${t.rank}`) : h("span", { class: "rank muted" }, "skip"),
      ` ${t.provider}/${t.model} `, badge(t.state),
      h("span", { class: "muted small" }, ` in flight ${t.in_flight}${t.max_parallel ? `/${t.max_parallel}` : ""}${t.warm === true ? " · warm" : t.warm === false ? " · cold" : ""}${t.latency_ms !== null ? ` · ${ms(t.latency_ms)}` : ""}`)))))));
}

export default async function routing(main) {
  const list = h("div", {});
  const levels = h("div", {});
  const where = field("Model, alias or corral/<level>", { placeholder: "chat" });
  const answer = h("div", { class: "plan-answer", "aria-live": "polite" });
  const ask = async () => {
    const model = where.input.value.trim();
    if (!model) { where.input.focus(); return; }
    try { replace(answer, planView(await get(`/admin/route?model=${encodeURIComponent(model)}`))); } catch (err) { replace(answer, h("p", { class: "error-text" }, err.message)); }
  };
  where.input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); ask(); } });
  replace(main,
    header("Routing", "Aliases and their pools, fallback chains and power levels: the path a request follows.",
      button("Add alias", () => aliasForm(null, refresh), { kind: "primary" })),
    h("section", { class: "card" }, h("h2", {}, "Where would this go?"), h("div", { class: "inline-form" }, where.row, button("Show the plan", ask)), answer),
    h("h2", {}, "Aliases"), list, h("h2", {}, "Power levels"), levels);

  async function refresh(background = false) {
    const aliases = await get("/admin/aliases", { background });
    replace(list, aliases.data.length ? aliases.data.map(normal).map((a) => h("article", { class: "alias-row" },
      h("div", { class: "alias-head" }, chain(a),
        h("span", { class: "muted small" }, `${a.strategy || "router default"} strategy${a.num_ctx ? ` · num_ctx ${a.num_ctx}` : ""}${a.explicit_only ? " · explicit only" : ""}`)),
      a.managed_by === "config" ? h("span", { class: "muted small" }, "config file (read-only)") : h("div", { class: "row-actions" },
        button("Edit", () => aliasForm(a, refresh)),
        button("Delete", async () => {
          if (!(await confirmDialog(`Delete alias ${a.name}?`, `Clients asking for ${a.name} will get "model not found".`, "Delete"))) return;
          try { await del(`/admin/aliases/${encodeURIComponent(a.name)}`); } catch (err) { notice(err.message, "error"); }
          refresh();
        }, { kind: "danger" })))) : h("p", { class: "empty" }, "No alias yet. Clients can still ask for provider/model directly."));
    const found = await Promise.all(LEVELS.map((level) => get(`/admin/route?power=${level}`, { background }).catch(() => null)));
    const shown = LEVELS.map((level, i) => [level, found[i]]).filter(([, plan]) => plan);
    replace(levels, shown.length ? shown.map(([level, plan]) => h("div", { class: "chain" },
      h("span", { class: "node alias" }, `corral/${level}`), plan.pools.map((p, i) => [h("span", { class: "arrow", "aria-hidden": "true" }, i ? "then" : "→"), h("span", { class: "node" }, p.name)])))
      : h("p", { class: "empty" }, "No power level is configured (router.power_levels in the config file)."));
  }
  await refresh();
  return { refresh };
}
