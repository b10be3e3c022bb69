// One service: overview (traffic, revisions), live metrics, logs tail and change history.

import { api, enc } from "./api.js";
import {
  cell,
  clear,
  colorSlot,
  crumbs,
  h,
  revNumber,
  shortDigest,
  statusBadge,
  timeEl,
  trafficBar,
} from "./dom.js";
import { fetchRollout, renderRollout } from "./rollout.js";
import { renderShadow } from "./shadow.js";
import {
  percentOf,
  revisionOptions,
  setParam,
  swap,
} from "./service_common.js";
import { logsTab, metricsTab } from "./service_tabs.js";
import { confirmRollback, openTrafficEditor } from "./traffic.js";

const REFRESH_MS = 5000;
const TABS = [
  ["overview", "Overview"],
  ["metrics", "Metrics"],
  ["logs", "Logs"],
  ["history", "History"],
];
const ACTIONS = {
  "service.created": "Service created",
  "service.updated": "Service updated",
  "service.deleted": "Service deleted",
  "revision.created": "Revision created",
  "traffic.changed": "Traffic changed",
  "traffic.rollback": "Rolled back",
  "rollout.started": "Rollout started",
  "rollout.succeeded": "Rollout succeeded",
  "rollout.rolled_back": "Rollout rolled back",
  "rollout.stopped": "Rollout stopped",
};


