// The second level of health: a model that failed on one instance is marked there (the model
// level) while the instance keeps serving its other models. Read from /admin/health
// (deployments[].models: state, ejected_for_s, failures, last_error). Every string from the API
// is set as text by h(), never parsed as HTML.
import { ago, h, num, stamp } from "./dom.js";

// One deployment's entry for a model; Ollama keys its models by full name (llama3.2 is llama3.2:latest).
export function modelEntry(deployment, model) {
  const models = (deployment && deployment.models) || {};
  if (Object.hasOwn(models, model)) return models[model];
  const tagged = `${model}:latest`;
  return !model.includes(":") && Object.hasOwn(models, tagged) ? models[tagged] : null;
}

const iso = (ms) => new Date(ms).toISOString();

// "failed since … until … (for 2 min)" or "recovered, 3 failures"; fetchedAt: Date.now() when read.
export function describe(m, fetchedAt) {
  const failed = m.state === "ejected";
  const parts = [];
  const since = m.since || null; // shown when the API says when it was marked
  if (failed) {
    if (since) parts.push(`since ${stamp(since)} (${ago(since)})`);
    if (m.ejected_for_s) {
      const end = fetchedAt + m.ejected_for_s * 1000;
      parts.push(`until ${stamp(iso(end))} (in ${num(Math.max(0, (end - Date.now()) / 1000))} s)`);
    }
  } else {
    parts.push("serving again");
    if (since) parts.push(`since ${stamp(since)}`);
  }
  parts.push(`${num(m.failures)} failure${m.failures === 1 ? "" : "s"}`);
  return { failed, text: parts.join(" · ") };
}

// A line for one model on one instance: badge, what and when, and the last error.
export function modelHealthLine(model, m, fetchedAt, withName = true) {
  const { failed, text } = describe(m, fetchedAt);
  return h("div", { class: `model-health ${failed ? "failed" : "recovered"}`, "data-testid": "model-health" },
    h("span", { class: `badge ${failed ? "ejected" : "healthy"}` }, failed ? "model failed" : "model recovered"),
    withName ? h("strong", {}, ` ${model}`) : null,
    h("span", { class: "small" }, ` ${text}`),
    m.last_error ? h("div", { class: "muted small" }, m.last_error) : null);
}

// The models of a deployment that are marked failed (or recovered after failing), sorted by name.
export function marked(deployment) {
  return Object.entries((deployment && deployment.models) || {}).sort(([a], [b]) => a.localeCompare(b));
}
