// "New revision" (#/services/NAME/new-revision): pick an artifact from the server's
// artifact store, set environment variables, resources, autoscaling, health check and
// gunicorn settings, and create an immutable revision.
//
// The form starts from the latest revision's settings (a new version usually changes only
// the artifact), or from the defaults of the API's own schema (/api/v1/openapi.json) for a
// first revision, so the page never disagrees with the server about defaults and ranges.
// What is wrong is the server's to say: its messages appear next to the fields.

import { api, enc } from "./api.js";
import { ago, bytes, clear, crumbs, h, revNumber, shortDigest, toast } from "./dom.js";
import { errorReporter, errorSummary, field, selectInput, textArea, textInput } from "./forms.js";

/** [key, label, options]; `more` ones sit under "More settings". */
const SECTIONS = [
  {
    key: "resources",
    schema: "Resources",
    title: "Resources",
    intro: "Limits per instance, as Kubernetes quantities. Empty means no limit.",
    fields: [
      ["memory", "Memory"],
      ["cpu", "CPU"],
    ],
  },
  {
    key: "autoscaling",
    schema: "Autoscaling",
    title: "Autoscaling",
    intro: "Instances are added and removed to keep about this many requests in flight each.",
    fields: [
      ["min_scale", "Minimum instances"],
      ["max_scale", "Maximum instances"],
      ["initial_scale", "Initial instances"],
      ["target_concurrency", "Target concurrency"],
    ],
    more: [
      ["target_utilization_percentage", "Target utilization (%)"],
      ["stable_window_seconds", "Stable window (s)"],
      ["panic_window_percentage", "Panic window (% of stable)"],
      ["panic_threshold_percentage", "Panic threshold (%)"],
      ["max_scale_up_rate", "Max scale-up rate"],
      ["max_scale_down_rate", "Max scale-down rate"],
      ["scale_down_delay_seconds", "Scale-down delay (s)"],
      ["scale_to_zero_grace_seconds", "Scale-to-zero grace (s)"],
    ],
  },
  {
    key: "health_check",
    schema: "HealthCheck",
    title: "Health check",
    intro: "HTTP paths the platform probes. Empty turns a probe off.",
    fields: [
      ["liveness_probe", "Liveness probe path", { off: true }],
      ["readiness_probe", "Readiness probe path", { off: true }],
    ],
    more: [
      ["initial_delay_seconds", "Initial delay (s)"],
      ["period_seconds", "Period (s)"],
      ["timeout_seconds", "Timeout (s)"],
      ["failure_threshold", "Failure threshold"],
    ],
  },
  {
    key: "gunicorn_config",
    schema: "GunicornConfig",
    title: "Serving (Python apps)",
    intro: "How gunicorn serves a Python web app (WSGI or ASGI).",
    // shown only for an artifact gunicorn serves: the server refuses these for others
    appliesTo: (meta) => !meta || (meta.language === "python" && meta.extra?.interface !== "command"),
    fields: [
      ["worker_count", "Worker processes"],
      ["thread_count", "Threads per worker"],
      [
        "worker_class",
        "Worker class",
        {
          choices: [
            ["", "Automatic (uvicorn for ASGI, gthread or sync for WSGI)"],
            ["sync", "sync"],
            ["gthread", "gthread"],
            ["gevent", "gevent"],
            ["uvicorn", "uvicorn"],
          ],
        },
      ],
      ["timeout_seconds", "Request timeout (s)"],
    ],
  },
];

/** A property of a schema component, with anyOf (nullable) folded in. */
function property(schemas, component, key) {
  const prop = schemas?.[component]?.properties?.[key] || {};
  const inner = (prop.anyOf || []).find((p) => p.type && p.type !== "null") || {};
  return { ...inner, ...prop };
}

