// The event-type catalogue, each type with its schema and an example webhook body.

import { api, query } from "../api.js";
import { session } from "../session.js";
import { clear, emptyState, h, pretty } from "../dom.js";

// A plausible value for a JSON Schema: its own examples first, then by type.
export function example(schema, depth = 0) {
  if (!schema || typeof schema !== "object" || depth > 6) return null;
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if ("const" in schema) return schema.const;
  if ("default" in schema) return schema.default;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  for (const key of ["oneOf", "anyOf", "allOf"]) if (Array.isArray(schema[key]) && schema[key].length) return example(schema[key][0], depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type === "object" || schema.properties) {
    const out = {};
    for (const [name, sub] of Object.entries(schema.properties || {})) out[name] = example(sub, depth + 1);
    return out;
  }
  if (type === "array") return schema.items ? [example(schema.items, depth + 1)] : [];
  if (type === "integer") return schema.minimum ?? 42;
  if (type === "number") return schema.minimum ?? 9.99;
  if (type === "boolean") return true;
  if (type === "string") {
    const formats = { "date-time": new Date().toISOString(), email: "dev@example.com", uri: "https://example.com", uuid: "00000000-0000-4000-8000-000000000000" };
    return formats[schema.format] || "string";
  }
  return null;
}

function card(type) {
  const body = { type: type.name, timestamp: new Date().toISOString(), data: type.schema ? example(type.schema) : {} };
  return h("li", { class: "card type-card" },
    h("h2", {}, h("code", {}, type.name)),
    h("p", { class: type.description ? "" : "muted" }, type.description || "No description."),
    h("h3", { class: "small-title" }, "Example webhook body"),
    h("pre", { class: "code" }, pretty(body)),
    type.schema ? h("details", { class: "schema" }, h("summary", {}, "JSON Schema of data"), h("pre", { class: "code" }, pretty(type.schema))) : h("p", { class: "help" }, "No schema: any JSON object is accepted as data."));
}

export async function renderEventTypes(main) {
  const types = [];
  let cursor = null;
  do {
    const page = await api("GET", `/v1/event-types${query({ limit: 500, cursor })}`);
    types.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  const note = session.kind === "operator"
    ? "The catalogue is managed through the API (POST /v1/event-types)."
    : "The events you can subscribe to. The catalogue is read-only here.";
  clear(main,
    h("div", { class: "page-head" }, h("div", {}, h("h1", {}, "Event types"), h("p", { class: "muted" }, note))),
    types.length
      ? h("ul", { class: "type-grid" }, types.map(card))
      : emptyState("The catalogue is empty", "Subscriptions can still name any event type or a wildcard such as invoice.*. An operator describes types with POST /v1/event-types, each with an optional JSON Schema."));
}
