// Editor tabs on CodeMirror 6: one editor per open file (keeps undo history),
// dirty markers, Ctrl/Cmd-S saves through PUT /files/content. Binary and large
// files never reach CodeMirror: they get a notice with a download button.
// Read-only mode (someone else's workspace): editors never change, and follow the
// file on disk as its owner saves it.
import { createEditor, languageForPath } from "/static/ide/vendor/codemirror.js";
import { ApiError, basename, h } from "./api.js";
import { READONLY, refuse, stateKey } from "./readonly.js";
import { currentTheme } from "./theme.js";
import { download } from "./transfers.js";
import { humanSize, status, toast } from "./ui.js";

export const MAX_EDITABLE = 2 * 1024 * 1024;

function looksBinary(bytes) {
  const n = Math.min(bytes.length, 8192);
  for (let i = 0; i < n; i++) if (bytes[i] === 0) return true;
  return false;
}

const IMAGE_TYPES = { png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp", svg: "image/svg+xml", ico: "image/x-icon" };

export class Editors {
  constructor(sandbox) {
    this.sb = sandbox;
    this.tabs = new Map(); // path -> tab
    this.order = [];
    this.active = null;
    this.tabbar = document.getElementById("editor-tabs");
    this.host = document.getElementById("editor-host");
    this.empty = document.getElementById("editor-empty");
    this.listeners = new Set();
    document.addEventListener("themechange", () => {
      for (const t of this.tabs.values()) t.editor?.setDark(currentTheme() === "dark");
    });
    addEventListener("beforeunload", (e) => {
      if (!READONLY && this.dirtyTabs().length) {
        e.preventDefault();
        e.returnValue = "You have unsaved changes.";
      }
    });
    const cursor = () => this.showCursor();
    this.host.addEventListener("keyup", cursor);
    this.host.addEventListener("mouseup", cursor);
    this.restore();
  }

  showCursor() {
    const el = document.getElementById("status-cursor");
    const ed = this.active?.editor;
    if (!ed) { el.textContent = ""; return; }
    const state = ed.view.state;
    const head = state.selection.main.head;
    const line = state.doc.lineAt(head);
    el.textContent = `Ln ${line.number}, Col ${head - line.from + 1}`;
  }

  onChange(fn) { this.listeners.add(fn); }
  emit() { for (const fn of this.listeners) fn(this.active); this.persist(); }
  dirtyTabs() { return [...this.tabs.values()].filter((t) => t.dirty); }
  activePath() { return this.active ? this.active.path : null; }

  persist() {
    try {
      localStorage.setItem(stateKey("tabs", this.sb.id), JSON.stringify({
        open: this.order.filter((p) => this.tabs.get(p)?.kind === "text"), active: this.activePath(),
      }));
    } catch { /* ignore */ }
  }

  async restore() {
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(stateKey("tabs", this.sb.id)) || "null"); } catch { saved = null; }
    if (!saved || !Array.isArray(saved.open)) return;
    for (const path of saved.open.slice(0, 12)) {
      await this.open(path, { quiet: true, activate: path === saved.active });
    }
  }

  makeTab(path) {
    const tab = { path, dirty: false, kind: "loading", editor: null, pane: null, el: null, savedText: "" };
    const close = h("span.close", { title: "Close (Alt+W)", role: "button", "aria-label": `Close ${basename(path)}` }, "✕");
    const dirty = h("span.dirty", { "aria-label": "unsaved" });
    tab.el = h("button.tab", { type: "button", role: "tab", title: path, "data-path": path },
      h("span.name", {}, basename(path)), dirty, close);
    tab.el.addEventListener("click", (e) => {
      if (e.target === close) { e.stopPropagation(); this.close(path); return; }
      this.activate(path);
    });
    tab.el.addEventListener("auxclick", (e) => { if (e.button === 1) this.close(path); });
    tab.pane = h("div.editor-pane", { style: "position:absolute;inset:0", hidden: true });
    this.host.append(tab.pane);
    this.tabbar.append(tab.el);
    this.tabs.set(path, tab);
    this.order.push(path);
    return tab;
  }

  async open(path, { size, quiet = false, activate = true, line } = {}) {
    let tab = this.tabs.get(path);
    if (tab) {
      if (activate) this.activate(path, { focus: !quiet });
      if (line) this.gotoLine(tab, line);
      return tab;
    }
    tab = this.makeTab(path);
    if (activate) this.activate(path);
    tab.pane.append(h("div.editor-notice", { style: "inset:0" }, h("span.spinner"), "Opening…"));
    try {
      await this.load(tab, size);
    } catch (err) {
      if (quiet && err instanceof ApiError && err.status === 404) { this.close(path, true); return null; }
      tab.kind = "error";
      tab.pane.replaceChildren(h("div.editor-notice", { style: "inset:0" },
        h("p", {}, h("strong", {}, basename(path))), h("p.field-error", {}, err.message)));
    }
    // A quiet open (tabs restored at start-up, a template's files) finishes whenever its
    // file arrives: by then the user may be typing elsewhere, and keeps the keyboard.
    const untouched = document.activeElement === document.body || !document.activeElement;
    if (activate && this.active === tab) this.activate(path, { focus: !quiet || untouched });
    return tab;
  }

  async load(tab, size) {
    const path = tab.path;
    if (size !== undefined && size > MAX_EDITABLE) {
      this.showNotice(tab, `This file is ${humanSize(size)}: too large to edit in the browser.`, null);
      return;
    }
    const response = await this.sb.read(path);
    const length = Number(response.headers.get("Content-Length") || "0");
    if (length > MAX_EDITABLE) {
      response.body?.cancel();
      this.showNotice(tab, `This file is ${humanSize(length)}: too large to edit in the browser.`, null);
      return;
    }
    // Read at most MAX_EDITABLE + 1 bytes, whatever the server sends.
    const reader = response.body.getReader();
    const chunks = [];
    let total = 0;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.length;
      if (total > MAX_EDITABLE) { reader.cancel(); break; }
    }
    if (total > MAX_EDITABLE) {
      this.showNotice(tab, `This file is larger than ${humanSize(MAX_EDITABLE)}: too large to edit in the browser.`, null);
      return;
    }
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) { bytes.set(c, at); at += c.length; }
    const ext = (path.split(".").pop() || "").toLowerCase();
    let text = null;
    if (!looksBinary(bytes) && ext !== "png" && ext !== "jpg") {
      try { text = new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch { text = null; }
    }
    if (text === null) {
      const img = IMAGE_TYPES[ext] ? URL.createObjectURL(new Blob([bytes], { type: IMAGE_TYPES[ext] })) : null;
      this.showNotice(tab, `Binary file, ${humanSize(total)}: shown read-only.`, img);
      return;
    }
    tab.kind = "text";
    tab.savedText = text;
    tab.pane.replaceChildren();
    tab.editor = createEditor(tab.pane, {
      doc: text,
      path,
      dark: currentTheme() === "dark",
      readOnly: READONLY,
      onChange: (doc) => { if (!READONLY) this.setDirty(tab, doc !== tab.savedText); },
      onSave: () => this.save(tab.path),
    });
    if (READONLY) {
      tab.editor.view.contentDOM.setAttribute("aria-readonly", "true");
      tab.editor.view.dom.classList.add("is-readonly");
    }
    tab.editor.view.dom.setAttribute("data-path", path);
  }

  showNotice(tab, message, imageUrl) {
    tab.kind = "binary";
    const dl = h("button.btn.primary", { type: "button" }, "Download");
    dl.addEventListener("click", () => download(this.sb.contentUrl(tab.path), basename(tab.path)));
    tab.pane.replaceChildren(h("div.editor-notice", { style: "inset:0" },
      imageUrl ? h("img", { src: imageUrl, alt: basename(tab.path), style: "max-width:90%;max-height:60%;background:#fff;border-radius:4px" }) : h("div.empty-mark", {}, "⬚"),
      h("p", {}, h("strong", {}, basename(tab.path))), h("p.muted", {}, message), dl));
  }

  setDirty(tab, dirty) {
    if (READONLY) dirty = false; // nothing to save: no marker, no warning
    if (tab.dirty === dirty) return;
    tab.dirty = dirty;
    tab.el.classList.toggle("is-dirty", dirty);
    this.emit();
  }

  activate(path, { focus = true } = {}) {
    const tab = this.tabs.get(path);
    if (!tab) return;
    for (const t of this.tabs.values()) {
      t.el.classList.toggle("active", t === tab);
      t.el.setAttribute("aria-selected", t === tab ? "true" : "false");
      t.pane.hidden = t !== tab;
    }
    this.active = tab;
    this.empty.hidden = true;
    tab.el.scrollIntoView({ block: "nearest", inline: "nearest" });
    document.getElementById("status-lang").textContent = tab.kind === "text" ? (languageForPath(path) || "plain text") : "";
    if (tab.editor && focus) requestAnimationFrame(() => tab.editor.focus());
    this.showCursor();
    this.emit();
  }

  gotoLine(tab, line) {
    if (!tab.editor) return;
    const doc = tab.editor.view.state.doc;
    const pos = doc.line(Math.min(Math.max(1, line), doc.lines)).from;
    tab.editor.view.dispatch({ selection: { anchor: pos }, scrollIntoView: true });
  }

  async close(path, force = false) {
    const tab = this.tabs.get(path);
    if (!tab) return;
    if (tab.dirty && !force && !confirm(`${basename(path)} has unsaved changes. Close it anyway?`)) return;
    tab.editor?.destroy();
    tab.el.remove();
    tab.pane.remove();
    this.tabs.delete(path);
    const idx = this.order.indexOf(path);
    this.order.splice(idx, 1);
    if (this.active === tab) {
      this.active = null;
      const next = this.order[Math.min(idx, this.order.length - 1)];
      if (next) this.activate(next);
      else {
        this.empty.hidden = false;
        document.getElementById("status-lang").textContent = "";
        document.getElementById("status-cursor").textContent = "";
        this.emit();
      }
    } else this.emit();
  }

  closeActive() { if (this.active) this.close(this.active.path); }

  async save(path = this.activePath()) {
    if (READONLY) return refuse("Saving");
    const tab = path && this.tabs.get(path);
    if (!tab || tab.kind !== "text") return false;
    const text = tab.editor.getValue();
    tab.saving = true;
    try {
      await this.sb.write(tab.path, text);
      tab.savedText = text;
      tab.ignoreChangeUntil = Date.now() + 1500;
      this.setDirty(tab, tab.editor.getValue() !== text);
      status(`Saved ${basename(tab.path)}`);
      return true;
    } catch (err) {
      toast(`Could not save ${basename(tab.path)}: ${err.message}`, "error");
      return false;
    } finally {
      tab.saving = false;
    }
  }

  async saveAll() {
    if (READONLY) return refuse("Saving");
    for (const t of this.dirtyTabs()) await this.save(t.path);
  }

  // The tree moved or deleted something: keep tabs in step.
  renamed(from, to) {
    for (const [path, tab] of [...this.tabs]) {
      if (path === from || path.startsWith(from + "/")) {
        const next = to + path.slice(from.length);
        this.tabs.delete(path);
        this.tabs.set(next, tab);
        this.order[this.order.indexOf(path)] = next;
        tab.path = next;
        tab.el.title = next;
        tab.el.dataset.path = next;
        tab.el.querySelector(".name").textContent = basename(next);
        tab.editor?.setPath(next);
      }
    }
    this.emit();
  }

  deleted(path) {
    for (const p of [...this.tabs.keys()]) {
      if (p === path || p.startsWith(path + "/")) {
        const tab = this.tabs.get(p);
        if (tab.dirty) tab.el.title = `${p} (deleted on disk)`;
        else this.close(p, true);
      }
    }
  }

  // A watch event says the file changed on disk: reload it when it has no local edits.
  async changedOnDisk(path) {
    const tab = this.tabs.get(path);
    if (!tab || tab.kind !== "text" || tab.saving || (tab.ignoreChangeUntil || 0) > Date.now()) return;
    if (tab.dirty) { status(`${basename(path)} changed on disk; you have unsaved edits`); return; }
    try {
      const text = await (await this.sb.read(path)).text();
      if (READONLY) { this.follow(tab, text); return; }
      if (text !== tab.editor.getValue() && !tab.dirty) {
        tab.savedText = text;
        tab.editor.setValue(text);
      }
    } catch { /* deleted meanwhile: the tree handles it */ }
  }

  // Read-only: show the owner's new text in place, replacing only what changed, so
  // the viewer's scroll position and selection stay where they were.
  follow(tab, text) {
    const view = tab.editor.view;
    const old = view.state.doc.toString();
    if (text === old) return;
    let start = 0;
    const max = Math.min(old.length, text.length);
    while (start < max && old.charCodeAt(start) === text.charCodeAt(start)) start++;
    let endOld = old.length;
    let endNew = text.length;
    while (endOld > start && endNew > start && old.charCodeAt(endOld - 1) === text.charCodeAt(endNew - 1)) { endOld--; endNew--; }
    tab.savedText = text;
    view.dispatch({ changes: { from: start, to: endOld, insert: text.slice(start, endNew) } });
    status(`${basename(tab.path)} updated`);
  }
}
