// Secrets (#/secrets, #/secrets?team=recs): a team's write-only secrets. The team's tokens
// list them; its writers and admins create, rotate and delete them. A value goes to the
// server once and never comes back: not here, not in the API, not in any log.

import { api, enc } from "./api.js";
import { cell, clear, confirmDialog, dialogShell, h, timeEl, toast } from "./dom.js";
import { errorReporter, errorSummary, field, textInput } from "./forms.js";

export function secretsPage(main, session, params) {
  let alive = true;
  const t = session.token;
  const team = params.get("team") || t.team || "";
  const body = h("div", { class: "card table-card" });
  const teamInput = textInput("secrets-team", team, { placeholder: "e.g. recs" });
  const pick = h(
    "form",
    { class: "inline-form", novalidate: true },
    h("label", { for: "secrets-team" }, "Team "),
    teamInput,
    h("button", { type: "submit", class: "btn" }, "Show"),
  );
  pick.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/secrets?team=${enc(teamInput.value.trim())}`;
  });
  const mayWrite = (name) =>
    t.role === "admin" || (t.role === "writer" && t.team === name);
  const create = h(
    "button",
    {
      id: "new-secret",
      type: "button",
      class: "btn btn-primary",
      disabled: !team || !mayWrite(team),
      onclick: () => openSetSecret({ team, onDone: refresh }),
    },
    "New secret",
  );
  clear(
    main,
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("h1", { tabindex: "-1" }, team ? `Secrets of team ${team}` : "Secrets"),
        h(
          "p",
          { class: "muted page-sub" },
          "Write-only values a team's revisions use as environment variables ",
          h("span", { class: "mono" }, 'EnvVar(id="DB_PASSWORD", secret="db-password")'),
          ". Nobody reads a value back; only the instances get it.",
        ),
      ),
      create,
    ),
    pick,
    team ? body : h("p", { class: "muted" }, "Name a team to see its secrets."),
  );

  function row(secret) {
    const writable = mayWrite(team);
    return h(
      "tr",
      { "data-secret": secret.name },
      cell("Name", h("strong", { class: "mono" }, secret.name)),
      cell("Version", String(secret.version)),
      cell(
        "Updated",
        timeEl(secret.updated_at),
        h("div", { class: "muted small" }, secret.updated_by ? `by ${secret.updated_by}` : ""),
      ),
      cell(
        "Actions",
        { class: "row-actions" },
        h(
          "button",
          {
            type: "button",
            class: "btn btn-quiet",
            disabled: !writable,
            "aria-label": `Rotate secret ${secret.name}`,
            onclick: () => openSetSecret({ team, name: secret.name, onDone: refresh }),
          },
          "Rotate…",
        ),
        h(
          "button",
          {
            type: "button",
            class: "btn btn-quiet btn-danger-text",
            disabled: !writable,
            "aria-label": `Delete secret ${secret.name}`,
            onclick: () => confirmDelete({ team, secret, onDone: refresh }),
          },
          "Delete…",
        ),
      ),
    );
  }

  async function refresh() {
    if (!team) return;
    clear(body, h("p", { class: "loading" }, "Loading…"));
    try {
      const secrets = await api("GET", `/teams/${enc(team)}/secrets`);
      if (!alive) return;
      clear(
        body,
        secrets.length
          ? h(
              "table",
              { class: "table responsive", "aria-label": `Secrets of team ${team}` },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ["Name", "Version", "Updated"].map((c) => h("th", { scope: "col" }, c)),
                  h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")),
                ),
              ),
              h("tbody", {}, secrets.map(row)),
            )
          : h("p", { class: "muted" }, `Team ${team} has no secrets yet.`),
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

/** Create (no ``name``) or rotate a secret: the value goes to the server, never back. */
function openSetSecret({ team, name, onDone }) {
  const nameField = field({
    id: "secret-name",
    label: "Name",
    path: "name",
    control: textInput("secret-name", name || "", { required: true, maxlength: 63 }),
    help: "Lowercase letters, digits and '-', like db-password.",
  });
  if (name) nameField.control.readOnly = true;
  const value = field({
    id: "secret-value",
    label: "Value",
    path: "value",
    control: h("input", {
      id: "secret-value",
      type: "password",
      autocomplete: "off",
      maxlength: 65536,
      required: true,
    }),
    help: "Sent once; nobody can read it back. Instances started from now on get it.",
  });
  const summary = errorSummary();
  const errors = errorReporter(
    new Map([
      ["name", nameField],
      ["value", value],
    ]),
    summary,
  );
  const submit = h(
    "button",
    { type: "submit", class: "btn btn-primary" },
    name ? "Rotate secret" : "Create secret",
  );
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    nameField.el,
    value.el,
    summary,
    h("div", { class: "dialog-actions" }, cancel, submit),
  );
  const dialog = dialogShell(
    "secret-title",
    name ? `Rotate secret “${name}” of team ${team}` : `New secret of team ${team}`,
    form,
  );
  cancel.addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = nameField.control.value.trim();
    if (!chosen) return errors.local(nameField, "Enter a name, like db-password.");
    if (!value.control.value) return errors.local(value, "Enter the value.");
    errors.clear();
    submit.disabled = true;
    try {
      const secret = await api("PUT", `/teams/${enc(team)}/secrets/${enc(chosen)}`, {
        value: value.control.value,
      });
      value.control.value = ""; // nothing of it stays in the page
      dialog.close();
      toast(
        secret.version === 1
          ? `Secret ${secret.name} created.`
          : `Secret ${secret.name} rotated (version ${secret.version}).`,
      );
      onDone();
    } catch (err) {
      errors.show(err, "The secret was not saved.");
      submit.disabled = false;
    }
  });
  dialog.showModal();
  (name ? value.control : nameField.control).focus();
}

function confirmDelete({ team, secret, onDone }) {
  confirmDialog({
    titleId: "delete-secret-title",
    title: `Delete secret “${secret.name}”?`,
    body: [
      h(
        "p",
        {},
        "Revisions that use it cannot start new instances afterwards. The server refuses while a revision that serves traffic uses it.",
      ),
    ],
    yes: "Delete secret",
    run: () => api("DELETE", `/teams/${enc(team)}/secrets/${enc(secret.name)}`),
    done: () => {
      toast(`Secret ${secret.name} deleted.`);
      onDone();
    },
  });
}
