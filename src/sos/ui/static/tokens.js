// Tokens (#/tokens): admins list, create and revoke them; everyone else sees why not.
//
// A new token's secret is shown once, in the dialog that created it, with a copy button;
// the server keeps only its hash, so closing the dialog loses it for good.

import { api, enc } from "./api.js";
import { cell, clear, confirmDialog, dialogShell, h, timeEl, toast } from "./dom.js";
import { errorReporter, errorSummary, field, textInput } from "./forms.js";

const ROLES = [
  ["reader", "Reader", "sees every service, revision, metric and log; changes nothing"],
  ["writer", "Writer", "changes the services of one team"],
  ["admin", "Admin", "changes everything and manages tokens"],
];

export function tokensPage(main, session) {
  let alive = true;
  const why = session.adminReason();
  const body = h("div", { class: "card table-card" }, h("p", { class: "loading" }, "Loading…"));
  const create = h(
    "button",
    {
      id: "new-token",
      type: "button",
      class: "btn btn-primary",
      disabled: !!why,
      "aria-describedby": why ? "ro-note" : null,
      onclick: () => openCreateToken({ onDone: refresh }),
    },
    "Create token",
  );
  const t = session.token;
  clear(
    main,
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", { tabindex: "-1" }, "Tokens"),
        h(
          "p",
          { class: "muted page-sub" },
          "Bearer tokens for the Python client, the sos command and this console. The server keeps only their hashes.",
        ),
      ),
      create,
    ),
    why
      ? [
          h("p", { class: "readonly-note", id: "ro-note" }, why),
          h(
            "p",
            { class: "muted" },
            `You are signed in with “${t.name}” (${t.role}${t.team ? `, team ${t.team}` : ""}).`,
          ),
        ]
      : body,
  );

  function row(token) {
    const mine = token.id === t.id;
    return h(
      "tr",
      { "data-token": token.name },
      cell("Name", h("strong", {}, token.name), mine ? h("span", { class: "chip" }, "you") : null),
      cell("Role", h("span", { class: `role role-${token.role}` }, token.role)),
      cell("Team", token.team || h("span", { class: "muted" }, "—")),
      cell(
        "Created",
        timeEl(token.created_at),
        h("div", { class: "muted small" }, token.created_by ? `by ${token.created_by}` : ""),
      ),
      cell(
        "Expires",
        token.expires_at
          ? new Date(token.expires_at) <= new Date()
            ? h("strong", {}, "expired")
            : timeEl(token.expires_at)
          : h("span", { class: "muted" }, "never"),
      ),
      cell(
        "Last used",
        token.last_used_at ? timeEl(token.last_used_at) : h("span", { class: "muted" }, "never"),
      ),
      cell("Id", h("span", { class: "mono small" }, token.id)),
      cell(
        "Revoke",
        { class: "row-actions" },
        h(
          "button",
          {
            type: "button",
            class: "btn btn-quiet btn-danger-text",
            "aria-label": `Revoke token ${token.name}`,
            onclick: () => confirmRevoke({ token, mine, onDone: refresh }),
          },
          "Revoke…",
        ),
      ),
    );
  }

  async function refresh() {
    if (why) return;
    try {
      const tokens = await api("GET", "/tokens");
      if (!alive) return;
      clear(
        body,
        h(
          "table",
          { class: "table responsive", "aria-label": "Tokens" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Name", "Role", "Team", "Created", "Expires", "Last used", "Id"].map((c) =>
                h("th", { scope: "col" }, c),
              ),
              h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
            ),
          ),
          h("tbody", {}, tokens.map(row)),
        ),
      );
    } catch (err) {
      if (alive) clear(body, h("p", { class: "form-error", role: "alert" }, err.message));
    }
  }

  refresh();
  return () => {
    alive = false;
  };
}

