// Builds (#/builds, #/builds/ID): remote builds (`sos build --remote`) this token may see,
// with their state, place in the queue, artifact and provenance; one build's steps and log.
// The list refreshes while a build is queued or running; a build's log follows it live.

import { API, api, enc, getToken } from "./api.js";
import { cell, clear, h, shortDigest, timeEl } from "./dom.js";

const ACTIVE = new Set(["queued", "running"]);

function took(build) {
  if (!build.started_at || !build.finished_at) return "";
  const seconds = (new Date(build.finished_at) - new Date(build.started_at)) / 1000;
  return `${seconds.toFixed(1)} s`;
}

function stateLabel(build) {
  const text = build.state.replace("_", " ");
  return h(
    "span",
    { class: `build-state build-${build.state}` },
    build.position ? `${text} (#${build.position} in the queue)` : text,
  );
}

function provenance(build) {
  const prov = build.artifact?.extra?.provenance;
  if (!prov) return h("span", { class: "muted" }, "—");
  const builder = prov.builder || {};
  return h(
    "span",
    { class: "small" },
    `${builder.kind || ""} ${builder.where || builder.host || ""}`.trim(),
    h("div", { class: "mono small muted" }, `source ${shortDigest(prov.source_digest || "")}`),
    prov.log_digest
      ? h("div", { class: "mono small muted" }, `log ${shortDigest(prov.log_digest)}`)
      : null,
  );
}

export function buildsPage(main, session) {
  let alive = true;
  let timer = null;
  const body = h("div", { class: "card table-card" }, h("p", { class: "loading" }, "Loading…"));
  clear(
    main,
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", { tabindex: "-1" }, "Builds"),
        h(
          "p",
          { class: "muted page-sub" },
          "Remote builds: ",
          h("span", { class: "mono" }, "sos build --remote"),
          " checks a project on the laptop and builds it here, on the platform's runtime.",
        ),
      ),
    ),
    body,
  );

  function row(build) {
    return h(
      "tr",
      { "data-build": build.id },
      cell("Build", h("a", { href: `#/builds/${enc(build.id)}`, class: "mono" }, build.id)),
      cell("State", stateLabel(build)),
      cell(
        "Artifact",
        build.artifact
          ? h("strong", {}, `${build.artifact.name} ${build.artifact.version}`)
          : h("span", { class: "muted" }, build.reason || "—"),
      ),
      cell("Provenance", provenance(build)),
      cell("Took", took(build)),
      cell("By", build.created_by),
      cell("Started", timeEl(build.created_at)),
    );
  }

  async function refresh() {
    try {
      const builds = await api("GET", "/builds");
      if (!alive) return;
      clear(
        body,
        builds.length === 0
          ? h("p", { class: "muted" }, "No builds yet: run sos build --remote in a project.")
          : h(
              "table",
              { class: "table responsive", "aria-label": "Builds" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ["Build", "State", "Artifact", "Provenance", "Took", "By", "Started"].map((c) =>
                    h("th", { scope: "col" }, c),
                  ),
                ),
              ),
              h("tbody", {}, builds.map(row)),
            ),
      );
      if (builds.some((b) => ACTIVE.has(b.state))) timer = setTimeout(refresh, 1000);
    } catch (err) {
      if (alive) clear(body, h("p", { class: "form-error", role: "alert" }, err.message));
    }
  }

  refresh();
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}

export function buildPage(main, session, id) {
  let alive = true;
  let timer = null;
  const summary = h("div", { class: "card" }, h("p", { class: "loading" }, "Loading…"));
  const log = h("pre", { class: "build-log", "aria-label": "Build log", tabindex: "0" });
  clear(
    main,
    h("p", {}, h("a", { href: "#/builds" }, "← Builds")),
    h("h1", { tabindex: "-1" }, `Build ${id}`),
    summary,
    h("h2", {}, "Log"),
    h("div", { class: "card" }, log),
  );

  async function refresh() {
    try {
      const build = await api("GET", `/builds/${enc(id)}`);
      const text = await fetchLog(id);
      if (!alive) return;
      clear(
        summary,
        h("p", {}, stateLabel(build), build.reason ? ` — ${build.reason}` : ""),
        build.artifact
          ? h(
              "p",
              {},
              "Artifact ",
              h("strong", {}, `${build.artifact.name} ${build.artifact.version}`),
              " ",
              h("span", { class: "mono small" }, shortDigest(build.artifact.digest)),
            )
          : null,
        h("p", { class: "small" }, "Provenance: ", provenance(build)),
        lockLine(build),
        build.warnings?.length
          ? h(
              "ul",
              { class: "small", "aria-label": "Warnings" },
              build.warnings.map((text) => h("li", {}, text)),
            )
          : null,
        h(
          "ol",
          { class: "build-steps", "aria-label": "Steps" },
          build.steps.map((step) =>
            h("li", { "data-step": step.name }, `${step.name} — ${step.state}`, step.detail ? ` (${step.detail})` : ""),
          ),
        ),
      );
      log.textContent = text;
      if (ACTIVE.has(build.state)) timer = setTimeout(refresh, 1000);
    } catch (err) {
      if (alive) clear(summary, h("p", { class: "form-error", role: "alert" }, err.message));
    }
  }

  refresh();
  return () => {
    alive = false;
    clearTimeout(timer);
  };
}

/** Which lock file the build installed from; one it resolved can be downloaded. */
function lockLine(build) {
  const lock = build.lock;
  if (!lock) return null;
  const how = lock.written
    ? "resolved by this build (sos build --remote writes it beside the project; commit it)"
    : "from the source";
  return h(
    "p",
    { class: "small", "data-lock": lock.file },
    "Lock file: ",
    h("span", { class: "mono" }, lock.file),
    ` ${how} `,
    h("span", { class: "mono small" }, shortDigest(lock.sha256)),
    " ",
    h("button", { type: "button", class: "btn btn-quiet", onclick: () => showLock(build.id, lock.file) }, "Show"),
  );
}

async function showLock(id, file) {
  const response = await fetch(`${API}/builds/${enc(id)}/lock`, {
    headers: { Authorization: `Bearer ${getToken()}` },
    cache: "no-store",
  });
  const text = response.ok ? await response.text() : `the server did not give the lock (HTTP ${response.status})`;
  const shown = document.querySelector(`pre[data-lock-text]`);
  if (shown) shown.remove();
  document.querySelector(`p[data-lock]`)?.after(h("pre", { class: "build-log", "data-lock-text": file, "aria-label": file }, text));
}

/** The build's log as text: the steps begun and the lines its tools printed. */
async function fetchLog(id) {
  const response = await fetch(`${API}/builds/${enc(id)}/log?follow=false`, {
    headers: { Authorization: `Bearer ${getToken()}`, Accept: "application/x-ndjson" },
    cache: "no-store",
  });
  if (!response.ok) return "";
  const lines = [];
  for (const line of (await response.text()).split("\n")) {
    if (!line.trim()) continue;
    const event = JSON.parse(line);
    if (event.event === "begin") lines.push(`== ${event.step}`);
    else if (event.event === "output") lines.push(event.line);
    else if (event.event === "state") lines.push(`-- ${event.state}${event.reason ? `: ${event.reason}` : ""}`);
  }
  return lines.join("\n");
}
