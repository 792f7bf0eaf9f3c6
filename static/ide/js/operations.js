// Progress of long operations (a sandbox from a template, a clone, a whole-class
// reset or update): the request asks for Server-Sent Events (docs/api.md, "Progress
// of long operations") and a small view shows the stage, how far it is, each
// student's outcome, and on failure the API's own sentence.
import { ApiError, h, raw, readSSE } from "./api.js";

// POST `json` to `path` streaming its progress: onStep(step) per `progress` event;
// resolves with the `done` event's data (what the plain JSON answer would hold).
// Failures, before the stream (bad input, 404 …) or in it (`error` event), throw
// an ApiError carrying the API's code and message.
export async function postWithProgress(path, json, onStep, { signal } = {}) {
  const response = await raw("POST", path, { json, signal, headers: { Accept: "text/event-stream" } });
  if (!(response.headers.get("Content-Type") || "").includes("text/event-stream")) {
    return response.json(); // a server without the stream answers as before
  }
  let result;
  let failure;
  await readSSE(response, (name, data) => {
    if (name === "progress") onStep(data);
    else if (name === "done") result = { data };
    else if (name === "error") failure = new ApiError(data.message, { code: data.code, status: 200 });
  }, signal);
  if (failure) throw failure;
  if (!result) {
    throw new ApiError("The connection to the server broke before the work was done; it goes on " +
      "on the server: reload the page to see where it got.", { code: "network" });
  }
  return result.data;
}

function ensureStyles() {
  if (document.getElementById("operations-css")) return;
  document.head.append(h("link", { id: "operations-css", rel: "stylesheet",
    href: new URL("../css/operations.css", import.meta.url).href }));
}

// A progress box: title, optional named stages, a bar (indeterminate until a
// percent or a count is known), the latest message, and optional per-item lines.
export class ProgressView {
  constructor({ title, stages = [], testid = "progress" }) {
    ensureStyles();
    this.stages = stages;
    this.spinner = h("span.spinner", { "aria-hidden": "true" });
    this.title = h("strong.op-title", {}, title);
    this.count = h("span.op-count.muted", { "data-testid": `${testid}-count` });
    this.fill = h("div.op-fill");
    this.bar = h("div.op-bar", { role: "progressbar", "aria-label": title }, this.fill);
    this.text = h("div.op-text", { "data-testid": `${testid}-text` }, "Starting…");
    this.stageList = stages.length ? h("ol.op-stages", {}, ...stages.map(([id, label]) =>
      h("li", { "data-stage": id }, label))) : null;
    this.items = h("ul.op-items", { "data-testid": `${testid}-items` });
    this.el = h("div.op-progress", { role: "status", "aria-live": "polite", "data-state": "running",
      "data-testid": testid },
    h("div.op-head", {}, this.spinner, this.title, h("span.grow"), this.count),
    this.stageList, this.bar, this.text, this.items);
    this.setPercent(null);
  }

  setPercent(percent) {
    if (percent === null || percent === undefined) {
      this.bar.classList.add("indeterminate");
      this.bar.removeAttribute("aria-valuenow");
      this.fill.style.width = "";
      return;
    }
    const p = Math.max(0, Math.min(100, Math.round(percent)));
    this.bar.classList.remove("indeterminate");
    this.bar.setAttribute("aria-valuenow", String(p));
    this.fill.style.width = `${p}%`;
  }

  // One `progress` event of the API.
  step(step) {
    this.text.textContent = step.message;
    if (this.stageList) {
      const ids = this.stages.map(([id]) => id);
      const at = ids.indexOf(step.stage);
      if (at >= 0) {
        [...this.stageList.children].forEach((li, i) => {
          li.dataset.state = i < at ? "done" : i === at ? "active" : "";
        });
        this.count.textContent = `step ${at + 1} of ${ids.length}`;
      }
    }
    if (step.total) {
      this.count.textContent = step.stage === "clone" ? `${step.percent ?? 0}%` : `${step.current} of ${step.total}`;
      this.setPercent(step.percent ?? (100 * step.current) / step.total);
    } else if (step.percent !== undefined) {
      this.setPercent(step.percent);
    } else {
      this.setPercent(null);
    }
  }

  // A line for one item (a student), marked ok or failed.
  item(text, ok, attrs = {}) {
    this.items.append(h("li", { "data-ok": ok ? "true" : "false", ...attrs },
      h("span.op-mark", { "aria-hidden": "true" }, ok ? "✓" : "✗"), " ", text));
  }

  finish(message, state = "done") {
    this.el.dataset.state = state;
    this.spinner.remove();
    this.text.textContent = message;
    if (state === "done") {
      this.setPercent(100);
      if (this.stageList) [...this.stageList.children].forEach((li) => { li.dataset.state = "done"; });
    } else {
      this.bar.classList.remove("indeterminate");
      this.el.setAttribute("role", "alert");
      const active = this.stageList?.querySelector('li[data-state="active"]');
      if (active && state === "failed") active.dataset.state = "failed";
    }
  }

  fail(message) {
    this.finish(message, "failed");
  }
}
