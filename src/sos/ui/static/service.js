// One service: overview (traffic, revisions), live metrics, logs tail and change history.

import { api, enc, streamLogs } from "./api.js";
import { lineChart } from "./charts.js";
import {
  cell,
  clear,
  clock,
  colorSlot,
  crumbs,
  fullTime,
  h,
  ms,
  number,
  revNumber,
  shortDigest,
  statusBadge,
  timeEl,
  trafficBar,
} from "./dom.js";
import { fetchRollout, renderRollout } from "./rollout.js";
import { renderShadow } from "./shadow.js";
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

/** Replace a container's children, keeping keyboard focus on the element with the same id. */
function swap(container, ...children) {
  const active = document.activeElement;
  const id = active && container.contains(active) ? active.id : null;
  clear(container, ...children);
  if (id) document.getElementById(id)?.focus({ preventScroll: true });
}

function percentOf(service, revision) {
  const routes = (service.traffic?.routes || []).filter((r) => r.revision === revision);
  return routes;
}

/** The revision most traffic goes to, else the newest: what metrics and logs show first. */
function mainRevision(service, revisions) {
  const routes = [...(service.traffic?.routes || [])].sort((a, b) => b.percent - a.percent);
  return routes[0]?.revision || revisions[revisions.length - 1]?.id || "";
}

function revisionOptions(revisions, service, selected, { all = false } = {}) {
  const options = [...revisions].reverse().map((rev) => {
    const share = percentOf(service, rev.id)
      .map((r) => `${r.percent}%${r.tag ? ` @${r.tag}` : ""}`)
      .join(", ");
    return h(
      "option",
      { value: rev.id, selected: rev.id === selected },
      `${revNumber(rev.id)} · ${rev.artifact.name} ${rev.artifact.version}${share ? ` (${share})` : ""}`,
    );
  });
  return all
    ? [h("option", { value: "", selected: !selected }, "All revisions"), ...options]
    : options;
}

