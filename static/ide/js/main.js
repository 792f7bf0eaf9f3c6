// The IDE page: wires the panes together and owns the keyboard shortcuts.
import { sandboxApi } from "./api.js";
import { Editors } from "./editor.js";
import { Git } from "./git.js";
import { initLayout, isNarrow, onLayoutChange, setHidden, toggle, togglePanelMax } from "./layout.js";
import { Palette } from "./palette.js";
import { Preview } from "./preview.js";
import { accessEnded, endAccess, OWNER, READONLY, refuse, setSandboxStatus } from "./readonly.js";
import { Interpreter, Runner } from "./run.js";
import { applyTemplate } from "./starter.js";
import { Terminals } from "./terminals.js";
import { toggleTheme } from "./theme.js";
import { ROOT, Tree } from "./tree.js";
import { Tutorial } from "./tutorial.js";
import { download } from "./transfers.js";
import { status, toast } from "./ui.js";

window.ideStarted = true; // every module loaded (see the watchdog in ide.html)
const root = document.getElementById("ide");
const sb = sandboxApi(root.dataset.sandboxId);
const mod = (e) => e.ctrlKey || e.metaKey;

initLayout();

// ------------------------------------------------------------------ panels
function showSide(which) {
  for (const b of document.querySelectorAll("[data-side]")) {
    const on = b.dataset.side === which;
    b.classList.toggle("active", on);
    b.setAttribute("aria-selected", on ? "true" : "false");
  }
  for (const v of document.querySelectorAll(".side-view")) v.hidden = v.dataset.view !== which;
  setHidden("sidebar", false);
  if (which === "git") git.refresh();
}

function showPanel(which) {
  for (const body of document.querySelectorAll("[data-panel-body]")) body.hidden = body.dataset.panelBody !== which;
  for (const tab of document.querySelectorAll(".panel-tab")) tab.classList.toggle("active", tab.dataset.panel === which);
  for (const tab of document.querySelectorAll(".term-tab")) tab.classList.toggle("active", which === "terminals" && tab.dataset.terminal === terminals?.active?.name);
  if (which === "terminals") requestAnimationFrame(() => terminals.fitActive());
  if (which === "interpreter") interpreter.focus();
}

// ------------------------------------------------------------------ shortcuts
// Shortcuts the page handles; `where` is "terminal" when xterm asks whether to
// leave a key alone (there Ctrl-K, Ctrl-P, Ctrl-B keep their shell meaning).
function shortcut(e, where = "page") {
  if (e.type !== "keydown") return null;
  const k = e.key.toLowerCase();
  const inTerm = where === "terminal";
  if (mod(e) && e.shiftKey && k === "p") return "palette";
  if (mod(e) && !e.shiftKey && k === "p" && !inTerm) return "quickopen";
  if (e.ctrlKey && !e.shiftKey && k === "k" && !inTerm) return "palette";
  if (mod(e) && !e.shiftKey && k === "s") return "save";
  if (e.ctrlKey && e.shiftKey && (e.code === "Backquote" || k === "`" || k === "~")) return "newterm";
  if (k === "f5" || (mod(e) && k === "enter" && !inTerm && !e.shiftKey)) return "run";
  if (mod(e) && !e.shiftKey && k === "b" && !inTerm) return "sidebar";
  if (e.altKey && !mod(e) && k === "w" && !inTerm) return "closetab";
  if (e.ctrlKey && !e.shiftKey && k === "j") return "panelmax";
  return null;
}

const actions = {
  palette: () => palette.open("commands"),
  quickopen: () => palette.open("files"),
  save: () => (READONLY ? refuse("Saving") : editors.save()),
  newterm: () => (READONLY ? refuse("Opening terminals") : terminals.create()),
  run: () => (READONLY ? refuse("Running files") : runner.runActive()),
  sidebar: () => toggle("sidebar"),
  closetab: () => editors.closeActive(),
  panelmax: () => togglePanelMax(),
};

document.addEventListener("keydown", (e) => {
  if (palette.isOpen() && !(mod(e) && e.shiftKey)) return;
  const inTerm = !!e.target.closest?.(".xterm");
  const name = shortcut(e, inTerm ? "terminal" : "page");
  if (!name) return;
  if (name === "run" && e.target.closest?.("#interpreter")) return; // Ctrl-Enter runs the cell there
  e.preventDefault();
  e.stopPropagation();
  actions[name]();
}, true);

// ------------------------------------------------------------------ the parts
const editors = new Editors(sb);
const tree = new Tree(sb, editors);
const preview = new Preview(sb);
const terminals = new Terminals(sb, {
  openPreview: (port, path) => preview.openPort(port, path), // a viewer: shared ports only
  isShortcut: (e) => !!shortcut(e, "terminal"),
});
const runner = new Runner(sb, { editors, showPanel });
const interpreter = new Interpreter(sb);
const git = new Git(sb, { tree, editors, showSide });
const tutorial = new Tutorial(sb, { terminals, showSide });

