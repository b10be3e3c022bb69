// The services list: name, team, status, traffic at a glance, URL. Refreshes every 5 s.

import { api } from "./api.js";
import { cell, clear, h, revNumber, statusBadge, timeEl, trafficBar } from "./dom.js";

const REFRESH_MS = 5000;

export function servicesPage(main, session) {
  let services = null;
  let filter = "";
  let shown = "";
  const count = h("p", { class: "muted page-sub" });
  const body = h(
    "div",
    { class: "card table-card" },
    h("p", { class: "loading" }, "Loading services…"),
  );
  const search = h("input", {
    id: "filter",
    type: "search",
    placeholder: "Name or team",
    autocomplete: "off",
    oninput: (e) => {
      filter = e.target.value.trim().toLowerCase();
      render(true);
    },
  });
  const why = session.createReason();
  const create = h(
    "button",
    {
      id: "new-service",
      type: "button",
      class: "btn btn-primary",
      disabled: !!why,
      "aria-describedby": why ? "ro-note" : null,
      onclick: async () =>
        (await import("./service_forms.js")).openServiceDialog({
          session,
          onSaved: (service) => {
            location.hash = `#/services/${encodeURIComponent(service.name)}`;
          },
        }),
    },
    "New service",
  );
  clear(
    main,
    h(
      "div",
      { class: "page-head" },
      h("div", {}, h("h1", { tabindex: "-1" }, "Services"), count),
      h(
        "div",
        { class: "page-tools" },
        h("div", { class: "filter" }, h("label", { for: "filter" }, "Filter"), search),
        create,
      ),
    ),
    why ? h("p", { class: "readonly-note", id: "ro-note" }, why) : null,
    body,
  );

  function row(service) {
    const routes = service.traffic?.routes || [];
    return h(
      "tr",
      { "data-service": service.name },
      cell(
        "Service",
        h(
          "a",
          { class: "strong", href: `#/services/${encodeURIComponent(service.name)}` },
          service.name,
        ),
        service.description ? h("div", { class: "muted small" }, service.description) : null,
      ),
      cell("Team", service.team),
      cell(
        "Status",
        statusBadge(service.status),
        !service.status?.ready && service.status?.message
          ? h(
              "div",
              // one line in the table (a long failure once pushed traffic and URL off
              // screen); the whole text on hover and on the service's page
              { class: "muted small status-line", title: service.status.message },
              service.status.message,
            )
          : null,
      ),
      cell(
        "Traffic",
        { class: "traffic-cell" },
        routes.length ? trafficBar(routes) : h("span", { class: "muted" }, "No traffic yet"),
      ),
      cell(
        "URL",
        service.status?.url
          ? h(
              "a",
              {
                href: service.status.url,
                target: "_blank",
                rel: "noopener noreferrer",
                class: "url",
              },
              service.status.url,
            )
          : h("span", { class: "muted" }, "—"),
      ),
      cell(
        "Latest",
        service.latest_revision
          ? h("span", { class: "mono" }, revNumber(service.latest_revision))
          : "—",
        // the revision's age, not the service's last change (a traffic move is not a revision)
        service.latest_revision_at
          ? h("div", { class: "muted small" }, timeEl(service.latest_revision_at))
          : null,
      ),
    );
  }

  function render(force = false) {
    if (services === null) return;
    const list = services.filter(
      (s) => !filter || s.name.includes(filter) || s.team.toLowerCase().includes(filter),
    );
    const key = JSON.stringify([list, filter]);
    if (!force && key === shown) return;
    shown = key;
    const ready = services.filter((s) => s.status?.ready).length;
    count.textContent = services.length
      ? `${services.length} service${services.length === 1 ? "" : "s"}, ${ready} ready`
      : "";
    if (!services.length) {
      clear(
        body,
        h(
          "div",
          { class: "empty" },
          h("h2", {}, "No services yet"),
          h(
            "p",
            {},
            "Create one with New service, or from a terminal: ",
            h("span", { class: "mono" }, "sos build PROJECT --push"),
            " then ",
            h("span", { class: "mono" }, "sos deploy FILE"),
            ". It shows up here by itself.",
          ),
        ),
      );
      return;
    }
    if (!list.length) {
      clear(body, h("p", { class: "empty" }, `No service matches “${filter}”.`));
      return;
    }
    clear(
      body,
      h(
        "table",
        { class: "table responsive", "aria-label": "Services" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Service", "Team", "Status", "Traffic", "URL", "Latest revision"].map((t) =>
              h("th", { scope: "col" }, t),
            ),
          ),
        ),
        h("tbody", {}, list.map(row)),
      ),
    );
  }

  async function refresh() {
    try {
      services = await api("GET", "/services");
      render();
    } catch (err) {
      if (services === null)
        clear(body, h("p", { class: "form-error", role: "alert" }, err.message));
    }
  }

  refresh();
  const timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
  return () => clearInterval(timer);
}
