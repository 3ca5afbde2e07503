// Calls to corral: the session cookie goes along by itself (same origin), and every call carries
// the session's CSRF token, GETs included: the cookie alone is worth nothing, since browsers send
// it to every port of the host. The token comes once, in the sign-in answer, and is kept in this
// origin's localStorage (no other port or site can read it; the console's tabs share it). Timed
// refreshes say so, so they do not keep an idle session alive. The key itself is never kept by
// the page: it is sent once, to sign in.

export const TOKEN_ITEM = "corral.csrf";
let onSignedOut = () => {};

const token = () => localStorage.getItem(TOKEN_ITEM) || "";
export const hasSession = () => token() !== "";

// The token of a new session (or "" to forget it), and what to do when the session ends.
export function setSession(csrf, signedOut) {
  if (csrf) localStorage.setItem(TOKEN_ITEM, csrf);
  else if (csrf === "") localStorage.removeItem(TOKEN_ITEM);
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
  const csrf = token();
  if (csrf) headers["X-CSRF-Token"] = csrf;
  if (background) headers["X-Corral-Background"] = "1";
  const init = { method, headers, credentials: "same-origin", cache: "no-store", signal };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (!resp.ok) {
    const err = await failure(resp);
    const ended = resp.status === 401 || (resp.status === 403 && err.code === "csrf_failed");
    if (ended && path !== "/console/session") onSignedOut(err.message);
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