/** "0 lets it scale to zero · 0 to 1000 · default 0" from the schema. */
function helpFrom(prop) {
  const parts = [];
  if (prop.description) parts.push(prop.description);
  const high = prop.maximum;
  if (prop.exclusiveMinimum !== undefined) {
    const above = `more than ${prop.exclusiveMinimum}`;
    parts.push(high === undefined ? above : `${above}, at most ${high}`);
  } else if (prop.minimum !== undefined) {
    parts.push(high === undefined ? `${prop.minimum} or more` : `${prop.minimum} to ${high}`);
  } else if (high !== undefined) {
    parts.push(`at most ${high}`);
  }
  if (prop.default !== undefined && prop.default !== null && prop.default !== "") {
    parts.push(`default ${prop.default}`);
  }
  return parts.join(" · ");
}

function artifactsByName(list) {
  const names = new Map();
  for (const meta of list) names.set(meta.name, [...(names.get(meta.name) || []), meta]);
  for (const versions of names.values()) versions.reverse(); // newest first
  return new Map([...names].sort(([a], [b]) => a.localeCompare(b)));
}

/** params: the address's query; ?from=ID starts from that revision instead of the latest. */
export function revisionFormPage(main, session, name, params = new URLSearchParams()) {
  let alive = true;
  const body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  clear(
    main,
    crumbs(
      [
        ["Services", "#/"],
        [name, `#/services/${enc(name)}`],
      ],
      "New revision",
    ),
    h("h1", { tabindex: "-1", id: "page-heading" }, `New revision of ${name}`),
    body,
  );

  Promise.all([
    api("GET", `/services/${enc(name)}`),
    api("GET", `/services/${enc(name)}/revisions`),
    api("GET", "/artifacts"),
    api("GET", "/openapi.json").catch(() => null),
  ])
    .then(([service, revisions, artifacts, openapi]) => {
      if (alive) render(service, revisions, artifacts, openapi?.components?.schemas || {});
    })
    .catch((err) => {
      if (!alive) return;
      clear(
        body,
        h(
          "p",
          { class: "notice", role: "alert" },
          err.status === 404 ? `There is no service “${name}”. ` : `${err.message} `,
          h("a", { href: "#/" }, "Back to the services."),
        ),
      );
    });

  function render(service, revisions, artifactList, schemas) {
    const from = params.get("from");
    const latest = revisions.find((r) => r.id === from) || revisions[revisions.length - 1] || null;
    const which =
      latest && latest.id === revisions[revisions.length - 1].id ? "the latest" : "chosen";
    const why = session.readOnly(service);
    const fields = new Map();
    const add = (f) => {
      fields.set(f.path, f);
      return f.el;
    };

    // ---------------------------------------------------------------- artifact
    const byName = artifactsByName(artifactList);
    const startName =
      latest && byName.has(latest.artifact.name) ? latest.artifact.name : [...byName.keys()][0];
    const artifactName = field({
      id: "artifact-name",
      label: "Name",
      path: "artifact.name",
      control: selectInput(
        "artifact-name",
        [...byName.keys()].map((n) => [n, n]),
        startName,
      ),
    });
    const artifactVersion = field({
      id: "artifact-version",
      label: "Version",
      path: "artifact.version",
      control: h("select", { id: "artifact-version", name: "artifact-version" }),
    });
    const facts = h("p", { class: "muted small artifact-facts", "aria-live": "polite" });
    /** each section's card, to hide the ones that cannot apply to the chosen artifact */
    const sectionCardOf = new Map();
    function versions() {
      const list = byName.get(artifactName.control.value) || [];
      clear(
        artifactVersion.control,
        list.map((meta, i) =>
          h(
            "option",
            { value: meta.version, selected: i === 0 },
            `${meta.version}${i === 0 ? " (newest)" : ""}`,
          ),
        ),
      );
      describe();
    }
    function selected() {
      const list = byName.get(artifactName.control.value) || [];
      return list.find((m) => m.version === artifactVersion.control.value);
    }
    function describe() {
      const meta = selected();
      for (const [section, card] of sectionCardOf) {
        card.hidden = Boolean(section.appliesTo && !section.appliesTo(meta));
      }
      clear(
        facts,
        meta
          ? [
              `${meta.language} ${meta.runtime_version} · `,
              h("span", { class: "mono" }, meta.entry_point),
              ` · ${bytes(meta.size)} · `,
              h("span", { class: "mono", title: meta.digest }, shortDigest(meta.digest)),
              meta.pushed_at
                ? ` · pushed${meta.pushed_by ? ` by ${meta.pushed_by}` : ""} ${ago(meta.pushed_at)}`
                : "",
            ]
          : null,
      );
    }
    artifactName.control.addEventListener("change", versions);
    artifactVersion.control.addEventListener("change", describe);
    versions();
    const noArtifacts = byName.size === 0;
    // the port the app listens on: empty leaves it to $PORT, which every runtime sets
    const port = field({
      id: "revision-port",
      label: "Port (optional)",
      path: "port",
      control: textInput("revision-port", latest?.port ?? "", { inputmode: "decimal", placeholder: "$PORT" }),
      help: helpFrom(property(schemas, "RevisionSpec", "port")) || null,
    });
    const artifactCard = h(
      "section",
      { class: "card", "aria-labelledby": "artifact-heading" },
      h("h2", { id: "artifact-heading" }, "Artifact"),
      noArtifacts
        ? h(
            "p",
            { class: "notice" },
            "The server's artifact store has no artifacts yet. Build and push one from the project's folder: ",
            h("span", { class: "mono" }, "sos build . --push"),
            ", then reload this page.",
          )
        : [
            h("div", { class: "form-grid" }, add(artifactName), add(artifactVersion), add(port)),
            facts,
          ],
    );

    // ---------------------------------------------------------------- environment
    // a row is a value, or a reference to a secret of the team (secret: its name)
    const envRows = (latest?.env_vars || []).map((e) =>
      e.secret ? { id: e.id, secret: e.secret } : { id: e.id, value: e.value },
    );
    const envBody = h("div", { class: "env-rows" });
    const envError = h("p", { class: "field-error", id: "env-error", hidden: true });
    const envAdd = h("button", { type: "button", class: "btn btn-ghost" }, "+ Add variable");
    const envSection = {
      path: "env_vars",
      label: "Environment variables",
      control: envAdd,
      error: envError,
      set(message) {
        envError.textContent = message || "";
        envError.hidden = !message;
      },
    };
    let envFields = [];
    function renderEnv() {
      envFields = envRows.map((row, i) => {
        const n = i + 1;
        const key = field({
          id: `env-${i}-id`,
          label: `Name of variable ${n}`,
          control: textInput(`env-${i}-id`, row.id, {
            placeholder: "e.g. LOG_LEVEL",
            oninput: (e) => (row.id = e.target.value),
          }),
          className: "env-name",
        });
        const isSecret = row.secret !== undefined;
        const value = field({
          id: `env-${i}-value`,
          label: isSecret ? `Secret of variable ${n} (its name; sos secret set)` : `Value of variable ${n}`,
          control: textInput(`env-${i}-value`, isSecret ? row.secret : row.value, {
            placeholder: isSecret ? "e.g. db-password" : "",
            oninput: (e) => (isSecret ? (row.secret = e.target.value) : (row.value = e.target.value)),
          }),
          className: "env-value",
        });
        const remove = h(
          "button",
          {
            type: "button",
            class: "btn btn-icon",
            "aria-label": `Remove variable ${n}`,
            title: "Remove this variable",
            onclick: () => {
              envRows.splice(i, 1);
              renderEnv();
              (envBody.querySelector("input") || envAdd).focus();
            },
          },
          "✕",
        );
        return { key, value, row, el: h("div", { class: "env-row" }, key.el, value.el, remove) };
      });
      clear(
        envBody,
        envFields.length
          ? envFields.map((f) => f.el)
          : h("p", { class: "muted" }, "No variables. PORT is set by the platform."),
      );
    }
    envAdd.addEventListener("click", () => {
      envRows.push({ id: "", value: "" });
      renderEnv();
      envBody.querySelector(`#env-${envRows.length - 1}-id`)?.focus();
    });
    const secretAdd = h("button", { type: "button", class: "btn btn-ghost" }, "+ Add secret");
    secretAdd.addEventListener("click", () => {
      envRows.push({ id: "", secret: "" });
      renderEnv();
      envBody.querySelector(`#env-${envRows.length - 1}-id`)?.focus();
    });
    renderEnv();
    const envCard = h(
      "section",
      { class: "card", "aria-labelledby": "env-heading" },
      h(
        "div",
        { class: "card-head" },
        h("h2", { id: "env-heading" }, "Environment variables"),
        h("div", {}, envAdd, secretAdd),
      ),
      envBody,
      envError,
    );

    // ---------------------------------------------------------------- the settings
    const settings = [];
    const sectionCards = SECTIONS.map((section) => {
      const base = latest?.[section.key] || {};
      const error = h("p", { class: "field-error", id: `${section.key}-error`, hidden: true });
      const build = ([key, label, opts = {}]) => {
        const prop = property(schemas, section.schema, key);
        const id = `${section.key}-${key}`.replaceAll("_", "-");
        const start = key in base ? base[key] : prop.default;
        const control = opts.choices
          ? selectInput(id, opts.choices, start ?? "")
          : textInput(id, start ?? "", {
              inputmode: ["integer", "number"].includes(prop.type) ? "decimal" : null,
            });
        const f = field({
          id,
          label,
          control,
          path: `${section.key}.${key}`,
          help: opts.choices ? null : helpFrom(prop) || null,
        });
        settings.push({ section: section.key, key, f, opts, prop });
        return add(f);
      };
      const first = section.fields.map(build);
      const more = section.more
        ? h(
            "details",
            { class: "more" },
            h("summary", {}, "More settings"),
            h("div", { class: "form-grid" }, section.more.map(build)),
          )
        : null;
      const sectionField = {
        path: section.key,
        label: section.title,
        control: fields.get(`${section.key}.${section.fields[0][0]}`).control,
        error,
        set(message) {
          error.textContent = message || "";
          error.hidden = !message;
        },
      };
      fields.set(section.key, sectionField);
      const card = h(
        "section",
        { class: "card", "aria-labelledby": `${section.key}-heading` },
        h("h2", { id: `${section.key}-heading` }, section.title),
        h("p", { class: "muted small" }, section.intro),
        h("div", { class: "form-grid" }, first),
        error,
        more,
      );
      sectionCardOf.set(section, card);
      return card;
    });
    describe(); // hide what cannot apply to the artifact chosen first

    const description = field({
      id: "revision-description",
      label: "Description (optional)",
      path: "description",
      control: textArea("revision-description", "", {
        maxlength: 1000,
        placeholder: "What changed, e.g. retrained on last week's data",
      }),
    });

    // ---------------------------------------------------------------- submit
    const summary = errorSummary();
    const submit = h(
      "button",
      {
        type: "submit",
        class: "btn btn-primary",
        disabled: !!why || noArtifacts,
        "aria-describedby": why ? "ro-note" : "check-status",
      },
      "Create revision",
    );
    const checked = h("p", {
      class: "check-status muted small",
      role: "status",
      id: "check-status",
    });
    const usable = !why && !noArtifacts;
    const form = h(
      "form",
      { class: "form form-page", novalidate: true, "aria-labelledby": "page-heading" },
      artifactCard,
      envCard,
      sectionCards,
      h("section", { class: "card" }, add(description)),
      summary,
      h(
        "div",
        { class: "form-actions" },
        checked,
        h("a", { class: "btn", href: `#/services/${enc(name)}` }, "Cancel"),
        submit,
      ),
    );

    /** The request body, and the fields its paths belong to (env rows by sent index). */
    function collect() {
      const out = {};
      for (const section of SECTIONS) out[section.key] = { ...(latest?.[section.key] || {}) };
      const meta = selected();
      for (const { section, key, f, opts, prop } of settings) {
        const applies = SECTIONS.find((x) => x.key === section)?.appliesTo;
        if (applies && !applies(meta)) continue;
        const raw = f.control.value.trim();
        if (raw === "") {
          if (opts.off || opts.choices || prop.default === null) out[section][key] = null;
          else delete out[section][key]; // the server's default
        } else {
          out[section][key] = raw;
        }
      }
      out.artifact = {
        name: artifactName.control.value,
        version: artifactVersion.control.value,
      };
      const all = new Map(fields);
      all.set("env_vars", envSection);
      out.env_vars = [];
      for (const { key, value, row } of envFields) {
        const isSecret = row.secret !== undefined;
        if (!row.id.trim() && !(isSecret ? row.secret : row.value)) continue; // an empty row
        const i = out.env_vars.length;
        all.set(`env_vars[${i}].id`, key);
        all.set(`env_vars[${i}].${isSecret ? "secret" : "value"}`, value);
        out.env_vars.push(
          isSecret ? { id: row.id.trim(), secret: row.secret.trim() } : { id: row.id.trim(), value: row.value },
        );
      }
      out.description = description.control.value.trim();
      out.port = port.control.value.trim() || null;
      for (const section of SECTIONS) {
        // what cannot apply to this artifact is not sent (the server would refuse it)
        if (section.appliesTo && !section.appliesTo(meta)) delete out[section.key];
      }
      return { payload: out, errors: errorReporter(all, summary) };
    }

    // While the user types, the server checks the revision without creating it (a dry
    // run) and its messages appear next to the fields; a pause of 400 ms sends one check.
    let pending = 0;
    let asked = 0;
    async function check() {
      const mine = ++asked;
      const { payload, errors } = collect();
      try {
        await api("POST", `/services/${enc(name)}/revisions?dry_run=true`, payload);
        if (mine !== asked) return;
        errors.unmark();
        checked.textContent = "Checked by the server: ready to create.";
      } catch (err) {
        if (mine !== asked || err.status === 0) return;
        const { fields: marked, loose } = errors.mark(err);
        const count = marked.length + loose.length;
        checked.textContent = `Not valid yet: ${count === 1 ? "1 problem" : `${count} problems`}${marked.length ? ", marked above" : `: ${loose.join(" ")}`}.`;
      }
    }
    if (usable) {
      const later = () => {
        clearTimeout(pending);
        pending = setTimeout(check, 400);
      };
      form.addEventListener("input", later);
      form.addEventListener("change", later);
      envAdd.addEventListener("click", later);
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (submit.disabled) return;
      clearTimeout(pending);
      asked += 1; // a check still on its way is out of date now
      const { payload, errors } = collect();
      errors.clear();
      checked.textContent = "";
      submit.disabled = true;
      submit.textContent = "Creating…";
      try {
        const revision = await api("POST", `/services/${enc(name)}/revisions`, payload);
        const number = revNumber(revision.id);
        toast(
          revisions.length
            ? `Revision ${number} created. It gets no traffic until you split it (Edit traffic).`
            : `Revision ${number} created. As the first revision it gets all of the traffic.`,
        );
        location.hash = `#/services/${enc(name)}`;
      } catch (err) {
        errors.show(err, "The revision was not created.");
        submit.disabled = false;
        submit.textContent = "Create revision";
      }
    });

    clear(
      body,
      why ? h("p", { class: "readonly-note", id: "ro-note" }, why) : null,
      h(
        "p",
        { class: "muted lead" },
        latest
          ? `Revisions never change once created: this makes a new one, starting from the settings of ${revNumber(latest.id)} (${which}). It gets no traffic until you split it.`
          : "The service's first revision: it gets all of the service's traffic once it is ready.",
      ),
      form,
    );
  }

  return () => {
    alive = false;
  };
}
