// Models: every model of every instance, one row per model with the instances that hold it;
// pull onto some or all Ollama instances with a progress bar each; copy and delete.
import { get, lines, post } from "../lib/api.js";
import { bytes, h, num, replace, until } from "../lib/dom.js";
import { modelEntry, modelHealthLine } from "../lib/health.js";

// A catalog price (USD per million tokens) as prices are quoted: $0.15, $2.50, $15.00
const perMillion = (v) => `$${Number(v).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`;
import { button, chips, confirmDialog, field, formDialog, header, notice, table } from "../lib/ui.js";

const CAPS = ["completion", "tools", "vision", "embedding", "thinking"];

function grouped(rows) {
  const models = new Map();
  for (const r of rows) {
    if (r.type !== "discovered") continue;
    const m = models.get(r.model) || { model: r.model, on: [], context_length: null, capabilities: new Set(), aliases: new Set(), size: null, quantization: null, price: null };
    m.on.push(r);
    m.context_length = m.context_length || r.context_length;
    (r.capabilities || []).forEach((c) => m.capabilities.add(c));
    (r.aliases || []).forEach((a) => m.aliases.add(a));
    m.size = m.size || r.size;
    m.quantization = m.quantization || r.quantization;
    m.price = m.price || r.price;
    models.set(r.model, m);
  }
  return [...models.values()].sort((a, b) => a.model.localeCompare(b.model));
}

async function pull(model, instances, progress) {
  const bars = new Map();
  replace(progress, h("h3", {}, `Pulling ${model}`));
  for (const name of instances) {
    const bar = h("progress", { max: 1, value: 0, "aria-label": `${name} progress` });
    const status = h("span", { class: "muted small" }, "waiting");
    bars.set(name, { bar, status });
    progress.append(h("div", { class: "pull-row" }, h("span", { class: "pull-name" }, name), bar, status));
  }
  const resp = await post("/admin/models/pull", { model, instances }, { raw: true });
  let summary = null;
  for await (const line of lines(resp)) {
    if (!line.trim()) continue;
    const data = JSON.parse(line);
    if (!data.instance) { summary = data; continue; }
    const row = bars.get(data.instance);
    if (!row) continue;
    if (data.total) { row.bar.max = data.total; row.bar.value = data.completed || 0; }
    if (data.status === "success") { row.bar.max = 1; row.bar.value = 1; }
    row.status.textContent = data.total ? `${data.status} · ${Math.round((100 * (data.completed || 0)) / data.total)}%` : data.status;
  }
  const line = summary && summary.error ? summary.error : `${model}: pulled on ${instances.join(", ")}`;
  progress.append(h("p", { class: summary && summary.error ? "error-text" : "ok-text", role: "status" }, line));
  notice(line, summary && summary.error ? "error" : "info");
}

