// The traffic editor and the rollback confirmation, both modal <dialog>s.
//
// The editor validates as the user types (whole numbers, a sum of 100, valid and unique
// tags) and saves the whole route in one PUT that carries the resource_version read when
// the editor opened: if someone changed the service meanwhile the server refuses with 409
// and the editor says who changed it, instead of overwriting their change.

import { api, enc } from "./api.js";
import { ago, cell, clear, dialogShell, h, revNumber, toast, trafficBar } from "./dom.js";

const TAG = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

/**
 * rows: [{revision, percent (text as typed), tag}] -> {total, errors: [{row, field, message}]}
 * row is 0-based (null for the route as a whole). Only what the form itself can tell, as
 * the user types (numbers, their sum, the form of tags); what needs the service (its
 * revisions, other services' addresses, failed revisions) the server checks: see ask().
 */
export function validateRoutes(rows) {
  const errors = [];
  let total = 0;
  let numbersOk = true;
  if (!rows.length) errors.push({ row: null, field: "routes", message: "Add at least one route." });
  rows.forEach((row, i) => {
    const n = i + 1;
    if (!row.revision) {
      errors.push({ row: i, field: "revision", message: `Route ${n}: choose a revision.` });
    }
    const text = String(row.percent ?? "").trim();
    if (text === "") {
      numbersOk = false;
      errors.push({
        row: i,
        field: "percent",
        message: `Route ${n}: enter a percent from 0 to 100.`,
      });
    } else if (!/^\d+$/.test(text)) {
      numbersOk = false;
      const what = /^\d*[.,]\d+$/.test(text) ? "a whole number" : "a number";
      errors.push({
        row: i,
        field: "percent",
        message: `Route ${n}: percent must be ${what} from 0 to 100, not “${text}”.`,
      });
    } else if (Number(text) > 100) {
      numbersOk = false;
      errors.push({ row: i, field: "percent", message: `Route ${n}: ${text}% is more than 100%.` });
    } else {
      total += Number(text);
    }
    const tag = (row.tag || "").trim();
    if (tag && (!TAG.test(tag) || tag.length > 63)) {
      errors.push({
        row: i,
        field: "tag",
        message: `Route ${n}: tag “${tag}” must be lowercase letters, digits and “-”, starting with a letter (like canary).`,
      });
    }
  });
  if (numbersOk && rows.length && total !== 100) {
    errors.push({
      row: null,
      field: "total",
      message: `The percents add up to ${total}%; they must add up to 100%.`,
    });
  }
  const byTag = new Map();
  rows.forEach((row, i) => {
    const tag = (row.tag || "").trim();
    if (tag) byTag.set(tag, [...(byTag.get(tag) || []), i]);
  });
  for (const [tag, at] of byTag) {
    if (at.length > 1) {
      errors.push({
        row: at[1],
        field: "tag",
        message: `Tag “${tag}” is used by routes ${at.map((i) => i + 1).join(" and ")}; each tag must be unique.`,
      });
    }
  }
  return { total, errors };
}

/** Who made the newest change to a service, for the "changed meanwhile" message. */
async function lastChange(service) {
  try {
    const [entry] = await api("GET", `/services/${enc(service)}/history?limit=1`);
    return entry || null;
  } catch {
    return null;
  }
}

export async function staleMessage(
  service,
  next,
  nothing = "Nothing was saved, so their change stands.",
) {
  const entry = await lastChange(service);
  const who = entry ? `by ${entry.actor} ` : "";
  const what = entry ? ` (${entry.summary}, ${ago(entry.at)})` : "";
  return `${service} was changed ${who}meanwhile${what}. ${nothing} ${next}`;
}

/**
 * Open the editor. service: the Service; revisions: Revision[]; onSaved(route) after a save.
 */
