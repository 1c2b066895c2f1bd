// One subscription: its actions, its signing secret, its deliveries and their attempts,
// retry and recovery.

import { api, ApiError, query } from "../api.js";
import { session } from "../session.js";
import { badge, button, chips, clear, confirmDialog, emptyState, fullTime, h, toast, when } from "../dom.js";
import { statusBadge } from "./subscriptions.js";

const STATUSES = [["", "All"], ["pending", "Pending"], ["succeeded", "Succeeded"], ["failed", "Failed"], ["cancelled", "Cancelled"]];

const path = (id) => `/v1/subscriptions/${encodeURIComponent(id)}`;

function secretCard(sub) {
  const value = h("code", { class: "secret mono", id: "secret-value" }, "whsec_••••••••••••••••••••••••");
  let shown = false;
  const reveal = button("Reveal", async () => {
    if (shown) {
      value.textContent = "whsec_••••••••••••••••••••••••";
      reveal.textContent = "Reveal";
      shown = false;
      return;
    }
    const fresh = await api("GET", path(sub.id));
    value.textContent = fresh.secret;
    reveal.textContent = "Hide";
    shown = true;
  });
  reveal.setAttribute("aria-controls", "secret-value");
  const copy = button("Copy", async () => {
    const fresh = await api("GET", path(sub.id));
    try {
      await navigator.clipboard.writeText(fresh.secret);
    } catch {
      throw new Error("This browser did not allow copying here: reveal the secret and copy it by hand.");
    }
    toast("Secret copied.");
  });
  const rotate = button("Rotate…", async () => {
    const ok = await confirmDialog("Rotate the signing secret?",
      "A new secret signs from now on. The current one keeps signing beside it for 24 hours, so your endpoint can switch over without missing a webhook.",
      "Rotate secret");
    if (!ok) return;
    const rotated = await api("POST", `${path(sub.id)}/secret/rotate`);
    value.textContent = rotated.secret;
    reveal.textContent = "Hide";
    shown = true;
    toast("Secret rotated. The previous one still signs for 24 hours.");
  });
  const previous = sub.previous_secret_expires_at && new Date(sub.previous_secret_expires_at) > new Date()
    ? h("p", { class: "help" }, "The previous secret also signs until ", fullTime(sub.previous_secret_expires_at), ".")
    : null;
  return h("section", { class: "card", "aria-labelledby": "secret-title" },
    h("h2", { id: "secret-title" }, "Signing secret"),
    h("p", { class: "muted" }, "Verify the webhook-signature header of each request with it."),
    h("div", { class: "secret-row" }, value, h("div", { class: "actions" }, reveal, copy, rotate)),
    previous);
}

