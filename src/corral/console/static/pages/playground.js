// Playground: chat with any model, alias or power level the signed-in key may use, streamed,
// through the same engine, limits and accounting as the API. Two models side by side on the
// same prompt; under each answer who served it, the attempts, a fallback, TTFT, speed and cost.
import { call, get, lines } from "../lib/api.js";
import { h, ms, num, replace, usd } from "../lib/dom.js";
import { button, field, header, notice } from "../lib/ui.js";

const csrfFetch = (url, body, signal) => call("POST", url, body, { raw: true, signal });

function pane(index, options, endpoint) {
  const model = field(index ? "Second model" : "Model", { options, value: options[0] });
  const log = h("div", { class: "transcript", role: "log", "aria-live": "polite", "aria-label": `Answers, model ${index + 1}` });
  const history = [];
  let controller = null;

  async function send(userContent, system, tools) {
    const messages = [];
    if (system) messages.push({ role: "system", content: system });
    messages.push(...history, { role: "user", content: userContent });
    const body = { model: model.input.value, messages, stream: true, stream_options: { include_usage: true } };
    if (tools) body.tools = tools;
    const text = typeof userContent === "string" ? userContent : userContent.find((p) => p.type === "text").text;
    log.append(h("div", { class: "msg user" }, h("div", { class: "who" }, "You"), text,
      typeof userContent === "string" ? null : userContent.filter((p) => p.type === "image_url").map((p) => h("img", { src: p.image_url.url, alt: "attached image", class: "thumb" }))));
    const answer = h("div", { class: "answer-text" });
    const thinking = h("details", { class: "thinking", hidden: true }, h("summary", {}, "Thinking"), h("div", { class: "thinking-text" }));
    const calls = h("div", { class: "tool-calls" });
    const meta = h("div", { class: "meta", "data-testid": "answer-meta" }, "waiting for the first token…");
    const box = h("div", { class: "msg assistant" }, h("div", { class: "who" }, model.input.value), thinking, answer, calls, meta);
    log.append(box);
    controller = new AbortController();
    const started = performance.now();
    let first = null;
    let content = "";
    const toolCalls = [];
    let info = {};
    let served = {};
    try {
      const resp = await csrfFetch(endpoint, body, controller.signal);
      served = { provider: resp.headers.get("x-corral-provider"), attempts: resp.headers.get("x-corral-attempts"), fallback: resp.headers.get("x-corral-fallback"), model: resp.headers.get("x-corral-model") };
      let event = "message";
      for await (const raw of lines(resp)) {
        const line = raw.trimEnd();
        if (line.startsWith("event:")) { event = line.slice(6).trim(); continue; }
        if (!line.startsWith("data:")) { if (!line) event = "message"; continue; }
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        let chunk;
        try { chunk = JSON.parse(data); } catch { continue; }
        if (event === "corral") { info = chunk; continue; }
        if (chunk.error) { answer.append(h("p", { class: "error-text" }, chunk.error.message || String(chunk.error))); continue; }
        const delta = (chunk.choices && chunk.choices[0] && chunk.choices[0].delta) || {};
        const reasoning = delta.reasoning_content || delta.reasoning;
        if (reasoning) { thinking.hidden = false; thinking.lastChild.append(reasoning); }
        if (delta.content) {
          if (first === null) first = performance.now();
          content += delta.content;
          answer.textContent = content;
        }
        for (const call of delta.tool_calls || []) {
          const at = call.index ?? toolCalls.length;
          toolCalls[at] = toolCalls[at] || { name: "", arguments: "" };
          if (call.function && call.function.name) toolCalls[at].name += call.function.name;
          if (call.function && call.function.arguments) toolCalls[at].arguments += call.function.arguments;
        }
        if (toolCalls.length) replace(calls, toolCalls.map((c) => h("div", { class: "tool-call" }, h("strong", {}, `tool call: ${c.name}`), h("pre", {}, c.arguments))));
      }
      history.push({ role: "user", content: userContent }, { role: "assistant", content });
    } catch (err) {
      if (err.name === "AbortError") answer.append(h("p", { class: "muted" }, "(stopped)"));
      else answer.append(h("p", { class: "error-text" }, err.message));
    } finally {
      controller = null;
    }
    const seconds = (performance.now() - (first ?? started)) / 1000;
    const ttft = info.ttft_ms ?? (first !== null ? first - started : null);
    const speed = info.completion_tokens && seconds > 0 ? info.completion_tokens / Math.max(seconds, 0.001) : null;
    const parts = [
      served.provider ? `provider ${served.provider}` : null,
      served.model ? `model ${served.model}` : null,
      served.attempts ? `attempts ${served.attempts}` : null,
      served.fallback ? `fallback ${served.fallback}` : "no fallback",
      `TTFT ${ms(ttft)}`,
      speed !== null ? `${num(speed, 1)} tokens/s` : null,
      info.prompt_tokens !== undefined ? `${num(info.prompt_tokens)} in · ${num(info.completion_tokens)} out${info.estimated ? " (estimated)" : ""}` : null,
      info.cost_usd !== undefined && info.cost_usd !== null ? `cost ${usd(info.cost_usd)}` : null,
    ];
    replace(meta, parts.filter(Boolean).map((p) => h("span", {}, p)));
    if (served.fallback) meta.classList.add("fell-back");
  }

  const node = h("section", { class: "pane", "aria-label": `Chat ${index + 1}` }, model.row, log);
  return { node, send, stop: () => controller && controller.abort(), busy: () => controller !== null, clear: () => { history.length = 0; replace(log); } };
}

