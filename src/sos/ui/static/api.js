// The SOS API from the browser: the token, JSON requests, errors, and the log stream.
// The token lives in sessionStorage (this tab only) or, when the user asks to be
// remembered, in localStorage; signing out removes it from both.

const KEY = "sos.token";
export const API = new URL("../api/v1", document.baseURI).pathname;

export function getToken() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
}

export function setToken(token, remember) {
  clearToken();
  (remember ? localStorage : sessionStorage).setItem(KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** An error the server reported, in its one shape {error: {type, message, details}}. */
export class ApiError extends Error {
  constructor(status, type, message, details = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.details = details || {};
  }

  /** A 409 from a write based on an old resource_version (someone changed it meanwhile). */
  get stale() {
    return this.status === 409 && this.details.resource_version !== undefined;
  }
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const token = getToken();
  if (token) out.Authorization = `Bearer ${token}`;
  return out;
}

async function failure(response) {
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // not JSON (a proxy's error page): fall back to the status line
  }
  const error = (payload && payload.error) || {};
  const message =
    error.message || `the server answered ${response.status} ${response.statusText}`.trim();
  const err = new ApiError(response.status, error.type || "error", message, error.details);
  if (response.status === 401) window.dispatchEvent(new CustomEvent("sos:unauthorized"));
  return err;
}

function unreachable(err) {
  return new ApiError(
    0,
    "network",
    `cannot reach the SOS server (${err.message}); check that \`sos server\` is running`,
  );
}

/** api("GET", "/services") -> parsed JSON; throws ApiError. */
export async function api(method, path, body, { signal, token } = {}) {
  const init = { method, headers: headers(), signal, cache: "no-store" };
  if (token !== undefined) init.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(API + path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw unreachable(err);
  }
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return response.json();
}

export const enc = encodeURIComponent;

/**
 * Stream a service's logs (NDJSON) and call onRecord for each LogRecord until the stream
 * ends or `signal` aborts. fetch (not EventSource) so the token goes in a header.
 */
export async function streamLogs(
  service,
  { revision, tail = 200, follow = true, signal, onRecord },
) {
  const params = new URLSearchParams({ tail: String(tail), follow: String(follow) });
  if (revision) params.set("revision", revision);
  let response;
  try {
    response = await fetch(`${API}/services/${enc(service)}/logs?${params}`, {
      headers: headers({ Accept: "application/x-ndjson" }),
      signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err.name === "AbortError") return;
    throw unreachable(err);
  }
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, newline).trim();
        buffer = buffer.slice(newline + 1);
        if (line) onRecord(JSON.parse(line));
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") throw unreachable(err);
  }
}
