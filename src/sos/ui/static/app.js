// The SOS console: sign-in, the page shell and the hash router.
//
//   #/                                 services
//   #/services/NAME                    a service: traffic and revisions
//   #/services/NAME/metrics?revision=  live charts of a revision
//   #/services/NAME/logs?revision=     logs tail
//   #/services/NAME/history            who changed what, when
//   #/services/NAME/new-revision?from= create a revision (from the latest's settings)
//   #/tokens                           tokens (admins manage them)
//   #/secrets?team=T                   a team's secrets (write-only values)
//   #/builds, #/builds/ID              remote builds: state, artifact, provenance, log

import { api, ApiError, clearToken, getToken, setToken } from "./api.js";
import { clear, h } from "./dom.js";
import { servicePage } from "./service.js";
import { servicesPage } from "./services.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
const banner = document.getElementById("banner");

/** What every page gets: the signed-in token and what it may do. */
const session = {
  token: null, // {name, role, team}
  canWrite(service) {
    const t = this.token;
    return !!t && (t.role === "admin" || (t.role === "writer" && t.team === service.team));
  },
  /** Why this token may not change `service` (null when it may). */
  readOnly(service) {
    const t = this.token;
    if (!t || this.canWrite(service)) return null;
    if (t.role === "reader") {
      return `Read-only: your token “${t.name}” has the reader role, so it can see everything but change nothing. Ask an admin for a writer token of team ${service.team} to create revisions, change traffic, roll back or delete.`;
    }
    return `Read-only here: your token “${t.name}” belongs to team ${t.team}, and ${service.name} belongs to team ${service.team}.`;
  },
  /** Why this token may not create services (null when it may). */
  createReason() {
    const t = this.token;
    if (!t || t.role !== "reader") return null;
    return `Read-only: your token “${t.name}” has the reader role, so it cannot create services. Ask an admin for a writer token of your team.`;
  },
  /** Why this token may not manage tokens (null for admins). */
  adminReason() {
    const t = this.token;
    if (!t || t.role === "admin") return null;
    return `Only admin tokens manage tokens. Yours, “${t.name}”, has the ${t.role} role${t.team ? ` (team ${t.team})` : ""}: ask an admin to create or revoke one.`;
  },
};

let leave = () => {};

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean);
  return { parts, params: new URLSearchParams(query) };
}

/**
 * A page whose module loads on first use (forms and admin pages: the first visit downloads
 * only what the services and service pages need). Returns the page's leave().
 */
function lazyPage(loading, start) {
  let stop = null;
  let left = false;
  clear(main, h("p", { class: "loading" }, "Loading…"));
  loading
    .then((module) => {
      if (left) return;
      stop = start(module);
      main.querySelector("h1")?.focus({ preventScroll: true });
    })
    .catch((err) => {
      if (left) return;
      clear(
        main,
        h(
          "p",
          { class: "notice", role: "alert" },
          `This page could not be loaded (${err.message}); reload to try again.`,
        ),
      );
    });
  return () => {
    left = true;
    stop?.();
  };
}

