// Terminal tabs on xterm.js. Each tab is a named terminal in the sandbox
// (/ws/sandboxes/{id}/terminals/{name}); reconnecting to a name re-attaches to the
// same shell and the server replays its screen, so a page reload finds it again.
// Read-only (someone else's workspace): the owner's existing terminals, attached
// with ?readonly=1 at the owner's size; output streams live, nothing is typed.
import { FitAddon, Terminal, WebLinksAddon } from "/static/ide/vendor/xterm.js";
import { h, wsUrl } from "./api.js";
import { accessEnded, awake, isAsleep, OWNER, READONLY, refuse, stateKey } from "./readonly.js";
import { currentTheme } from "./theme.js";
import { confirmDialog, status, toast } from "./ui.js";

const THEMES = {
  dark: {
    background: "#111318", foreground: "#d7dae0", cursor: "#5b9cff", cursorAccent: "#111318",
    selectionBackground: "rgba(91,156,255,0.35)",
    black: "#1c1f26", red: "#f26d6d", green: "#4fcf86", yellow: "#e7b951", blue: "#5b9cff", magenta: "#c792ea", cyan: "#56c8d8", white: "#d7dae0",
    brightBlack: "#6b7386", brightRed: "#ff8b8b", brightGreen: "#7be3a6", brightYellow: "#f3cf7a", brightBlue: "#82b4ff", brightMagenta: "#dab4f5", brightCyan: "#86dce8", brightWhite: "#ffffff",
  },
  light: {
    background: "#fbfbfc", foreground: "#1f2430", cursor: "#2563eb", cursorAccent: "#fbfbfc",
    selectionBackground: "rgba(37,99,235,0.22)",
    black: "#1f2430", red: "#c93434", green: "#17804a", yellow: "#9a6700", blue: "#2563eb", magenta: "#8e44ad", cyan: "#0e7490", white: "#c5cbd6",
    brightBlack: "#636b7a", brightRed: "#e04848", brightGreen: "#1f9d5c", brightYellow: "#b58100", brightBlue: "#3b82f6", brightMagenta: "#a55ccf", brightCyan: "#1595b3", brightWhite: "#ffffff",
  },
};

// localhost:PORT written without a scheme (e.g. "Listening on localhost:3000").
const BARE_LOCAL = /(?<![\w/.:-])(?:localhost|127\.0\.0\.1|0\.0\.0\.0):(\d{2,5})(\/[^\s"'<>)]*)?/g;
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "0.0.0.0", "[::]", "[::1]"]);

export function localPort(uri) {
  try {
    const u = new URL(uri);
    if (LOCAL_HOSTS.has(u.hostname) && u.port) return { port: Number(u.port), path: u.pathname + u.search + u.hash };
  } catch { /* not a URL */ }
  return null;
}

const TERM_FONT = 13.5;
const MIN_WATCH_FONT = 11;

export class Terminals {
  constructor(sandbox, { openPreview, isShortcut }) {
    this.sb = sandbox;
    this.openPreview = openPreview;
    this.isShortcut = isShortcut || (() => false);
    this.terms = new Map();
    this.active = null;
    this.tabs = document.getElementById("term-tabs");
    this.host = document.getElementById("terminals");
    this.encoder = new TextEncoder();
    this.storeKey = stateKey("terms", sandbox.id);
    // A view taken away stops following: the screens stay as they were.
    document.addEventListener("accessended", () => {
      for (const t of this.terms.values()) {
        t.closed = true;
        t.ws?.close();
        t.dot.classList.add("off");
      }
    });
    document.addEventListener("themechange", () => {
      for (const t of this.terms.values()) t.term.options.theme = THEMES[currentTheme()];
    });
    new ResizeObserver(() => this.fitActive()).observe(this.host);
  }

  remembered() {
    try { return JSON.parse(localStorage.getItem(this.storeKey) || "null"); } catch { return null; }
  }
  remember() {
    try {
      localStorage.setItem(this.storeKey, JSON.stringify({ names: [...this.terms.keys()], active: this.active?.name }));
    } catch { /* ignore */ }
  }

  async init() {
    if (READONLY) return this.initWatching();
    const saved = this.remembered() || {};
    let names = [];
    try {
      const listed = await this.sb.terminals();
      names = (listed.terminals || []).map((t) => t.name);
    } catch { /* listing not available: fall back to what this browser remembers */ }
    for (const n of saved.names || []) if (!names.includes(n)) names.push(n);
    names.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    if (!names.length) names = ["t1"];
    for (const n of names) this.add(n, false);
    this.activate(this.terms.has(saved.active) ? saved.active : names[0], { quiet: true });
  }

