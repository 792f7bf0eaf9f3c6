// The tutorial panel: a template's guided tutorial beside the workspace.
//
// The server reads the tutorial from the template's starter and keeps each
// learner's progress (GET .../tutorial, .../steps/{n}, POST .../check). Here: the
// steps' markdown (rendered and sanitised by the vendored markdown.js), Run and Copy
// buttons on marked code (Run types into the active terminal; "interrupt" sends
// Ctrl-C first), Check, and the step's foreground script typed into a terminal of
// its own. A read-only viewer (the teacher) sees the same without Run or Check.
import { renderMarkdown } from "../vendor/markdown.js";
import { call, h } from "./api.js";
import { READONLY, stateKey } from "./readonly.js";
import { copyText, status, toast } from "./ui.js";

const ACTION = /^#tutorial-action-(\d+)$/;
const FENCE = /(?:^|\s)language-tutorial-action-(\d+)(?:\s|$)/;

export class Tutorial {
  constructor(sb, { terminals, showSide }) {
    this.sb = sb;
    this.terminals = terminals;
    this.showSide = showSide;
    this.base = `${sb.base}/tutorial`;
    this.tab = document.getElementById("tutorial-tab");
    this.root = document.getElementById("tutorial");
    this.info = null;
    this.viewing = null; // the page shown (0 intro, 1..N steps, N+1 finish)
    this.page = null;
    this.lastOutput = null; // {step, passed, output} of the last check here
    this.foregroundKey = stateKey("tutorial-foreground", sb.id);
  }

  // Show the panel when the sandbox's template has a tutorial; say why when it is broken.
  async init() {
    try {
      // Only a sandbox made from a template can have one (no 404 for the others).
      const hints = await call("GET", `${this.sb.base}/starter`);
      if (!hints?.template) return false;
    } catch {
      return false;
    }
    try {
      this.info = await call("GET", this.base);
    } catch (err) {
      if (err.status === 404 && err.code === "no_tutorial") return false;
      if (err.code !== "tutorial_invalid") return false;
      this.tab.hidden = false;
      this.root.replaceChildren(h("div.tutorial-error", { role: "alert" }, err.message));
      return true;
    }
    this.tab.hidden = false;
    document.getElementById("ide")?.setAttribute("data-tutorial", "");
    const fresh = this.info.current === 1 && !this.info.last_check;
    await this.show(fresh && this.info.has_intro ? 0 : this.info.current);
    this.showSide("tutorial");
    return true;
  }

  async refresh() {
    this.info = await call("GET", this.base);
  }

  async show(n) {
    try {
      this.page = await call("GET", `${this.base}/steps/${n}`);
    } catch (err) {
      toast(`Tutorial: ${err.message}`, "error");
      return;
    }
    this.viewing = n;
    this.render();
    if (this.page.kind === "step" && n === this.info.current) this.runForeground(this.page);
  }

  // ------------------------------------------------------------------ drawing
  render() {
    const info = this.info;
    const page = this.page;
    const total = info.total;
    const body = h("div.tutorial-body.markdown");
    body.innerHTML = renderMarkdown(page.markdown);
    this.decorate(body, page.actions);
    const where =
      page.kind === "intro" ? "Introduction"
        : page.kind === "finish" ? (info.finished ? "Finished" : "The end")
        : `Step ${page.index} of ${total}`;
    const steps = h("ol.tutorial-steps", { "aria-label": "Steps" },
      info.steps.map((s) => h(`li.${s.done ? "done" : s.index === info.current ? "current" : "todo"}`, {
        title: `${s.index}. ${s.title}${s.done ? " (done)" : ""}`,
        "data-step": s.index,
        onclick: () => { if (s.index <= info.current) this.show(s.index); },
      }, String(s.index))));
    const children = [
      h("div.tutorial-head", {},
        h("strong.tutorial-title", {}, info.title),
        h("span.tutorial-where.muted", { id: "tutorial-where" }, where)),
      steps,
    ];
    if (info.unsupported.length) {
      children.push(h("div.tutorial-note", { role: "note" },
        `Not available here: ${info.unsupported.join(", ")}.`));
    }
    for (const e of info.events.filter((e) => !e.ok)) {
      children.push(h("div.tutorial-note.error", { role: "alert" }, `${e.what}: ${e.message}`));
    }
    // The page's own first heading, when it says the same, is not repeated.
    const heading = body.firstElementChild;
    if (heading && /^H[1-3]$/.test(heading.tagName) && heading.textContent.trim() === page.title.trim()) heading.remove();
    children.push(h("h2.tutorial-step-title", { id: "tutorial-step-title" }, page.title), body);
    if (this.lastOutput && this.lastOutput.step === page.index) {
      const { passed, output } = this.lastOutput;
      children.push(h(`div.tutorial-result.${passed ? "passed" : "failed"}`, { id: "tutorial-result", role: "status" },
        h("strong", {}, passed ? "Done" : "Not yet"),
        output ? h("pre.tutorial-output", { id: "tutorial-output" }, output) : null));
    }
    children.push(this.nav());
    this.root.replaceChildren(...children);
    this.root.scrollTop = 0;
  }