function openCreateToken({ onDone }) {
  const name = field({
    id: "token-name",
    label: "Name",
    path: "name",
    control: textInput("token-name", "", { required: true, maxlength: 100 }),
    help: "Who or what uses it, like ci-recs or alice@example.com.",
  });
  const roleError = h("p", { class: "field-error", id: "token-role-error", hidden: true });
  const radios = ROLES.map(([value, label, what]) =>
    h(
      "label",
      { class: "check role-choice", for: `token-role-${value}` },
      h("input", {
        type: "radio",
        name: "token-role",
        id: `token-role-${value}`,
        value,
        checked: value === "writer",
        onchange: () => fitTeam(),
      }),
      h("span", {}, h("strong", {}, label), ` — ${what}`),
    ),
  );
  const role = {
    path: "role",
    control: radios[1].querySelector("input"),
    set(message) {
      roleError.textContent = message || "";
      roleError.hidden = !message;
    },
  };
  const team = field({
    id: "token-team",
    label: "Team",
    path: "team",
    control: textInput("token-team", ""),
    help: "A writer changes the services of this team only (like recs).",
  });
  const chosen = () => radios.map((r) => r.querySelector("input")).find((i) => i.checked).value;
  function fitTeam() {
    const writer = chosen() === "writer";
    team.control.disabled = !writer;
    team.control.required = writer;
    if (!writer) team.control.value = "";
    team.el.querySelector(".field-help").textContent = writer
      ? "A writer changes the services of this team only (like recs)."
      : "Only writer tokens belong to a team.";
  }
  const summary = errorSummary();
  const errors = errorReporter(
    new Map([
      ["name", name],
      ["role", role],
      ["team", team],
    ]),
    summary,
  );
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Create token");
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    name.el,
    h(
      "fieldset",
      { class: "form-field roles", "aria-describedby": "token-role-error" },
      h("legend", {}, "Role"),
      radios,
      roleError,
    ),
    team.el,
    summary,
    h("div", { class: "dialog-actions" }, cancel, submit),
  );
  const dialog = dialogShell("token-title", "Create a token", form);
  cancel.addEventListener("click", () => dialog.close());
  fitTeam();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const spec = { name: name.control.value.trim(), role: chosen() };
    if (!spec.name) return errors.local(name, "Enter a name: who or what will use the token.");
    if (spec.role === "writer") {
      spec.team = team.control.value.trim();
      if (!spec.team)
        return errors.local(
          team,
          "A writer token needs a team: the one team whose services it changes.",
        );
    }
    errors.clear();
    submit.disabled = true;
    try {
      const created = await api("POST", "/tokens", spec);
      showSecret(dialog, created);
      onDone();
    } catch (err) {
      errors.show(err, "The token was not created.");
      submit.disabled = false;
    }
  });
  dialog.showModal();
  name.control.focus();
}

/** Replace the dialog's form with the new secret, shown this once, and a copy button. */
function showSecret(dialog, created) {
  const secret = h("input", {
    id: "token-secret",
    type: "text",
    class: "mono secret",
    readonly: true,
    value: created.secret,
    "aria-describedby": "secret-note",
  });
  const copied = h("p", { class: "muted small", role: "status", id: "copy-status" });
  const copy = h(
    "button",
    {
      type: "button",
      class: "btn",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(created.secret);
        } catch {
          secret.select(); // no clipboard access (an old browser, plain http elsewhere)
          document.execCommand("copy");
        }
        copied.textContent = "Copied to the clipboard.";
      },
    },
    "Copy",
  );
  const done = h("button", { type: "button", class: "btn btn-primary" }, "Done");
  done.addEventListener("click", () => dialog.close());
  const title = dialog.querySelector("h2");
  title.textContent = `Token “${created.name}” created`;
  const origin = location.origin;
  clear(
    dialog,
    title,
    h(
      "p",
      { id: "secret-note" },
      h("strong", {}, "Copy its secret now: "),
      "it is shown only this once (the server keeps only a hash). Whoever has it acts as ",
      `${created.name}, ${created.role}${created.team ? ` of team ${created.team}` : ""}.`,
    ),
    h("label", { for: "token-secret" }, "Secret"),
    h("div", { class: "secret-row" }, secret, copy),
    copied,
    h(
      "p",
      { class: "muted small" },
      "Use it with ",
      h("span", { class: "mono" }, `sos login ${origin} --token SECRET`),
      ", as SOS_TOKEN, or to sign in here.",
    ),
    h("div", { class: "dialog-actions" }, done),
  );
  secret.focus();
  secret.select();
  toast(`Token ${created.name} created.`);
}

function confirmRevoke({ token, mine, onDone }) {
  confirmDialog({
    titleId: "revoke-title",
    title: `Revoke token “${token.name}”?`,
    body: [
      h(
        "p",
        {},
        "Whatever uses it (a CI job, a teammate's terminal, a console tab) gets “the server does not know this token” from now on. This cannot be undone: create a new token instead.",
      ),
      mine
        ? h(
            "p",
            { class: "readonly-note" },
            h("strong", {}, "This is the token you are signed in with: "),
            "revoking it signs you out.",
          )
        : null,
    ],
    yes: "Revoke token",
    run: () => api("DELETE", `/tokens/${enc(token.id)}`),
    done: () => {
      toast(`Token ${token.name} revoked.`);
      onDone();
    },
  });
}
