// The Hookline UI: sign-in (portal link or pasted token), the shell, and the hash router.
// Routes live in the fragment (#/subscriptions/…), which is never sent to a server.

import { api, ApiError, forgetToken, setToken, token, whenUnauthorized } from "./api.js";
import { clear, h, toast } from "./dom.js";
import { session } from "./session.js";
import { renderEventTypes } from "./views/event_types.js";
import { renderEvents } from "./views/events.js";
import { renderSubscription } from "./views/subscription.js";
import { renderSubscriptionForm } from "./views/subscription_form.js";
import { renderSubscriptions } from "./views/subscriptions.js";

const main = document.getElementById("main");
const topbar = document.getElementById("topbar");
const PORTAL_PREFIX = "hlp_";


function takeKeyFromFragment() {
  const hash = location.hash;
  if (!hash.startsWith("#key=")) return false;
  let key = hash.slice(5);
  try {
    key = decodeURIComponent(key);
  } catch {
    // A mangled link: keep it as given, and let the API refuse it with a clear message.
  }
  setToken(key);
  // Out of the address bar and the history at once, so it is not copied along or shared.
  history.replaceState(null, "", `${location.pathname}#/subscriptions`);
  return true;
}

function signInView(message) {
  topbar.hidden = true;
  const input = h("input", {
    id: "token", name: "token", type: "password", autocomplete: "off", spellcheck: "false",
    required: true, "aria-describedby": "token-help token-error", class: "input mono",
  });
  const error = h("p", { id: "token-error", class: "field-error", role: "alert" }, message || "");
  const form = h("form", { class: "signin card", novalidate: true },
    h("div", { class: "brand brand-large" }, logo(), "Hookline"),
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Open the portal link you were given, or paste an API token."),
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { id: "token-help", class: "help" }, "The token stays in this browser tab only, and is forgotten when you close it."),
    error,
    h("button", { type: "submit", class: "btn btn-primary btn-block" }, "Sign in"),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = input.value.trim();
    if (!value) {
      error.textContent = "Paste a token first.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    setToken(value);
    if (!location.hash.startsWith("#/")) history.replaceState(null, "", "#/subscriptions");
    await start();
  });
  clear(main, form);
  input.focus();
}

function logo() {
  return h("img", { src: "favicon.svg", alt: "", width: 24, height: 24, class: "logo" });
}

function identity() {
  if (session.kind === "operator") return h("span", { class: "who" }, h("span", { class: "dot" }), "Operator · all tenants");
  const minutes = Math.max(0, Math.round((new Date(session.expiresAt) - Date.now()) / 60000));
  const left = minutes >= 90 ? `${Math.round(minutes / 60)} h left` : `${minutes} min left`;
  return h("span", { class: "who" }, h("span", { class: "dot" }), "Tenant ", h("strong", {}, session.tenantId), h("span", { class: "left" }, ` · ${left}`));
}

const NAV = [
  ["#/subscriptions", "Subscriptions"],
  ["#/events", "Events"],
  ["#/event-types", "Event types"],
];

function renderTopbar() {
  const current = `#/${(location.hash.slice(2).split(/[/?]/)[0] || "subscriptions")}`;
  clear(topbar,
    h("div", { class: "topbar-inner" },
      h("a", { class: "brand", href: "#/subscriptions" }, logo(), "Hookline"),
      h("nav", { "aria-label": "Main" },
        NAV.map(([href, label]) => h("a", { href, "aria-current": href === current ? "page" : null }, label))),
      h("div", { class: "account" }, identity(),
        h("button", { type: "button", class: "btn btn-quiet btn-small", onclick: signOut }, "Sign out"))),
  );
  topbar.hidden = false;
}

function signOut() {
  forgetToken();
  session.kind = null;
  history.replaceState(null, "", location.pathname);
  signInView("");
}

function parseRoute() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  const decode = (part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  return { parts: path.split("/").filter(Boolean).map(decode), params: new URLSearchParams(search || "") };
}

async function route() {
  if (!session.kind) return;
  renderTopbar();
  const { parts, params } = parseRoute();
  const [section, id, action] = parts;
  try {
    if (section === "events") await renderEvents(main, params);
    else if (section === "event-types") await renderEventTypes(main);
    else if (section === "subscriptions" && id === "new") await renderSubscriptionForm(main, null);
    else if (section === "subscriptions" && id && action === "edit") await renderSubscriptionForm(main, id);
    else if (section === "subscriptions" && id) await renderSubscription(main, id, params);
    else await renderSubscriptions(main, params);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;
    clear(main, h("div", { class: "card notice notice-error", role: "alert" },
      h("h2", {}, error.status === 404 ? "Not found" : "Something went wrong"),
      error.status === 404 ? h("p", {}, "It does not exist, or it was deleted. Check the link, or start again from the list.") : null,
      h("p", { class: error.status === 404 ? "small" : null }, error.message),
      h("a", { href: "#/subscriptions", class: "btn" }, "Back to subscriptions")));
  }
  main.focus({ preventScroll: true });
}

function refused(error) {
  const wasPortal = (token() || "").startsWith(PORTAL_PREFIX);
  forgetToken();
  session.kind = null;
  signInView(wasPortal
    ? "This portal link has expired or was revoked. Ask the product that sent you here for a new link."
    : error?.message || "That token was refused.");
}

async function start() {
  if (!token()) return signInView("");
  try {
    const me = await api("GET", "/v1/whoami");
    session.kind = me.kind;
    session.tenantId = me.tenant_id;
    session.expiresAt = me.expires_at;
  } catch (error) {
    if (error.status !== 401) signInView(error.message);
    return;
  }
  if (!location.hash.startsWith("#/")) history.replaceState(null, "", "#/subscriptions");
  await route();
}

whenUnauthorized(refused);
window.addEventListener("hashchange", () => {
  if (takeKeyFromFragment()) session.kind = null;
  if (!session.kind) start(); else route();
});
takeKeyFromFragment();
start().catch((error) => toast(error.message, "error"));
