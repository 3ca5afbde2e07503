// The console's entry: sign-in, the frame (navigation, who is signed in), the pages by URL hash,
// and the timed refresh of the page on screen (every few seconds, paused while the tab is hidden).
import { TOKEN_ITEM, call, get, hasSession, post, setSession } from "./lib/api.js";
import { h, replace } from "./lib/dom.js";
import { button, field } from "./lib/ui.js";
import overview from "./pages/overview.js";
import instances from "./pages/instances.js";
import models from "./pages/models.js";
import playground from "./pages/playground.js";
import routing from "./pages/routing.js";
import keys from "./pages/keys.js";
import usage from "./pages/usage.js";
import audit from "./pages/audit.js";
import mine from "./pages/mine.js";

const REFRESH_MS = 5000;
const ADMIN = [
  ["overview", "Overview", overview], ["instances", "Instances", instances], ["models", "Models", models],
  ["playground", "Playground", playground], ["routing", "Routing", routing], ["keys", "Keys", keys],
  ["usage", "Usage", usage], ["audit", "Audit", audit],
];
const USER = [["mine", "My usage", mine], ["playground", "Playground", playground]];

const root = document.getElementById("app");
let current = null;
let timer = null;

function stopPage() {
  if (timer) clearInterval(timer);
  timer = null;
  if (current && current.stop) current.stop();
  current = null;
}

// Where keyboard focus is inside the page (a chain of child positions), so that a refresh,
// which rebuilds the page's tables, can put it back on the same control.
function focusPath(container) {
  const el = document.activeElement;
  if (!el || el === container || !container.contains(el)) return null;
  const path = [];
  for (let node = el; node !== container; node = node.parentElement) path.unshift([...node.parentElement.children].indexOf(node));
  return { path, tag: el.tagName, text: el.textContent };
}

function restoreFocus(container, { path, tag, text }) {
  if (container.contains(document.activeElement) && document.activeElement !== container) return;
  let node = container;
  for (const i of path) { node = node && node.children[i]; }
  if (node && node.tagName === tag && node.textContent === text) node.focus({ preventScroll: true });
}

function signInPage(message) {
  stopPage();
  setSession("");
  const key = field("Key", { type: "password", required: true, autocomplete: "off",
    help: "The master key (printed when corral first started, also in its data directory) or a gateway key (gw_…)." });
  const status = h("p", { class: "form-error", role: "alert" }, message || "");
  const form = h("form", { class: "sign-in", novalidate: true },
    h("h1", {}, "corral console"),
    h("p", { class: "intro" }, "Sign in with a key. The key is sent once; the browser then keeps only a session cookie."),
    key.row, status, h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = key.input.value.trim();
    if (!value) { replace(status, "Enter a key."); return; }
    try {
      const session = await post("/console/session", { key: value });
      key.input.value = "";
      setSession(session.csrf);  // the only answer that carries it: kept for every later call
      start(session);
    } catch (err) {
      key.input.value = "";
      replace(status, err.message);
      key.input.focus();
    }
  });
  replace(root, h("main", { id: "main", class: "center" }, form));
  document.title = "Sign in · corral console";
  key.input.focus();
}

function start(session) {
  setSession(undefined, (why) => signInPage(why));
  const who = session.principal;
  const pages = who.scope === "admin" ? ADMIN : USER;
  const nav = h("nav", { "aria-label": "Pages" },
    h("ul", {}, pages.map(([id, label]) => h("li", {}, h("a", { href: `#/${id}`, "data-page": id }, label)))));
  const main = h("main", { id: "main", tabindex: "-1" });
  const signOut = button("Sign out", async () => {
    try { await call("DELETE", "/console/session"); } catch { /* already ended */ }
    location.hash = "";
    signInPage("Signed out.");
  });
  const label = who.master ? "master key" : `${who.name || "key"} (${who.key_id}, ${who.scope})`;
  replace(root,
    h("a", { href: "#main", class: "skip" }, "Skip to content"),
    h("div", { class: "frame" },
      h("aside", {},
        h("div", { class: "brand" }, h("span", { class: "logo", "aria-hidden": "true" }, "◆"), "corral"),
        nav,
        h("div", { class: "who" }, h("span", { class: "sr-only" }, "Signed in as "), label, signOut)),
      main),
    h("div", { id: "notices", role: "status", "aria-live": "polite" }));
  let shown = 0; // navigations so far: a page that finishes loading after a newer one was asked for is dropped
  const show = async () => {
    const mine = ++shown;
    stopPage();
    const wanted = location.hash.replace(/^#\//, "");
    const entry = pages.find(([id]) => id === wanted) || pages[0];
    for (const a of nav.querySelectorAll("a")) {
      if (a.dataset.page === entry[0]) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    document.title = `${entry[1]} · corral console`;
    // each navigation renders into its own container: a slower, older one can only fill a detached one
    const view = h("div", { class: "view" }, h("p", { class: "loading" }, "Loading…"));
    replace(main, view);
    let loaded;
    try {
      loaded = (await entry[2](view, { principal: who })) || {};
    } catch (err) {
      loaded = {};
      replace(view, h("h1", {}, entry[1]), h("p", { class: "error-text", role: "alert" }, err.message));
    }
    if (mine !== shown) { if (loaded.stop) loaded.stop(); return; }
    current = loaded;
    main.dataset.page = entry[0];
    const heading = view.querySelector("h1");
    if (heading) { heading.setAttribute("tabindex", "-1"); heading.focus({ preventScroll: true }); }
    if (current.refresh) {
      const page = current;
      timer = setInterval(async () => {
        if (document.hidden || document.querySelector("dialog[open]")) return;
        const path = focusPath(view);
        try { await page.refresh(true); } catch { /* shown on the next user action */ }
        if (path) restoreFocus(view, path);
      }, REFRESH_MS);
    }
  };
  window.onhashchange = show;
  show();
}

// Another tab signed in or out: this one follows (the cookie and the token are shared).
window.addEventListener("storage", (event) => { if (event.key === TOKEN_ITEM) location.reload(); });

if (hasSession()) get("/console/session").then(start, () => signInPage());
else signInPage();