function setParam(key, value) {
  const [path, query = ""] = location.hash.split("?");
  const params = new URLSearchParams(query);
  if (value) params.set(key, value);
  else params.delete(key);
  const text = params.toString();
  history.replaceState(null, "", `${path}${text ? `?${text}` : ""}`);
}

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
        fact("Resources", `memory ${r.memory || "no limit"}, cpu ${r.cpu || "no limit"}`),
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

  function metricsTab() {
    let revision = params.get("revision") || mainRevision(service, revisions);
    let windowText = params.get("window") || "5m";
    let data = null;
    let timer = 0;
    let controller = null;
    const tiles = h("div", { class: "tiles" });
    const grid = h("div", { class: "charts" });
    const state = h("p", { class: "muted small", role: "status" });
    const select = revisionSelect("metrics-revision", revision, {}, (picked) => {
      revision = picked;
      poll();
    });
    const windowSelect = h(
      "select",
      {
        id: "metrics-window",
        onchange: (e) => {
          windowText = e.target.value;
          setParam("window", windowText);
          poll();
        },
      },
      [
        ["1m", "Last minute"],
        ["5m", "Last 5 minutes"],
        ["15m", "Last 15 minutes"],
      ].map(([v, label]) => h("option", { value: v, selected: v === windowText }, label)),
    );
    swap(
      body,
      h(
        "div",
        { class: "toolbar" },
        h("div", { class: "field" }, h("label", { for: "metrics-revision" }, "Revision"), select),
        h("div", { class: "field" }, h("label", { for: "metrics-window" }, "Window"), windowSelect),
        state,
      ),
      tiles,
      grid,
    );

    function tile(label, value, hint) {
      return h(
        "div",
        { class: "tile" },
        h("div", { class: "tile-label" }, label),
        h("div", { class: "tile-value" }, value),
        hint ? h("div", { class: "muted small" }, hint) : null,
      );
    }

    function draw() {
      if (!data) return;
      if (!data.available) {
        clear(tiles);
        clear(
          grid,
          h(
            "p",
            { class: "notice" },
            `No metrics: ${data.message || "this backend reports none"}.`,
          ),
        );
        return;
      }
      const series = data.revisions.find((r) => r.revision === revision);
      const points = series ? series.points : [];
      const last = points[points.length - 1];
      const slot = colorSlot(revision);
      const minutes = Math.round(data.window_seconds / 60);
      const errorRate = series && series.requests ? (100 * series.errors) / series.requests : null;
      clear(
        tiles,
        tile(
          "Requests/s",
          last ? number(last.requests_per_second, 2) : "—",
          `${series ? series.requests.toLocaleString() : 0} in ${minutes} min`,
        ),
        tile("p50 latency", ms(series?.p50_ms ?? null), `over ${minutes} min`),
        tile("p99 latency", ms(series?.p99_ms ?? null), `over ${minutes} min`),
        tile(
          "Errors",
          series ? series.errors.toLocaleString() : "0",
          errorRate === null ? "no requests" : `${number(errorRate, 2)}% of requests`,
        ),
        tile(
          "Instances",
          series?.instances ? `${series.instances.ready} / ${series.instances.running}` : "—",
          "ready / running",
        ),
      );
      const to = data.now;
      const from = to - data.window_seconds;
      const gap = data.step_seconds * 2.5;
      const pts = (key) => points.map((p) => [p.at, p[key]]);
      const width = Math.max(
        260,
        (grid.clientWidth || 900) / (grid.clientWidth > 760 ? 2 : 1) - 34,
      );
      const empty = `No requests recorded for ${revNumber(revision)} yet: the server samples every ${data.interval_seconds} s.`;
      const chart = (title, lines, format, options = {}) =>
        lineChart({
          title,
          series: lines.map(([label, key, color, dashed]) => ({
            name: label,
            slot: color,
            dashed,
            points: pts(key),
          })),
          from,
          to,
          gap,
          width,
          format,
          empty,
          ...options,
        });
      clear(
        grid,
        chart("Requests per second", [["requests/s", "requests_per_second", slot]], (v) =>
          number(v, v < 10 ? 1 : 0),
        ),
        chart(
          "Latency",
          [
            ["p50", "p50_ms", slot],
            ["p99", "p99_ms", slot, true],
          ],
          ms,
          { unit: "ms" },
        ),
        chart("Errors per second", [["errors/s", "errors_per_second", "bad"]], (v) => number(v, 2)),
        chart(
          "Instances",
          [
            ["running", "instances_running", slot],
            ["ready", "instances_ready", slot, true],
          ],
          (v) => number(v, 1),
          { integer: true },
        ),
      );
    }

    async function poll() {
      clearTimeout(timer);
      controller?.abort();
      controller = new AbortController();
      try {
        data = await api(
          "GET",
          `/services/${enc(name)}/metrics?window=${enc(windowText)}${revision ? `&revision=${enc(revision)}` : ""}`,
          undefined,
          { signal: controller.signal },
        );
        state.textContent = `Updated ${clock(data.now * 1000)} · sampled every ${data.interval_seconds} s`;
        draw();
      } catch (err) {
        if (err.name === "AbortError") return;
        state.textContent = `Could not load metrics: ${err.message}`;
      }
      timer = setTimeout(next, Math.min(10, Math.max(2, data?.interval_seconds || 2)) * 1000);
    }

    // a hidden tab asks nothing of the server; it catches up when shown again
    function next() {
      if (document.hidden) timer = setTimeout(next, 1000);
      else poll();
    }

    let resizeTimer = 0;
    const onResize = () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(draw, 150);
    };
    window.addEventListener("resize", onResize);
    poll();
    return () => {
      clearTimeout(timer);
      controller?.abort();
      window.removeEventListener("resize", onResize);
    };
  }

  // ------------------------------------------------------------------ logs

  function logsTab() {
    let revision = params.get("revision") || "";
    let follow = true;
    let controller = null;
    let retry = 0;
    const MAX = 2000;
    const box = h("div", {
      class: "logbox",
      role: "log",
      "aria-live": "off",
      "aria-label": "Log lines",
      tabindex: "0",
    });
    const state = h("p", { class: "muted small", role: "status" });
    const select = revisionSelect("logs-revision", revision, { all: true }, (picked) => {
      revision = picked;
      restart();
    });
    const followBox = h("input", {
      id: "logs-follow",
      type: "checkbox",
      checked: true,
      onchange: (e) => {
        follow = e.target.checked;
        restart();
      },
    });
    swap(
      body,
      h(
        "div",
        { class: "toolbar" },
        h("div", { class: "field" }, h("label", { for: "logs-revision" }, "Revision"), select),
        h("label", { class: "check", for: "logs-follow" }, followBox, " Follow new lines"),
        h("button", { type: "button", class: "btn", onclick: () => clear(box) }, "Clear"),
        state,
      ),
      box,
    );

    function add(record) {
      const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
      box.append(
        h(
          "div",
          { class: `log-line stream-${record.stream}` },
          h("time", { datetime: record.at, title: fullTime(record.at) }, clock(record.at)),
          h(
            "span",
            { class: "inst", title: record.instance },
            revision ? record.instance.replace(`${record.revision}-`, "") : record.instance,
          ),
          h("span", { class: "text" }, record.text),
        ),
      );
      while (box.childElementCount > MAX) box.firstElementChild.remove();
      if (atBottom) box.scrollTop = box.scrollHeight;
    }

    async function restart() {
      controller?.abort();
      clearTimeout(retry);
      controller = new AbortController();
      const mine = controller;
      clear(box);
      state.textContent = follow ? "Streaming new lines as they come…" : "Loading the last lines…";
      try {
        await streamLogs(name, { revision, tail: 200, follow, signal: mine.signal, onRecord: add });
        if (mine.signal.aborted) return;
        if (!box.childElementCount) box.append(h("p", { class: "empty" }, "No log lines yet."));
        state.textContent = follow
          ? "The stream ended; reconnecting in 3 s…"
          : `${box.childElementCount} lines.`;
        if (follow) retry = setTimeout(restart, 3000);
      } catch (err) {
        state.textContent = `Could not read the logs: ${err.message}`;
      }
    }

    restart();
    return () => {
      controller?.abort();
      clearTimeout(retry);
    };
  }

  // ------------------------------------------------------------------ history

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
      stopTab = metricsTab();
    } else if (tab === "logs") {
      stopTab = logsTab();
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
