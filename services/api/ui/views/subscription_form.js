// Create or edit a subscription: URL, description, event types from the catalogue (with
// their descriptions and schemas) or typed patterns. API field errors appear by their field.

import { api, ApiError, query } from "../api.js";
import { session } from "../session.js";
import { clear, h, pretty, toast } from "../dom.js";

async function catalogue() {
  const types = [];
  let cursor = null;
  do {
    const page = await api("GET", `/v1/event-types${query({ limit: 500, cursor })}`);
    types.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return types;
}

function field(id, label, input, help) {
  input.id = id;
  input.setAttribute("aria-describedby", `${id}-help ${id}-error`);
  return h("div", { class: "field" },
    h("label", { for: id }, label), input,
    help ? h("p", { id: `${id}-help`, class: "help" }, help) : null,
    h("p", { id: `${id}-error`, class: "field-error" }));
}

function typePicker(types, chosen) {
  if (!types.length) {
    return h("p", { class: "help" }, "The catalogue is empty: type the event types below.");
  }
  return h("ul", { class: "type-list" }, types.map((t) => h("li", {},
    h("label", { class: "check" },
      h("input", { type: "checkbox", name: "type", value: t.name, checked: chosen.has(t.name) || null }),
      h("span", {}, h("code", {}, t.name), t.description ? h("span", { class: "muted small block" }, t.description) : null)),
    t.schema ? h("details", { class: "schema" }, h("summary", {}, "Schema"), h("pre", { class: "code" }, pretty(t.schema))) : null)));
}

const PATTERN_HELP = "not an event type or wildcard: lower-case words joined by dots (invoice.paid), a prefix wildcard (invoice.*) or *";

// What to do, for the API's messages that only say which rule a value broke.
const PLAIN = {
  url: [[/^String should have at least 1 character/, "Enter the URL of your endpoint."]],
  event_types: [[/^List should have at least 1 item/, "Pick at least one event type above, or type one here (* for everything)."]],
  tenant_id: [[/^String should match pattern/, "Use letters, digits and . _ : - only (up to 128), starting with a letter or digit."]],
};

// The API's message, made to read well next to its field.
function fieldMessage(name, message, body, problem) {
  const bare = message.replace(/^Value error, /, "");
  const text = bare.charAt(0).toUpperCase() + bare.slice(1);
  const plain = (PLAIN[name] || []).find(([rule]) => rule.test(text));
  if (plain) return plain[1];
  if (name !== "event_types" || !text.startsWith("String should match pattern")) return text;
  const entry = (problem.errors || []).find((e) => e.field.startsWith("body.event_types."));
  const index = Number(entry?.field.split(".")[2]);
  const value = Number.isInteger(index) ? body.event_types[index] : null;
  return value ? `“${value}” is ${PATTERN_HELP}.` : `One of them is ${PATTERN_HELP}.`;
}

function showErrors(form, error, body) {
  const fields = error.fields();
  const names = { url: "sub-url", description: "sub-description", event_types: "sub-patterns", tenant_id: "sub-tenant" };
  let first = null;
  const rest = [];
  for (const [name, message] of Object.entries(fields)) {
    const id = names[name];
    const slot = id && form.querySelector(`#${id}-error`);
    if (!slot) { rest.push(message); continue; }
    slot.textContent = fieldMessage(name, message, body, error.problem);
    const input = form.querySelector(`#${id}`);
    input.setAttribute("aria-invalid", "true");
    first ??= input;
  }
  const alert = form.querySelector(".form-error");
  alert.textContent = rest.length || !first ? (rest.join("; ") || error.message) : "Fix the fields marked below.";
  alert.hidden = false;
  (first || alert).focus();
}

function resetErrors(form) {
  for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  form.querySelector(".form-error").hidden = true;
}

export async function renderSubscriptionForm(main, id) {
  const [existing, types] = await Promise.all([id ? api("GET", `/v1/subscriptions/${encodeURIComponent(id)}`) : null, catalogue()]);
  const known = new Set(types.map((t) => t.name));
  const current = existing?.event_types || [];
  const chosen = new Set(current.filter((p) => known.has(p)));
  const typed = current.filter((p) => !known.has(p)).join(", ");

  const url = h("input", { type: "url", class: "input mono", required: true, placeholder: "https://example.com/webhooks", value: existing?.url || "", autocomplete: "url" });
  const description = h("input", { type: "text", class: "input", value: existing?.description || "", placeholder: "What this endpoint is for" });
  const patterns = h("input", { type: "text", class: "input mono", value: typed, placeholder: "invoice.*, order.created or *" });
  const tenant = session.kind === "operator" ? h("input", { type: "text", class: "input mono", value: existing?.tenant_id || "", placeholder: "none" }) : null;
  const back = id ? `#/subscriptions/${encodeURIComponent(id)}` : "#/subscriptions";

  const form = h("form", { class: "card form", novalidate: true },
    h("p", { class: "form-error notice notice-error", role: "alert", tabindex: "-1", hidden: true }),
    field("sub-url", "Endpoint URL", url, "Hookline POSTs each event here, signed (Standard Webhooks)."),
    field("sub-description", "Description", description, "Optional; shown in lists."),
    h("fieldset", { class: "field" },
      h("legend", {}, "Event types"),
      h("p", { class: "help" }, "Pick from the catalogue, or type exact types and wildcards below."),
      typePicker(types, chosen)),
    field("sub-patterns", "Other types or wildcards", patterns, "Comma-separated: invoice.paid, invoice.* (every invoice event) or * (everything)."),
    tenant ? field("sub-tenant", "Tenant", tenant, "Events of this tenant only; leave empty for events without a tenant.") : null,
    h("div", { class: "actions" },
      h("a", { href: back, class: "btn btn-quiet" }, "Cancel"),
      h("button", { type: "submit", class: "btn btn-primary" }, id ? "Save changes" : "Create subscription")));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    resetErrors(form);
    const picked = [...form.querySelectorAll("input[name=type]:checked")].map((c) => c.value);
    const extra = patterns.value.split(/[\s,]+/).filter(Boolean);
    const body = { url: url.value.trim(), description: description.value, event_types: [...new Set([...picked, ...extra])] };
    if (tenant) body.tenant_id = tenant.value.trim() || null;
    if (!id && body.tenant_id === null) delete body.tenant_id;
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const saved = id
        ? await api("PATCH", `/v1/subscriptions/${encodeURIComponent(id)}`, body)
        : await api("POST", "/v1/subscriptions", body);
      toast(id ? "Subscription saved." : "Subscription created.");
      location.hash = `#/subscriptions/${encodeURIComponent(saved.id)}`;
    } catch (error) {
      if (!(error instanceof ApiError) || error.status === 401) throw error;
      showErrors(form, error, body);
    } finally {
      submit.disabled = false;
    }
  });

  clear(main,
    h("a", { href: back, class: "crumb" }, id ? "← Subscription" : "← Subscriptions"),
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, id ? "Edit subscription" : "New subscription"))),
    form);
  url.focus();
}
