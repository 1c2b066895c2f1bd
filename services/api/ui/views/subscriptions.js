// The subscriptions list: status, event type and (for operators) tenant filters.

import { api, query } from "../api.js";
import { session } from "../session.js";
import { badge, chips, clear, emptyState, h, when } from "../dom.js";

export function statusBadge(sub) {
  if (sub.status === "enabled") return badge("enabled", "Enabled");
  const reason = { manual: "paused", gone: "receiver answered 410", failing: "kept failing" }[sub.disabled_reason];
  return badge("disabled", reason ? `Disabled · ${reason}` : "Disabled");
}

function filters(params) {
  const status = h("select", { id: "f-status", name: "status", class: "input" },
    [["", "Any status"], ["enabled", "Enabled"], ["disabled", "Disabled"]].map(([v, l]) =>
      h("option", { value: v, selected: params.get("status") === v || null }, l)));
  const type = h("input", { id: "f-type", name: "event_type", class: "input mono", placeholder: "invoice.paid or invoice.*", value: params.get("event_type") || "" });
  const fields = [
    h("div", { class: "field" }, h("label", { for: "f-status" }, "Status"), status),
    h("div", { class: "field" }, h("label", { for: "f-type" }, "Receives event type"), type),
  ];
  let tenant = null;
  if (session.kind === "operator") {
    tenant = h("input", { id: "f-tenant", name: "tenant_id", class: "input mono", placeholder: "any tenant", value: params.get("tenant_id") || "" });
    fields.push(h("div", { class: "field" }, h("label", { for: "f-tenant" }, "Tenant"), tenant));
  }
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter subscriptions" },
    fields, h("div", { class: "field field-action" }, h("button", { type: "submit", class: "btn" }, "Apply")));
  const apply = (e) => {
    e?.preventDefault();
    location.hash = `#/subscriptions${query({ status: status.value, event_type: type.value.trim(), tenant_id: tenant?.value.trim() })}`;
  };
  form.addEventListener("submit", apply);
  status.addEventListener("change", apply);
  return form;
}

function row(sub) {
  const href = `#/subscriptions/${encodeURIComponent(sub.id)}`;
  return h("tr", {},
    h("td", { "data-label": "Endpoint" },
      h("a", { href, class: "url mono" }, sub.url),
      sub.description ? h("div", { class: "muted small" }, sub.description) : null),
    h("td", { "data-label": "Event types" }, chips(sub.event_types)),
    h("td", { "data-label": "Status" }, statusBadge(sub)),
    session.kind === "operator" ? h("td", { "data-label": "Tenant" }, sub.tenant_id ? h("code", {}, sub.tenant_id) : h("span", { class: "muted" }, "none")) : null,
    h("td", { "data-label": "Created" }, when(sub.created_at)));
}

export async function renderSubscriptions(main, params) {
  const filtered = ["status", "event_type", "tenant_id"].some((k) => params.get(k));
  const base = { status: params.get("status"), event_type: params.get("event_type"), tenant_id: params.get("tenant_id"), limit: 50 };
  const page = await api("GET", `/v1/subscriptions${query(base)}`);
  const body = h("tbody", {});
  const more = h("div", { class: "more" });
  const addRows = (result) => {
    body.append(...result.data.map(row));
    clear(more, result.next_cursor ? h("button", {
      type: "button", class: "btn", onclick: async () => addRows(await api("GET", `/v1/subscriptions${query({ ...base, cursor: result.next_cursor })}`)),
    }, "Load more") : null);
  };
  addRows(page);
  const newButton = h("a", { href: "#/subscriptions/new", class: "btn btn-primary" }, "New subscription");
  let content;
  if (page.data.length) {
    content = h("div", { class: "card flush" }, h("table", { class: "table" },
      h("caption", { class: "sr-only" }, "Subscriptions"),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Endpoint"), h("th", { scope: "col" }, "Event types"),
        h("th", { scope: "col" }, "Status"), session.kind === "operator" ? h("th", { scope: "col" }, "Tenant") : null,
        h("th", { scope: "col" }, "Created"))),
      body), more);
  } else if (filtered) {
    content = emptyState("No subscription matches these filters", "Change or clear the filters to see more.",
      h("a", { href: "#/subscriptions", class: "btn" }, "Clear filters"));
  } else {
    content = emptyState("No subscriptions yet",
      "Add the URL of an endpoint that should receive events. Hookline signs every request and retries until your endpoint answers 2xx.",
      newButton.cloneNode(true));
  }
  // With nothing to filter, the empty state alone says what to do (and has its own button).
  const none = !page.data.length && !filtered;
  clear(main,
    h("div", { class: "page-head" },
      h("div", {}, h("h1", {}, "Subscriptions"), h("p", { class: "muted" }, "Endpoints that receive your webhooks.")),
      none ? null : newButton),
    none ? null : filters(params),
    content);
}