export function servicePage(main, session, name, tab, params) {
  const stops = [];
  let service = null;
  let revisions = [];
  let loadedKey = "";
  const opened = new Set(); // revisions whose settings are unfolded, kept across refreshes
  const head = h(
    "div",
    { class: "service-head" },
    h("h1", { tabindex: "-1", id: "page-title" }, name),
  );
  const notice = h("div");
  const body = h("div", { class: "tab-body" }, h("p", { class: "loading" }, "Loading…"));
  const nav = h(
    "nav",
    { class: "tabs", "aria-label": `${name} sections` },
    TABS.map(([key, label]) =>
      h(
        "a",
        {
          href: `#/services/${enc(name)}${key === "overview" ? "" : `/${key}`}`,
          class: "tab",
          "aria-current": key === tab ? "page" : null,
        },
        label,
      ),
    ),
  );
  clear(main, crumbs([["Services", "#/"]], name), head, notice, nav, body);

  function renderHead() {
    const s = service.status || {};
    const writable = session.canWrite(service);
    const off = { disabled: !writable, "aria-describedby": writable ? null : "ro-note" };
    swap(
      head,
      h(
        "div",
        { class: "title-row" },
        h("h1", { tabindex: "-1", id: "page-title" }, service.name),
        statusBadge(s),
        h(
          "div",
          { class: "actions title-actions" },
          h(
            "button",
            {
              id: "edit-service",
              type: "button",
              class: "btn btn-quiet",
              ...off,
              onclick: async () =>
                (await import("./service_forms.js")).openServiceDialog({
                  session,
                  service,
                  onSaved: () => refresh(true),
                }),
            },
            "Edit…",
          ),
          h(
            "button",
            {
              id: "delete-service",
              type: "button",
              class: "btn btn-quiet btn-danger-text",
              ...off,
              onclick: async () =>
                (await import("./service_forms.js")).confirmDeleteService({
                  service,
                  revisions,
                  onDeleted: () => {
                    location.hash = "#/";
                  },
                }),
            },
            "Delete service…",
          ),
          h(
            "button",
            {
              id: "new-revision",
              type: "button",
              class: "btn",
              ...off,
              onclick: () => {
                location.hash = `#/services/${enc(name)}/new-revision`;
              },
            },
            "New revision",
          ),
        ),
      ),
      h(
        "dl",
        { class: "facts" },
        h("div", {}, h("dt", {}, "Team"), h("dd", {}, service.team)),
        h(
          "div",
          {},
          h("dt", {}, "URL"),
          h(
            "dd",
            {},
            s.url
              ? h(
                  "a",
                  { href: s.url, target: "_blank", rel: "noopener noreferrer", class: "url" },
                  s.url,
                )
              : "—",
          ),
        ),
        h("div", {}, h("dt", {}, "Revisions"), h("dd", {}, String(revisions.length))),
        h(
          "div",
          {},
          h("dt", {}, "Created"),
          h(
            "dd",
            {},
            timeEl(service.created_at),
            service.created_by ? ` by ${service.created_by}` : "",
          ),
        ),
      ),
      service.description ? h("p", { class: "muted" }, service.description) : null,
      !s.ready && s.message ? h("p", { class: "status-message" }, s.message) : null,
    );
    const why = session.readOnly(service);
    swap(notice, why ? h("p", { class: "readonly-note", id: "ro-note" }, why) : null);
  }

  async function load() {
    const [svc, revs] = await Promise.all([
      api("GET", `/services/${enc(name)}`),
      api("GET", `/services/${enc(name)}/revisions`),
    ]);
    service = svc;
    revisions = revs;
    const key = JSON.stringify([svc, revs]);
    const changed = key !== loadedKey;
    loadedKey = key;
    return changed;
  }

  // ------------------------------------------------------------------ overview

  const overview = {
    traffic: h("section", { class: "card", "aria-labelledby": "traffic-heading" }),
    revisions: h("section", { class: "card", "aria-labelledby": "revisions-heading" }),
    rollout: h("section", { class: "card", "aria-labelledby": "rollout-heading" }),
    shadow: h("section", { class: "card", "aria-labelledby": "shadow-heading", hidden: true }),
    changes: h(
      "section",
      { class: "card", "aria-labelledby": "changes-heading" },
      h("div", { class: "card-head" }, h("h2", { id: "changes-heading" }, "Recent changes")),
      h("p", { class: "loading" }, "Loading…"),
    ),
  };

  function historyRows(entries) {
    return entries.map((e) =>
      h(
        "tr",
        {},
        cell("When", timeEl(e.at)),
        cell("Who", e.actor),
        cell("What", ACTIONS[e.action] || e.action),
        cell("Details", h("span", { class: "mono small" }, e.summary)),
      ),
    );
  }

  function historyTable(label, tbody) {
    return h(
      "table",
      { class: "table responsive compact", "aria-label": label },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["When", "Who", "What", "Details"].map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      tbody,
    );
  }

  async function renderChanges() {
    let entries = [];
    try {
      entries = await api("GET", `/services/${enc(name)}/history?limit=5`);
    } catch {
      return; // the next refresh tries again
    }
    swap(
      overview.changes,
      h(
        "div",
        { class: "card-head" },
        h("h2", { id: "changes-heading" }, "Recent changes"),
        h("a", { href: `#/services/${enc(name)}/history` }, "All changes"),
      ),
      entries.length
        ? historyTable("Recent changes", h("tbody", {}, historyRows(entries)))
        : h("p", { class: "empty" }, "No changes yet."),
    );
  }

  /** The rollout card, read anew at every refresh (its figures move every step). */
  async function renderRolloutCard() {
    let rollout;
    try {
      rollout = await fetchRollout(name);
    } catch {
      return; // the next refresh tries again
    }
    renderRollout(overview.rollout, {
      name,
      rollout,
      revisions,
      button: changeButton,
      onChange: () => refresh(true),
    });
  }

  /** A change button; for a token that may not change this service it is off, saying why. */
  function changeButton(id, label, kind, usable, onclick) {
    const writable = session.canWrite(service);
    return h(
      "button",
      {
        id,
        type: "button",
        class: `btn ${kind}`,
        disabled: !writable || !usable,
        "aria-describedby": writable ? null : "ro-note",
        onclick,
      },
      label,
    );
  }

  async function renderOverview() {
    const routes = service.traffic?.routes || [];
    const urls = new Map(
      (service.status?.traffic || []).map((t) => [`${t.revision}@${t.tag || ""}`, t.url]),
    );
    const edit = changeButton("edit-traffic", "Edit traffic", "btn-primary", revisions.length > 0, () =>
      openTrafficEditor({ service, revisions, onSaved: () => refresh(true) }),
    );
    const rollback = changeButton("rollback", "Roll back…", "", routes.length > 0, () =>
      confirmRollback({ service, onDone: () => refresh(true) }),
    );
    swap(
      overview.traffic,
      h(
        "div",
        { class: "card-head" },
        h("h2", { id: "traffic-heading" }, "Traffic"),
        h("div", { class: "actions" }, rollback, edit),
      ),
      routes.length
        ? [
            trafficBar(routes, { label: "Current split" }),
            h(
              "table",
              { class: "table responsive compact", "aria-label": "Traffic routes" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ["Revision", "Percent", "Tag", "URL"].map((t) => h("th", { scope: "col" }, t)),
                ),
              ),
              h(
                "tbody",
                {},
                routes.map((r) =>
                  h(
                    "tr",
                    {},
                    cell(
                      "Revision",
                      h("span", { class: `swatch c${colorSlot(r.revision)}` }),
                      h("span", { class: "mono" }, r.revision),
                    ),
                    cell("Percent", `${r.percent}%`),
                    cell(
                      "Tag",
                      r.tag
                        ? h("span", { class: "tag" }, r.tag)
                        : h("span", { class: "muted" }, "—"),
                    ),
                    cell(
                      "URL",
                      urls.get(`${r.revision}@${r.tag || ""}`) && r.tag
                        ? h(
                            "a",
                            {
                              href: urls.get(`${r.revision}@${r.tag}`),
                              target: "_blank",
                              rel: "noopener noreferrer",
                              class: "url",
                            },
                            urls.get(`${r.revision}@${r.tag}`),
                          )
                        : h("span", { class: "muted" }, "—"),
                    ),
                  ),
                ),
              ),
            ),
          ]
        : h(
            "p",
            { class: "empty" },
            "No traffic yet: the first revision gets 100% when it is created (New revision, or sos deploy FILE).",
          ),
    );
    swap(
      overview.revisions,
      h(
        "div",
        { class: "card-head" },
        h("h2", { id: "revisions-heading" }, "Revisions"),
        h("span", { class: "muted small" }, "Newest first; revisions never change once created"),
      ),
      revisions.length
        ? h(
            "table",
            { class: "table responsive", "aria-label": "Revisions, newest first" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ["Revision", "Artifact", "Created", "Status", "Instances", "Traffic", "Look"].map(
                  (t) => h("th", { scope: "col" }, t),
                ),
              ),
            ),
            h(
              "tbody",
              {},
              [...revisions].reverse().map((rev) => revisionRow(rev)),
            ),
          )
        : h(
            "p",
            { class: "empty" },
            "No revisions yet. Create the first one with New revision (from an artifact pushed with ",
            h("span", { class: "mono" }, "sos build --push"),
            "), or from a terminal with ",
            h("span", { class: "mono" }, "sos deploy FILE"),
            ".",
          ),
    );
  }

  /** The revision's memory limit, or what its instances run with when it sets none (the
   * server's default, as its status reports it; unknown where the backend does not say). */
  function memoryLimit(rev) {
    if (rev.resources?.memory) return rev.resources.memory;
    const applied = rev.status?.limits;
    if (applied?.memory_source !== "server-default") return "not set";
    return applied.memory
      ? `not set: ${applied.memory}, the server's default`
      : "not set: no limit (the server has no default)";
  }

  /** What `sos revision show` prints: the revision's settings, folded away. */
  function revisionSettings(rev) {
    const g = rev.gunicorn_config || {};
    const a = rev.autoscaling || {};
    const hc = rev.health_check || {};
    const r = rev.resources || {};
    const fact = (term, ...value) => h("div", {}, h("dt", {}, term), h("dd", {}, ...value));
    const details = h(
      "details",
      { class: "rev-settings", open: opened.has(rev.id) },
      h("summary", { "aria-label": `Settings of revision ${revNumber(rev.id)}` }, "Settings"),
      h(
        "dl",
        {},
        fact(
          "Environment",
          rev.env_vars?.length
            ? rev.env_vars.map((e) =>
                h(
                  "div",
                  { class: "mono" },
                  e.secret
                    ? `${e.id} from secret ${e.secret}`
                    : e.redacted
                      ? `${e.id}=(hidden: not your team's)`
                      : `${e.id}=${e.value}`,
                ),
              )
            : "none",
        ),
        fact("Port", rev.port ? `${rev.port}` : "$PORT (8080 unless the runtime says)"),
        fact("Resources", `memory ${memoryLimit(rev)}, cpu ${r.cpu || "no limit"}`),
        fact(
          "Autoscaling",
          `${a.min_scale}..${a.max_scale} instances, target concurrency ${a.target_concurrency} (initially ${a.initial_scale})`,
        ),
        fact(
          "Health check",
          `liveness ${hc.liveness_probe || "off"}, readiness ${hc.readiness_probe || "off"}`,
        ),
        fact(
          "Serving",
          `${g.worker_count} worker(s) x ${g.thread_count} thread(s), class ${g.worker_class || "auto"}, timeout ${g.timeout_seconds} s`,
        ),
      ),
      session.canWrite(service)
        ? h(
            "a",
            { href: `#/services/${enc(name)}/new-revision?from=${enc(rev.id)}` },
            "New revision from these settings",
          )
        : null,
    );
    details.addEventListener("toggle", () => {
      if (details.open) opened.add(rev.id);
      else opened.delete(rev.id);
    });
    return details;
  }

  function revisionRow(rev) {
    const st = rev.status || {};
    const inst = st.instances || {};
    const share = percentOf(service, rev.id);
    const link = (t, label) =>
      h(
        "a",
        {
          href: `#/services/${enc(name)}/${t}?revision=${enc(rev.id)}`,
          "aria-label": `${label} of revision ${revNumber(rev.id)}`,
        },
        label,
      );
    return h(
      "tr",
      { "data-revision": rev.id },
      cell(
        "Revision",
        h("span", { class: `swatch c${colorSlot(rev.id)}` }),
        h("strong", { class: "mono" }, revNumber(rev.id)),
        rev.id === service.latest_revision ? h("span", { class: "chip" }, "latest") : null,
        rev.description ? h("div", { class: "muted small" }, rev.description) : null,
        revisionSettings(rev),
      ),
      cell(
        "Artifact",
        h("div", {}, `${rev.artifact.name} `, h("span", { class: "mono" }, rev.artifact.version)),
        rev.artifact.digest
          ? h(
              "div",
              { class: "mono muted small", title: rev.artifact.digest },
              h("span", { class: "sr-only" }, "digest "),
              shortDigest(rev.artifact.digest),
            )
          : null,
      ),
      cell(
        "Created",
        timeEl(rev.created_at),
        h("div", { class: "muted small" }, rev.created_by ? `by ${rev.created_by}` : ""),
      ),
      cell(
        "Status",
        statusBadge(st),
        st.message ? h("div", { class: "muted small" }, st.message) : null,
      ),
      cell(
        "Instances",
        h(
          "span",
          { title: `wanted ${inst.wanted ?? 0}` },
          `${inst.ready ?? 0} ready / ${inst.running ?? 0} running`,
        ),
      ),
      cell(
        "Traffic",
        share.length
          ? share.map((r) =>
              h("div", {}, `${r.percent}%`, r.tag ? h("span", { class: "tag" }, r.tag) : null),
            )
          : h("span", { class: "muted" }, "0%"),
      ),
      cell("Look", { class: "links" }, link("metrics", "Metrics"), link("logs", "Logs")),
    );
  }

  // ------------------------------------------------------------------ metrics

  /** A revision picker that keeps its choice in the address (so the view can be shared). */
  function revisionSelect(id, selected, options, onPick) {
    return h(
      "select",
      {
        id,
        onchange: (e) => {
          setParam("revision", e.target.value);
          onPick(e.target.value);
        },
      },
      revisionOptions(revisions, service, selected, options),
    );
  }

  function historyTab() {
    const tbody = h("tbody");
    const more = h("button", { type: "button", class: "btn", hidden: true }, "Load older changes");
    let oldest = null;
    swap(
      body,
      h(
        "section",
        { class: "card", "aria-labelledby": "history-heading" },
        h(
          "div",
          { class: "card-head" },
          h("h2", { id: "history-heading" }, "Change history"),
          h("span", { class: "muted small" }, "Newest first"),
        ),
        historyTable("Change history", tbody),
        more,
      ),
    );
    async function page() {
      const query = oldest ? `&before=${oldest}` : "";
      const entries = await api("GET", `/services/${enc(name)}/history?limit=50${query}`);
      tbody.append(...historyRows(entries));
      if (entries.length) oldest = entries[entries.length - 1].id;
      more.hidden = entries.length < 50;
    }
    more.addEventListener("click", () => page());
    page();
    return () => {};
  }

  // ------------------------------------------------------------------ wiring

  let stopTab = () => {};
  function renderTab() {
    if (tab === "overview") {
      swap(
        body,
        overview.traffic,
        overview.rollout,
        overview.shadow,
        overview.revisions,
        overview.changes,
      );
      renderOverview();
      renderRolloutCard();
      renderShadow(overview.shadow, { name, service });
      renderChanges();
    } else if (tab === "metrics") {
      stopTab = metricsTab({ body, name, params, service, revisions, revisionSelect });
    } else if (tab === "logs") {
      stopTab = logsTab({ body, name, params, revisions, revisionSelect });
    } else if (tab === "history") {
      stopTab = historyTab();
    } else {
      swap(
        body,
        h(
          "p",
          {},
          `There is no “${tab}” section. `,
          h("a", { href: `#/services/${enc(name)}` }, "Back to the overview."),
        ),
      );
    }
  }

  async function refresh(force = false) {
    try {
      const changed = await load();
      if (changed || force) {
        renderHead();
        if (tab === "overview") {
          renderOverview();
          renderChanges();
        }
      }
      if (tab === "overview") {
        renderRolloutCard();
        renderShadow(overview.shadow, { name, service });
      }
    } catch (err) {
      if (err.status === 404) {
        swap(head, h("h1", { tabindex: "-1", id: "page-title" }, name));
        swap(
          body,
          h(
            "p",
            { class: "notice", role: "alert" },
            `${err.message}. `,
            h("a", { href: "#/" }, "Back to the services."),
          ),
        );
        clearInterval(timer);
      }
    }
  }

  const timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
  stops.push(() => clearInterval(timer));
  load()
    .then(() => {
      renderHead();
      renderTab();
      main.querySelector("h1")?.focus({ preventScroll: true });
    })
    .catch((err) => {
      clearInterval(timer);
      swap(
        body,
        h(
          "p",
          { class: "notice", role: "alert" },
          err.status === 404
            ? `There is no service “${name}”. `
            : `Could not load ${name}: ${err.message} `,
          h("a", { href: "#/" }, "Back to the services."),
        ),
      );
    });
  return () => {
    for (const stop of stops) stop();
    stopTab();
  };
}
