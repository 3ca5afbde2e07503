// Instances: every provider with its live state; add, edit, test, check now, enable/disable and
// delete the ones managed through the API (the YAML file's are shown read-only).
import { del, get, patch, post } from "../lib/api.js";
import { ago, h, ms, replace } from "../lib/dom.js";
import { marked, modelHealthLine } from "../lib/health.js";
import { badge, button, chips, confirmDialog, field, formDialog, header, notice, table } from "../lib/ui.js";

const NUMBERS = ["timeout", "connect_timeout", "priority", "weight", "max_parallel", "num_ctx"];

function parseLines(text, sep) {
  const out = {};
  for (const line of text.split("\n")) {
    const at = line.indexOf(sep);
    if (at > 0) out[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return out;
}

function providerForm(existing, onSaved) {
  const editing = Boolean(existing);
  const p = existing || { type: "ollama", verify_ssl: true, enabled: true, priority: 0, weight: 1 };
  const f = {};
  const build = (form) => {
    f.name = field("Name", { value: p.name || "", required: true, help: "Letters, digits, . _ : -; used in model names as name/model." });
    if (editing) f.name.input.disabled = true;
    f.type = field("Type", { options: ["ollama", "openai"], value: p.type });
    f.base_url = field("Base URL", { value: p.base_url || "", required: true, placeholder: "http://gpu-box:11434", help: "OpenAI-type servers: the URL that ends in /v1." });
    f.api_key = field("API key or bearer token", { type: "password", placeholder: p.api_key_preview ? `stored: ${p.api_key_preview}` : "",
      help: editing ? "Leave empty to keep the stored key. It is stored encrypted and never shown again." : "Optional. Stored encrypted; shown afterwards only as a preview." });
    f.headers = field("Extra headers", { type: "textarea", placeholder: "X-Client-ID: corral",
      help: editing && p.header_names && p.header_names.length ? `Stored: ${p.header_names.join(", ")}. Leave empty to keep them; one "Name: value" per line replaces them.` : 'One "Name: value" per line. Stored encrypted.' });
    f.verify_ssl = field("Verify TLS certificates", { type: "checkbox", value: p.verify_ssl !== false });
    f.timeout = field("Timeout (s)", { type: "number", value: p.timeout ?? "", min: 0, step: "any", help: "Whole request. Default 600." });
    f.connect_timeout = field("Connect timeout (s)", { type: "number", value: p.connect_timeout ?? "", min: 0, step: "any" });
    f.priority = field("Priority", { type: "number", value: p.priority ?? 0, step: 1, help: "Lower is tried first." });
    f.weight = field("Weight", { type: "number", value: p.weight ?? 1, min: 0, step: "any" });
    f.max_parallel = field("Max parallel", { type: "number", value: p.max_parallel ?? "", min: 0, step: 1, help: "Requests at once; Ollama defaults to 4, 0 means no cap." });
    f.keep_alive = field("keep_alive (Ollama)", { value: p.keep_alive ?? "", placeholder: "10m" });
    f.num_ctx = field("num_ctx (Ollama)", { type: "number", value: p.num_ctx ?? "", min: 1, step: 1 });
    f.paths = field("Custom endpoint paths", { type: "textarea", value: Object.entries(p.paths || {}).map(([k, v]) => `${k}=${v}`).join("\n"),
      placeholder: "chat=/api/chat\nmodels=/api/tags\nhealth=/api/version", help: "One kind=/path per line (chat, models, health, …)." });
    f.enabled = field("Enabled", { type: "checkbox", value: p.enabled !== false });
    form.append(h("div", { class: "grid2" }, Object.values(f).map((x) => x.row)));
  };
  const submit = async () => {
    const body = { type: f.type.input.value, base_url: f.base_url.input.value.trim(), verify_ssl: f.verify_ssl.input.checked, enabled: f.enabled.input.checked };
    if (!editing) body.name = f.name.input.value.trim();
    for (const name of NUMBERS) {
      const raw = f[name].input.value.trim();
      if (raw !== "") body[name] = Number(raw);
      else if (editing) body[name] = null;
    }
    const keep = f.keep_alive.input.value.trim();
    body.keep_alive = keep === "" ? (editing ? null : undefined) : (/^\d+$/.test(keep) ? Number(keep) : keep);
    const paths = parseLines(f.paths.input.value, "=");
    body.paths = Object.keys(paths).length ? paths : (editing ? null : undefined);
    if (f.api_key.input.value) body.api_key = f.api_key.input.value;
    if (f.headers.input.value.trim()) body.headers = parseLines(f.headers.input.value, ":");
    if (editing) await patch(`/admin/providers/${encodeURIComponent(p.name)}`, body);
    else await post("/admin/providers", body);
    f.api_key.input.value = "";
    notice(editing ? `Saved ${p.name}.` : `Added ${body.name}.`);
    onSaved();
    return true;
  };
  formDialog(editing ? `Edit ${p.name}` : "Add an instance", build, editing ? "Save" : "Add", submit);
}

export default async function instances(main) {
  const body = h("div", {});
  const results = new Map(); // name -> the last Test result
  replace(main, header("Instances", "Every upstream corral routes to. Instances from the config file are read-only here.",
    button("Add instance", () => providerForm(null, refresh), { kind: "primary" })), body);

  async function refresh(background = false) {
    const opts = { background };
    const [providers, health, models] = await Promise.all([
      get("/admin/providers", opts), get("/admin/health", opts), get("/admin/models", opts)]);
    const fetchedAt = Date.now();
    const states = new Map(health.deployments.map((d) => [d.name, d]));
    const counts = new Map();
    for (const m of models.data) if (m.type === "discovered") counts.set(m.provider, (counts.get(m.provider) || 0) + 1);
    const act = (p) => {
      const name = encodeURIComponent(p.name);
      const cell = h("div", { class: "row-actions" },
        button("Test", async () => {
          const r = await post(`/admin/providers/${name}/test`);
          results.set(p.name, r);
          notice(r.success ? `${p.name}: OK in ${ms(r.latency_ms)}, ${r.models_found} models found.` : `${p.name}: ${r.error}`, r.success ? "info" : "error");
          refresh();
        }),
        button("Check now", async () => { await post(`/admin/providers/${name}/check`); refresh(); }));
      if (p.managed_by === "api") {
        cell.append(
          button("Edit", () => providerForm(p, refresh)),
          button(p.enabled === false ? "Enable" : "Disable", async () => {
            await patch(`/admin/providers/${name}`, { enabled: p.enabled === false });
            refresh();
          }),
          button("Delete", async () => {
            if (!(await confirmDialog(`Delete ${p.name}?`, `corral stops routing to ${p.name} at once. Aliases that name it must be changed first.`, "Delete"))) return;
            try { await del(`/admin/providers/${name}`); notice(`Deleted ${p.name}.`); } catch (err) { notice(err.message, "error"); }
            refresh();
          }, { kind: "danger" }));
      }
      return cell;
    };
    const columns = [
      { label: "Name", cell: (p) => h("div", {}, h("strong", {}, p.name), h("div", { class: "muted small" }, p.type), p.managed_by === "config" ? h("div", { class: "muted small" }, "config file (read-only)") : null) },
      { label: "Base URL", cell: (p) => h("code", { class: "url" }, p.base_url || "–") },
      { label: "State", cell: (p) => {
        const s = states.get(p.name);
        if (!s) return badge(p.enabled === false ? "disabled" : "unknown");
        const test = results.get(p.name);
        return h("div", {}, badge(s.state), h("div", { class: "muted small" }, `checked ${ago(s.last_check)}${s.check_latency_ms !== null ? ` · ${ms(s.check_latency_ms)}` : ""}`),
          test ? h("div", { class: test.success ? "ok-text small" : "error-text small" }, test.success ? `test OK · ${ms(test.latency_ms)} · ${test.models_found} models` : `test failed: ${test.error}`) : null);
      } },
      { label: "Model health", cell: (p) => {
        const rows = marked(states.get(p.name));
        if (!rows.length) return h("span", { class: "muted small" }, "every model serving");
        return h("div", { class: "model-health-list" }, rows.map(([model, m]) => modelHealthLine(model, m, fetchedAt)));
      } },
      { label: "Priority", cell: (p) => String(p.priority ?? 0), class: "num" },
      { label: "Weight", cell: (p) => String(p.weight ?? 1), class: "num" },
      { label: "Enabled", cell: (p) => (p.enabled === false ? "no" : "yes") },
      { label: "Models", cell: (p) => String(counts.get(p.name) || 0), class: "num" },
      { label: "Loaded", cell: (p) => chips((states.get(p.name) || {}).loaded_models || []) },
      { label: "In flight", cell: (p) => { const s = states.get(p.name); return s ? `${s.in_flight}${s.max_parallel ? ` / ${s.max_parallel}` : ""}` : "–"; }, class: "num" },
      { label: "Actions", cell: act },
    ];
    replace(body, table(columns, providers.data, { caption: "Instances", empty: "No instance yet: add your first Ollama machine with Add instance." }));
  }
  await refresh();
  return { refresh };
}
