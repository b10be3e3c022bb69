// Forms: labelled fields with help and an error line, and the server's validation messages
// put next to the fields they are about.
//
// The server is the one judge of what is valid (the same rules and words as for the client
// and the CLI): a 422 carries details.errors = [{field: "autoscaling.max_scale", message}],
// other refusals details.field. showServerErrors() finds the field of each message by its
// path (env_vars[0].id, then env_vars[0], then env_vars) and lists what fits nowhere above
// the form's buttons.

import { clear, h } from "./dom.js";

let serial = 0;

/**
 * field({id, label, control, help, path}) -> {el, control, error, label, path, set(msg)}
 * `control` is an <input>, <select> or <textarea> (built with the same id).
 */
export function field({ id, label, control, help, path, className = "" }) {
  const helpId = help ? `${id}-help` : null;
  const errorId = `${id}-error`;
  const error = h("p", { class: "field-error", id: errorId, hidden: true });
  control.setAttribute("aria-describedby", [helpId, errorId].filter(Boolean).join(" "));
  const el = h(
    "div",
    { class: `form-field ${className}`.trim(), "data-path": path || null },
    h("label", { for: id }, label),
    control,
    help ? h("p", { class: "field-help", id: helpId }, help) : null,
    error,
  );
  return {
    el,
    control,
    error,
    label,
    path,
    set(message) {
      error.textContent = message || "";
      error.hidden = !message;
      if (message) control.setAttribute("aria-invalid", "true");
      else control.removeAttribute("aria-invalid");
    },
  };
}

/** A one-line text box; numbers too (typed as text, checked by the server). */
export function textInput(id, value = "", extra = {}) {
  return h("input", {
    id,
    name: id,
    type: "text",
    autocomplete: "off",
    spellcheck: "false",
    value: value === null || value === undefined ? "" : String(value),
    ...extra,
  });
}

export function textArea(id, value = "", extra = {}) {
  const area = h("textarea", { id, name: id, rows: 2, ...extra });
  area.value = value || "";
  return area;
}

/** <select> of [value, text] pairs. */
export function selectInput(id, options, selected, extra = {}) {
  return h(
    "select",
    { id, name: id, ...extra },
    options.map(([value, text]) => h("option", { value, selected: value === selected }, text)),
  );
}

/** The messages of a refusal as [{field, message}] ("" for the request as a whole). */
export function serverErrors(err) {
  const details = err.details || {};
  if (Array.isArray(details.errors) && details.errors.length) {
    const fields = new Set(details.errors.map((e) => e.field));
    return details.errors
      .filter((e) => !(e.field.startsWith("path.") && fields.has(e.field.slice(5))))
      .map((e) => ({
        field: e.field === "body" ? "" : e.field.replace(/^path\./, ""),
        message: e.message,
      }));
  }
  return [{ field: details.field || "", message: err.message }];
}

/** The field that a path belongs to: the longest registered prefix. */
function owner(fields, path) {
  let key = path;
  while (key) {
    if (fields.has(key)) return fields.get(key);
    const cut = Math.max(key.lastIndexOf("."), key.lastIndexOf("["));
    key = cut > 0 ? key.slice(0, cut) : "";
  }
  return null;
}

/**
 * A form's error handling. fields: Map(path -> field()); summary: the element above the
 * buttons (role=alert) that says what went wrong and lists what belongs to no field.
 */
export function errorReporter(fields, summary) {
  return {
    clear() {
      this.unmark();
      clear(summary);
      summary.hidden = true;
    },
    unmark() {
      for (const f of fields.values()) f.set("");
    },
    /**
     * Put a refusal's messages next to their fields (nothing else: for checks while the
     * user types). Returns {fields: [field, ...] in page order, loose: [message, ...]}.
     */
    mark(err) {
      this.unmark();
      const loose = [];
      const shown = new Map();
      for (const { field: path, message } of serverErrors(err)) {
        const target = path ? owner(fields, path) : null;
        if (!target) {
          loose.push(path ? `${path}: ${message}` : message);
          continue;
        }
        const text = shown.has(target) ? `${shown.get(target)} ${message}` : message;
        shown.set(target, text);
        target.set(text);
      }
      const marked = [...shown.keys()].sort((a, b) =>
        a.control.compareDocumentPosition(b.control) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1,
      );
      return { fields: marked, loose };
    },
    /** Show a refusal from the server: marked fields, a summary, focus on the first. */
    show(err, intro = "Not saved.") {
      this.clear();
      const { fields: marked, loose } = this.mark(err);
      const count = marked.length + loose.length;
      clear(
        summary,
        h(
          "p",
          {},
          h("strong", {}, intro),
          marked.length
            ? ` The server found ${count === 1 ? "a problem" : `${count} problems`}; ${
                marked.length === 1 ? "the marked field says" : "the marked fields say"
              } what to change.`
            : "",
        ),
        loose.length
          ? h(
              "ul",
              {},
              loose.map((m) => h("li", {}, m)),
            )
          : null,
      );
      summary.hidden = false;
      (marked.length ? marked[0].control : summary).focus();
    },
    /** A problem found before sending (an empty required field). */
    local(f, message) {
      this.clear();
      f.set(message);
      f.control.focus();
    },
  };
}

/** A summary box for errorReporter, announced when it changes. */
export function errorSummary() {
  serial += 1;
  return h("div", {
    class: "form-errors",
    role: "alert",
    tabindex: "-1",
    id: `form-errors-${serial}`,
    hidden: true,
  });
}
