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

async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let code = "http_" + response.status;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || code;
    }
  } catch {
    if (response.status === 404) message = "This feature is not available on the server yet (404).";
  }
  if (response.status === 401) message = "Your session has ended: log in again.";
  return new ApiError(message, { status: response.status, code });
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
    upload: (dir, files) => {
      const form = new FormData();
      for (const f of files) form.append("files", f, f.name);
      return call("POST", `${base}/files/upload`, { query: { path: dir }, body: form });
    },
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