  // ------------------------------------------------------------- read-only
  async initWatching() {
    const saved = this.remembered() || {};
    let listed;
    try {
      listed = await this.sb.terminals();
    } catch (err) {
      this.showEmpty("Terminals cannot be listed", err.message);
      throw err;
    }
    this.sync(listed.terminals || []);
    const names = [...this.terms.keys()];
    if (names.length) this.activate(this.terms.has(saved.active) ? saved.active : names[0], { quiet: true });
    // Terminals the owner opens (or closes) later show up by themselves.
    // (Not while the sandbox sleeps: listing would wake it.)
    this.watchTimer = setInterval(() => {
      if (accessEnded) clearInterval(this.watchTimer);
      else if (!document.hidden && !isAsleep()) this.refreshWatching();
    }, 4000);
  }

  async refreshWatching() {
    try { this.sync((await this.sb.terminals()).terminals || []); } catch { /* next time */ }
  }

  sync(listed) {
    const first = !this.terms.size;
    for (const info of listed) {
      let t = this.terms.get(info.name);
      if (!t) {
        t = this.add(info.name, false, info);
        if (first || !this.active) this.activate(info.name, { quiet: true });
        continue;
      }
      if (info.cols && info.rows && (info.cols !== t.term.cols || info.rows !== t.term.rows)) {
        t.term.resize(info.cols, info.rows);
        if (t === this.active) requestAnimationFrame(() => this.fitWatched(t));
      }
      if (t.ended && !t.connected) { // started again under the same name
        t.ended = false;
        t.exited = false;
        t.tab.classList.remove("ended");
        t.retry = 0;
        this.connect(t);
      }
    }
    const live = new Set(listed.map((i) => i.name));
    for (const t of this.terms.values()) {
      if (!live.has(t.name) && t.everConnected && !t.connected) this.markEnded(t);
    }
    if (this.terms.size) this.hideEmpty();
    else this.showEmpty("No terminals open", `${OWNER || "The owner"} has no terminal open; one shows up here when they start it.`);
  }

  markEnded(t) {
    if (t.ended) return;
    t.ended = true;
    t.tab.classList.add("ended");
    t.dot.classList.add("off");
    t.tab.title = `Terminal ${t.name} (ended)`;
  }

  showEmpty(title, text) {
    if (!this.empty) {
      this.empty = h("div.term-empty", { id: "term-empty", role: "status" });
      this.host.append(this.empty);
    }
    this.empty.replaceChildren(h("strong", {}, title), h("span", {}, text));
    this.empty.hidden = false;
  }

  hideEmpty() { if (this.empty) this.empty.hidden = true; }

  nextName() {
    for (let i = 1; ; i++) if (!this.terms.has(`t${i}`)) return `t${i}`;
  }

  create() {
    if (READONLY) return refuse("Opening terminals");
    const t = this.add(this.nextName(), true);
    this.activate(t.name);
    return t;
  }

