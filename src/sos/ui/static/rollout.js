// A service's rollout card: the running rollout's progress (its steps, the candidate's
// figures in this step, what it waits for) with a Stop button, how the last one ended and
// why, and a dialog that starts one with the same fields as `sos rollout`.

import { api, enc } from "./api.js";
import { clear, dialogShell, h, revNumber, toast } from "./dom.js";

const ENDED = { succeeded: "Succeeded", rolled_back: "Rolled back", stopped: "Stopped" };

/** The service's rollout, or null when it never had one. */
export async function fetchRollout(name) {
  try {
    return await api("GET", `/services/${enc(name)}/rollout`);
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

function gates(spec) {
  const parts = [];
  if (spec.max_error_rate !== null) parts.push(`error rate ≤ ${+(spec.max_error_rate * 100).toFixed(3)}%`);
  if (spec.max_p99_ms !== null) parts.push(`p99 ≤ ${spec.max_p99_ms} ms`);
  return `${parts.join(", ") || "no gates"}; at least ${spec.min_requests} requests a step`;
}

function figures(last) {
  if (!last) return "No figures yet in this step.";
  const rate = last.error_rate === null ? "—" : `${(last.error_rate * 100).toFixed(1)}%`;
  const p99 = last.p99_ms === null ? "—" : `${Math.round(last.p99_ms)} ms`;
  return `This step so far: ${last.requests} requests, ${last.errors} errors (${rate}), p99 ${p99}.`;
}

/**
 * Fill `section` for `rollout` (null: none yet). `button(id, label, kind, usable, onclick)`
 * makes a change button that is off, saying why, for a token that may not change it.
 */
export function renderRollout(section, { name, rollout, revisions, button, onChange }) {
  const running = rollout?.state === "running";
  const action = running
    ? button("stop-rollout", "Stop rollout", "btn-danger", true, async () => {
        try {
          await api("POST", `/services/${enc(name)}/rollout/stop`);
          toast(`Rollout of ${name} stopped; the traffic stays as it is.`);
        } catch (err) {
          toast(err.message);
        }
        onChange();
      })
    : button("start-rollout", "Start rollout…", "", revisions.length > 1, () =>
        openRolloutDialog({ name, revisions, onStarted: onChange }),
      );
  const head = h(
    "div",
    { class: "card-head" },
    h("h2", { id: "rollout-heading" }, "Rollout"),
    h("div", { class: "actions" }, action),
  );
  if (!rollout) {
    clear(
      section,
      head,
      h(
        "p",
        { class: "empty" },
        "No rollout yet. A rollout moves traffic to a revision step by step and puts the route back by itself when its error rate or latency breaks a gate.",
      ),
    );
    return;
  }
  const spec = rollout.spec;
  const steps = spec.steps.map((p) => `${p}%`).join(" → ");
  const who = `revision ${revNumber(spec.to)}`;
  clear(
    section,
    head,
    h(
      "p",
      { id: "rollout-state" },
      running
        ? `Running: ${who} at ${rollout.percent}%, step ${rollout.step + 1} of ${spec.steps.length} (${steps}, every ${spec.step_seconds} s).`
        : `Last rollout ${ENDED[rollout.state].toLowerCase()}: ${who} at ${rollout.percent}% (${steps}).`,
    ),
    running
      ? h("progress", {
          max: String(spec.steps.length),
          value: String(rollout.step + 1),
          "aria-label": "Rollout progress",
        })
      : null,
    running ? h("p", { class: "small" }, figures(rollout.last)) : null,
    h("p", { class: "muted small" }, `Gates: ${gates(spec)}. Started by ${rollout.started_by}.`),
    rollout.reason ? h("p", { id: "rollout-reason", class: running ? "small" : "status-message" }, rollout.reason) : null,
  );
}

/** The start dialog: the candidate and the same options as `sos rollout`. */
function openRolloutDialog({ name, revisions, onStarted }) {
  const field = (id, label, control, hint) =>
    h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("p", { class: "muted small" }, hint) : null);
  const input = (id, value, extra = {}) =>
    h("input", { id, name: id, type: "text", autocomplete: "off", value, ...extra });
  const to = h(
    "select",
    { id: "rollout-to", name: "to" },
    [...revisions].reverse().map((rev) => h("option", { value: rev.id }, `${revNumber(rev.id)} · ${rev.artifact.name} ${rev.artifact.version}`)),
  );
  const steps = input("rollout-steps", "10,50,100");
  const every = input("rollout-every", "60", { inputmode: "decimal" });
  const errors = input("rollout-errors", "1", { inputmode: "decimal" });
  const p99 = input("rollout-p99", "", { inputmode: "decimal", placeholder: "none" });
  const minimum = input("rollout-min", "20", { inputmode: "numeric" });
  const overlap = input("rollout-overlap", "", { inputmode: "decimal", placeholder: "none" });
  const problem = h("div", { class: "conflict", role: "alert", hidden: true });
  const go = h("button", { type: "submit", class: "btn btn-primary" }, "Start rollout");
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h(
    "form",
    { method: "dialog", class: "editor", novalidate: true },
    field("rollout-to", "Revision to roll out", to),
    field("rollout-steps", "Steps (percent)", steps, "Its share at each step, rising, ending at 100."),
    field("rollout-every", "Seconds per step", every),
    field("rollout-errors", "Max error rate (%)", errors, "Empty: no error-rate gate."),
    field("rollout-p99", "Max p99 latency (ms)", p99, "Empty: no latency gate."),
    field("rollout-min", "Requests a step needs", minimum),
    field(
      "rollout-overlap",
      "Min overlap with the primary (0 to 1)",
      overlap,
      "Start only if the revision, shadowed first, ranked like the primary. Empty: no check.",
    ),
    problem,
    h("div", { class: "dialog-actions" }, cancel, go),
  );
  const dialog = dialogShell("rollout-title", `Start a rollout of ${name}`, form);
  cancel.addEventListener("click", () => dialog.close());
  const number = (el) => (el.value.trim() === "" ? null : Number(el.value.trim()));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    go.disabled = true;
    problem.hidden = true;
    const rate = number(errors);
    const body = {
      to: to.value,
      steps: steps.value.split(",").map((s) => Number(s.trim().replace(/%$/, ""))),
      step_seconds: number(every),
      max_error_rate: rate === null ? null : rate / 100,
      max_p99_ms: number(p99),
      min_requests: number(minimum) ?? 0,
      min_overlap: number(overlap),
    };
    try {
      await api("POST", `/services/${enc(name)}/rollout`, body);
      dialog.close();
      toast(`Rollout of ${name} started.`);
      onStarted();
    } catch (err) {
      clear(problem, h("p", {}, err.message));
      problem.hidden = false;
      go.disabled = false;
    }
  });
  dialog.showModal();
  to.focus();
}
