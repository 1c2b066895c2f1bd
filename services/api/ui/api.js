// The API client: the token goes in the Authorization header only, never in a URL.

const KEY = "hookline.token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(value) {
  sessionStorage.setItem(KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `The API answered ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  // Field errors of a 422 (or a 403 naming a field), keyed without the "body." prefix:
  // {"url": "...", "event_types": "..."}.
  fields() {
    const out = {};
    for (const e of this.problem.errors || []) {
      const [where, name] = e.field.split(".");
      if (where === "body" || where === "query") {
        if (!(name in out)) out[name] = e.message;
      }
    }
    return out;
  }
}

let onUnauthorized = () => {};

export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: "Hookline cannot be reached. Check your connection and try again." });
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return data;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") search.set(k, v);
  const text = search.toString();
  return text ? `?${text}` : "";
}