  add(name, focus, size = null) {
    if (this.terms.has(name)) return this.terms.get(name);
    const pane = h("div.term-host", { "data-terminal": name, hidden: true });
    this.host.append(pane);
    const term = new Terminal({
      fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--font-mono").trim() || "monospace",
      fontSize: TERM_FONT, lineHeight: 1.15, cursorBlink: !READONLY, scrollback: 5000, allowProposedApi: true,
      theme: THEMES[currentTheme()],
      disableStdin: READONLY,
      ...(READONLY && size?.cols && size?.rows ? { cols: size.cols, rows: size.rows } : {}),
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.loadAddon(new WebLinksAddon((event, uri) => this.openLink(uri)));
    term.registerLinkProvider(this.bareLocalLinks(term));
    term.attachCustomKeyEventHandler((e) => {
      if (READONLY && e.type === "keydown" && !e.ctrlKey && !e.metaKey && !e.altKey && (e.key.length === 1 || e.key === "Enter")) {
        refuse("Typing in the terminal");
      }
      return !this.isShortcut(e, "terminal");
    });
    term.open(pane);
    // A watched terminal taller than the panel scrolls only when the viewer scrolls
    // it (wheel, scroll bar); the browser scrolling it to the focused cursor, or
    // anything else, is put back to follow the cursor.
    if (READONLY) {
      let userScroll = 0;
      pane.addEventListener("wheel", () => { userScroll = Date.now(); }, { passive: true });
      pane.addEventListener("pointerdown", (e) => { if (e.target === pane) userScroll = Date.now(); });
      pane.addEventListener("scroll", () => { if (Date.now() - userScroll > 1000) this.followCursor(t); });
      pane.addEventListener("focusin", () => requestAnimationFrame(() => this.followCursor(t)));
    }
    const dot = h("span.term-dot.off");
    const close = h("span.close", { role: "button", title: "Close terminal", "aria-label": `Close terminal ${name}` }, "✕");
    const tab = h("button.tab.term-tab", { type: "button", role: "tab", "data-terminal": name, title: `Terminal ${name}` },
      dot, h("span.name", {}, name), close);
    tab.addEventListener("click", (e) => {
      if (e.target === close) { e.stopPropagation(); this.close(name); return; }
      this.activate(name);
    });
    this.tabs.append(tab);
    const t = { name, term, fit, pane, tab, dot, ws: null, retry: 0, closed: false, exited: false, connected: false, everConnected: false };
    this.terms.set(name, t);
    term.onData((data) => this.send(t, this.encoder.encode(data)));
    term.onBinary((data) => this.send(t, Uint8Array.from(data, (c) => c.charCodeAt(0))));
    term.onResize(({ cols, rows }) => {
      if (READONLY) return;
      if (t.ws && t.ws.readyState === WebSocket.OPEN) t.ws.send(JSON.stringify({ type: "resize", cols, rows }));
    });
    this.remember();
    if (focus) this.activate(name);
    this.connect(t);
    return t;
  }

  send(t, bytes) {
    if (READONLY) return; // the server ignores a watcher's keys anyway
    if (t.exited) {
      // The shell ended: any key starts a fresh one under the same name.
      t.exited = false;
      t.term.reset();
      this.connect(t);
      return;
    }
    if (t.ws && t.ws.readyState === WebSocket.OPEN) t.ws.send(bytes);
  }

  connect(t) {
    if (t.closed) return;
    if (!READONLY) this.fitForAttach(t);
    const cols = t.term.cols || 80;
    const rows = t.term.rows || 24;
    const url = wsUrl(`/ws/sandboxes/${encodeURIComponent(this.sb.id)}/terminals/${encodeURIComponent(t.name)}?cols=${cols}&rows=${rows}${READONLY ? "&readonly=1" : ""}`);
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    t.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      t.connected = true;
      t.everConnected = true;
      t.retry = 0;
      t.dot.classList.remove("off");
      // The server replays the screen: start from a clean terminal so nothing doubles.
      t.term.reset();
      if (!READONLY) ws.send(JSON.stringify({ type: "resize", cols: t.term.cols, rows: t.term.rows }));
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        let msg = null;
        try { msg = JSON.parse(e.data); } catch { return; }
        if (msg.type === "exit" && READONLY) {
          t.exited = true;
          t.term.write(`\r\n\x1b[2m[the shell ended${msg.exit_code !== undefined && msg.exit_code !== null ? ` with code ${msg.exit_code}` : ""}]\x1b[0m\r\n`);
          this.markEnded(t);
        } else if (msg.type === "exit") {
          t.exited = true;
          t.term.write(`\r\n\x1b[2m[process exited${msg.exit_code !== undefined && msg.exit_code !== null ? ` with code ${msg.exit_code}` : ""}: press any key to start a new shell]\x1b[0m\r\n`);
        } else if (msg.type === "error") {
          t.term.write(`\r\n\x1b[31m${msg.message || "terminal error"}\x1b[0m\r\n`);
        }
        return;
      }
      if (READONLY && t === this.active) t.term.write(new Uint8Array(e.data), () => this.followCursor(t));
      else t.term.write(new Uint8Array(e.data));
    };
    ws.onclose = (e) => {
      t.connected = false;
      t.dot.classList.add("off");
      if (t.ws !== ws || t.closed || t.exited) return;
      if (!opened && !t.everConnected && t.retry === 2) {
        t.term.write("\x1b[33mTerminals are not available on this server yet (the terminal WebSocket refused the connection).\x1b[0m\r\n" +
          "\x1b[2mRetrying every few seconds…\x1b[0m\r\n");
      } else if (opened) {
        t.term.write("\r\n\x1b[2m[disconnected: reconnecting…]\x1b[0m\r\n");
      }
      if (READONLY && e.code === 4404) {
        t.term.write(`\r\n\x1b[2m[this terminal is closed]\x1b[0m\r\n`);
        this.markEnded(t);
        return;
      }
      if (e.code === 4404 || e.code === 4403) {
        t.term.write(`\r\n\x1b[31m${e.reason || (e.code === 4403 ? "You may only look at this terminal." : "This terminal cannot be opened.")}\x1b[0m\r\n`);
        return;
      }
      // A viewer gives a sandbox going to sleep time to say so, and waits for it to wake.
      const delay = Math.max(Math.min(500 * 2 ** t.retry, 8000), READONLY ? 2000 : 0);
      t.retry += 1;
      setTimeout(async () => {
        await awake(this.sb);
        if (!t.closed && t.ws === ws && !accessEnded) this.connect(t);
      }, delay);
    };
  }