export default async function playground(main, ctx) {
  const listing = await get("/console/api/models");
  const options = [...listing.data.map((m) => m.id), ...listing.power_levels];
  const endpoint = ctx.principal.scope === "admin" ? "/admin/playground/chat" : "/console/api/chat";
  if (!options.length) {
    replace(main, header("Playground", "Chat with a model."), h("p", { class: "empty" }, "This key may not use any model yet. Add an instance, or ask an admin to allow models for the key."));
    return {};
  }
  const system = field("System prompt", { type: "textarea", placeholder: "You are a helpful assistant." });
  const prompt = field("Message", { type: "textarea", placeholder: "Ask something.", help: "Ctrl+Enter sends." });
  const tools = field("Tool definitions (JSON, optional)", { type: "textarea", placeholder: '[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]' });
  const image = field("Image (for vision models)", { type: "file" });
  image.input.setAttribute("accept", "image/png,image/jpeg,image/webp,image/gif");
  const compare = field("Compare with a second model", { type: "checkbox" });
  const panes = h("div", { class: "panes" });
  const first = pane(0, options, endpoint);
  const second = pane(1, options, endpoint);
  panes.append(first.node);
  compare.input.addEventListener("change", () => { if (compare.input.checked) panes.append(second.node); else second.node.remove(); });

  const readImage = () => new Promise((resolve, reject) => {
    const file = image.input.files && image.input.files[0];
    if (!file) { resolve(null); return; }
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error("The image could not be read."));
    reader.readAsDataURL(file);
  });

  const sendButton = button("Send", async () => {
    const text = prompt.input.value.trim();
    if (!text) { prompt.input.focus(); return; }
    let toolDefs = null;
    if (tools.input.value.trim()) {
      try { toolDefs = JSON.parse(tools.input.value); } catch { notice("The tool definitions are not valid JSON.", "error"); tools.input.focus(); return; }
    }
    const picture = await readImage();
    const content = picture ? [{ type: "text", text }, { type: "image_url", image_url: { url: picture } }] : text;
    prompt.input.value = "";
    image.input.value = "";
    sendButton.disabled = true;
    stopButton.disabled = false;
    const active = compare.input.checked ? [first, second] : [first];
    await Promise.all(active.map((p) => p.send(content, system.input.value.trim(), toolDefs)));
    sendButton.disabled = false;
    stopButton.disabled = true;
    prompt.input.focus();
  }, { kind: "primary" });
  const stopButton = button("Stop", () => { first.stop(); second.stop(); }, { disabled: true });
  const clearButton = button("New chat", () => { first.clear(); second.clear(); });
  prompt.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); sendButton.click(); }
  });
  replace(main,
    header("Playground", "Chat through corral with the same routing, limits and accounting as the API."),
    h("div", { class: "playground" },
      h("div", { class: "compose card" }, system.row, prompt.row,
        h("details", {}, h("summary", {}, "Tools and images"), tools.row, image.row),
        compare.row, h("div", { class: "actions" }, sendButton, stopButton, clearButton)),
      panes));
  return { stop: () => { first.stop(); second.stop(); } };
}
