// Small DOM and formatting helpers. Text always goes in as text (never as HTML), so names,
// log lines and messages from the server cannot inject markup.

/**
 * h("button", {class: "btn", onclick: fn, "aria-label": "Close"}, "Close")
 * Props: class, text, dataset-free attributes, on* listeners, and a few DOM properties
 * (value, checked, disabled, hidden, selected). Children: nodes, strings, arrays, null.
 */
export function h(tag, props = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.setAttribute("class", value);
    } else if (key === "text") {
      el.textContent = value;
    } else if (!svg && ["value", "checked", "disabled", "hidden", "selected"].includes(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// ---------------------------------------------------------------- formatting

export function revNumber(id) {
  const match = /-(\d{5})$/.exec(id || "");
  return match ? match[1] : id;
}

export function shortDigest(digest) {
  if (!digest) return "";
  return digest.replace(/^sha256:/, "").slice(0, 12);
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const clockTime = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});
const shortClock = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  hour12: false,
});

export function fullTime(value) {
  return value ? dateTime.format(new Date(value)) : "";
}

export function clock(value, seconds = true) {
  return (seconds ? clockTime : shortClock).format(new Date(value));
}

export function ago(value, now = Date.now()) {
  if (!value) return "";
  const seconds = Math.round((now - new Date(value).getTime()) / 1000);
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

/** A <time> element: relative text, the exact time on hover and for assistive tech. */
export function timeEl(value) {
  if (!value) return h("span", { class: "muted" }, "—");
  return h("time", { datetime: value, title: fullTime(value) }, ago(value));
}

export function number(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString();
  if (Number.isInteger(value)) return String(value);
  return value.toFixed(digits);
}

/** 3460300 -> "3.3 MiB", as the CLI writes sizes. */
export function bytes(value) {
  if (value === null || value === undefined) return "—";
  let size = value;
  for (const unit of ["B", "KiB", "MiB", "GiB"]) {
    if (size < 1024 || unit === "GiB") {
      return unit === "B" ? `${Math.round(size)} B` : `${size.toFixed(1)} ${unit}`;
    }
    size /= 1024;
  }
  return `${value} B`;
}

export function ms(value) {
  if (value === null || value === undefined) return "—";
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} ms`;
}

// ---------------------------------------------------------------- shared pieces

const PALETTE = 8;

/** A stable colour slot (0..7) per revision number, used by bars, legends and charts. */
export function colorSlot(id) {
  const n = parseInt(revNumber(id), 10);
  return Number.isFinite(n) ? (n - 1) % PALETTE : 0;
}

/** "NoTraffic" -> "No traffic", as reasons read in a sentence. */
export function humanize(reason) {
  const words = String(reason)
    .replace(/([a-z0-9])([A-Z])/g, "$1 $2")
    .toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Ready / Deploying / Failed as text and colour (never colour alone). */
export function statusBadge(status, { small = false } = {}) {
  const s = status || {};
  let tone = "pending";
  let label = humanize(s.reason || "Pending");
  if (s.ready) {
    tone = "ok";
    label = "Ready";
  } else if (s.failed || /fail|error|missing/i.test(label)) {
    tone = "bad";
  } else if (/deploy|pending|progress|starting/i.test(label)) {
    tone = "warn";
  }
  return h(
    "span",
    { class: `badge badge-${tone}${small ? " badge-small" : ""}`, title: s.message || label },
    h("span", { class: "dot", "aria-hidden": "true" }),
    label,
  );
}

/** The traffic split as a bar (decorative) plus the same facts as text. */
export function trafficBar(routes, { label = "Traffic split" } = {}) {
  const bar = h("div", { class: "split-bar", "aria-hidden": "true" });
  for (const route of routes || []) {
    if (!route.percent) continue;
    const part = h("span", { class: `seg c${colorSlot(route.revision)}` });
    part.style.width = `${route.percent}%`;
    bar.append(part);
  }
  const text = (routes || [])
    .map((r) => `${revNumber(r.revision)} ${r.percent}%${r.tag ? ` @${r.tag}` : ""}`)
    .join(" · ");
  return h(
    "div",
    { class: "split", role: "img", "aria-label": `${label}: ${text || "none"}` },
    bar,
    h(
      "div",
      { class: "split-legend", "aria-hidden": "true" },
      (routes || []).map((r) =>
        h(
          "span",
          { class: "legend-item" },
          h("span", { class: `swatch c${colorSlot(r.revision)}` }),
          h("span", { class: "mono" }, revNumber(r.revision)),
          ` ${r.percent}%`,
          r.tag ? h("span", { class: "tag" }, r.tag) : null,
        ),
      ),
    ),
  );
}

let toastTimer = 0;

/** A short confirmation in the polite live region at the bottom of the page. */
export function toast(message, tone = "ok") {
  const region = document.getElementById("toasts");
  if (!region) return;
  clear(region, h("div", { class: `toast toast-${tone}` }, message));
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => clear(region), 6000);
}

/** A table cell with its column name, for the stacked layout of narrow windows. */
export function cell(label, ...children) {
  const props = children[0] && children[0].constructor === Object ? children.shift() : {};
  return h("td", { ...props, "data-label": label }, h("div", { class: "cell" }, ...children));
}

/** A modal <dialog> titled `title`, removed from the page when it closes. */
export function dialogShell(titleId, title, ...body) {
  const dialog = h(
    "dialog",
    { class: "dialog", "aria-labelledby": titleId },
    h("h2", { id: titleId }, title),
    ...body,
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  return dialog;
}

/**
 * A confirmation dialog for a destructive action: `body` (nodes) above Cancel and `yes`.
 * `run()` does the work; on success the dialog closes and `done()` follows; on failure the
 * server's message shows in the dialog and the button can be pressed again.
 */
export function confirmDialog({ titleId, title, body, yes, run, done }) {
  const problem = h("div", { class: "conflict", role: "alert", hidden: true });
  const go = h("button", { type: "button", class: "btn btn-danger" }, yes);
  const no = h("button", { type: "button", class: "btn" }, "Cancel");
  const dialog = dialogShell(
    titleId,
    title,
    ...body,
    problem,
    h("div", { class: "dialog-actions" }, no, go),
  );
  no.addEventListener("click", () => dialog.close());
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      await run();
      dialog.close();
      done();
    } catch (err) {
      clear(problem, h("p", {}, err.message));
      problem.hidden = false;
      go.disabled = false;
    }
  });
  dialog.showModal();
  no.focus();
  return dialog;
}

/** Breadcrumb navigation: links for `trail` ([[text, href], ...]), then the current page. */
export function crumbs(trail, current) {
  return h(
    "nav",
    { class: "crumbs", "aria-label": "Breadcrumb" },
    trail.map(([text, href]) => [
      h("a", { href }, text),
      h("span", { "aria-hidden": "true" }, " / "),
    ]),
    h("span", { "aria-current": "page" }, current),
  );
}