  // `quiet`: terminals restored at start-up. The listing answers whenever it does, and
  // by then the user may have opened another panel or clicked into an editor: a quiet
  // activation neither switches the panel back nor takes the keyboard from them.
  activate(name, { quiet = false } = {}) {
    const t = this.terms.get(name);
    if (!t) return;
    if (!quiet) document.dispatchEvent(new CustomEvent("panelshow", { detail: { panel: "terminals" } }));
    for (const o of this.terms.values()) {
      o.pane.hidden = o !== t;
      o.tab.classList.toggle("active", o === t);
    }
    this.active = t;
    this.remember();
    const untouched = document.activeElement === document.body || !document.activeElement;
    requestAnimationFrame(() => { this.fitActive(); if (!READONLY && (!quiet || untouched)) t.term.focus(); });
  }

  // Attach at the size the terminal will have: a tab that is not shown yet (every
  // one at start-up) is measured as if it were. Attached at another size, the
  // program would be resized twice and redraw, and the screen it kept for us
  // would be cut to that size first.
  fitForAttach(t) {
    const hidden = t.pane.hidden;
    t.pane.hidden = false;
    try { t.fit.fit(); } catch { /* the panel itself is not shown */ }
    t.pane.hidden = hidden;
  }

  fitActive() {
    if (READONLY) { this.fitWatched(this.active); return; }
    const t = this.active;
    if (!t || t.pane.hidden || !t.pane.offsetWidth || !t.pane.offsetHeight) return;
    try { t.fit.fit(); } catch { /* not visible yet */ }
  }

  // A watched terminal keeps the owner's columns and rows (the shell formats its
  // output for them); a smaller font makes it fit the panel, down to a readable
  // size, beyond which the panel scrolls and follows the cursor.
  fitWatched(t, pass = 0) {
    if (!t || t.pane.hidden || !t.pane.clientWidth || !t.pane.clientHeight) return;
    const screen = t.pane.querySelector(".xterm-screen");
    if (!screen || !screen.offsetWidth || !screen.offsetHeight) return;
    const current = t.term.options.fontSize;
    const scale = Math.min((t.pane.clientWidth - 14) / screen.offsetWidth, (t.pane.clientHeight - 6) / screen.offsetHeight);
    const size = Math.max(MIN_WATCH_FONT, Math.min(TERM_FONT, Math.floor(current * scale * 2) / 2));
    if (size !== current) {
      t.term.options.fontSize = size;
      if (pass < 3) requestAnimationFrame(() => this.fitWatched(t, pass + 1));
    }
    this.followCursor(t);
  }

  // Show as much as fits, ending with the cursor's line (where the owner works).
  followCursor(t) {
    const pane = t.pane;
    if (pane.scrollHeight <= pane.clientHeight + 1) return;
    const screen = pane.querySelector(".xterm-screen");
    if (!screen) return;
    const rowHeight = screen.offsetHeight / t.term.rows;
    const bottom = (t.term.buffer.active.cursorY + 1) * rowHeight;
    pane.scrollTop = Math.max(0, bottom - pane.clientHeight + 4);
  }

  focus() { this.active?.term.focus(); }

  async close(name) {
    if (READONLY) return refuse("Closing terminals");
    const t = this.terms.get(name);
    if (!t) return;
    const ok = await confirmDialog({ title: `Close terminal ${name}?`, text: "Its shell and any program running in it are ended.", ok: "Close terminal" });
    if (!ok) return;
    t.closed = true;
    try { await this.sb.closeTerminal(name); } catch (err) { if (err.status !== 404) status(`Closing ${name}: ${err.message}`, "error"); }
    t.ws?.close();
    t.term.dispose();
    t.pane.remove();
    t.tab.remove();
    this.terms.delete(name);
    if (this.active === t) {
      this.active = null;
      const next = [...this.terms.keys()].pop();
      if (next) this.activate(next);
    }
    if (!this.terms.size) this.create();
    this.remember();
  }

  // Type a command into the active terminal (used by the palette).
  run(command) {
    if (READONLY) return refuse("Running commands");
    const t = this.active || this.create();
    this.activate(t.name);
    this.send(t, this.encoder.encode(command + "\r"));
  }

  openLink(uri) {
    const local = localPort(uri);
    if (local) this.openPreview(local.port, local.path);
    else if (/^https?:\/\//i.test(uri)) window.open(uri, "_blank", "noopener");
    else toast(`Not a web address: ${uri}`, "error");
  }

  bareLocalLinks(term) {
    return {
      provideLinks: (y, callback) => {
        const line = term.buffer.active.getLine(y - 1);
        if (!line) { callback(undefined); return; }
        const text = line.translateToString(true);
        const links = [];
        for (const m of text.matchAll(BARE_LOCAL)) {
          const port = Number(m[1]);
          const path = m[2] || "/";
          links.push({
            range: { start: { x: m.index + 1, y }, end: { x: m.index + m[0].length, y } },
            text: m[0],
            decorations: { underline: true, pointerCursor: true },
            activate: () => this.openPreview(port, path),
          });
        }
        callback(links.length ? links : undefined);
      },
    };
  }
}
