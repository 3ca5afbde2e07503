// Pieces every page uses: headings, tables, form fields, a confirmation dialog, notices.
import { h, replace } from "./dom.js";

export function header(title, intro, ...actions) {
  return h("header", { class: "page-head" },
    h("div", {}, h("h1", {}, title), intro ? h("p", { class: "intro" }, intro) : null),
    h("div", { class: "actions" }, ...actions));
}

export function button(label, onclick, { kind = "", title, disabled } = {}) {
  return h("button", { type: "button", class: kind, onclick, title, disabled }, label);
}

// columns: [{label, cell: (row) => node|string, class?}]
export function table(columns, rows, { empty = "Nothing here yet.", caption } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" },
    h("table", {},
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.class }, c.cell(row))))))));
}

let fieldCount = 0;

// A labelled input; returns {row, input}.
export function field(label, { type = "text", value = "", name, help, required, placeholder, options, min, step, autocomplete = "off" } = {}) {
  const id = `f${++fieldCount}`;
  let input;
  if (options) {
    input = h("select", { id, name }, options.map((o) => h("option", { value: o, selected: o === value }, o)));
  } else if (type === "checkbox") {
    input = h("input", { id, name, type, checked: Boolean(value) });
  } else if (type === "textarea") {
    input = h("textarea", { id, name, rows: 3, placeholder, required, value });
  } else {
    input = h("input", { id, name, type, value, required, placeholder, min, step, autocomplete, spellcheck: "false" });
  }
  const helpId = help ? `${id}-help` : null;
  if (helpId) input.setAttribute("aria-describedby", helpId);
  const row = h("div", { class: type === "checkbox" ? "field check" : "field" },
    h("label", { for: id }, label), input, help ? h("small", { id: helpId }, help) : null);
  return { row, input };
}

// A modal <dialog>; resolves true when confirmed. The browser keeps focus inside it.
export function confirmDialog(title, message, confirmLabel = "Confirm", { danger = true } = {}) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "dlg-title" },
      h("h2", { id: "dlg-title" }, title),
      h("p", {}, message),
      h("div", { class: "actions" },
        button("Cancel", () => dialog.close("cancel")),
        button(confirmLabel, () => dialog.close("ok"), { kind: danger ? "danger" : "primary" })));
    dialog.addEventListener("close", () => { dialog.remove(); resolve(dialog.returnValue === "ok"); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// A dialog holding a form; `build(form)` fills it, `submit()` returns true to close.
export function formDialog(title, build, submitLabel, submit) {
  const status = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { method: "dialog", novalidate: true });
  const dialog = h("dialog", { "aria-labelledby": "form-title", class: "wide" }, h("h2", { id: "form-title" }, title), form);
  build(form);
  form.append(status, h("div", { class: "actions" },
    button("Cancel", () => dialog.close()),
    h("button", { type: "submit", class: "primary" }, submitLabel)));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(status);
    try {
      if (await submit()) dialog.close();
    } catch (err) {
      replace(status, err.message);
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

export function notice(text, kind = "info") {
  const area = document.getElementById("notices");
  if (!area) return;
  const item = h("div", { class: `notice ${kind}` }, text);
  area.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 10000 : 5000);
}

export function badge(state) {
  return h("span", { class: `badge ${state}` }, state);
}

export function chips(items) {
  return h("span", { class: "chips" }, (items || []).map((i) => h("span", { class: "chip" }, i)));
}
