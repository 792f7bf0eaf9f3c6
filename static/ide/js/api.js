// The page is a client of the public API like any other: session cookie plus
// the X-CSRFToken header on unsafe methods. Every failure becomes an ApiError
// carrying the API's own error.message, ready to show to the user.

export const API = "/api/v1";

export class ApiError extends Error {
  constructor(message, { status = 0, code = "error" } = {}) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

export function qs(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === false) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v === true ? "1" : v)}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

// What a status means when the body does not say (a proxy's page, a cut connection).
const STATUS_TEXT = {
  401: "Your session has ended: log in again.",
  404: "This feature is not available on the server yet (404).",
  413: "The upload is larger than the server accepts (413).",
  502: "The sandbox did not answer (502).",
  503: "The server is busy or restarting (503): try again in a moment.",
  504: "The server took too long to answer (504).",
  507: "The sandbox's disk is full (507): delete some files and try again.",
};

// An ApiError from a status and the response's text (the API's JSON error when it is one).
export function errorOf(status, statusText, text) {
  let message = STATUS_TEXT[status] || `${status} ${statusText || ""}`.trim();
  let code = "http_" + status;
  try {
    const body = JSON.parse(text);
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || code;
    }
  } catch { /* not JSON: the status says it */ }
  if (status === 401) message = STATUS_TEXT[401];
  return new ApiError(message, { status, code });
}

export async function errorFrom(response) {
  let text = "";
  try { text = await response.text(); } catch { /* the connection broke: the status says it */ }
  return errorOf(response.status, response.statusText, text);
}

// A body sent with XMLHttpRequest, the one browser API that reports upload progress:
// onProgress(bytesSent) as it goes; resolves to the parsed JSON answer, rejects with
// an ApiError, or an AbortError when `signal` aborts it.
export function sendWithProgress(method, path, { query, body, onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const abort = () => xhr.abort();
    const settle = (fn, value) => { signal?.removeEventListener("abort", abort); fn(value); };
    xhr.open(method, API + path + qs(query));
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    if (onProgress) xhr.upload.addEventListener("progress", (e) => onProgress(e.loaded));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try { settle(resolve, xhr.responseText ? JSON.parse(xhr.responseText) : null); } catch { settle(resolve, null); }
      } else settle(reject, errorOf(xhr.status, xhr.statusText, xhr.responseText));
    });
    xhr.addEventListener("error", () => settle(reject,
      new ApiError("The connection to the server broke during the transfer: check your connection and try again.", { code: "network" })));
    xhr.addEventListener("abort", () => settle(reject, new DOMException("The transfer was cancelled.", "AbortError")));
    if (signal?.aborted) { reject(new DOMException("The transfer was cancelled.", "AbortError")); return; }
    signal?.addEventListener("abort", abort);
    xhr.send(body);
  });
}

// fetch() with auth headers and API errors; returns the Response.
export async function raw(method, path, { query, json, body, headers = {}, signal } = {}) {
  const h = { ...headers };
  if (!["GET", "HEAD"].includes(method)) h["X-CSRFToken"] = csrfToken();
  if (json !== undefined) {
    h["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  // Reads are retried once when the connection drops (e.g. the browser saw the network change).
  for (let attempt = 0; ; attempt++) {
    try {
      response = await fetch(API + path + qs(query), {
        method, body, headers: h, credentials: "same-origin", signal,
      });
      break;
    } catch (err) {
      if (err.name === "AbortError") throw err;
      if (attempt === 0 && (method === "GET" || method === "HEAD")) {
        await new Promise((r) => setTimeout(r, 300));
        continue;
      }
      throw new ApiError("The server cannot be reached: check your connection.", { code: "network" });
    }
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

// JSON call: returns the parsed body (or null for 204).
export async function call(method, path, options = {}) {
  const response = await raw(method, path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// Read a text/event-stream response, calling onEvent(name, data) per event.
export async function readSSE(response, onEvent, signal) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      if (signal && signal.aborted) break;
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let idx;
      while ((idx = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, idx);
        buffer = buffer.slice(idx).replace(/^\r?\n\r?\n/, "");
        let name = "message";
        const data = [];
        for (const line of block.split(/\r?\n/)) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (!data.length) continue;
        let parsed = data.join("\n");
        try { parsed = JSON.parse(parsed); } catch { /* plain text */ }
        onEvent(name, parsed);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

// Calls scoped to one sandbox.
export function sandboxApi(id) {
  const base = `/sandboxes/${encodeURIComponent(id)}`;
  return {
    id,
    base,
    get: () => call("GET", base),
    list: (path, recursive = false) => call("GET", `${base}/files`, { query: { path, recursive } }),
    read: (path, headers = {}) => raw("GET", `${base}/files/content`, { query: { path }, headers }),
    write: (path, text) =>
      call("PUT", `${base}/files/content`, {
        query: { path }, body: text, headers: { "Content-Type": "application/octet-stream" },
      }),
    mkdir: (path) => call("POST", `${base}/files/mkdir`, { json: { path } }),
    move: (source, destination) => call("POST", `${base}/files/move`, { json: { source, destination } }),
    remove: (path, recursive = false) => call("DELETE", `${base}/files`, { query: { path, recursive } }),
    // One file's bytes, with progress (see sendWithProgress); parents are created.
    send: (path, blob, options = {}) =>
      sendWithProgress("PUT", `${base}/files/content`, { ...options, query: { path }, body: blob }),
    contentUrl: (path) => `${API}${base}/files/content${qs({ path })}`,
    archiveUrl: (path) => `${API}${base}/files/archive${qs({ path })}`,
    watchUrl: (path) => `${API}${base}/files/watch${qs({ path, recursive: true })}`,
    exec: (command, options = {}) => call("POST", `${base}/exec`, { json: { command, ...options } }),
    ports: () => call("GET", `${base}/ports`),
    expose: (port, visibility = "private") => call("POST", `${base}/ports`, { json: { port, visibility } }),
    sharePort: (port, body) => call("PATCH", `${base}/ports/${port}`, { json: body }),
    portQrUrl: (port) => `${API}${base}/ports/${port}/qr`,
    unexpose: (port) => call("DELETE", `${base}/ports/${port}`),
    terminals: () => call("GET", `${base}/terminals`),
    closeTerminal: (name) => call("DELETE", `${base}/terminals/${encodeURIComponent(name)}`),
    clone: (body) => call("POST", `${base}/git/clone`, { json: body }),
    gitStatus: (path) => call("GET", `${base}/git/status`, { query: { path } }),
    codeRun: (body) => call("POST", `${base}/code/run`, { json: body }),
    newContext: (language = "python") => call("POST", `${base}/code/contexts`, { json: { language } }),
    dropContext: (ctx) => call("DELETE", `${base}/code/contexts/${encodeURIComponent(ctx)}`),
  };
}

export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

// Small DOM helper: h("div.cls", {attrs}, children...)
export function h(tag, attrs = {}, ...children) {
  if (attrs instanceof Node || typeof attrs === "string" || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function basename(path) {
  const parts = path.replace(/\/+$/, "").split("/");
  return parts[parts.length - 1] || "/";
}

export function dirname(path) {
  const p = path.replace(/\/+$/, "");
  const i = p.lastIndexOf("/");
  return i <= 0 ? "/" : p.slice(0, i);
}

export function joinPath(dir, name) {
  return dir.replace(/\/+$/, "") + "/" + name.replace(/^\/+/, "");
}
