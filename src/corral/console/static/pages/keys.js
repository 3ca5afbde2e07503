// Keys: issue a gateway key (shown once, with a copy button), list them with their limits and
// budget used, edit limits, revoke with a confirmation.
import { del, get, patch, post } from "../lib/api.js";
import { ago, h, meter, replace, stamp, usd } from "../lib/dom.js";
import { button, chips, confirmDialog, field, formDialog, header, notice, table } from "../lib/ui.js";

const LIMITS = [["rpm", "Requests per minute"], ["tpm", "Tokens per minute"], ["max_parallel", "Requests at once"], ["max_budget", "Budget (USD)"]];

function limitFields(k) {
  const f = {};
  for (const [name, label] of LIMITS) f[name] = field(label, { type: "number", value: k[name] ?? "", min: 0, step: name === "max_budget" ? "any" : 1 });
  f.budget_period = field("Budget period", { value: k.budget_period ?? "", placeholder: "monthly, 1d, 7d, 1h" });
  return f;
}

function limitValues(f, clear) {
  const out = {};
  for (const [name] of LIMITS) {
    const raw = f[name].input.value.trim();
    if (raw !== "") out[name] = Number(raw);
    else if (clear) out[name] = null;
  }
  const period = f.budget_period.input.value.trim();
  if (period) out.budget_period = period;
  else if (clear) out.budget_period = null;
  return out;
}

function showOnce(issued) {
  const keyText = h("code", { class: "secret", "data-testid": "new-key" }, issued.key);
  const copy = button("Copy", async () => {
    try { await navigator.clipboard.writeText(issued.key); copy.textContent = "Copied"; } catch { notice("Copying was refused by the browser; select the key and copy it.", "error"); }
  }, { kind: "primary" });
  const dialog = h("dialog", { "aria-labelledby": "once-title", class: "wide" },
    h("h2", { id: "once-title" }, `Key ${issued.name || issued.id} created`),
    h("p", { class: "warning" }, "Copy the key now. It is shown only this once: corral keeps only its hash."),
    h("div", { class: "secret-row" }, keyText, copy),
    h("div", { class: "actions" }, button("Done", () => dialog.close())));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

function createForm(onSaved) {
  const f = {};
  let limits;
  formDialog("Create a gateway key", (form) => {
    f.name = field("Name", { placeholder: "ci-runner", required: true });
    f.owner = field("Owner (user)", { placeholder: "alice", help: "Usage is recorded under this user." });
    f.scope = field("Scope", { options: ["user", "admin"], value: "user", help: "user: the API only. admin: also this console and the admin API." });
    f.models = field("Allowed models", { placeholder: "chat, corral/eco", help: "Comma-separated; empty allows every model." });
    f.expires = field("Expires", { type: "datetime-local" });
    limits = limitFields({});
    form.append(h("div", { class: "grid2" }, Object.values(f).map((x) => x.row), Object.values(limits).map((x) => x.row)));
  }, "Create", async () => {
    const body = { name: f.name.input.value.trim() || null, owner: f.owner.input.value.trim() || null, scope: f.scope.input.value, ...limitValues(limits, false) };
    const models = f.models.input.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (models.length) body.models = models;
    if (f.expires.input.value) body.expires_at = new Date(f.expires.input.value).toISOString();
    const issued = await post("/admin/keys", body);
    onSaved();
    showOnce(issued);
    return true;
  });
}

function editForm(k, onSaved) {
  let f;
  let models;
  formDialog(`Limits of ${k.name || k.id}`, (form) => {
    f = limitFields(k);
    models = field("Allowed models", { value: (k.models || []).join(", "), help: "Comma-separated; empty allows every model." });
    form.append(h("div", { class: "grid2" }, Object.values(f).map((x) => x.row), models.row));
  }, "Save", async () => {
    const list = models.input.value.split(",").map((s) => s.trim()).filter(Boolean);
    await patch(`/admin/keys/${k.id}`, { ...limitValues(f, true), models: list.length ? list : null });
    notice(`Saved ${k.name || k.id}.`);
    onSaved();
    return true;
  });
}

export default async function keys(main) {
  const body = h("div", {});
  replace(main, header("Keys", "Gateway keys: who may call corral, with which models and limits.",
    button("Create key", () => createForm(refresh), { kind: "primary" })), body);

  async function refresh(background = false) {
    const [list, budgets] = await Promise.all([get("/admin/keys", { background }), get("/admin/budgets", { background })]);
    const spent = new Map(budgets.data.map((b) => [b.id, b]));
    const columns = [
      { label: "Name", cell: (k) => h("div", {}, h("strong", {}, k.name || "(no name)"), h("div", { class: "muted small" }, h("code", {}, `gw_${k.id}_…`))) },
      { label: "Owner", cell: (k) => k.owner || "–" },
      { label: "Scope", cell: (k) => k.scope },
      { label: "Models", cell: (k) => (k.models ? chips(k.models) : "all") },
      { label: "Limits", cell: (k) => [k.rpm !== null ? `${k.rpm} rpm` : null, k.tpm !== null ? `${k.tpm} tpm` : null, k.max_parallel !== null ? `${k.max_parallel} at once` : null].filter(Boolean).join(" · ") || "none" },
      { label: "Budget", cell: (k) => {
        if (k.max_budget === null || k.max_budget === undefined) return "none";
        const b = spent.get(k.id);
        const used = b ? b.spent : 0;
        return h("div", { class: "budget" }, meter(used, k.max_budget, `${k.name || k.id} budget used`), h("span", { class: "small" }, `${usd(used)} of ${usd(k.max_budget)} ${b && b.period ? `(${b.period})` : ""}`));
      } },
      { label: "Expires", cell: (k) => (k.expires_at ? stamp(k.expires_at) : "never") },
      { label: "Last used", cell: (k) => ago(k.last_used_at) },
      { label: "Enabled", cell: (k) => (k.enabled ? "yes" : "no") },
      { label: "Actions", cell: (k) => h("div", { class: "row-actions" },
        button("Edit limits", () => editForm(k, refresh)),
        button("Revoke", async () => {
          if (!(await confirmDialog(`Revoke ${k.name || k.id}?`, "The key stops working on its very next request. This cannot be undone.", "Revoke"))) return;
          await del(`/admin/keys/${k.id}`);
          notice(`Revoked ${k.name || k.id}.`);
          refresh();
        }, { kind: "danger" })) },
    ];
    replace(body, table(columns, list.data, { caption: "Gateway keys", empty: "No gateway key yet. The master key works; create keys for people and programs." }));
  }
  await refresh();
  return { refresh };
}
