// A progress card any page can show: a title, a bar (with a percent when the total
// is known, an animated stripe when it is not), one line of detail and a Cancel
// button. Cards stack with the page's toasts (bottom right) and are read out only
// when they finish, never at every tick. Styles: static/ide/css/progress.css.
import { h } from "./api.js";

const UNITS = ["B", "KB", "MB", "GB", "TB"];

export function formatBytes(n) {
  let value = Math.max(0, n || 0);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

export function formatDuration(seconds) {
  const s = Math.max(1, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// Bytes per second over the last few seconds (so a stall shows as a falling speed).
export class RateMeter {
  constructor(windowMs = 3000) {
    this.windowMs = windowMs;
    this.samples = [];
  }

  sample(bytes, now = performance.now()) {
    this.samples.push([now, bytes]);
    while (this.samples.length > 2 && now - this.samples[0][0] > this.windowMs) this.samples.shift();
    const [t0, b0] = this.samples[0];
    return now - t0 >= 400 ? ((bytes - b0) * 1000) / (now - t0) : null;
  }
}

function stack() {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div.toasts", { id: "toasts", "aria-live": "assertive" });
    document.body.append(box);
  }
  return box;
}

export class ProgressCard {
  // new ProgressCard({title, kind, onCancel}): kind names the job for tests and styles.
  constructor({ title, kind = "task", onCancel = null }) {
    this.titleEl = h("span.progress-title", {}, title);
    this.percentEl = h("span.progress-percent");
    this.fill = h("div.progress-fill");
    this.bar = h("div.progress-bar.indeterminate", {
      role: "progressbar", "aria-label": title, "aria-valuemin": "0", "aria-valuemax": "100",
    }, this.fill);
    this.detailEl = h("span.progress-detail");
    this.cancelBtn = onCancel ? h("button.btn.small.ghost.progress-cancel", { type: "button" }, "Cancel") : null;
    this.cancelBtn?.addEventListener("click", () => { this.cancelBtn.disabled = true; onCancel(); });
    this.closeBtn = h("button.icon-btn.small.progress-close", { type: "button", title: "Dismiss", "aria-label": "Dismiss", hidden: true }, "×");
    this.closeBtn.addEventListener("click", () => this.remove());
    // The card itself is quiet; its outcome is announced through the message line.
    this.el = h("div.progress-card", { "aria-live": "off", dataset: { progress: kind, state: "running" } },
      h("div.progress-head", {}, this.titleEl, this.percentEl, this.closeBtn),
      this.bar,
      h("div.progress-foot", {}, this.detailEl, this.cancelBtn));
    stack().append(this.el);
  }

  set title(text) {
    this.titleEl.textContent = text;
    this.bar.setAttribute("aria-label", text);
  }

  // done/total in any unit; total null or 0: not known, the bar is indeterminate.
  update(done, total, detail = "") {
    if (total) {
      const percent = Math.min(100, Math.floor((done / total) * 100));
      this.bar.classList.remove("indeterminate");
      this.fill.style.width = `${percent}%`;
      this.bar.setAttribute("aria-valuenow", String(percent));
      this.percentEl.textContent = `${percent}%`;
    } else {
      this.bar.classList.add("indeterminate");
      this.bar.removeAttribute("aria-valuenow");
      this.percentEl.textContent = "";
    }
    this.detailEl.textContent = detail;
  }

  // The end: "done" (fades away), "cancelled" (fades away), or "error" (stays until
  // dismissed), with a message and, if given, a new title.
  finish(state, message, title = null) {
    this.el.dataset.state = state;
    this.cancelBtn?.remove();
    this.bar.classList.remove("indeterminate");
    if (title) this.title = title;
    if (state === "done") {
      this.fill.style.width = "100%";
      this.bar.setAttribute("aria-valuenow", "100");
      this.percentEl.textContent = "100%";
    } else this.percentEl.textContent = "";
    this.detailEl.textContent = message;
    this.detailEl.setAttribute("role", state === "error" ? "alert" : "status");
    this.closeBtn.hidden = false;
    if (state !== "error") setTimeout(() => this.remove(), state === "done" ? 5000 : 8000);
  }

  remove() {
    this.el.remove();
  }
}
