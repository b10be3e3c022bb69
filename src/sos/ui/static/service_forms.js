// Creating, editing and deleting a service, all modal <dialog>s.
//
// Create never overwrites: the API's PUT creates or updates, so the dialog first asks
// whether the name is taken and says so instead of changing someone else's service. Edit
// and delete are conditional on the resource_version the page showed (a service changed
// meanwhile is reported, not overwritten or deleted); delete asks for the name typed out.

import { api, ApiError, enc } from "./api.js";
import { clear, dialogShell, h, toast } from "./dom.js";
import { errorReporter, errorSummary, field, textArea, textInput } from "./forms.js";
import { staleMessage } from "./traffic.js";

const DNS_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Open "New service", or "Edit NAME" when `service` is given (description, and the team
 * for admins; conditional on the resource_version the page showed). onSaved(service).
 */
export function openServiceDialog({ session, service = null, onSaved }) {
  const t = session.token;
  const admin = t.role === "admin";
  const editing = service !== null;
  const name = field({
    id: "service-name",
    label: "Name",
    path: "name",
    control: textInput("service-name", service?.name || "", {
      required: true,
      maxlength: 57,
      readonly: editing,
    }),
    help: editing
      ? "A service keeps its name (it is part of its URL)."
      : "Lowercase letters, digits and “-”, starting with a letter (like sfix-service). It becomes part of the service's URL and cannot be changed.",
  });
  const team = field({
    id: "service-team",
    label: "Team",
    path: "team",
    control: textInput("service-team", service?.team || (admin ? "" : t.team), {
      required: true,
      readonly: !admin,
    }),
    help: admin
      ? "The team whose writer tokens may change it (like recs)."
      : `Your token “${t.name}” ${editing ? "changes" : "creates"} services of team ${t.team}.`,
  });
  const description = field({
    id: "service-description",
    label: "Description (optional)",
    path: "description",
    control: textArea("service-description", service?.description || "", { maxlength: 2000 }),
  });
  const fields = new Map([name, team, description].map((f) => [f.path, f]));
  const summary = errorSummary();
  const errors = errorReporter(fields, summary);
  const verb = editing ? "Save changes" : "Create service";
  const save = h("button", { type: "submit", class: "btn btn-primary" }, verb);
  const cancel = h("button", { type: "button", class: "btn" }, "Cancel");
  const form = h(
    "form",
    { class: "form", novalidate: true },
    editing
      ? null
      : h(
          "p",
          { class: "muted" },
          "A service is a name, a team and a URL. It runs nothing until its first revision, which then gets all of its traffic.",
        ),
    name.el,
    team.el,
    description.el,
    summary,
    h("div", { class: "dialog-actions" }, cancel, save),
  );
  const dialog = dialogShell(
    "service-dialog-title",
    editing ? `Edit ${service.name}` : "New service",
    form,
  );
  cancel.addEventListener("click", () => dialog.close());

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const spec = {
      name: name.control.value.trim(),
      team: team.control.value.trim(),
      description: description.control.value.trim(),
    };
    if (!spec.name) return errors.local(name, "Enter a name for the service.");
    if (!spec.team) return errors.local(team, "Enter the team that owns the service.");
    // create only: 0 means the service must not exist yet (the server answers 409 if it does)
    spec.resource_version = editing ? service.resource_version : 0;
    errors.clear();
    save.disabled = true;
    save.textContent = editing ? "Saving…" : "Creating…";
    try {
      if (!editing && DNS_LABEL.test(spec.name) && spec.name.length <= 57) {
        const existing = await findService(spec.name);
        if (existing) {
          errors.local(
            name,
            `A service named ${spec.name} already exists (team ${existing.team}); pick another name.`,
          );
          return;
        }
      }
      // an invalid name cannot exist: the server's answer says what is wrong with it
      const path = DNS_LABEL.test(spec.name) ? enc(spec.name) : "invalid-name";
      const saved = await api("PUT", `/services/${path}`, spec);
      dialog.close();
      toast(
        editing
          ? `Service ${saved.name} saved.`
          : `Service ${saved.name} created. Next: its first revision.`,
      );
      onSaved(saved);
    } catch (err) {
      if (err instanceof ApiError && err.stale) {
        err.message = await staleMessage(spec.name, "Close this and look at it again first.");
      }
      errors.show(err, editing ? "Not saved." : "The service was not created.");
    } finally {
      save.disabled = false;
      save.textContent = verb;
    }
  });

  dialog.showModal();
  (editing ? description : name).control.focus();
  return dialog;
}

async function findService(name) {
  try {
    return await api("GET", `/services/${enc(name)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** Ask for the name typed out, then DELETE conditional on the version the page showed. */
export function confirmDeleteService({ service, revisions, onDeleted }) {
  const name = service.name;
  const typed = field({
    id: "delete-confirm",
    label: `Type ${name} to confirm`,
    control: textInput("delete-confirm", "", { autocapitalize: "off" }),
  });
  const problem = h("div", { class: "conflict", role: "alert", hidden: true });
  const yes = h(
    "button",
    { type: "submit", class: "btn btn-danger", disabled: true },
    "Delete service",
  );
  const no = h("button", { type: "button", class: "btn" }, "Cancel");
  const count = revisions.length;
  const form = h(
    "form",
    { class: "form", novalidate: true },
    h(
      "p",
      {},
      `This deletes ${name}, its ${count === 1 ? "revision" : `${count} revisions`} and its traffic route, and stops its instances; its URL stops answering. `,
      "The change history stays readable. This cannot be undone.",
    ),
    typed.el,
    problem,
    h("div", { class: "dialog-actions" }, no, yes),
  );
  const dialog = dialogShell("delete-title", `Delete ${name}?`, form);
  no.addEventListener("click", () => dialog.close());
  typed.control.addEventListener("input", () => {
    yes.disabled = typed.control.value.trim() !== name;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (typed.control.value.trim() !== name) return;
    yes.disabled = true;
    problem.hidden = true;
    try {
      await api("DELETE", `/services/${enc(name)}?resource_version=${service.resource_version}`);
      dialog.close();
      toast(`Service ${name} deleted.`);
      onDeleted();
    } catch (err) {
      const text =
        err instanceof ApiError && err.stale
          ? await staleMessage(
              name,
              "Close this and look at it again first.",
              "Nothing was deleted.",
            )
          : err.message;
      clear(problem, h("p", {}, text));
      problem.hidden = false;
      yes.disabled = false;
    }
  });
  dialog.showModal();
  typed.control.focus();
  return dialog;
}