// `writes`: left out of a read-only view (someone else's workspace).
const allCommands = () => [
  { title: "File: Quick Open…", hint: "Ctrl P", run: () => palette.open("files") },
  { title: "File: Save", hint: "Ctrl S", run: () => editors.save(), writes: true },
  { title: "File: Save All", run: () => editors.saveAll(), writes: true },
  { title: "File: New File…", run: () => tree.newFile(), writes: true },
  { title: "File: New Folder…", run: () => tree.newFolder(), writes: true },
  { title: "File: Upload Files…", run: () => tree.pickUpload(tree.targetDir()), writes: true },
  { title: "File: Upload a Folder…", run: () => tree.pickUpload(tree.targetDir(), true), writes: true },
  { title: "File: Download Workspace (.tar.gz)", run: () => download(sb.archiveUrl(ROOT), "workspace.tar.gz") },
  { title: "File: Close Editor", hint: "Alt W", run: () => editors.closeActive() },
  { title: "Explorer: Refresh", run: () => tree.refreshAll() },
  { title: "Explorer: Collapse All", run: () => tree.collapseAll() },
  { title: "Run: Run Open File", hint: "F5", run: () => runner.runActive(), writes: true },
  { title: "Run: Stop", run: () => runner.stop(), writes: true },
  { title: "Terminal: New Terminal", hint: "Ctrl Shift `", run: () => terminals.create(), writes: true },
  { title: READONLY ? "Terminal: Show Terminals" : "Terminal: Focus Terminal", run: () => { showPanel("terminals"); terminals.focus(); } },
  { title: "Interpreter: Open Python Interpreter", run: () => showPanel("interpreter"), writes: true },
  { title: "Git: Clone Repository…", run: () => git.openDialog(), writes: true },
  { title: "Git: Show Changes", run: () => showSide("git") },
  { title: "Preview: Refresh Ports", run: () => preview.poll() },
  { title: "Preview: Toggle Pane", run: () => toggle("preview") },
  { title: "View: Toggle Side Bar", hint: "Ctrl B", run: () => toggle("sidebar") },
  { title: "View: Maximize / Restore Panel", hint: "Ctrl J", run: () => togglePanelMax() },
  { title: "View: Toggle Dark / Light Theme", run: () => toggleTheme() },
  { title: "Go to Dashboard", run: () => { location.href = "/"; } },
];
const commands = () => allCommands().filter((c) => !(READONLY && c.writes));
const palette = new Palette({
  commands,
  files: () => tree.allFiles(),
  openFile: (path, size) => editors.open(path, { size }),
});

// ------------------------------------------------------------------ chrome
for (const b of document.querySelectorAll("[data-side]")) b.addEventListener("click", () => showSide(b.dataset.side));
for (const b of document.querySelectorAll(".panel-tab")) b.addEventListener("click", () => showPanel(b.dataset.panel));
document.addEventListener("panelshow", (e) => showPanel(e.detail.panel));
document.getElementById("new-term").addEventListener("click", () => terminals.create());
// Read-only: the banner's live dot follows the file watch stream.
if (READONLY) {
  const banner = document.getElementById("readonly-banner");
  const text = document.getElementById("readonly-live-text");
  const statusPill = document.getElementById("sandbox-status");
  let live = false;
  const show = () => {
    if (accessEnded) return;
    const asleep = statusPill.dataset.status === "sleeping";
    banner.dataset.live = asleep ? "paused" : live ? "live" : document.hidden ? "paused" : "off";
    text.textContent = asleep ? `paused: ${OWNER}'s sandbox is asleep` : live ? "updates live" : document.hidden ? "paused" : "reconnecting…";
  };
  document.addEventListener("watchstate", (e) => { live = e.detail.live; show(); });
  document.addEventListener("accessended", () => {
    banner.dataset.live = "off";
    text.textContent = "no longer shared with you";
    statusPill.textContent = "unavailable";
    statusPill.dataset.status = "error";
    toast(`${OWNER}'s workspace is no longer shared with you: what is on screen is as it was.`, "error", 15000);
  });
  document.addEventListener("sandboxstatus", (e) => {
    statusPill.textContent = e.detail.status;
    statusPill.dataset.status = e.detail.status;
    show();
  });
}
document.getElementById("panel-max").addEventListener("click", () => togglePanelMax());
document.getElementById("toggle-sidebar").addEventListener("click", () => toggle("sidebar"));
document.getElementById("toggle-preview").addEventListener("click", () => toggle("preview"));
document.getElementById("palette-btn").addEventListener("click", () => palette.open("commands"));
onLayoutChange(() => terminals.fitActive());
// On a narrow screen the side bar floats: opening a file closes it.
editors.onChange(() => { if (isNarrow()) setHidden("sidebar", true); });

const pill = document.getElementById("sandbox-status");
async function refreshStatus() {
  try {
    const s = await sb.get();
    pill.textContent = s.status;
    pill.dataset.status = s.status;
    setSandboxStatus(s.status);
  } catch (err) {
    if (err.status === 404 && READONLY) endAccess();
    else if (err.status === 404) { pill.textContent = "deleted"; pill.dataset.status = "error"; }
  }
}
setInterval(() => { if (!document.hidden) refreshStatus(); }, 20000);

// ------------------------------------------------------------------ start
showPanel("terminals");
// Opening the IDE wakes a sleeping sandbox: show its new status once files answer.
tree.init().then(refreshStatus).catch((err) => toast(`Files: ${err.message}`, "error"));
terminals.init().catch((err) => toast(`Terminals: ${err.message}`, "error"))
  .then(() => tutorial.init()) // a template's guided tutorial, if it has one
  .catch((err) => toast(`Tutorial: ${err.message}`, "error"));
preview.start(); // a viewer sees the owner's shared ports (never shares one)
applyTemplate({ sb, editors, preview, readonly: READONLY }); // its files, its port
refreshStatus();
status(READONLY ? `Viewing ${OWNER}'s workspace (read-only)` : "Ready");
window.ide = { sb, editors, tree, terminals, preview, runner, interpreter, git, palette, tutorial };