function attemptsTable(detail) {
  if (!detail.attempt_log.length) return h("p", { class: "muted small" }, "No attempt yet: it is on its way.");
  return h("div", { class: "table-scroll" }, h("table", { class: "table attempts" },
    h("caption", { class: "sr-only" }, "Attempts"),
    h("thead", {}, h("tr", {}, ["#", "Time", "Status", "Duration", "Outcome", "Error", "Response"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, detail.attempt_log.map((a) => h("tr", {},
      h("td", { "data-label": "#" }, a.attempt),
      h("td", { "data-label": "Time" }, fullTime(a.attempted_at)),
      h("td", { "data-label": "Status" }, a.status_code ? h("code", {}, a.status_code) : h("span", { class: "muted", title: "No HTTP answer" }, "—")),
      h("td", { "data-label": "Duration" }, `${a.duration_ms} ms`),
      h("td", { "data-label": "Outcome" }, badge(a.outcome === "success" ? "succeeded" : a.outcome === "retry" ? "pending" : "failed", a.outcome)),
      h("td", { "data-label": "Error" }, a.error || h("span", { class: "muted" }, "—")),
      h("td", { "data-label": "Response" }, a.response_body ? h("pre", { class: "code response" }, a.response_body.slice(0, 600)) : h("span", { class: "muted" }, "empty")))))));
}

function deliveryItem(d, reload) {
  const panel = h("div", { class: "attempts-panel", id: `att-${d.id}`, hidden: true });
  const toggle = h("button", { type: "button", class: "btn btn-small", "aria-expanded": "false", "aria-controls": `att-${d.id}` }, "Attempts");
  toggle.addEventListener("click", async () => {
    const open = toggle.getAttribute("aria-expanded") === "true";
    toggle.setAttribute("aria-expanded", String(!open));
    panel.hidden = open;
    if (!open) clear(panel, attemptsTable(await api("GET", `/v1/deliveries/${encodeURIComponent(d.id)}`)));
  });
  const retry = d.status === "pending" ? null : button("Retry", async () => {
    await api("POST", `/v1/deliveries/${encodeURIComponent(d.id)}/retry`);
    toast("Delivery queued again.");
    await reload();
  }, "btn btn-small");
  return h("li", { class: "delivery", dataset: { status: d.status, id: d.id } },
    h("div", { class: "delivery-main" },
      badge(d.status, d.status),
      h("code", { class: "type" }, d.event_type),
      h("span", { class: "muted small mono" }, d.event_id),
      h("span", { class: "small" }, `${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`),
      d.last_status_code ? h("span", { class: "small" }, "last ", h("code", {}, d.last_status_code)) : null,
      h("span", { class: "small muted" }, when(d.created_at)),
      h("span", { class: "delivery-actions" }, toggle, retry)),
    d.last_error && d.status !== "succeeded" ? h("p", { class: "small error-text" }, d.last_error) : null,
    panel);
}

function deliveriesCard(sub, status, sendTest) {
  const list = h("div", {});
  const more = h("div", { class: "more" });
  const load = async () => {
    const base = { status, limit: 25 };
    const page = await api("GET", `${path(sub.id)}/deliveries${query(base)}`);
    if (!page.data.length) {
      clear(list, status
        ? emptyState(`No ${status} deliveries`, "Pick another status to see the rest.")
        : emptyState("Nothing delivered yet", "Publish an event this subscription listens to, or send a test event to check your endpoint.", button("Send test event", sendTest, "btn btn-primary")));
      clear(more);
      return;
    }
    const ul = h("ul", { class: "deliveries" });
    const add = (p) => {
      ul.append(...p.data.map((d) => deliveryItem(d, load)));
      clear(more, p.next_cursor ? button("Load more", async () => add(await api("GET", `${path(sub.id)}/deliveries${query({ ...base, cursor: p.next_cursor })}`))) : null);
    };
    add(page);
    clear(list, ul);
  };
  const tabs = h("div", { class: "segmented", role: "group", "aria-label": "Delivery status" },
    STATUSES.map(([value, label]) => h("a", {
      href: `#/subscriptions/${encodeURIComponent(sub.id)}${query({ status: value })}`,
      class: "seg", "aria-current": value === status ? "true" : null,
    }, label)));
  const card = h("section", { class: "card", "aria-labelledby": "deliveries-title" },
    h("div", { class: "card-head" }, h("h2", { id: "deliveries-title" }, "Deliveries"),
      h("div", { class: "actions" }, button("Refresh", load, "btn btn-small"))),
    h("p", { class: "muted" }, "Newest first. Open a delivery's attempts to see what your endpoint answered."),
    tabs, list, more);
  return { card, load };
}

function recoverCard(sub, reload) {
  const since = h("input", { type: "datetime-local", id: "recover-since", class: "input", required: true, "aria-describedby": "recover-since-help recover-since-error" });
  const start = new Date(Date.now() - 24 * 3600 * 1000);
  since.value = new Date(start.getTime() - start.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  const error = h("p", { id: "recover-since-error", class: "field-error" });
  const form = h("form", { class: "inline-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "recover-since" }, "Failed since"), since,
      h("p", { id: "recover-since-help", class: "help" }, "Your local time."), error),
    h("div", { class: "field field-action" }, h("button", { type: "submit", class: "btn" }, "Send failures again")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    since.removeAttribute("aria-invalid");
    try {
      if (!since.value) throw new ApiError(422, { detail: "Pick a moment.", errors: [{ field: "body.since", message: "Pick a moment." }] });
      const result = await api("POST", `${path(sub.id)}/recover`, { since: new Date(since.value).toISOString() });
      toast(result.queued ? `${result.queued} failed deliver${result.queued === 1 ? "y" : "ies"} queued again.` : "No failed delivery since then.");
      await reload();
    } catch (err) {
      if (!(err instanceof ApiError) || err.status === 401) throw err;
      error.textContent = err.fields().since || err.message;
      since.setAttribute("aria-invalid", "true");
      since.focus();
    }
  });
  return h("section", { class: "card", "aria-labelledby": "recover-title" },
    h("h2", { id: "recover-title" }, "Recover failures"),
    h("p", { class: "muted" }, "After an outage of your endpoint, send again every delivery that failed since a moment."),
    form);
}

export async function renderSubscription(main, id, params) {
  const sub = await api("GET", path(id));
  const status = params.get("status") || "";
  const sendTest = async () => {
    await api("POST", `${path(id)}/test`);
    toast("Test event sent. It shows below once your endpoint answers.");
    await deliveries.load();
  };
  const deliveries = deliveriesCard(sub, status, sendTest);
  const toggleLabel = sub.status === "enabled" ? "Disable" : "Enable";
  const toggle = button(toggleLabel, async () => {
    await api("PATCH", path(id), { status: sub.status === "enabled" ? "disabled" : "enabled" });
    toast(sub.status === "enabled" ? "Subscription disabled: nothing is delivered to it." : "Subscription enabled.");
    await renderSubscription(main, id, params);
  });
  const remove = button("Delete…", async () => {
    const ok = await confirmDialog("Delete this subscription?", `Nothing more is delivered to ${sub.url}, and its pending deliveries are cancelled. This cannot be undone.`, "Delete subscription", true);
    if (!ok) return;
    await api("DELETE", path(id));
    toast("Subscription deleted.");
    location.hash = "#/subscriptions";
  }, "btn btn-danger-quiet");
  clear(main,
    h("a", { href: "#/subscriptions", class: "crumb" }, "← Subscriptions"),
    h("div", { class: "page-head" },
      h("div", { class: "grow" },
        h("h1", { class: "url-title mono" }, sub.url),
        h("div", { class: "meta" }, statusBadge(sub), sub.description ? h("span", {}, sub.description) : null)),
      h("div", { class: "actions" },
        h("a", { href: `#/subscriptions/${encodeURIComponent(id)}/edit`, class: "btn" }, "Edit"),
        toggle, button("Send test event", sendTest, "btn"), remove)),
    h("dl", { class: "card facts" },
      h("div", {}, h("dt", {}, "Event types"), h("dd", {}, chips(sub.event_types))),
      h("div", {}, h("dt", {}, "ID"), h("dd", {}, h("code", {}, sub.id))),
      session.kind === "operator" ? h("div", {}, h("dt", {}, "Tenant"), h("dd", {}, sub.tenant_id ? h("code", {}, sub.tenant_id) : "none")) : null,
      h("div", {}, h("dt", {}, "Created"), h("dd", {}, fullTime(sub.created_at)))),
    deliveries.card,
    h("div", { class: "two" }, secretCard(sub), recoverCard(sub, deliveries.load)));
  await deliveries.load();
}
