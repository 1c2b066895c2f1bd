// Small DOM helpers: elements are built with h(), never from HTML strings, so no value from
// the API can ever be parsed as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function ago(iso) {
  if (!iso) return "—";
  const seconds = (new Date(iso).getTime() - Date.now()) / 1000;
  const steps = [[60, "second"], [3600, "minute"], [86400, "hour"], [2592000, "day"]];
  let unit = "month";
  let value = seconds / 2592000;
  for (const [limit, name] of steps) {
    if (Math.abs(seconds) < limit) {
      const size = { second: 1, minute: 60, hour: 3600, day: 86400 }[name];
      value = seconds / size;
      unit = name;
      break;
    }
  }
  return relative.format(Math.round(value), unit);
}

export function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: iso, title: absolute.format(new Date(iso)) }, ago(iso));
}

export function fullTime(iso) {
  return iso ? absolute.format(new Date(iso)) : "—";
}

export function badge(status, text = status) {
  return h("span", { class: `badge badge-${status}` }, text);
}

export function chips(values) {
  return h("span", { class: "chips" }, values.map((v) => h("code", { class: "chip" }, v)));
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

// A button whose action may fail: the failure is shown (a 401 signs out on its own), and
// the button stays disabled while the action runs, so a double click does not do it twice.
export function button(label, onClick, cls = "btn") {
  const el = h("button", { type: "button", class: cls }, label);
  el.addEventListener("click", async (event) => {
    el.disabled = true;
    try {
      await onClick(event);
    } catch (error) {
      if (error?.status !== 401) toast(error?.message || String(error), "error");
    } finally {
      el.disabled = false;
    }
  });
  return el;
}

export function toast(message, kind = "ok") {
  const region = document.getElementById("toasts");
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : null }, message);
  region.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 10000 : 6000);
}

export function emptyState(title, text, ...actions) {
  return h("div", { class: "empty" }, h("h3", {}, title), h("p", {}, text), actions.length ? h("div", { class: "actions" }, actions) : null);
}

// A modal confirmation; resolves true when confirmed. Uses <dialog>, which keeps focus inside.
export function confirmDialog(title, text, confirmLabel, danger = false) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": "dialog-title" });
    const done = (value) => { dialog.close(); dialog.remove(); resolve(value); };
    dialog.append(
      h("h2", { id: "dialog-title" }, title),
      h("p", {}, text),
      h("div", { class: "actions" },
        button("Cancel", () => done(false), "btn btn-quiet"),
        button(confirmLabel, () => done(true), danger ? "btn btn-danger" : "btn btn-primary")),
    );
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    document.body.append(dialog);
    dialog.showModal();
    dialog.querySelector(".actions .btn:last-child").focus();
  });
}
