// The shadow card: what each shadow revision answered next to the primary (status,
// latency, and for item lists overlap@k, rank-biased overlap, top-1 agreement and empty
// results), read from the server at every refresh while the service has a shadow.

import { api, enc } from "./api.js";
import { cell, clear, h, revNumber } from "./dom.js";

const pct = (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`);
const num = (v) => (v === null || v === undefined ? "—" : v.toFixed(3));
const ms = (v) => (v === null || v === undefined ? "—" : `${v.toFixed(1)} ms`);

/** Fill `section` (hidden when the service mirrors nothing and never did). */
export async function renderShadow(section, { name, service }) {
  const mirrors = service.traffic?.shadow || [];
  let report;
  try {
    report = await api("GET", `/services/${enc(name)}/shadow`);
  } catch {
    return; // the next refresh tries again
  }
  section.hidden = !mirrors.length && !report.pairs.length;
  if (section.hidden) return;
  const head = h("div", { class: "card-head" }, h("h2", { id: "shadow-heading" }, "Shadow comparison"));
  if (!report.available || !report.pairs.length) {
    clear(
      section,
      head,
      h("p", { class: "empty" }, report.message || "No mirrored request compared yet."),
    );
    return;
  }
  const k = report.pairs[0].k;
  const columns = ["Pair", "Compared", "Dropped", "Same status", "Shadow errors", "p50 primary / shadow",
    `Overlap@${k}`, "RBO", "Top-1", "Empty primary / shadow"];
  clear(
    section,
    head,
    h(
      "table",
      { class: "table responsive compact", "aria-label": "Shadow comparison" },
      h("thead", {}, h("tr", {}, columns.map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        report.pairs.map((p) =>
          h(
            "tr",
            {},
            cell("Pair", `${revNumber(p.primary)} → ${revNumber(p.shadow)}`),
            cell("Compared", String(p.compared)),
            cell("Dropped", String(p.dropped)),
            cell("Same status", pct(p.status_agreement)),
            cell("Shadow errors", String(p.shadow_errors)),
            cell("p50 primary / shadow", `${ms(p.primary_p50_ms)} / ${ms(p.shadow_p50_ms)}`),
            cell(`Overlap@${k}`, num(p.overlap_at_k)),
            cell("RBO", num(p.rbo)),
            cell("Top-1", pct(p.top1_agreement)),
            cell("Empty primary / shadow", `${pct(p.primary_empty_rate)} / ${pct(p.shadow_empty_rate)}`),
          ),
        ),
      ),
    ),
  );
}
