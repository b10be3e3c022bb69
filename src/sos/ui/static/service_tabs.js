// The service page's Metrics and Logs tabs (each starts its own refresh or stream and
// returns what stops it).

import { api, enc, streamLogs } from "./api.js";
import { lineChart } from "./charts.js";
import { clear, clock, colorSlot, fullTime, h, ms, number, revNumber } from "./dom.js";
import { swap, setParam, mainRevision, revisionIdOf } from "./service_common.js";

/** The Metrics tab; returns what stops it. */
export function metricsTab({ body, name, params, service, revisions, revisionSelect }) {
  let revision = revisionIdOf(revisions, params.get("revision")) || mainRevision(service, revisions);
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

/** The Logs tab; returns what stops it. */
export function logsTab({ body, name, params, revisions, revisionSelect }) {
  let revision = revisionIdOf(revisions, params.get("revision")) || "";
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
