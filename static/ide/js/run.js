// Run the open file (python3 / node / bash by extension) with live output over the
// WebSocket exec stream (/ws/sandboxes/{id}/exec), falling back to the SSE exec
// stream; and the code-interpreter panel (POST /code/run) with rich output.
import { createEditor } from "/static/ide/vendor/codemirror.js";
import { basename, dirname, h, raw, readSSE, wsUrl } from "./api.js";
import { currentTheme } from "./theme.js";
import { READONLY, refuse } from "./readonly.js";
import { toast } from "./ui.js";

const RUNNERS = {
  py: ["python3", "-u"], js: ["node"], mjs: ["node"], cjs: ["node"], sh: ["bash"], bash: ["bash"],
};

// Colours and cursor moves are for terminals; the output panel shows plain text.
const ANSI = /\x1b\[[0-9;?]*[ -\/]*[@-~]|\x1b\][^\x07]*(\x07|\x1b\\)/g;

export function runnerFor(path) {
  const ext = (path || "").split(".").pop().toLowerCase();
  return RUNNERS[ext] || null;
}

export class Runner {
  constructor(sandbox, { editors, showPanel }) {
    this.sb = sandbox;
    this.editors = editors;
    this.showPanel = showPanel;
    this.log = document.getElementById("output-log");
    this.title = document.getElementById("output-title");
    this.stopBtn = document.getElementById("output-stop");
    this.button = document.getElementById("run-btn");
    this.current = null;
    document.getElementById("output-clear").addEventListener("click", () => this.log.replaceChildren());
    this.stopBtn.addEventListener("click", () => this.stop());
    this.button.addEventListener("click", () => this.runActive());
    editors.onChange((tab) => this.updateButton(tab));
    this.updateButton(null);
  }

  updateButton(tab) {
    const runnable = tab && tab.kind === "text" && runnerFor(tab.path);
    this.button.disabled = !runnable;
    this.button.title = runnable ? `Run ${basename(tab.path)} with ${runnable[0]} (F5)` :
      "Open a .py, .js or .sh file to run it (F5)";
  }

  append(text, cls) {
    text = text.replace(ANSI, "");
    const atBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    const last = this.log.lastChild;
    if (last && last.className === (cls || "") && last.textContent.length < 100000) last.append(text);
    else this.log.append(h(`span${cls ? "." + cls : ""}`, {}, text));
    // Bound what the page keeps: drop the oldest output beyond ~2 MB.
    while (this.log.textContent.length > 2_000_000 && this.log.firstChild) this.log.firstChild.remove();
    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
  }

  async runActive() {
    if (READONLY) return refuse("Running files");
    const tab = this.editors.active;
    if (!tab || tab.kind !== "text") { toast("Open a file to run it.", "error"); return; }
    const runner = runnerFor(tab.path);
    if (!runner) { toast(`Don't know how to run ${basename(tab.path)}: use a terminal.`, "error"); return; }
    if (tab.dirty && !(await this.editors.save(tab.path))) return;
    this.run([...runner, tab.path], dirname(tab.path), basename(tab.path));
  }

  run(command, cwd, label) {
    if (READONLY) return refuse("Running files");
    this.stop();
    this.showPanel("output");
    this.log.replaceChildren();
    const shown = Array.isArray(command) ? command.join(" ") : command;
    this.title.textContent = `Running ${label}…`;
    this.append(`$ ${shown}\n`, "meta");
    this.stopBtn.hidden = false;
    const run = { done: false, ws: null, controller: null, started: performance.now() };
    this.current = run;
    const finish = (msg) => {
      if (run.done) return;
      run.done = true;
      if (this.current === run) { this.stopBtn.hidden = true; this.current = null; }
      if (msg.type === "exit") {
        const ok = msg.exit_code === 0;
        const secs = ((msg.duration_ms ?? performance.now() - run.started) / 1000).toFixed(2);
        const how = msg.timed_out ? "timed out" : `exited with code ${msg.exit_code}`;
        this.append(`\n[${how} in ${secs} s]\n`, ok ? "ok" : "stderr");
        this.title.textContent = `${label}: ${how}`;
      } else {
        this.append(`\n[${msg.message}]\n`, "stderr");
        this.title.textContent = `${label}: ${msg.message}`;
      }
    };
    const body = { command, cwd };
    let opened = false;
    const ws = new WebSocket(wsUrl(`/ws/sandboxes/${encodeURIComponent(this.sb.id)}/exec`));
    run.ws = ws;
    ws.onopen = () => { opened = true; ws.send(JSON.stringify(body)); };
    ws.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg.type === "stdout") this.append(msg.data);
      else if (msg.type === "stderr") this.append(msg.data, "stderr");
      else if (msg.type === "exit") finish(msg);
      else if (msg.type === "error") finish({ type: "error", message: msg.message || "error" });
    };
    ws.onclose = () => {
      if (run.done) return;
      if (!opened && !run.stopped) this.runSSE(run, body, finish); // WebSocket exec unavailable
      else finish({ type: "error", message: run.stopped ? "stopped" : "connection closed" });
    };
  }

  async runSSE(run, body, finish) {
    run.controller = new AbortController();
    try {
      const response = await raw("POST", `${this.sb.base}/exec`, {
        json: body, headers: { Accept: "text/event-stream" }, signal: run.controller.signal,
      });
      await readSSE(response, (name, data) => {
        if (name === "stdout") this.append(data.data);
        else if (name === "stderr") this.append(data.data, "stderr");
        else if (name === "exit") finish({ type: "exit", ...data });
      }, run.controller.signal);
      finish({ type: "error", message: "stream ended" });
    } catch (err) {
      finish({ type: "error", message: err.name === "AbortError" ? "stopped" : err.message });
    }
  }

  stop() {
    const run = this.current;
    if (!run) return;
    run.stopped = true;
    run.ws?.close();
    run.controller?.abort();
    if (!run.done) {
      run.done = true;
      this.append("\n[stopped]\n", "stderr");
      this.title.textContent = "Stopped";
    }
    this.stopBtn.hidden = true;
    this.current = null;
  }
}