function route({ focus = true } = {}) {
  leave();
  leave = () => {};
  if (!session.token) {
    signIn();
    return;
  }
  const { parts, params } = parseHash();
  const section = ["tokens", "secrets", "builds"].includes(parts[0]) ? parts[0] : "services";
  for (const link of document.querySelectorAll(".topnav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (parts.length === 0 || (parts[0] === "services" && parts.length === 1)) {
    document.title = "Services · SOS";
    leave = servicesPage(main, session);
  } else if (parts[0] === "tokens" && parts.length === 1) {
    document.title = "Tokens · SOS";
    leave = lazyPage(import("./tokens.js"), (m) => m.tokensPage(main, session));
  } else if (parts[0] === "builds" && parts.length === 1) {
    document.title = "Builds · SOS";
    leave = lazyPage(import("./builds.js"), (m) => m.buildsPage(main, session));
  } else if (parts[0] === "builds" && parts.length === 2) {
    document.title = `Build ${parts[1]} · SOS`;
    leave = lazyPage(import("./builds.js"), (m) => m.buildPage(main, session, parts[1]));
  } else if (parts[0] === "secrets" && parts.length === 1) {
    document.title = "Secrets · SOS";
    leave = lazyPage(import("./secrets.js"), (m) => m.secretsPage(main, session, params));
  } else if (parts[0] === "services" && parts[2] === "new-revision" && parts.length === 3) {
    document.title = `New revision of ${parts[1]} · SOS`;
    leave = lazyPage(import("./revision_form.js"), (m) =>
      m.revisionFormPage(main, session, parts[1], params),
    );
  } else if (parts[0] === "services" && parts.length <= 3) {
    const tab = parts[2] || "overview";
    document.title = `${parts[1]} · SOS`;
    leave = servicePage(main, session, parts[1], tab, params);
  } else {
    clear(
      main,
      h("h1", { tabindex: "-1" }, "Page not found"),
      h(
        "p",
        {},
        "There is nothing at this address. ",
        h("a", { href: "#/" }, "Go to the services."),
      ),
    );
  }
  if (focus) main.querySelector("h1")?.focus({ preventScroll: true });
}

function renderWho() {
  const t = session.token;
  if (!t) {
    clear(who);
    clear(banner);
    return;
  }
  clear(
    who,
    h(
      "span",
      { class: "who-name", title: `Signed in with token “${t.name}”` },
      h("span", { class: "sr-only" }, "Signed in as "),
      t.name,
    ),
    h("span", { class: `role role-${t.role}` }, t.team ? `${t.role} · ${t.team}` : t.role),
    h("button", { type: "button", class: "btn btn-quiet", onclick: signOut }, "Sign out"),
  );
  clear(
    banner,
    t.role === "reader"
      ? h(
          "div",
          { class: "banner" },
          h("strong", {}, "Read-only. "),
          `Token “${t.name}” can see every service, revision, metric and log, but every change (services, revisions, traffic, rollbacks, tokens) is turned off.`,
        )
      : null,
  );
}

function signOut() {
  clearToken();
  session.token = null;
  renderWho();
  route();
}

function signIn(problem = "") {
  document.title = "Sign in · SOS";
  const error = h("p", { class: "form-error", role: "alert", id: "signin-error" }, problem);
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help signin-error",
  });
  const remember = h("input", { id: "remember", type: "checkbox" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
  const form = h(
    "form",
    {
      class: "signin card",
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) {
          error.textContent = "Paste a token first.";
          input.focus();
          return;
        }
        submit.disabled = true;
        error.textContent = "";
        try {
          session.token = await api("GET", "/whoami", undefined, { token });
          setToken(token, remember.checked);
          renderWho();
          route();
        } catch (err) {
          error.textContent =
            err instanceof ApiError && err.status === 401
              ? "The server does not know this token (mistyped, or revoked)."
              : err.message;
          submit.disabled = false;
          input.focus();
        }
      },
    },
    h("h1", { tabindex: "-1" }, "Sign in to SOS"),
    h(
      "p",
      { class: "muted", id: "token-help" },
      "Paste an SOS token. The admin token of a local server is in ",
      h("span", { class: "mono" }, "~/.local/share/sos/admin-token"),
      " (sos server prints where); admins make more with ",
      h("span", { class: "mono" }, "sos token create --role reader"),
      ".",
    ),
    h("label", { for: "token" }, "Token"),
    input,
    h(
      "label",
      { class: "check", for: "remember" },
      remember,
      " Remember me on this device (otherwise only in this tab)",
    ),
    error,
    submit,
  );
  clear(main, form);
  input.focus();
}

async function start() {
  window.addEventListener("hashchange", () => route());
  window.addEventListener("sos:unauthorized", () => {
    if (!session.token) return;
    clearToken();
    session.token = null;
    renderWho();
    leave();
    leave = () => {};
    signIn("The server no longer accepts your token (revoked?). Sign in again.");
  });
  const token = getToken();
  if (token) {
    try {
      session.token = await api("GET", "/whoami");
    } catch (err) {
      session.token = null;
      renderWho();
      signIn(
        err.status === 401 ? "Your saved token is no longer valid. Sign in again." : err.message,
      );
      return;
    }
  }
  renderWho();
  route({ focus: false });
}

start();