  nav() {
    const info = this.info;
    const page = this.page;
    const bar = h("div.tutorial-nav");
    const back = page.index > (info.has_intro ? 0 : 1);
    if (back) bar.append(h("button.btn.small", { type: "button", id: "tutorial-back", onclick: () => this.show(page.index - 1) }, "Back"));
    bar.append(h("span.grow"));
    if (page.kind === "intro") {
      bar.append(h("button.btn.primary.small", { type: "button", id: "tutorial-start", onclick: () => this.show(Math.max(1, info.current)) }, "Start"));
    } else if (page.kind === "step" && page.index < info.current) {
      bar.append(h("button.btn.small", { type: "button", id: "tutorial-next", onclick: () => this.show(page.index + 1) }, "Next"));
    } else if (page.kind === "step" && !READONLY) {
      const label = page.verify ? "Check" : "Next";
      bar.append(h("button.btn.primary.small", { type: "button", id: "tutorial-check", onclick: (e) => this.check(e.currentTarget) }, label));
    }
    return bar;
  }

  // Marked code becomes Run and Copy buttons (the marks come from the server).
  decorate(body, actions) {
    const byIndex = new Map(actions.map((a) => [a.index, a]));
    for (const code of body.querySelectorAll("pre > code")) {
      const match = FENCE.exec(code.className);
      const action = match && byIndex.get(Number(match[1]));
      if (!action) continue;
      const pre = code.parentElement;
      pre.classList.add("tutorial-action");
      pre.dataset.action = String(action.index);
      pre.append(this.buttons(action));
    }
    for (const link of body.querySelectorAll("a[href^='#tutorial-action-']")) {
      const match = ACTION.exec(link.getAttribute("href"));
      const action = match && byIndex.get(Number(match[1]));
      if (!action) continue;
      const span = h("span.tutorial-action.inline", { "data-action": String(action.index) }, ...link.childNodes);
      span.append(this.buttons(action));
      link.replaceWith(span);
    }
  }

  buttons(action) {
    const box = h("span.tutorial-buttons");
    if (action.kind === "exec" && !READONLY) {
      box.append(h("button.tutorial-run", {
        type: "button",
        title: action.interrupt ? "Stop what runs (Ctrl-C), then run this in the terminal" : "Run this in the terminal",
        onclick: () => this.run(action),
      }, "Run"));
    }
    box.append(h("button.tutorial-copy", {
      type: "button", title: "Copy", onclick: async () => { await copyText(action.code); status("Copied"); },
    }, "Copy"));
    return box;
  }

  run(action) {
    const terminals = this.terminals;
    const t = terminals.active || terminals.create();
    terminals.activate(t.name);
    document.dispatchEvent(new CustomEvent("panelshow", { detail: { panel: "terminals" } }));
    if (action.interrupt) terminals.send(t, terminals.encoder.encode("\x03"));
    terminals.send(t, terminals.encoder.encode(action.code + "\r"));
  }

  // A step's foreground script runs where the learner sees it: typed into a
  // terminal named "tutorial", once per step in this browser.
  runForeground(page) {
    if (READONLY || !page.foreground) return;
    let done = [];
    try { done = JSON.parse(localStorage.getItem(this.foregroundKey) || "[]"); } catch { /* none */ }
    if (done.includes(page.index)) return;
    try { localStorage.setItem(this.foregroundKey, JSON.stringify([...done, page.index])); } catch { /* ignore */ }
    const terminals = this.terminals;
    const t = terminals.add("tutorial", false);
    terminals.activate(t.name);
    const script = page.foreground.replace(/^#!.*\n/, "");
    const type = () => terminals.send(t, terminals.encoder.encode(script.endsWith("\n") ? script.replace(/\n/g, "\r") : script.replace(/\n/g, "\r") + "\r"));
    if (t.ws && t.ws.readyState === WebSocket.OPEN) type();
    else setTimeout(type, 1500); // the new terminal's shell is starting
  }

  async check(button) {
    button.disabled = true;
    const label = button.textContent;
    button.textContent = "Checking…";
    try {
      const result = await call("POST", `${this.base}/check`, { json: {} });
      this.lastOutput = result;
      await this.refresh();
      status(result.passed ? `Step ${result.step} done` : `Step ${result.step} is not done yet`);
      if (result.passed) {
        this.lastOutput = null;
        await this.show(result.current);
      } else {
        this.render();
      }
    } catch (err) {
      toast(`Check: ${err.message}`, "error");
      button.disabled = false;
      button.textContent = label;
    }
  }
}
