// What the service page's modules share: focus-keeping swaps, the revision pickers and the
// address's query parameters.

import { clear, h, revNumber } from "./dom.js";

/** Replace a container's children, keeping keyboard focus on the element with the same id. */
export function swap(container, ...children) {
  const active = document.activeElement;
  const id = active && container.contains(active) ? active.id : null;
  clear(container, ...children);
  if (id) document.getElementById(id)?.focus({ preventScroll: true });
}

export function percentOf(service, revision) {
  const routes = (service.traffic?.routes || []).filter((r) => r.revision === revision);
  return routes;
}

/** The revision most traffic goes to, else the newest: what metrics and logs show first. */
/** The full id of the revision ``ref`` names: its id, its number (3) or padded number
 * (00003), as anywhere else a revision is named; ``ref`` itself when none matches. */
export function revisionIdOf(revisions, ref) {
  if (!ref) return ref;
  const found = revisions.find((rev) => rev.id === ref || Number(revNumber(rev.id)) === Number(ref));
  return found ? found.id : ref;
}

export function mainRevision(service, revisions) {
  const routes = [...(service.traffic?.routes || [])].sort((a, b) => b.percent - a.percent);
  return routes[0]?.revision || revisions[revisions.length - 1]?.id || "";
}

export function revisionOptions(revisions, service, selected, { all = false } = {}) {
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

export function setParam(key, value) {
  const [path, query = ""] = location.hash.split("?");
  const params = new URLSearchParams(query);
  if (value) params.set(key, value);
  else params.delete(key);
  const text = params.toString();
  history.replaceState(null, "", `${path}${text ? `?${text}` : ""}`);
}
