// Line charts drawn as plain SVG: time on x, one or two series on y, gaps where there is
// no data, a hover read-out, and a text summary for assistive technology.

import { clock, h } from "./dom.js";

const HEIGHT = 170;
const PAD = { top: 10, right: 12, bottom: 24, left: 48 };

/** Up to 4 round steps from 0 to at least `max`: {top, step}. Whole steps for counts. */
function niceScale(max, integer) {
  const rough = Math.max(max, integer ? 1 : 1e-9) / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const norm = rough / magnitude;
  let step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * magnitude;
  if (integer) step = Math.max(1, Math.ceil(step));
  if (!(max > 0)) return { top: integer ? 4 : 1, step: integer ? 1 : 0.25 };
  return { top: Math.ceil(max / step - 1e-9) * step, step };
}

function axisLabel(value, step, unit) {
  let decimals = 0;
  while (
    decimals < 4 &&
    Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-6
  ) {
    decimals += 1;
  }
  const text = value.toFixed(decimals);
  return unit ? `${text} ${unit}` : text;
}

function timeStep(span) {
  for (const step of [10, 15, 30, 60, 120, 300, 600]) {
    if (span / step <= 6) return step;
  }
  return 900;
}

/**
 * lineChart({title, series: [{name, slot, dashed, points: [[t, v|null], ...]}],
 *            from, to, format, unit, integer, gap, width, empty}) -> <figure>
 * t in Unix seconds; points further apart than `gap` seconds are not joined. `format`
 * writes values (read-out, summary); the y axis shows round numbers with `unit`;
 * `integer` keeps the axis in whole steps (counts).
 */
export function lineChart({ title, series, from, to, format, unit, integer, gap, width, empty }) {
  const w = Math.max(260, Math.floor(width || 480));
  const innerW = w - PAD.left - PAD.right;
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const values = series.flatMap((s) => s.points.map((p) => p[1]).filter((v) => v !== null));
  const { top, step: yStep } = niceScale(Math.max(0, ...values), integer);
  const x = (t) => PAD.left + ((t - from) / (to - from)) * innerW;
  const y = (v) => PAD.top + innerH - (v / top) * innerH;

  const svg = h("svg:svg", {
    viewBox: `0 0 ${w} ${HEIGHT}`,
    width: w,
    height: HEIGHT,
    class: "chart-svg",
    "aria-hidden": "true",
    focusable: "false",
  });
  for (let v = 0; v <= top + yStep / 2; v += yStep) {
    svg.append(
      h("svg:line", { x1: PAD.left, x2: w - PAD.right, y1: y(v), y2: y(v), class: "grid" }),
      h(
        "svg:text",
        { x: PAD.left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" },
        axisLabel(v, yStep, unit),
      ),
    );
  }
  const step = timeStep(to - from);
  for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
    svg.append(
      h("svg:line", {
        x1: x(t),
        x2: x(t),
        y1: PAD.top + innerH,
        y2: PAD.top + innerH + 4,
        class: "tick",
      }),
      h(
        "svg:text",
        { x: x(t), y: HEIGHT - 6, class: "axis", "text-anchor": "middle" },
        clock(t * 1000, step < 60),
      ),
    );
  }
  for (const s of series) {
    let d = "";
    let previous = null;
    for (const [t, v] of s.points) {
      if (v === null || t < from) {
        previous = null;
        continue;
      }
      const joined = previous !== null && t - previous <= gap;
      d += `${joined ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
      if (!joined) d += `h0.01`; // a lone point still shows as a dot (round caps)
      previous = t;
    }
    svg.append(h("svg:path", { d, class: `line c${s.slot}${s.dashed ? " dashed" : ""}` }));
  }
  const cursor = h("svg:line", {
    y1: PAD.top,
    y2: PAD.top + innerH,
    class: "cursor",
    visibility: "hidden",
  });
  svg.append(cursor);

  const readout = h("div", { class: "readout", hidden: true });
  const plot = h("div", { class: "chart-plot" }, svg, readout);
  const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort(
    (a, b) => a - b,
  );
  plot.addEventListener("pointermove", (event) => {
    if (!times.length) return;
    const box = svg.getBoundingClientRect();
    const t = from + ((event.clientX - box.left - PAD.left) / innerW) * (to - from);
    const nearest = times.reduce((a, b) => (Math.abs(b - t) < Math.abs(a - t) ? b : a));
    cursor.setAttribute("x1", x(nearest));
    cursor.setAttribute("x2", x(nearest));
    cursor.setAttribute("visibility", "visible");
    readout.replaceChildren(
      h("div", { class: "readout-time" }, clock(nearest * 1000)),
      ...series.map((s) => {
        const point = s.points.find((p) => p[0] === nearest);
        return h(
          "div",
          {},
          h("span", { class: `swatch c${s.slot}${s.dashed ? " dashed" : ""}` }),
          `${s.name}: ${point && point[1] !== null ? format(point[1]) : "—"}`,
        );
      }),
    );
    readout.hidden = false;
    readout.style.left = `${Math.min(x(nearest) + 8, w - 150)}px`;
  });
  plot.addEventListener("pointerleave", () => {
    cursor.setAttribute("visibility", "hidden");
    readout.hidden = true;
  });

  const minutes = Math.round((to - from) / 60);
  const summary = series
    .map((s) => {
      const vs = s.points.filter((p) => p[1] !== null && p[0] >= from).map((p) => p[1]);
      if (!vs.length) return `${s.name}: no data`;
      return `${s.name}: latest ${format(vs[vs.length - 1])}, peak ${format(Math.max(...vs))}`;
    })
    .join("; ");
  const hasData = values.length > 0;
  return h(
    "figure",
    { class: "chart", "data-chart": title, "data-points": String(values.length) },
    h(
      "figcaption",
      {},
      h("span", { class: "chart-title" }, title),
      h(
        "span",
        { class: "chart-legend", "aria-hidden": "true" },
        series.length > 1
          ? series.map((s) =>
              h(
                "span",
                { class: "legend-item" },
                h("span", { class: `swatch c${s.slot}${s.dashed ? " dashed" : ""}` }),
                s.name,
              ),
            )
          : null,
      ),
    ),
    h(
      "div",
      { role: "img", "aria-label": `${title} over the last ${minutes} minutes. ${summary}.` },
      plot,
      hasData ? null : h("p", { class: "chart-empty" }, empty || "No data in this window yet."),
    ),
  );
}
