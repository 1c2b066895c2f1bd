// The tenant's recent events, newest first, with where each went.

import { api, query } from "../api.js";
import { session } from "../session.js";
import { badge, clear, emptyState, h, pretty, when } from "../dom.js";

function summary(counts) {
  const parts = ["succeeded", "pending", "failed", "cancelled"].filter((s) => counts[s]);
  if (!parts.length) return h("span", { class: "muted small" }, "no matching subscription");
  return h("span", { class: "chips" }, parts.map((s) => badge(s, `${counts[s]} ${s}`)));
}

function detail(event) {
  return h("div", { class: "event-detail" },
    event.deliveries.length
      ? h("ul", { class: "went" }, event.deliveries.map((d) => h("li", {},
        badge(d.status, d.status),
        h("a", { href: `#/subscriptions/${encodeURIComponent(d.subscription_id)}`, class: "mono small" }, d.subscription_id),
        h("span", { class: "small muted" }, `${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`))))
      : h("p", { class: "muted small" }, "No subscription listened to this event."),
    h("h3", { class: "small-title" }, "Payload"),
    h("pre", { class: "code" }, pretty(event.data)));
}

function item(event) {
  const panel = h("div", { id: `ev-${event.id}`, hidden: true });
  const toggle = h("button", { type: "button", class: "btn btn-small", "aria-expanded": "false", "aria-controls": `ev-${event.id}` }, "Details");
  toggle.addEventListener("click", async () => {
    const open = toggle.getAttribute("aria-expanded") === "true";
    toggle.setAttribute("aria-expanded", String(!open));
    panel.hidden = open;
    if (!open) clear(panel, detail(await api("GET", `/v1/events/${encodeURIComponent(event.id)}`)));
  });
  return h("li", { class: "event", dataset: { id: event.id } },
    h("div", { class: "delivery-main" },
      h("code", { class: "type" }, event.type),
      h("span", { class: "muted small mono" }, event.id),
      session.kind === "operator" && event.tenant_id ? h("span", { class: "small" }, "tenant ", h("code", {}, event.tenant_id)) : null,
      summary(event.delivery_counts),
      h("span", { class: "small muted" }, when(event.created_at)),
      h("span", { class: "delivery-actions" }, toggle)),
    panel);
}

export async function renderEvents(main, params) {
  const type = h("input", { id: "e-type", class: "input mono", placeholder: "invoice.paid", value: params.get("type") || "" });
  const tenant = session.kind === "operator" ? h("input", { id: "e-tenant", class: "input mono", placeholder: "any tenant", value: params.get("tenant_id") || "" }) : null;
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter events" },
    h("div", { class: "field" }, h("label", { for: "e-type" }, "Event type"), type),
    tenant ? h("div", { class: "field" }, h("label", { for: "e-tenant" }, "Tenant"), tenant) : null,
    h("div", { class: "field field-action" }, h("button", { type: "submit", class: "btn" }, "Apply")));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/events${query({ type: type.value.trim(), tenant_id: tenant?.value.trim() })}`;
  });
  const base = { type: params.get("type"), tenant_id: params.get("tenant_id"), limit: 50 };
  const page = await api("GET", `/v1/events${query(base)}`);
  const list = h("ul", { class: "deliveries card" });
  const more = h("div", { class: "more" });
  const add = (p) => {
    list.append(...p.data.map(item));
    clear(more, p.next_cursor ? h("button", { type: "button", class: "btn", onclick: async () => add(await api("GET", `/v1/events${query({ ...base, cursor: p.next_cursor })}`)) }, "Load more") : null);
  };
  add(page);
  const filtered = Boolean(base.type || base.tenant_id);
  const content = page.data.length ? [list, more]
    : filtered
      ? emptyState("No event matches these filters", "Change or clear the filters to see more.", h("a", { href: "#/events", class: "btn" }, "Clear filters"))
      : emptyState("No events yet", "Events your product publishes appear here, with where each was delivered. Send a test event from a subscription to see one.");
  clear(main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Events"), h("p", { class: "muted" }, "What was published, newest first, and where each went."))),
    page.data.length || filtered ? form : null, content);
}