export default async function models(main) {
  const search = field("Search", { placeholder: "model name", type: "search" });
  const cap = field("Capability", { options: ["any", ...CAPS], value: "any" });
  const pullName = field("Model to pull", { placeholder: "llama3.2:3b", required: true });
  const targets = h("fieldset", { class: "targets" }, h("legend", {}, "Onto"));
  const progress = h("div", { class: "pull-progress", "aria-live": "polite" });
  const body = h("div", {});
  let all = [];
  let ollamas = [];
  let deployments = new Map(); // name -> /admin/health's deployment, for the model level of health
  let fetchedAt = Date.now();

  const pullButton = button("Pull", async () => {
    const model = pullName.input.value.trim();
    const chosen = [...targets.querySelectorAll("input:checked")].map((i) => i.value);
    if (!model) { notice("Name the model to pull, e.g. llama3.2:3b.", "error"); pullName.input.focus(); return; }
    if (!chosen.length) { notice("Choose at least one instance.", "error"); return; }
    pullButton.disabled = true;
    try { await pull(model, chosen, progress); } catch (err) { notice(err.message, "error"); } finally { pullButton.disabled = false; refresh(); }
  }, { kind: "primary" });

  replace(main,
    header("Models", "Every model on every instance: where it is loaded now, what it can do, what it costs."),
    h("section", { class: "card", "aria-label": "Pull a model" }, h("h2", {}, "Pull a model"),
      h("div", { class: "inline-form" }, pullName.row, targets, pullButton), progress),
    h("div", { class: "filters" }, search.row, cap.row), body);
  search.input.addEventListener("input", () => draw());
  cap.input.addEventListener("change", () => draw());

  function draw() {
    const text = search.input.value.trim().toLowerCase();
    const wanted = cap.input.value;
    const shown = all.filter((m) => (!text || m.model.toLowerCase().includes(text)) && (wanted === "any" || m.capabilities.has(wanted)));
    const columns = [
      { label: "Model", cell: (m) => h("strong", {}, m.model) },
      { label: "Context", cell: (m) => num(m.context_length), class: "num" },
      { label: "Capabilities", cell: (m) => chips([...m.capabilities]) },
      { label: "Size", cell: (m) => [bytes(m.size), m.quantization ? ` · ${m.quantization}` : ""] },
      { label: "Instances (loaded now)", cell: (m) => h("ul", { class: "on" }, m.on.map((r) => {
        const health = modelEntry(deployments.get(r.provider), m.model);
        return h("li", { class: [r.loaded ? "loaded" : "", health && health.state === "ejected" ? "failed" : ""].join(" ").trim() },
          r.provider, r.loaded ? h("span", { class: "small" }, ` · loaded ${until(r.loaded_until)}${r.loaded_context ? ` at ${num(r.loaded_context)} ctx` : ""}`) : null,
          health ? modelHealthLine(m.model, health, fetchedAt, false) : null);
      })) },
      { label: "Aliases", cell: (m) => chips([...m.aliases]) },
      { label: "Price / 1M", cell: (m) => (m.price ? `${perMillion(m.price.input)} in · ${perMillion(m.price.output)} out` : h("span", { class: "muted" }, "no price set")) },
      { label: "Actions", cell: (m) => {
        const mine = m.on.filter((r) => r.provider_type === "ollama").map((r) => r.provider);
        if (!mine.length) return "";
        return h("div", { class: "row-actions" },
          button("Copy", () => copyDialog(m.model, mine)),
          button("Delete", async () => {
            if (!(await confirmDialog(`Delete ${m.model}?`, `This removes ${m.model} from ${mine.join(", ")}. It has to be pulled again to be used.`, "Delete"))) return;
            try { await post("/admin/models/delete", { model: m.model, instances: mine }); notice(`Deleted ${m.model}.`); } catch (err) { notice(err.message, "error"); }
            refresh();
          }, { kind: "danger" }));
      } },
    ];
    replace(body, table(columns, shown, { caption: "Models", empty: all.length ? "No model matches the filter." : "No model found yet. Add an instance, or pull a model." }));
  }

  function copyDialog(model, instancesOf) {
    let dest;
    formDialog(`Copy ${model}`, (form) => { dest = field("New name", { required: true, placeholder: `${model.split(":")[0]}-copy` }); form.append(dest.row); }, "Copy", async () => {
      await post("/admin/models/copy", { source: model, destination: dest.input.value.trim(), instances: instancesOf });
      notice(`Copied ${model} to ${dest.input.value.trim()}.`);
      refresh();
      return true;
    });
  }

  async function refresh(background = false) {
    const opts = { background };
    const [rows, providers, health] = await Promise.all([
      get("/admin/models", opts), get("/admin/providers", opts), get("/admin/health", opts).catch(() => ({ deployments: [] }))]);
    fetchedAt = Date.now();
    deployments = new Map(health.deployments.map((d) => [d.name, d]));
    all = grouped(rows.data);
    const names = providers.data.filter((p) => p.type === "ollama" && p.enabled !== false).map((p) => p.name);
    if (names.join() !== ollamas.join()) {
      ollamas = names;
      replace(targets, h("legend", {}, "Onto"), names.map((n) => {
        const box = field(n, { type: "checkbox", value: true });
        box.input.value = n;
        return box.row;
      }));
    }
    draw();
  }
  await refresh();
  return { refresh };
}
