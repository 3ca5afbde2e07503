// Calls to corral: the session cookie goes along by itself (same origin); every state-changing
// call carries the session's CSRF token; timed refreshes say so, so they do not keep an idle
// session alive. The key itself is never kept by the page: it is sent once, to sign in.

let csrf = "";
let onSignedOut = () => {};

export function setSession(token, signedOut) {
  csrf = token || "";
  if (signedOut) onSignedOut = signedOut;
}

export class ApiError extends Error {
  constructor(status, message, code, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

async function failure(resp) {
  let message = `HTTP ${resp.status}`;
  let code = null;
  let param = null;
  try {
    const body = await resp.json();
    const err = body && body.error;
    if (err && typeof err === "object") ({ message, code, param } = { message: err.message || message, code: err.code, param: err.param });
    else if (typeof err === "string") message = err;
  } catch { /* not JSON */ }
  return new ApiError(resp.status, message, code, param);
}

export async function call(method, path, body, { background = false, raw = false, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (background) headers["X-Corral-Background"] = "1";
  const init = { method, headers, credentials: "same-origin", cache: "no-store", signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    const err = await failure(resp);
    if (resp.status === 401 && path !== "/console/session") onSignedOut(err.message);
    throw err;
  }
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}

export const get = (path, opts) => call("GET", path, undefined, opts);
export const post = (path, body, opts) => call("POST", path, body ?? {}, opts);
export const patch = (path, body) => call("PATCH", path, body);
export const del = (path) => call("DELETE", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// Lines of an NDJSON or SSE body as they arrive.
export async function* lines(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    rest += decoder.decode(value, { stream: true });
    const parts = rest.split("\n");
    rest = parts.pop();
    for (const line of parts) yield line;
  }
  if (rest) yield rest;
}