// ------------------------------------------------------------------ interpreter
export class Interpreter {
  constructor(sandbox) {
    this.sb = sandbox;
    this.cells = document.getElementById("interp-cells");
    this.context = null;
    this.busy = false;
    this.history = [];
    this.editor = null;
    document.getElementById("interp-run").addEventListener("click", () => this.run());
    document.getElementById("interp-reset").addEventListener("click", () => this.reset());
    document.addEventListener("themechange", () => this.editor?.setDark(currentTheme() === "dark"));
  }

  ensureEditor() {
    if (this.editor) return;
    const parent = document.getElementById("interp-editor");
    this.editor = createEditor(parent, { doc: "", path: "cell.py", dark: currentTheme() === "dark" });
    // Shift-Enter runs the cell.
    this.editor.view.dom.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.shiftKey || e.ctrlKey || e.metaKey)) { e.preventDefault(); e.stopPropagation(); this.run(); }
    }, true);
    if (!this.cells.childElementCount) {
      this.cells.append(h("p.muted.small", {}, "A Python interpreter whose variables persist between runs. Try: import pandas as pd; pd.DataFrame({'a': [1, 2]})"));
    }
  }

  focus() { this.ensureEditor(); this.editor.focus(); }

  async reset() {
    if (this.context) {
      try { await this.sb.dropContext(this.context); } catch { /* gone already */ }
    }
    this.context = null;
    this.cells.replaceChildren(h("p.muted.small", {}, "Interpreter restarted."));
  }

  async run() {
    if (READONLY) return refuse("Running code");
    this.ensureEditor();
    const code = this.editor.getValue();
    if (!code.trim() || this.busy) return;
    this.busy = true;
    const cell = h("div.cell", {}, h("pre.cell-code", {}, code));
    const pending = h("div.muted.small", {}, h("span.spinner"), " running…");
    cell.append(pending);
    this.cells.append(cell);
    cell.scrollIntoView({ block: "end" });
    try {
      if (!this.context) {
        try { this.context = (await this.sb.newContext("python")).id; } catch (err) {
          if (err.status === 404 && !/sandbox/i.test(err.message)) throw new Error("The code interpreter is not available on this server yet.");
          throw err;
        }
      }
      const result = await this.sb.codeRun({ code, language: "python", context: this.context });
      pending.remove();
      this.render(cell, result);
      this.editor.setValue("");
    } catch (err) {
      pending.remove();
      cell.append(h("pre.cell-out.error", {}, err.message));
      if (/context/i.test(err.message)) this.context = null;
    } finally {
      this.busy = false;
      cell.scrollIntoView({ block: "end" });
    }
  }

  render(cell, result) {
    if (result.stdout) cell.append(h("pre.cell-out", {}, result.stdout));
    if (result.stderr) cell.append(h("pre.cell-out.stderr", {}, result.stderr));
    for (const r of result.results || []) {
      if (r["image/png"]) cell.append(h("img", { src: `data:image/png;base64,${r["image/png"]}`, alt: "figure" }));
      else if (r["image/svg+xml"]) cell.append(h("img", { src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(r["image/svg+xml"])}`, alt: "figure" }));
      else if (r["text/html"]) {
        // Sandbox output is untrusted: render it in a frame where no script runs.
        const frame = h("iframe.html-out", { sandbox: "allow-same-origin", title: "HTML output" });
        const css = getComputedStyle(document.documentElement);
        const v = (name) => css.getPropertyValue(name).trim();
        frame.srcdoc = `<style>html,body{background:${v("--bg-1")};color:${v("--fg")}}body{font:13px ${v("--font-ui")};margin:6px}` +
          `table{border-collapse:collapse}td,th{border:1px solid ${v("--border-strong")};padding:3px 8px;text-align:right}` +
          `thead th,tbody th{background:${v("--bg-2")}}</style>${r["text/html"]}`;
        frame.addEventListener("load", () => {
          try {
            const body = frame.contentDocument.body;
            frame.style.height = `${Math.min(480, body.scrollHeight + 16)}px`;
          } catch { /* ignore */ }
        });
        cell.append(frame);
      } else if (r["text/plain"]) cell.append(h("pre.cell-out", {}, r["text/plain"]));
    }
    if (result.error) {
      const e = result.error;
      const tb = (e.traceback || "").replace(ANSI, "").trim();
      cell.append(h("pre.cell-out.error", {}, tb && tb.includes(e.name) ? tb : `${e.name}: ${e.value}${tb ? "\n" + tb : ""}`));
    }
  }
}