export function openTrafficEditor({ service, revisions, onSaved }) {
  const name = service.name;
  let version = service.resource_version;
  let rows = [];
  let pending = 0; // the timer of the next server check
  let asked = 0; // counts checks: only the newest answer is shown
  const load = (route) => {
    rows = (route?.routes || []).map((r) => ({
      revision: r.revision,
      percent: String(r.percent),
      tag: r.tag || "",
    }));
  };
  load(service.traffic);

  const tbody = h("tbody");
  const messages = h("ul", { class: "messages", id: "traffic-messages" });
  const live = h("div", { class: "validation", "aria-live": "polite", role: "status" }, messages);
  const server = h("p", { class: "server-check muted", id: "traffic-server", "aria-live": "polite" });
  const conflict = h("div", { class: "conflict", role: "alert", hidden: true });
  const preview = h("div", { class: "preview" });
  const totalEl = h("strong", { class: "total", id: "traffic-total" });
  const save = h("button", { type: "submit", class: "btn btn-primary" }, "Save traffic");
  const cancel = h("button", { type: "button", class: "btn", value: "cancel" }, "Cancel");
  const add = h("button", { type: "button", class: "btn btn-ghost" }, "+ Add route");

  // Sticky: which part of a request keeps a user on one revision; shadow: a revision that
  // gets copies of a share of the requests (answers compared, never sent to a caller).
  const [source0, key0] = (service.traffic?.split_by || ":").split(":");
  const stickySource = h(
    "select",
    { id: "sticky-source", name: "sticky-source", onchange: () => validate() },
    [
      ["", "Per request"],
      ["header", "Header"],
      ["query", "Query parameter"],
      ["cookie", "Cookie"],
    ].map(([value, label]) => h("option", { value, selected: value === source0 }, label)),
  );
  const stickyKey = h("input", {
    id: "sticky-key",
    name: "sticky-key",
    type: "text",
    autocomplete: "off",
    placeholder: "X-User-Id",
    value: key0 || "",
    oninput: () => validate(),
  });
  const mirror = service.traffic?.shadow?.[0];
  const shadowRevision = h(
    "select",
    { id: "shadow-revision", name: "shadow-revision", onchange: () => validate() },
    h("option", { value: "" }, "No shadow"),
    [...revisions]
      .reverse()
      .map((rev) =>
        h("option", { value: rev.id, selected: rev.id === mirror?.revision }, revNumber(rev.id)),
      ),
  );
  const shadowPercent = h("input", {
    id: "shadow-percent",
    name: "shadow-percent",
    type: "text",
    inputmode: "numeric",
    autocomplete: "off",
    value: mirror ? String(mirror.percent) : "100",
    oninput: () => validate(),
  });
  /** The sticky key and the shadow as the API takes them. */
  const extras = () => {
    const key = stickyKey.value.trim();
    const out = { split_by: stickySource.value && key ? `${stickySource.value}:${key}` : null };
    out.shadow = shadowRevision.value
      ? [
          {
            revision: shadowRevision.value,
            percent: Number(shadowPercent.value.trim()),
            ...(mirror?.items_path ? { items_path: mirror.items_path } : {}),
          },
        ]
      : [];
    return out;
  };

  const options = (selected) => [
    h("option", { value: "", selected: !selected }, "Choose a revision"),
    ...[...revisions]
      .reverse()
      .map((rev) =>
        h(
          "option",
          { value: rev.id, selected: rev.id === selected },
          `${revNumber(rev.id)} · ${rev.artifact.name} ${rev.artifact.version}${rev.status?.ready ? "" : ` (${rev.status?.reason || "not ready"})`}`,
        ),
      ),
  ];

  /** A text box bound to row[key]; every keystroke re-validates the whole route. */
  function input(row, key, idp, extra) {
    return h("input", {
      id: `${idp}-${key}`,
      name: key,
      type: "text",
      autocomplete: "off",
      value: row[key],
      oninput: (e) => {
        row[key] = e.target.value;
        validate();
      },
      ...extra,
    });
  }

  function renderRows() {
    clear(
      tbody,
      rows.map((row, i) => {
        const n = i + 1;
        const idp = `route-${i}`;
        return h(
          "tr",
          { "data-row": i },
          cell(
            "Revision",
            h("label", { class: "sr-only", for: `${idp}-revision` }, `Revision of route ${n}`),
            h(
              "select",
              {
                id: `${idp}-revision`,
                name: "revision",
                onchange: (e) => {
                  row.revision = e.target.value;
                  validate();
                },
              },
              options(row.revision),
            ),
          ),
          cell(
            "Percent",
            h("label", { class: "sr-only", for: `${idp}-percent` }, `Percent of route ${n}`),
            h(
              "span",
              { class: "percent-input" },
              input(row, "percent", idp, { inputmode: "numeric" }),
              h("span", { "aria-hidden": "true" }, "%"),
            ),
          ),
          cell(
            "Tag",
            h("label", { class: "sr-only", for: `${idp}-tag` }, `Tag of route ${n} (optional)`),
            input(row, "tag", idp, { spellcheck: "false", placeholder: "optional, e.g. canary" }),
          ),
          h(
            "td",
            { class: "row-actions" },
            h(
              "button",
              {
                type: "button",
                class: "btn btn-icon",
                "aria-label": `Remove route ${n}`,
                title: "Remove this route",
                onclick: () => {
                  rows.splice(i, 1);
                  renderRows();
                  (tbody.querySelector("select") || add).focus();
                },
              },
              "✕",
            ),
          ),
        );
      }),
    );
    validate();
  }

  function validate() {
    const { total, errors } = validateRoutes(rows);
    for (const el of tbody.querySelectorAll("[aria-invalid]")) {
      el.removeAttribute("aria-invalid");
      el.removeAttribute("aria-describedby");
    }
    for (const err of errors) {
      if (err.row === null) continue;
      const field = tbody.querySelector(`#route-${err.row}-${err.field}`);
      if (field) {
        field.setAttribute("aria-invalid", "true");
        field.setAttribute("aria-describedby", "traffic-messages");
      }
    }
    clear(
      messages,
      errors.map((e) => h("li", {}, e.message)),
    );
    live.classList.toggle("ok", errors.length === 0);
    if (!errors.length)
      messages.append(h("li", { class: "ok" }, "Valid: the percents add up to 100%."));
    totalEl.textContent = `${total}%`;
    totalEl.classList.toggle("bad", total !== 100);
    const valid = rows
      .filter((r) => /^\d+$/.test(String(r.percent).trim()))
      .map((r) => ({
        revision: r.revision,
        percent: Number(r.percent),
        tag: r.tag.trim() || null,
      }));
    clear(preview, trafficBar(valid, { label: "New split" }));
    save.disabled = errors.length > 0;
    clearTimeout(pending);
    asked += 1; // an answer still on its way is about an older route
    server.textContent = "";
    if (!errors.length) pending = setTimeout(ask, 400);
    return errors;
  }

  const routesOf = () =>
    rows.map((r) => ({
      revision: r.revision,
      percent: Number(r.percent),
      ...(r.tag.trim() ? { tag: r.tag.trim() } : {}),
    }));

  // The rules that need the service are the server's own: a pause of 400 ms after a valid
  // edit asks it (a dry run of the same PUT, checked by the same code, nothing changed).
  async function ask() {
    const mine = ++asked;
    try {
      await api("PUT", `/services/${enc(name)}/traffic?dry_run=true`, {
        routes: routesOf(),
        ...extras(),
      });
      if (mine === asked) server.textContent = "Checked by the server: ready to save.";
    } catch (err) {
      if (mine !== asked || err.status === 0) return;
      server.textContent = `The server would refuse this route: ${err.message}`;
    }
  }

  add.addEventListener("click", () => {
    rows.push({ revision: "", percent: "0", tag: "" });
    renderRows();
    tbody.querySelector(`#route-${rows.length - 1}-revision`)?.focus();
  });

  const form = h(
    "form",
    { method: "dialog", class: "editor", novalidate: true },
    h(
      "p",
      { class: "muted" },
      "Whole percents that add up to 100. A tag gives a revision its own URL ",
      h("span", { class: "mono" }, `TAG-${name}`),
      "; a tagged route may have 0%. Saving changes the whole split at once.",
    ),
    h(
      "table",
      { class: "table editor-table" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col" }, "Revision"),
          h("th", { scope: "col" }, "Percent"),
          h("th", { scope: "col" }, "Tag"),
          h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
        ),
      ),
      tbody,
    ),
    h("div", { class: "editor-tools" }, add, h("span", { class: "total-line" }, "Total ", totalEl)),
    h(
      "fieldset",
      { class: "editor-extras" },
      h("legend", {}, "A/B tests and shadows"),
      h(
        "div",
        { class: "field-row" },
        h("label", { for: "sticky-source" }, "Keep each user on one revision by"),
        stickySource,
        h("label", { for: "sticky-key", class: "sr-only" }, "Name of the key"),
        stickyKey,
      ),
      h(
        "div",
        { class: "field-row" },
        h("label", { for: "shadow-revision" }, "Mirror requests to"),
        shadowRevision,
        h("label", { for: "shadow-percent" }, "Share mirrored (%)"),
        shadowPercent,
      ),
      h(
        "p",
        { class: "muted small" },
        "Requests without the key are split per request. A shadow revision gets copies of requests; its answers are compared with the primary's and never reach a caller.",
      ),
    ),
    preview,
    live,
    server,
    conflict,
    h("div", { class: "dialog-actions" }, cancel, save),
  );

  const dialog = dialogShell("traffic-title", `Edit traffic of ${name}`, form);
  cancel.addEventListener("click", () => dialog.close());

  async function reload() {
    const fresh = await api("GET", `/services/${enc(name)}`);
    version = fresh.resource_version;
    load(fresh.traffic);
    conflict.hidden = true;
    renderRows();
    toast("Loaded the current traffic route.");
    tbody.querySelector("input,select")?.focus();
  }

  /** Save the route; ``force`` overrides the guard against traffic to a failed revision
   * (offered only after the server refused, behind an explicit confirmation). */
  async function submit(force) {
    if (validate().length) return;
    save.disabled = true;
    save.textContent = "Saving…";
    conflict.hidden = true;
    clearTimeout(pending);
    asked += 1;
    const routes = routesOf();
    try {
      const route = await api("PUT", `/services/${enc(name)}/traffic${force ? "?force=true" : ""}`, {
        routes,
        ...extras(),
        resource_version: version,
      });
      dialog.close();
      toast(force ? `Traffic of ${name} saved (a failed revision gets some).` : `Traffic of ${name} saved.`);
      onSaved(route);
    } catch (err) {
      const text = err.stale
        ? await staleMessage(name, "Reload to edit the current route.")
        : err.message;
      const failed = err.status === 409 && err.details?.revision && err.details?.reason;
      clear(
        conflict,
        h("p", {}, text),
        err.stale
          ? h(
              "button",
              { type: "button", class: "btn", onclick: () => reload() },
              "Reload current route",
            )
          : null,
        failed ? overrideFailed(err.details.revision) : null,
      );
      conflict.hidden = false;
      save.textContent = "Save traffic";
      save.disabled = false;
    }
  }

  /** The same override the CLI has (--force), behind a confirmation the user ticks. */
  function overrideFailed(revision) {
    const box = h("input", { type: "checkbox", id: "override-failed" });
    const go = h(
      "button",
      { type: "button", class: "btn btn-danger", disabled: true, onclick: () => submit(true) },
      "Save anyway",
    );
    box.addEventListener("change", () => (go.disabled = !box.checked));
    return h(
      "div",
      { class: "override" },
      h(
        "label",
        { for: "override-failed" },
        box,
        ` I understand: the requests sent to ${revNumber(revision)} will fail until it is fixed`,
      ),
      go,
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await submit(false);
  });

  renderRows();
  dialog.showModal();
  tbody.querySelector("input[name=percent]")?.focus();
  return dialog;
}

