// Flight explorer: pick a pipeline, enter the context, run it with debug, read the funnel.
// Plain browser JavaScript, no build step. Every value from the server is shown with
// textContent, never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  };

  const state = { pipelines: [], details: new Map(), answers: null, logged: null };
  const form = $("run-form");
  const selectA = $("pipeline-a");
  const selectB = $("pipeline-b");
  const compare = $("compare");
  const fieldsBox = $("context-fields");
  const statusLine = $("status");
  const formError = $("form-error");
  const results = $("results");
  const runButton = $("run-button");

  async function getJSON(url, options) {
    const response = await fetch(url, options);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { ok: response.ok, status: response.status, body, headers: response.headers };
  }

  const enc = encodeURIComponent;

  function showError(message) {
    formError.textContent = message;
    formError.hidden = !message;
  }

  // -- pipelines and their context ----------------------------------------------------------

  async function loadPipelines() {
    const [index, listing] = await Promise.all([getJSON("../"), getJSON("../pipelines")]);
    if (index.ok && index.body) $("app-name").textContent = index.body.app ? `(${index.body.app})` : "";
    if (!listing.ok || !listing.body) {
      showError(`Cannot list pipelines: HTTP ${listing.status}`);
      return;
    }
    state.pipelines = listing.body.pipelines;
    for (const select of [selectA, selectB]) {
      select.replaceChildren();
      for (const p of state.pipelines) {
        const label = p.status === "ok" ? p.name : `${p.name} (${p.status})`;
        select.append(el("option", { value: p.name, disabled: !p.serving }, label));
      }
    }
    if (!state.pipelines.length) {
      statusLine.textContent = "No pipelines are served yet: add config files to the app's configs folder.";
      runButton.disabled = true;
    }
  }

  async function detail(name) {
    if (!name) return null;
    const got = await getJSON(`../pipelines/${enc(name)}`);
    if (!got.ok) return null;
    state.details.set(name, got.body);
    return got.body;
  }

  function describe(target, info) {
    target.classList.remove("problem");
    if (!info) {
      target.textContent = "";
      return;
    }
    const parts = [];
    if (info.description) parts.push(info.description);
    parts.push(info.source === "python" ? "defined in Python" : `version ${info.version || "?"} from ${info.source}`);
    if (info.error) {
      target.classList.add("problem");
      parts.push(
        info.serving
          ? `The newest version was rejected (the previous one serves): ${info.error.message}`
          : `No valid version: ${info.error.message}`,
      );
    }
    target.textContent = parts.join(" · ");
  }

  function currentValues() {
    const values = {};
    for (const input of fieldsBox.querySelectorAll("input")) values[input.name] = input.value;
    return values;
  }

  let refreshes = 0;

  async function refreshContext(prefill) {
    const mine = ++refreshes;
    runButton.disabled = true; // until the context fields match the chosen pipelines
    const names = [selectA.value];
    if (compare.checked && selectB.value) names.push(selectB.value);
    const infos = await Promise.all(names.map(detail));
    if (mine !== refreshes) return; // a newer choice is being shown
    describe($("about-a"), infos[0]);
    describe($("about-b"), compare.checked ? infos[1] : null);
    const required = new Set();
    const optional = new Set();
    const declared = {}; // key -> {type, default} from the pipelines' context declarations
    for (const info of infos) {
      if (!info || !info.context) continue;
      for (const key of info.context.required || []) required.add(key);
      for (const key of info.context.optional || []) optional.add(key);
      for (const [key, spec] of Object.entries(info.context.declared || {})) declared[key] ??= spec;
    }
    for (const key of required) optional.delete(key);
    const keep = { ...currentValues(), ...(prefill || {}) };
    fieldsBox.replaceChildren();
    const keys = [...[...required].sort(), ...[...optional].sort()];
    if (!keys.length) {
      fieldsBox.append(el("p", { class: "hint", text: "These pipelines need no context." }));
    }
    for (const key of keys) {
      const id = `ctx-${key}`;
      const need = required.has(key);
      const spec = declared[key];
      const hint = `(${need ? "required" : "optional"}${spec ? `, ${spec.type}` : ""})`;
      fieldsBox.append(
        el(
          "div",
          { class: "field" },
          el("label", { for: id }, key, " ", el("span", { class: "hint", text: hint })),
          el("input", {
            id,
            name: key,
            type: "text",
            required: need,
            "aria-required": need ? "true" : null,
            autocomplete: "off",
            placeholder: spec && "default" in spec ? JSON.stringify(spec.default) : null,
            value: keep[key] ?? "",
          }),
        ),
      );
    }
    runButton.disabled = !state.pipelines.length;
  }

  // -- running --------------------------------------------------------------------------------

  function parseValue(raw) {
    const text = raw.trim();
    if (text === "") return undefined;
    try {
      return JSON.parse(text);
    } catch (_) {
      return text;
    }
  }

  function readContext() {
    const context = {};
    const missing = [];
    for (const input of fieldsBox.querySelectorAll("input")) {
      const value = parseValue(input.value);
      if (value === undefined) {
        if (input.required) missing.push(input.name);
        continue;
      }
      context[input.name] = value;
    }
    const extra = $("extra-context").value.trim();
    if (extra) {
      let parsed;
      try {
        parsed = JSON.parse(extra);
      } catch (err) {
        throw new Error(`More context is not valid JSON: ${err.message}`);
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        throw new Error("More context must be a JSON object, like {\"genre\": \"Comedy\"}");
      }
      Object.assign(context, parsed);
    }
    if (missing.length) throw new Error(`Enter ${missing.join(", ")}: the pipeline needs it.`);
    return context;
  }

  async function execute(name, context, budget) {
    const query = new URLSearchParams({ debug: "true" });
    if (budget) query.set("budget_ms", budget);
    const started = performance.now();
    const got = await getJSON(`../pipelines/${enc(name)}/execute?${query}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(context),
    });
    return {
      name,
      ...got,
      roundTripMs: performance.now() - started,
      version: got.headers.get("x-flight-pipeline-version"),
      traceId: got.headers.get("x-trace-id"),
    };
  }

  function saveToURL(context) {
    const query = new URLSearchParams();
    query.set("a", selectA.value);
    if (compare.checked) query.set("b", selectB.value);
    for (const [key, value] of Object.entries(context)) {
      query.set(`ctx.${key}`, typeof value === "string" ? value : JSON.stringify(value));
    }
    const budget = $("budget").value;
    if (budget) query.set("budget_ms", budget);
    history.replaceState(null, "", `?${query}`);
  }

  // -- a logged request, and "why is item X not here?" -----------------------------------------

  async function loadLogged() {
    showError("");
    let record;
    try {
      record = JSON.parse($("logged").value);
    } catch (err) {
      showError(`That line is not JSON: ${err.message}`);
      return;
    }
    if (!record || typeof record !== "object" || typeof record.pipeline !== "string"
        || !record.context || typeof record.context !== "object") {
      showError("A request log line has a \"pipeline\" and a \"context\" object.");
      return;
    }
    const served = state.pipelines.filter((p) => p.serving).map((p) => p.name);
    if (!served.includes(record.pipeline)) {
      showError(`Pipeline ${record.pipeline} is not served here (served: ${served.join(", ")}).`);
      return;
    }
    state.logged = record;
    selectA.value = record.pipeline;
    compare.checked = false;
    $("field-b").hidden = true;
    const prefill = {};
    for (const [key, value] of Object.entries(record.context)) {
      prefill[key] = typeof value === "string" ? value : JSON.stringify(value);
    }
    await refreshContext(prefill);
    await run();
  }

  function explain(itemText) {
    const answer = state.answers && state.answers[0];
    if (!answer || !answer.body || !Array.isArray(answer.body.debug)) {
      return "Run a pipeline first: the explanation reads its debug trace.";
    }
    const trace = answer.body.debug;
    const has = (ids) => (ids || []).some((id) => String(id) === itemText);
    const sources = trace.filter((s) => s.role === "include");
    const excludes = trace.filter((s) => s.role === "exclude");
    const steps = trace.filter((s) => s.role === "step");
    const cut = (s) => s.ids_truncated ? " (the trace lists only the first ids of that step, so this is a guess)" : "";
    const from = sources.filter((s) => has(s.output_ids));
    if (!from.length) {
      const partial = sources.some((s) => s.ids_truncated);
      return `Item ${itemText}: no source returned it` + (partial ? " (among the ids the trace lists)." : ".");
    }
    const names = from.map((s) => s.name).join(", ");
    const excluded = excludes.find((s) => has(s.output_ids));
    if (excluded) return `Item ${itemText}: returned by ${names}, then excluded by ${excluded.name}.`;
    for (const step of steps) {
      if (has(step.input_ids) && !has(step.output_ids)) {
        return `Item ${itemText}: returned by ${names}, then removed by ${step.name}` +
          (step.message ? ` (${step.message})` : "") + cut(step) + ".";
      }
    }
    const last = steps.length ? steps[steps.length - 1] : null;
    if (!last || has(last.output_ids)) return `Item ${itemText} is in the answer (returned by ${names}).`;
    return `Item ${itemText}: returned by ${names}; the trace does not say where it went${cut(last)}.`;
  }

  async function run(event) {
    if (event) event.preventDefault();
    showError("");
    let context;
    try {
      context = readContext();
    } catch (err) {
      showError(err.message);
      return;
    }
    const budget = $("budget").value.trim();
    const names = [selectA.value];
    if (compare.checked && selectB.value) names.push(selectB.value);
    saveToURL(context);
    runButton.disabled = true;
    statusLine.textContent = `Running ${names.join(" and ")}…`;
    try {
      const answers = await Promise.all(names.map((n) => execute(n, context, budget)));
      state.answers = answers;
      if (state.logged && state.logged.pipeline !== selectA.value) state.logged = null;
      render(answers);
      const failed = answers.filter((a) => !a.ok).length;
      statusLine.textContent =
        `Ran ${names.join(" and ")}` + (failed ? `: ${failed} failed, see below.` : ": results below.");
    } catch (err) {
      showError(`Could not run: ${err.message}`);
      statusLine.textContent = "";
    } finally {
      runButton.disabled = false;
    }
  }

  // -- rendering -------------------------------------------------------------------------------

  const fmt = (value) => {
    if (value === null || value === undefined) return "–";
    if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  };
  const ms = (value) => (value === null || value === undefined ? "" : `${value < 10 ? value.toFixed(2) : value.toFixed(0)} ms`);

  function table(rows, captionText, keyName, only) {
    const columns = [];
    for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
    const head = el("tr", {}, ...columns.map((c) => el("th", { scope: "col", text: c })));
    const body = rows.map((row) => {
      const isOnly = only && only.has(String(row[keyName]));
      const tr = el(
        "tr",
        { class: isOnly ? "only" : null },
        ...columns.map((c) => el("td", { class: typeof row[c] === "number" ? "num" : null, text: fmt(row[c]) })),
      );
      if (isOnly) tr.title = "only in this pipeline's answer";
      return tr;
    });
    return el(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": captionText },
      el("table", {}, el("caption", { text: captionText }), el("thead", {}, head), el("tbody", {}, ...body)),
    );
  }

  function argsText(kwargs) {
    return Object.entries(kwargs || {})
      .map(([k, v]) => `${k}=${typeof v === "string" ? JSON.stringify(v) : JSON.stringify(v)}`)
      .join(", ");
  }

  function funnel(answer, trace, keyName) {
    const largest = Math.max(1, ...trace.map((e) => e.n_output || 0), ...trace.map((e) => e.n_input || 0));
    const list = el("ol", { class: "funnel", "aria-label": `Steps of ${answer.name}` });
    const firstStep = trace.findIndex((e) => e.role === "step");
    trace.forEach((entry, index) => {
      if (index === firstStep) {
        const n = entry.n_input;
        list.append(
          el(
            "li",
            { class: "step role-candidates", "data-role": "candidates" },
            el("div", { class: "step-head" }, el("span", { class: "step-name", text: "Candidates" }),
              el("span", { class: "role", text: "includes − excludes" })),
            el("div", { class: "counts" }, `${n} items`),
            el("div", { class: "bar", "aria-hidden": "true" }, el("span", { style: `width:${(100 * n) / largest}%` })),
          ),
        );
      }
      const isSource = entry.role !== "step";
      const counts = isSource
        ? `returned ${entry.n_output}${entry.role === "exclude" ? " to exclude" : ""}`
        : `${entry.n_input} in → ${entry.n_output} out`;
      const rows = entry.items || [];
      const shown = rows.length < entry.n_output ? `, first ${rows.length} shown` : "";
      list.append(
        el(
          "li",
          { class: `step role-${entry.role} status-${entry.status}`, "data-role": entry.role, "data-status": entry.status },
          el("div", { class: "step-head" },
            el("span", { class: "step-name", text: entry.name }),
            el("span", { class: "role", text: `${entry.role} · ${entry.kind}` }),
            entry.status !== "ok" ? el("span", { class: "flag failed", text: entry.status }) : null),
          el("code", { class: "args", text: argsText(entry.kwargs) }),
          el("div", { class: "counts" },
            el("span", { class: "n", text: counts }), " ",
            el("span", { class: "time", text: ms(entry.elapsed_ms) })),
          el("div", { class: "bar", "aria-hidden": "true" },
            el("span", { style: `width:${(100 * (entry.n_output || 0)) / largest}%` })),
          entry.status !== "ok" && entry.message ? el("p", { class: "message", text: entry.message }) : null,
          rows.length
            ? el("details", {},
                el("summary", { text: `Items after ${entry.name} (${entry.n_output}${shown})` }),
                table(rows, `Items after ${entry.name}`, keyName))
            : null,
        ),
      );
    });
    return list;
  }

  function answerRows(body) {
    const reserved = new Set(["reason", "warnings", "partial", "cut", "debug", "error"]);
    const columns = Object.keys(body).filter((k) => !reserved.has(k) && Array.isArray(body[k]));
    const n = columns.length ? body[columns[0]].length : 0;
    const rows = [];
    for (let i = 0; i < n; i += 1) {
      const row = {};
      for (const c of columns) row[c] = body[c][i];
      rows.push(row);
    }
    return { columns, rows };
  }

  function render(answers) {
    results.replaceChildren();
    const finals = answers.map((a) => {
      const info = state.details.get(a.name);
      const key = (info && info.item_type) || null;
      const { columns, rows } = a.body ? answerRows(a.body) : { columns: [], rows: [] };
      const keyName = key && columns.includes(key) ? key : columns[0];
      return { key: keyName, ids: new Set(rows.map((r) => String(r[keyName]))), rows };
    });
    answers.forEach((answer, i) => {
      const info = state.details.get(answer.name);
      const headingId = `pane-title-${i}`;
      const pane = el("article", { class: "pane", "aria-labelledby": headingId, "data-pipeline": answer.name });
      pane.append(
        el("h2", { id: headingId }, answer.name, " ",
          el("span", { class: "version", text: answer.version && answer.version !== "python" ? `version ${answer.version}` : "" })),
      );
      const body = answer.body || {};
      if (!answer.ok && !Array.isArray(body.debug)) {
        const message = body.error && typeof body.error === "object" ? body.error.message : body.error;
        pane.append(el("p", { class: "error", role: "alert", text: `HTTP ${answer.status}: ${message || "no answer"}` }));
        if (Array.isArray(body.problems)) {
          pane.append(el("ul", {}, ...body.problems.map((p) => el("li", { text: `${p.parameter}: ${p.message}` }))));
        }
        results.append(pane);
        return;
      }
      const final = finals[i];
      const summary = el("p", { class: "summary" },
        `${final.rows.length} items in ${ms(answer.roundTripMs)} (round trip)`);
      if (body.partial) summary.append(" ", el("span", { class: "flag partial", text: "partial" }));
      if (!answer.ok) summary.append(" ", el("span", { class: "flag failed", text: `HTTP ${answer.status}` }));
      pane.append(summary);
      if (body.cut && body.cut.length) pane.append(el("p", { class: "reason", text: `Cut by the budget: ${body.cut.join(", ")}` }));
      if (body.reason) pane.append(el("p", { class: "reason", text: `Why: ${body.reason}` }));
      for (const warning of body.warnings || []) pane.append(el("p", { class: "reason", text: `Warning: ${warning}` }));
      if (answer.traceId) pane.append(el("p", { class: "hint", text: `trace id ${answer.traceId}` }));
      if (i === 0 && state.logged && Array.isArray(state.logged.items)) {
        const servedIds = state.logged.items.map(String);
        const still = servedIds.filter((id) => final.ids.has(id)).length;
        pane.append(el("p", { class: "served", "data-served": "true" },
          `Served then${state.logged.version ? ` (version ${state.logged.version})` : ""}: ` +
          `${servedIds.join(", ") || "nothing"}; ${still} of ${servedIds.length} are in this answer.`));
      }
      pane.append(el("h3", { text: "Funnel" }));
      pane.append(funnel(answer, body.debug || [], (info && info.item_type) || final.key));
      pane.append(el("h3", { text: "Answer" }));
      let only = null;
      if (finals.length === 2 && answers.every((a) => a.ok)) {
        const other = finals[1 - i];
        only = new Set([...final.ids].filter((id) => !other.ids.has(id)));
        const shared = final.ids.size - only.size;
        pane.append(el("p", { class: "overlap" },
          `${shared} of ${final.ids.size} items also in ${answers[1 - i].name}; `,
          el("span", { class: "only-label", text: `${only.size} only here (marked ◆)` })));
      }
      pane.append(final.rows.length ? table(final.rows, `Answer of ${answer.name}`, final.key, only)
        : el("p", { text: "No items." }));
      results.append(pane);
    });
  }

  // -- start -------------------------------------------------------------------------------------

  async function start() {
    await loadPipelines();
    const params = new URLSearchParams(location.search);
    const prefill = {};
    for (const [key, value] of params) if (key.startsWith("ctx.")) prefill[key.slice(4)] = value;
    const names = state.pipelines.filter((p) => p.serving).map((p) => p.name);
    if (params.get("a") && names.includes(params.get("a"))) selectA.value = params.get("a");
    else if (names.length) selectA.value = names[0];
    if (params.get("b") && names.includes(params.get("b"))) {
      compare.checked = true;
      selectB.value = params.get("b");
    } else if (names.length > 1) {
      selectB.value = names.find((n) => n !== selectA.value) || names[0];
    }
    $("field-b").hidden = !compare.checked;
    if (params.get("budget_ms")) $("budget").value = params.get("budget_ms");
    await refreshContext(prefill);
    if (params.get("a") && Object.keys(prefill).length) run();
  }

  selectA.addEventListener("change", () => refreshContext());
  selectB.addEventListener("change", () => refreshContext());
  compare.addEventListener("change", () => {
    $("field-b").hidden = !compare.checked;
    refreshContext();
  });
  form.addEventListener("submit", run);
  $("load-logged").addEventListener("click", () => {
    loadLogged().catch((err) => showError(`Could not load it: ${err.message}`));
  });
  $("why-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const item = $("why-item").value.trim();
    $("why-answer").textContent = item ? explain(item) : "Enter an item id.";
  });
  start().catch((err) => showError(`The explorer could not start: ${err.message}`));
})();