/**
 * The route a rollback returns to: the `before` of the newest traffic change. Returns
 * undefined when the last 100 changes hold no traffic change (unknown: let the server say),
 * null when there is no earlier route.
 */
export async function previousRoute(name) {
  const history = await api("GET", `/services/${enc(name)}/history?limit=100`);
  const last = history.find(
    (e) => e.action === "traffic.changed" || e.action === "traffic.rollback",
  );
  if (!last) return history.length < 100 ? null : undefined;
  return last.before || null;
}

/** Ask before rolling back; on yes, POST the rollback conditional on resource_version. */
export async function confirmRollback({ service, onDone }) {
  const name = service.name;
  let target;
  try {
    target = await previousRoute(name);
  } catch {
    target = undefined;
  }
  const error = h("div", { class: "conflict", role: "alert", hidden: true });
  const yes = h("button", { type: "button", class: "btn btn-danger" }, "Roll back");
  const no = h("button", { type: "button", class: "btn" }, "Cancel");
  const dialog = dialogShell(
    "rollback-title",
    `Roll back ${name}?`,
    h(
      "p",
      {},
      "Traffic returns to the route it had before the last change, in one step. ",
      "Rolling back again goes forward again.",
    ),
    h("h3", { class: "small-heading" }, "Now"),
    trafficBar(service.traffic?.routes, { label: "Current split" }),
    h("h3", { class: "small-heading" }, "After the rollback"),
    target === undefined
      ? h("p", { class: "muted" }, "The route before the last change (the server keeps it).")
      : target
        ? trafficBar(target.routes, { label: "Split after the rollback" })
        : h(
            "p",
            { class: "muted" },
            "There is no earlier route to go back to: traffic has not been changed since the first revision.",
          ),
    error,
    h("div", { class: "dialog-actions" }, no, yes),
  );
  no.addEventListener("click", () => dialog.close());
  yes.disabled = target === null;
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try {
      const route = await api(
        "POST",
        `/services/${enc(name)}/rollback?resource_version=${service.resource_version}`,
      );
      dialog.close();
      toast(`Rolled back ${name}.`);
      onDone(route);
    } catch (err) {
      const text = err.stale
        ? await staleMessage(name, "Close this and look at the current route first.")
        : err.message;
      clear(error, h("p", {}, text));
      error.hidden = false;
      yes.disabled = false;
    }
  });
  dialog.showModal();
  no.focus();
  return dialog;
}
